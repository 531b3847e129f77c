/*
 * checkpoint.c: keeps the -wal file from growing without bound.
 *
 * A PASSIVE pass first copies what it can without taking any lock that
 * writers wait on. Then the configured mode (FULL/RESTART/TRUNCATE), which
 * takes the writer lock and waits for readers: its busy handler is bounded
 * by max_wait_ms, so the application's writers are held back at most that
 * long. When readers keep it from finishing, the job records "blocked"
 * rather than failing: the PASSIVE pass already did the bulk of the work.
 */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "config/advice.h"
#include "db/database.h"
#include "core/fsutil.h"
#include "jobs/job.h"

int job_checkpoint(struct job_context *context, struct job_result *result)
{
    const struct database_config *db = context->database;
    struct error err = {0};
    sqlite3 *connection = NULL;
    char journal_mode[32];
    int log_frames = 0, checkpointed = 0;

    int rc = database_open(db, false, context->stop, &connection, &err);
    if (rc == 0)
        rc = database_query_text(connection, "PRAGMA journal_mode", journal_mode,
                                 sizeof journal_mode, &err);
    if (rc != 0) {
        job_result_set(result, JOB_OUTCOME_FAILED, "%s", err.message);
        goto out;
    }
    if (strcmp(journal_mode, "wal") != 0) {
        char fix[ADVICE_MAX];
        job_result_set(result, JOB_OUTCOME_WARNING,
                       "journal_mode is %s, not wal: nothing to checkpoint (to switch: `%s`)",
                       journal_mode,
                       advice_command(fix, sizeof fix, "sqlite3", db->path,
                                      "PRAGMA journal_mode=WAL", NULL));
        goto out;
    }

    int64_t wal_before = fs_file_size(db->path, "-wal");
    /* PASSIVE never invokes the busy handler, so no timeout applies. */
    rc = sqlite3_wal_checkpoint_v2(connection, NULL, SQLITE_CHECKPOINT_PASSIVE, &log_frames,
                                   &checkpointed);
    if (rc == SQLITE_INTERRUPT || (context->stop && *context->stop)) {
        rc = -ECANCELED;
        goto out;
    }
    bool blocked = rc == SQLITE_BUSY;
    /* TRUNCATE and RESTART report 0 frames once the log is reset: the work
     * they did is what the PASSIVE pass copied plus what they found left. */
    int passive_copied = checkpointed;
    if (rc != SQLITE_OK && !blocked) {
        job_result_set(result, JOB_OUTCOME_FAILED, "passive checkpoint failed: %s",
                       sqlite3_errmsg(connection));
        rc = -EIO;
        goto out;
    }
    /* With replication on, the WAL is restarted only by the replication
     * thread, after it shipped every commit under the write lock
     * (replicate/shipper.c): a RESTART or TRUNCATE here would wait for its
     * pin, then reset the WAL under frames it had not read. So this job
     * only backfills, which never loses a frame. */
    bool replicated = db->replicate.target != NULL;
    if (db->checkpoint.mode != CHECKPOINT_PASSIVE && !blocked && !replicated) {
        database_set_busy_timeout(connection, db->checkpoint.max_wait_ms, context->stop);
        rc = sqlite3_wal_checkpoint_v2(connection, NULL, (int)db->checkpoint.mode, &log_frames,
                                       &checkpointed);
        if (rc == SQLITE_INTERRUPT || (context->stop && *context->stop)) {
            rc = -ECANCELED;
            goto out;
        }
        blocked = rc == SQLITE_BUSY;
        if (rc != SQLITE_OK && !blocked) {
            job_result_set(result, JOB_OUTCOME_FAILED, "%s checkpoint failed: %s",
                           config_checkpoint_mode_name(db->checkpoint.mode),
                           sqlite3_errmsg(connection));
            rc = -EIO;
            goto out;
        }
    }
    rc = 0;
    if (checkpointed < passive_copied)
        checkpointed = passive_copied;
    if (log_frames < checkpointed)
        log_frames = checkpointed;
    int64_t wal_after = fs_file_size(db->path, "-wal");
    if (blocked)
        job_result_set(result, JOB_OUTCOME_WARNING,
                       "blocked: %s checkpoint could not finish within max_wait_ms=%d (readers or "
                       "writers busy); fell back to passive, %d of %d frame%s copied, wal %lld -> %lld bytes",
                       config_checkpoint_mode_name(db->checkpoint.mode), db->checkpoint.max_wait_ms,
                       checkpointed, log_frames, log_frames == 1 ? "" : "s", (long long)wal_before,
                       (long long)wal_after);
    else
        job_result_set(result, JOB_OUTCOME_OK, "%s checkpoint%s: %d frame%s copied, wal %lld -> %lld bytes",
                       config_checkpoint_mode_name(replicated ? CHECKPOINT_PASSIVE : db->checkpoint.mode),
                       replicated ? " (replicated: the replication thread ships, then resets the WAL)" : "",
                       checkpointed,
                       checkpointed == 1 ? "" : "s", (long long)wal_before, (long long)wal_after);
    if (context->state) {
        struct db_facts facts = {.wal_bytes = wal_after, .checkpoint_blocked = blocked};
        state_set_facts(context->state, db->name, &facts, FACT_WAL_BYTES | FACT_CHECKPOINT_BLOCKED,
                        NULL);
    }
out:
    sqlite3_close(connection);
    return rc;
}
