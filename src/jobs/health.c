/*
 * health.c: the health verdict of one database, with reasons an operator
 * can act on. Reads the database (quick_check, pragmas) and the agent's
 * state (when jobs last succeeded); changes nothing.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "database.h"
#include "job.h"
#include "units.h"

enum health_level { HEALTHY = 0, DEGRADED = 1, UNHEALTHY = 2 };

struct verdict {
    enum health_level level;
    char reasons[900];
    size_t used;
};

static void verdict_add(struct verdict *verdict, enum health_level level, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void verdict_add(struct verdict *verdict, enum health_level level, const char *format, ...)
{
    if (level > verdict->level)
        verdict->level = level;
    if (verdict->used + 3 >= sizeof verdict->reasons)
        return;
    if (verdict->used)
        verdict->used += (size_t)snprintf(verdict->reasons + verdict->used,
                                          sizeof verdict->reasons - verdict->used, "; ");
    va_list args;
    va_start(args, format);
    int n = vsnprintf(verdict->reasons + verdict->used, sizeof verdict->reasons - verdict->used,
                      format, args);
    va_end(args);
    if (n > 0)
        verdict->used += (size_t)n;
    if (verdict->used >= sizeof verdict->reasons)
        verdict->used = sizeof verdict->reasons - 1;
}

static const char *level_name(enum health_level level)
{
    return level == HEALTHY ? "healthy" : level == DEGRADED ? "degraded" : "unhealthy";
}

/* A job that should run every `interval` seconds and last succeeded at
 * `last`: twice overdue is degraded, four times unhealthy. */
static void check_overdue(struct job_context *context, struct verdict *verdict, const char *job,
                          const struct schedule *schedule, time_t now)
{
    if (!context->state || schedule->kind != SCHEDULE_EVERY)
        return;
    struct job_record record;
    if (state_get_job(context->state, context->database->name, job, &record, NULL) != 0 ||
        record.runs_total == 0)
        return;
    int64_t interval = schedule->every_seconds;
    char age[32];
    if (record.last_success == 0) {
        if (record.runs_total >= 2)
            verdict_add(verdict, DEGRADED, "no %s has succeeded yet (last error: %s)", job,
                        record.last_message);
        return;
    }
    int64_t since = (int64_t)(now - record.last_success);
    units_format_duration(since, age, sizeof age);
    if (since > 4 * interval)
        verdict_add(verdict, UNHEALTHY, "last good %s %s ago (4x its interval)", job, age);
    else if (since > 2 * interval)
        verdict_add(verdict, DEGRADED, "last good %s %s ago (2x its interval)", job, age);
}

int job_health(struct job_context *context, struct job_result *result)
{
    const struct database_config *db = context->database;
    struct error err = {0};
    struct verdict verdict = {0};
    sqlite3 *connection = NULL;
    char journal_mode[32] = "", check[256] = "";
    int64_t page_count = 0, freelist = 0, page_size = 0, auto_vacuum = 0;
    bool ok = false;
    time_t now = time(NULL);

    int rc = database_open(db, true, context->stop, &connection, &err);
    if (rc == 0)
        rc = database_check(connection, true, &ok, check, sizeof check, &err);
    if (rc == 0)
        rc = database_query_text(connection, "PRAGMA journal_mode", journal_mode,
                                 sizeof journal_mode, &err);
    if (rc == 0)
        rc = database_query_int(connection, "PRAGMA page_count", &page_count, &err);
    if (rc == 0)
        rc = database_query_int(connection, "PRAGMA freelist_count", &freelist, &err);
    if (rc == 0)
        rc = database_query_int(connection, "PRAGMA page_size", &page_size, &err);
    if (rc == 0)
        rc = database_query_int(connection, "PRAGMA auto_vacuum", &auto_vacuum, &err);
    sqlite3_close(connection);
    if (rc == -ECANCELED)
        return rc;
    if (rc != 0) {
        verdict_add(&verdict, UNHEALTHY, "%s", err.message);
    } else {
        if (!ok)
            verdict_add(&verdict, UNHEALTHY, "quick_check failed: %s (restore from a backup)", check);
        if (strcmp(journal_mode, "wal") != 0)
            verdict_add(&verdict, DEGRADED,
                        "journal_mode is %s: the agent cannot checkpoint; run PRAGMA "
                        "journal_mode=WAL once",
                        journal_mode);
        char path[4200], size[32];
        struct stat st;
        snprintf(path, sizeof path, "%s-wal", db->path);
        int64_t wal = stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
        units_format_size(wal, size, sizeof size);
        if (wal >= db->health.wal_crit_bytes)
            verdict_add(&verdict, UNHEALTHY, "WAL is %s (crit %lld bytes): a reader holds it open or checkpoints are blocked",
                        size, (long long)db->health.wal_crit_bytes);
        else if (wal >= db->health.wal_warn_bytes)
            verdict_add(&verdict, DEGRADED, "WAL is %s (warn %lld bytes): checkpoints are not keeping up",
                        size, (long long)db->health.wal_warn_bytes);
        double ratio = page_count > 0 ? (double)freelist / (double)page_count : 0.0;
        if (ratio >= db->health.freelist_crit)
            verdict_add(&verdict, UNHEALTHY, "freelist is %.0f%% of the file: %s", ratio * 100,
                        auto_vacuum == 2 ? "run sqlprodd vacuum" : "needs VACUUM (auto_vacuum is not incremental)");
        else if (ratio >= db->health.freelist_warn)
            verdict_add(&verdict, DEGRADED, "freelist is %.0f%% of the file: %s", ratio * 100,
                        auto_vacuum == 2 ? "run sqlprodd vacuum" : "needs VACUUM (auto_vacuum is not incremental)");
        if (context->state) {
            char value[64];
            snprintf(value, sizeof value, "%lld", (long long)wal);
            state_set_value(context->state, db->name, "wal_bytes", value, NULL);
            snprintf(value, sizeof value, "%.6f", ratio);
            state_set_value(context->state, db->name, "freelist_ratio", value, NULL);
            snprintf(value, sizeof value, "%lld", (long long)(page_count * page_size));
            state_set_value(context->state, db->name, "database_bytes", value, NULL);
            state_set_value(context->state, db->name, "journal_mode", journal_mode, NULL);
        }
    }
    check_overdue(context, &verdict, "backup", &db->backup.schedule, now);
    check_overdue(context, &verdict, "checkpoint", &db->checkpoint.schedule, now);
    if (db->upload.target)
        check_overdue(context, &verdict, "upload", &db->upload.schedule, now);

    if (context->state) {
        state_set_value(context->state, db->name, "health", level_name(verdict.level), NULL);
        state_set_value(context->state, db->name, "health_reasons", verdict.reasons, NULL);
    }
    job_result_set(result, verdict.level == UNHEALTHY ? JOB_OUTCOME_FAILED
                           : verdict.level == DEGRADED ? JOB_OUTCOME_WARNING
                                                       : JOB_OUTCOME_OK,
                   "%s%s%s", level_name(verdict.level), verdict.used ? ": " : "", verdict.reasons);
    return 0;
}
