/*
 * job.h: the interface between the scheduler (agent/agent.c) or a one-off
 * command (cli/cli_jobs.c) and the maintenance jobs in src/jobs/. A job
 * function does one thing on one database and fills a struct job_result;
 * job_execute() (runner.c) wraps it with the per-database lock, timing, the
 * state record and the log line, and runs what follows it (plan.h).
 */
#ifndef SQLPRODD_JOB_H
#define SQLPRODD_JOB_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "archive/archive.h"
#include "config/config.h"
#include "db/state.h"

enum job_kind {
    JOB_CHECKPOINT,
    JOB_ANALYZE,
    JOB_VACUUM,
    JOB_BACKUP,
    JOB_UPLOAD,
    JOB_PRUNE,
    JOB_HEALTH,
    JOB_DRILL,
    JOB_KIND_COUNT
};

/* How a job shows how far it got. A one-off on a terminal draws a bar
 * (report/progress.c, set by cli_jobs.c); the agent passes none. Jobs do not
 * draw themselves: they sit below the reporters. */
struct job_progress {
    void (*begin)(void *self, const char *label);
    io_progress_fn update;
    void (*end)(void *self);
    void *self;
};

struct job_context {
    const struct config *config;
    const struct database_config *database;
    struct state *state;               /* this thread's own connection */
    const volatile sig_atomic_t *stop; /* set by SIGTERM/SIGINT: abort cleanly */
    const struct job_progress *progress; /* NULL: none shown */
    bool wait_for_lock;                /* one-off: wait; agent: skip and retry later */
    const char *who;                   /* "sqlprodd run", "sqlprodd backup": for the lock file */
    bool one_off;                      /* asked for now: e.g. upload ignores retry back-off */
};

struct job_result {
    enum job_outcome outcome;
    char message[1024]; /* one line: what was done, or why it failed */
    bool skipped;       /* lock held elsewhere: nothing recorded, try again soon */
    bool quiet;         /* nothing to do: logged at debug level, not info */
    bool changed_backups; /* added, sent or dropped a backup: retention has news (plan.h) */
    double duration;
};

const char *job_name(enum job_kind kind);
/* -1 if unknown. */
int job_kind_from_name(const char *name);

/* The schedule of `kind` for a database (prune has none: it follows backup
 * and upload, plan.h). */
const struct schedule *job_schedule(const struct database_config *db, enum job_kind kind);

/* Lock, run, time, record in state, log. Returns 0 when the job ran (whatever
 * its outcome, see result->outcome), or a negative code when it could not be
 * started (result->message says why). */
int job_execute(enum job_kind kind, struct job_context *context, struct job_result *result);

/* The job bodies, one per file in src/jobs/. Called with the lock held. */
int job_checkpoint(struct job_context *context, struct job_result *result);
int job_analyze(struct job_context *context, struct job_result *result);
int job_vacuum(struct job_context *context, struct job_result *result);
int job_backup(struct job_context *context, struct job_result *result);
int job_upload(struct job_context *context, struct job_result *result);
int job_prune_local(struct job_context *context, struct job_result *result);  /* prune.c */
int job_prune_remote(struct job_context *context, struct job_result *result); /* prune_remote.c */
int job_health(struct job_context *context, struct job_result *result);
int job_drill(struct job_context *context, struct job_result *result);

/* Removes temp files and unfinished archives a crash may have left in the
 * database's backup directory. Call with the lock held. Returns the count. */
int job_clean_backup_directory(const struct database_config *db, struct error *err);

/* Removes what a drill killed midway left in its scratch directory,
 * STATE_DIR/drill/NAME/ (drill.c). Call with the lock held. Returns the
 * count. */
int job_clean_drill_directory(const struct config *config, const struct database_config *db,
                              struct error *err);

/* Removes the temp files an upload killed midway left on the database's
 * target (target_remove_temp_files). Call with the lock held. Returns the
 * count. */
int job_clean_target(const struct database_config *db, struct error *err);

/* Fills `out` with "result: message" helpers. */
void job_result_set(struct job_result *result, enum job_outcome outcome, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

#endif
