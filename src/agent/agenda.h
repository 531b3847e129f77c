/*
 * agenda.h: the agent's decisions about time, kept pure so they can be
 * tested without a clock, threads or a state database: which job of an
 * idle database starts now, how long the loop may sleep, and which job it
 * will start next (what STATUS= says). Not the loop itself (agent.c), nor
 * when a job falls due after it ran (schedule.c and jobs/plan.c).
 */
#ifndef SQLPRODD_AGENDA_H
#define SQLPRODD_AGENDA_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "config/config.h"
#include "jobs/job.h"

/* One database as the loop sees it. */
struct agenda_database {
    const struct database_config *config;
    time_t next_due[JOB_KIND_COUNT]; /* (time_t)-1: not scheduled, or running */
    bool busy;                       /* a job of it is queued or running */
};

/* The job of an idle database to start at `now`: the earliest due, and on
 * a tie the cheaper, more urgent one (enum order). -1 when none is due. */
int agenda_pick_job(const struct agenda_database *database, time_t now);

/* Milliseconds the loop may sleep before a job of an idle database falls
 * due (0: one is due now; at most a day), or -1 to wait for a job to finish
 * or a signal: when nothing is scheduled, or no worker is free
 * (`can_start` false). */
int agenda_sleep_ms(const struct agenda_database *databases, size_t count, bool can_start,
                    time_t now);

/* The job the agent will start next, busy databases included (their other
 * jobs wait for the running one): false when nothing is scheduled. */
bool agenda_next(const struct agenda_database *databases, size_t count, size_t *database,
                 enum job_kind *kind, time_t *due);

#endif
