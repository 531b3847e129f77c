/*
 * verdict.h: the health verdict of one database from what was measured,
 * with a reason and its fix for each problem. Pure: no database, file,
 * state or clock (`now` is a parameter), so every verdict can be tested on
 * made-up measurements. The measuring is health.c's.
 */
#ifndef SQLPRODD_VERDICT_H
#define SQLPRODD_VERDICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config/config.h"
#include "db/state.h"
#include "jobs/integrity.h"
#include "jobs/job.h"

/* What the database looked like. */
struct health_inspection {
    char journal_mode[32];
    char check[512]; /* the check's words, or why it was given up */
    bool check_ok, full_check;
    bool check_given_up; /* it would have held the WAL past its limit */
    int64_t page_count, freelist, page_size, auto_vacuum;
};

/* Everything one health run measured. */
struct health_measure {
    char enforce_error[600]; /* enforce = { ... } could not be applied: why; "" when it was */
    int read_rc;             /* 0: inspected; -EBUSY: locked; other: unreadable */
    char read_error[1024];   /* when read_rc is neither */
    struct health_inspection found; /* when read_rc == 0 */
    int64_t wal_bytes;              /* when read_rc == 0 */
    time_t locked_since;            /* when read_rc == -EBUSY: the first run that found it locked */
    int64_t replica_spool_bytes;    /* replicate.target set: replica_spool_bytes() */
    char integrity_problem[INTEGRITY_PROBLEM_SIZE]; /* the standing integrity verdict; "": none */
    bool jobs_known;                /* no state database: the jobs are not judged */
    struct job_record jobs[JOB_KIND_COUNT];
    time_t drill_succeeded_at; /* the last drill that passed in full (drill.c); 0: none */
};

/* Reasons are kept twice: "; "-joined for one-line places (the job message,
 * `status`) and newline-separated so that --json and /health can list them
 * without guessing where one ends. */
struct health_verdict {
    enum health_level level;
    char reasons[1800];
    char lines[1800];
    size_t used, lines_used;
};

void health_judge(const struct config *config, const struct database_config *db,
                  const struct health_measure *measure, time_t now, struct health_verdict *verdict);

/* "none", "full", "incremental" for PRAGMA auto_vacuum's number. */
const char *health_auto_vacuum_name(int64_t mode);

#endif
