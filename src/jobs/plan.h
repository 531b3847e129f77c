/*
 * plan.h: what follows a job, declared in one table (plan.c) that the
 * runner (in-run steps), the agent (jobs made due) and the one-off commands
 * (through the runner) all read. A job body does one thing and never starts
 * another job; this is the only place that chains them.
 */
#ifndef SQLPRODD_PLAN_H
#define SQLPRODD_PLAN_H

#include <stdbool.h>

#include "jobs/job.h"

/* When a follow-up runs. */
enum plan_when {
    PLAN_ALWAYS,     /* whatever the job's outcome */
    PLAN_IF_CHANGED, /* the job added, sent or dropped a backup (result->changed_backups) */
};

/* How it runs, and what its result does to the job's. */
enum plan_how {
    PLAN_STEP_LOGGED, /* in the same run, under the lock; its result is a log line of its own */
    PLAN_STEP_MERGED, /* in the same run; its message is appended; its outcome is the job's */
    PLAN_STEP_CAVEAT, /* in the same run; its message is appended; a failure is only a warning */
    PLAN_DUE_NOW,     /* a job of its own: the agent makes it due at once; a one-off command
                         leaves it to the agent or to the command of that job */
};

struct plan_follow_up {
    enum job_kind after;
    const char *name;                                       /* its log name */
    int (*step)(struct job_context *, struct job_result *); /* PLAN_STEP_* */
    enum job_kind job;                                      /* PLAN_DUE_NOW */
    bool needs_target;                                      /* only with an upload target */
    enum plan_when when;
    enum plan_how how;
};

/* The table, for tests and documentation: *count rows. */
const struct plan_follow_up *plan_follow_ups(size_t *count);

/* Runs the in-run steps that follow `kind` (lock held). `rc` is what the
 * job body returned; returns the job's code with the steps' folded in. */
int plan_run_steps(enum job_kind kind, struct job_context *context, struct job_result *result,
                   int rc);

/* True when `job` is to be made due now because `after` ended with `result`. */
bool plan_makes_due(enum job_kind after, const struct job_result *result,
                    const struct database_config *db, enum job_kind job);

#endif
