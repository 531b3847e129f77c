/*
 * vacuum.c: returns free pages to the file system with PRAGMA
 * incremental_vacuum, in small transactions so that the application's
 * writers never wait long. When auto_vacuum is not INCREMENTAL the pragma
 * does nothing, so the job says so and how to switch, instead of
 * "succeeding" silently.
 */
#include <errno.h>
#include <stdio.h>

#include "config/advice.h"
#include "db/database.h"
#include "jobs/job.h"

/* Pages freed per transaction: ~4 MiB at 4 KiB pages, a few milliseconds. */
#define VACUUM_PAGES_PER_STEP 1000

int job_vacuum(struct job_context *context, struct job_result *result)
{
    const struct database_config *db = context->database;
    struct error err = {0};
    sqlite3 *connection = NULL;
    int64_t auto_vacuum = 0, free_before = 0, free_after = 0, page_size = 0;

    int rc = database_open(db, false, context->stop, &connection, &err);
    if (rc == 0)
        rc = database_query_int(connection, "PRAGMA auto_vacuum", &auto_vacuum, &err);
    if (rc == 0)
        rc = database_query_int(connection, "PRAGMA freelist_count", &free_before, &err);
    if (rc == 0)
        rc = database_query_int(connection, "PRAGMA page_size", &page_size, &err);
    if (rc != 0)
        goto fail;
    if (auto_vacuum != 2) {
        char fix[ADVICE_MAX];
        job_result_set(result, JOB_OUTCOME_WARNING,
                       "auto_vacuum is %s, not incremental: %lld free page%s cannot be returned; "
                       "to switch (rewrites the file, blocks writers meanwhile): `%s`",
                       auto_vacuum == 1 ? "full" : "none", (long long)free_before,
                       free_before == 1 ? "" : "s",
                       advice_command(fix, sizeof fix, "sqlite3", db->path,
                                      "PRAGMA auto_vacuum=INCREMENTAL; VACUUM;", NULL));
        goto out;
    }
    int64_t target =
        db->vacuum.pages > 0 && db->vacuum.pages < free_before ? db->vacuum.pages : free_before;
    rc = database_commit_without_fsync_in_wal(connection, &err);
    if (rc != 0)
        goto fail;
    for (int64_t done = 0; done < target;) {
        int64_t step =
            target - done < VACUUM_PAGES_PER_STEP ? target - done : VACUUM_PAGES_PER_STEP;
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA incremental_vacuum(%lld)", (long long)step);
        rc = database_exec(connection, sql, 4, context->stop, &err);
        if (rc != 0)
            goto fail;
        done += step;
    }
    rc = database_query_int(connection, "PRAGMA freelist_count", &free_after, &err);
    if (rc != 0)
        goto fail;
    result->quiet = free_before == 0;
    job_result_set(result, JOB_OUTCOME_OK, "returned %lld free page%s (%lld bytes), %lld left",
                   (long long)(free_before - free_after), free_before - free_after == 1 ? "" : "s",
                   (long long)((free_before - free_after) * page_size), (long long)free_after);
    goto out;
fail:
    if (rc != -ECANCELED)
        job_result_set(result, JOB_OUTCOME_FAILED, "%s", err.message);
out:
    sqlite3_close(connection);
    return rc;
}
