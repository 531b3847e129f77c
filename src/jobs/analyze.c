/*
 * analyze.c: keeps the query planner's statistics fresh, with ANALYZE or,
 * when `analyze.optimize = true`, PRAGMA optimize (which analyzes only the
 * tables whose statistics look stale).
 */
#include <errno.h>

#include "database.h"
#include "job.h"

int job_analyze(struct job_context *context, struct job_result *result)
{
    const struct database_config *db = context->database;
    struct error err = {0};
    sqlite3 *connection = NULL;
    const char *sql = db->analyze.optimize ? "PRAGMA optimize" : "ANALYZE";

    int rc = database_open(db, false, context->stop, &connection, &err);
    if (rc == 0)
        rc = database_exec(connection, sql, 4, context->stop, &err);
    if (rc == 0)
        job_result_set(result, JOB_OUTCOME_OK, "%s done", db->analyze.optimize ? "PRAGMA optimize" : "ANALYZE");
    else if (rc != -ECANCELED)
        job_result_set(result, JOB_OUTCOME_FAILED, "%s", err.message);
    sqlite3_close(connection);
    return rc;
}
