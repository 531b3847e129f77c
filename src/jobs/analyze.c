/*
 * analyze.c: keeps the query planner's statistics fresh, with ANALYZE or,
 * when `analyze.optimize = true`, PRAGMA optimize (which analyzes only the
 * tables whose statistics look stale).
 *
 * ANALYZE holds the write lock for its whole run, so on a large database a
 * full one stalls the application's writers for seconds. PRAGMA
 * analysis_limit (default 1000 rows per index, SQLite's own advice) bounds
 * that at the cost of approximate statistics; `limit = 0` asks for exact ones.
 * Its commit does not fsync in WAL mode (database.h): that fsync flushed the
 * application's WAL under the write lock, a 55 ms stall measured at 1000 tx/s.
 */
#include <errno.h>
#include <stdio.h>

#include "db/database.h"
#include "jobs/job.h"

int job_analyze(struct job_context *context, struct job_result *result)
{
    const struct database_config *db = context->database;
    struct error err = {0};
    sqlite3 *connection = NULL;
    const char *sql = db->analyze.optimize ? "PRAGMA optimize" : "ANALYZE";

    char limit[64];
    snprintf(limit, sizeof limit, "PRAGMA analysis_limit=%d", db->analyze.limit);
    int rc = database_open(db, false, context->stop, &connection, &err);
    if (rc == 0)
        rc = database_commit_without_fsync_in_wal(connection, &err);
    if (rc == 0)
        rc = database_exec(connection, limit, 1, context->stop, &err);
    if (rc == 0)
        rc = database_exec(connection, sql, 4, context->stop, &err);
    if (rc == 0)
        job_result_set(result, JOB_OUTCOME_OK, "%s done",
                       db->analyze.optimize ? "PRAGMA optimize" : "ANALYZE");
    else if (rc != -ECANCELED)
        job_result_set(result, JOB_OUTCOME_FAILED, "%s", err.message);
    sqlite3_close(connection);
    return rc;
}
