/*
 * runner.c: job_execute(), the one path every job takes, from the agent or
 * from a one-off command: lock, run, run the steps that follow it (plan.c),
 * measure, record, log. Not a scheduler.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/io.h"
#include "core/lock.h"
#include "core/log.h"
#include "jobs/job.h"
#include "jobs/plan.h"

typedef int (*job_function)(struct job_context *, struct job_result *);

static const job_function job_functions[JOB_KIND_COUNT] = {
    [JOB_CHECKPOINT] = job_checkpoint, [JOB_ANALYZE] = job_analyze, [JOB_VACUUM] = job_vacuum,
    [JOB_BACKUP] = job_backup,         [JOB_UPLOAD] = job_upload,   [JOB_PRUNE] = job_prune_local,
    [JOB_HEALTH] = job_health,         [JOB_DRILL] = job_drill,
};

int job_execute(enum job_kind kind, struct job_context *context, struct job_result *result)
{
    const struct database_config *db = context->database;
    const char *name = job_name(kind);
    struct error err = {0};
    struct database_lock lock;
    char holder[256] = "", what[128];

    memset(result, 0, sizeof *result);
    /* The job in the lock file: status tells "backup running since ..." */
    snprintf(what, sizeof what, "%s (%s)", context->who, name);
    int rc = lock_acquire(&lock, context->config->state_dir, db->name, what, false,
                          context->stop, holder, sizeof holder, &err);
    if (rc == -EWOULDBLOCK && context->wait_for_lock) {
        log_event(LOG_NOTICE, db->name, name, "waiting for the database lock, held by %s", holder);
        rc = lock_acquire(&lock, context->config->state_dir, db->name, what, true,
                          context->stop, holder, sizeof holder, &err);
    }
    if (rc == -EWOULDBLOCK) {
        result->skipped = true;
        job_result_set(result, JOB_OUTCOME_FAILED, "skipped: database is busy with %s", holder);
        log_event(LOG_INFO, db->name, name, "%s", result->message);
        return rc;
    }
    if (rc != 0) {
        job_result_set(result, JOB_OUTCOME_FAILED, "%s", err.message);
        log_event(LOG_ERR, db->name, name, "%s", result->message);
        return rc;
    }

    int64_t start_ms = io_monotonic_ms();
    time_t started = time(NULL);
    log_event(LOG_DEBUG, db->name, name, "started");
    rc = job_functions[kind](context, result);
    rc = plan_run_steps(kind, context, result, rc);
    result->duration = (double)(io_monotonic_ms() - start_ms) / 1000.0;
    if (rc != 0 && result->outcome != JOB_OUTCOME_FAILED)
        result->outcome = JOB_OUTCOME_FAILED;
    lock_release(&lock);

    /* A job cancelled by shutdown did not fail: do not count it against the
     * database (its schedule runs it again after the restart). */
    if (rc == -ECANCELED) {
        job_result_set(result, JOB_OUTCOME_FAILED, "aborted: stop requested");
        log_event(LOG_NOTICE, db->name, name, "aborted: stop requested, nothing left behind");
        return rc;
    }
    if (context->state &&
        state_record_job(context->state, db->name, name, started, result->duration,
                         result->outcome, result->message, &err) != 0)
        log_event(LOG_WARNING, db->name, name, "%s", err.message);

    int priority = result->outcome == JOB_OUTCOME_FAILED    ? LOG_ERR
                   : result->outcome == JOB_OUTCOME_WARNING ? LOG_WARNING
                   : result->quiet                          ? LOG_DEBUG
                                                            : LOG_INFO;
    log_event(priority, db->name, name, "%s (%.1fs)", result->message, result->duration);
    return 0;
}
