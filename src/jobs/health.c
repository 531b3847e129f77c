/*
 * health.c: the health verdict of one database, with reasons an operator
 * can act on, each followed by its fix. Reads the database (quick_check, a
 * full integrity_check every health.integrity_every, pragmas), the sizes of
 * its files and the agent's state (when each job last succeeded, its last
 * error). Changes the database only when `enforce = { ... }` asks for a
 * persistent setting it lacks. Not for the wording of metrics or status
 * (src/report/, src/cli/): it stores facts and the verdict in state.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "config/advice.h"
#include "db/database.h"
#include "core/fsutil.h"
#include "jobs/job.h"
#include "core/units.h"

/* Reasons are kept twice: "; "-joined for one-line places (the job message,
 * `status`) and newline-separated so that --json and /health can list them
 * without guessing where one ends. */
struct verdict {
    enum health_level level;
    char reasons[1800];
    char lines[1800];
    size_t used, lines_used;
};

static void verdict_append(char *buffer, size_t size, size_t *used, const char *separator,
                           const char *text)
{
    if (*used + 3 >= size)
        return;
    int n = snprintf(buffer + *used, size - *used, "%s%s", *used ? separator : "", text);
    if (n > 0)
        *used += (size_t)n;
    if (*used >= size)
        *used = size - 1;
}

static void verdict_add(struct verdict *verdict, enum health_level level, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void verdict_add(struct verdict *verdict, enum health_level level, const char *format, ...)
{
    char text[1024]; /* room for a fix with two long paths */
    if (level > verdict->level)
        verdict->level = level;
    va_list args;
    va_start(args, format);
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    /* A reason is one line wherever it is shown. */
    for (char *c = text; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    verdict_append(verdict->reasons, sizeof verdict->reasons, &verdict->used, "; ", text);
    verdict_append(verdict->lines, sizeof verdict->lines, &verdict->lines_used, "\n", text);
}

const char *health_level_name(enum health_level level)
{
    return level == HEALTHY ? "healthy" : level == DEGRADED ? "degraded" : "unhealthy";
}

int health_level_parse(const char *word)
{
    for (int level = HEALTHY; level <= UNHEALTHY; level++)
        if (strcmp(word, health_level_name((enum health_level)level)) == 0)
            return level;
    return -1;
}

static const char *auto_vacuum_name(int64_t mode)
{
    return mode == 0 ? "none" : mode == 1 ? "full" : mode == 2 ? "incremental" : "unknown";
}

/* What the database looked like. */
struct inspection {
    char journal_mode[32];
    char check[512];
    bool check_ok, full_check;
    int64_t page_count, freelist, page_size, auto_vacuum;
};

static int64_t state_get_int(struct state *state, const char *database, const char *key)
{
    char value[64] = "";
    if (!state || state_get_value(state, database, key, value, sizeof value, NULL) != 0)
        return 0;
    return strtoll(value, NULL, 10);
}

static void state_set_int(struct state *state, const char *database, const char *key,
                          int64_t number)
{
    char value[32];
    snprintf(value, sizeof value, "%lld", (long long)number);
    state_set_value(state, database, key, value, NULL);
}

static double seconds_between(const struct timespec *start, const struct timespec *end)
{
    return (double)(end->tv_sec - start->tv_sec) + (double)(end->tv_nsec - start->tv_nsec) / 1e9;
}

/*
 * Applies the opt-in persistent settings the database lacks. auto_vacuum
 * only takes effect through a VACUUM, which rewrites the whole file and
 * holds the write lock meanwhile: that is why it is opt-in, and why the
 * time it took is reported. Both changes are no-ops once applied, so a
 * database is changed once, not at every health run.
 */
static int enforce_settings(struct job_context *context, char *done, size_t done_size,
                            struct error *err)
{
    const struct database_config *db = context->database;
    const struct enforce_settings *enforce = &db->enforce;
    sqlite3 *connection = NULL;
    char journal_mode[32] = "";
    int64_t auto_vacuum = 0;
    size_t used = 0;
    done[0] = '\0';
    if (!enforce->journal_mode_wal && enforce->auto_vacuum == ENFORCE_AUTO_VACUUM_UNSET)
        return 0;

    int rc = database_open(db, false, context->stop, &connection, err);
    if (rc == 0)
        rc = database_query_text(connection, "PRAGMA journal_mode", journal_mode,
                                 sizeof journal_mode, err);
    if (rc == 0)
        rc = database_query_int(connection, "PRAGMA auto_vacuum", &auto_vacuum, err);
    if (rc != 0)
        goto out;

    if (enforce->auto_vacuum != ENFORCE_AUTO_VACUUM_UNSET && auto_vacuum != enforce->auto_vacuum) {
        char sql[64];
        struct timespec start, end;
        snprintf(sql, sizeof sql, "PRAGMA auto_vacuum=%d", (int)enforce->auto_vacuum);
        clock_gettime(CLOCK_MONOTONIC, &start);
        rc = database_exec(connection, sql, 3, context->stop, err);
        if (rc == 0)
            rc = database_exec(connection, "VACUUM", 3, context->stop, err);
        clock_gettime(CLOCK_MONOTONIC, &end);
        if (rc != 0) {
            error_prefix(err, "enforce.auto_vacuum: ");
            goto out;
        }
        if (strcmp(journal_mode, "wal") == 0)
            database_exec(connection, "PRAGMA wal_checkpoint(TRUNCATE)", 1, context->stop, NULL);
        used +=
            (size_t)snprintf(done + used, done_size - used,
                             "auto_vacuum changed from %s to %s with a VACUUM that took %.1fs",
                             auto_vacuum_name(auto_vacuum), auto_vacuum_name(enforce->auto_vacuum),
                             seconds_between(&start, &end));
    }
    if (enforce->journal_mode_wal && strcmp(journal_mode, "wal") != 0) {
        char now_mode[32] = "";
        rc = database_query_text(connection, "PRAGMA journal_mode=WAL", now_mode, sizeof now_mode,
                                 err);
        if (rc == 0 && strcmp(now_mode, "wal") != 0)
            rc = error_set(err, -EBUSY,
                           "enforce.journal_mode: the database stayed in %s mode (another "
                           "connection holds it open; it switches when it can)",
                           now_mode);
        if (rc != 0)
            goto out;
        if (used < done_size)
            used += (size_t)snprintf(done + used, done_size - used,
                                     "%sjournal_mode changed from %s to wal", used ? ", " : "",
                                     journal_mode);
    }
out:
    sqlite3_close(connection);
    return rc;
}

static int inspect_database(struct job_context *context, bool full_check, struct inspection *found,
                            struct error *err)
{
    sqlite3 *connection = NULL;
    memset(found, 0, sizeof *found);
    found->full_check = full_check;
    int rc = database_open(context->database, true, context->stop, &connection, err);
    if (rc == 0)
        rc = database_check(connection, !full_check, &found->check_ok, found->check,
                            sizeof found->check, err);
    if (rc == 0)
        rc = database_query_text(connection, "PRAGMA journal_mode", found->journal_mode,
                                 sizeof found->journal_mode, err);
    if (rc == 0)
        rc = database_query_int(connection, "PRAGMA page_count", &found->page_count, err);
    if (rc == 0)
        rc = database_query_int(connection, "PRAGMA freelist_count", &found->freelist, err);
    if (rc == 0)
        rc = database_query_int(connection, "PRAGMA page_size", &found->page_size, err);
    if (rc == 0)
        rc = database_query_int(connection, "PRAGMA auto_vacuum", &found->auto_vacuum, err);
    sqlite3_close(connection);
    return rc;
}

/* The reason and fix when the database cannot even be read. */
static void judge_unreadable(struct verdict *verdict, const struct config *config,
                             const struct database_config *db, int rc, const char *message)
{
    char restore[ADVICE_MAX];
    if (rc == -ENOENT)
        verdict_add(verdict, UNHEALTHY, "%s: check the path in the configuration", message);
    else if (rc == -EACCES) /* database.c's message carries the fix */
        verdict_add(verdict, UNHEALTHY, "%s", message);
    else if (rc == -EBADMSG)
        verdict_add(verdict, UNHEALTHY,
                    "the database is corrupt (%.200s): stop the application and restore the newest "
                    "backup with `%s`",
                    message,
                    advice_sqlprodd(restore, sizeof restore, config, "restore", db->name, "--to",
                                    db->path, "--force", NULL));
    else
        verdict_add(verdict, UNHEALTHY, "cannot check the database: %s", message);
}

/*
 * Busy is not broken: a database the application holds locked past
 * busy_timeout_ms is degraded, and unhealthy only once it has stayed locked
 * for health.locked_crit, counted from the first health run that found it
 * locked (kept in state, so it survives restarts; cleared once it reads).
 */
static void judge_locked(struct verdict *verdict, struct job_context *context, time_t now)
{
    const struct database_config *db = context->database;
    int64_t since = state_get_int(context->state, db->name, "locked_since");
    if (since <= 0 || since > (int64_t)now) {
        since = (int64_t)now;
        if (context->state)
            state_set_int(context->state, db->name, "locked_since", since);
    }
    char stamp[32], age[32], limit[32], holders[ADVICE_MAX];
    struct tm tm;
    time_t since_time = (time_t)since;
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&since_time, &tm));
    units_format_duration((int64_t)now - since, age, sizeof age);
    units_format_duration(db->health.locked_crit_seconds, limit, sizeof limit);
    bool critical = (int64_t)now - since >= db->health.locked_crit_seconds;
    verdict_add(verdict, critical ? UNHEALTHY : DEGRADED,
                "locked since %s (for %s): another connection holds a lock longer than "
                "busy_timeout_ms (%d ms)%s%s; find it with `%s` and end its transaction, "
                "or raise busy_timeout_ms if it holds transactions that long",
                stamp, age, db->busy_timeout_ms,
                critical ? ", longer than health.locked_crit "
                         : ", unhealthy after health.locked_crit ",
                limit, advice_command(holders, sizeof holders, "fuser", "-v", db->path, NULL));
}

static void judge_database(struct verdict *verdict, const struct config *config,
                           const struct database_config *db, const struct inspection *found,
                           int64_t wal)
{
    char fix[ADVICE_MAX], wal_path[PATH_MAX + 8], holders[ADVICE_MAX];
    if (!found->check_ok)
        verdict_add(
            verdict, UNHEALTHY,
            "%s found corruption (%.200s): stop the application and restore the newest backup "
            "with `%s`, or salvage rows with sqlite3's .recover",
            found->full_check ? "integrity_check" : "quick_check", found->check,
            advice_sqlprodd(fix, sizeof fix, config, "restore", db->name, "--to", db->path,
                            "--force", NULL));
    if (strcmp(found->journal_mode, "wal") != 0)
        verdict_add(
            verdict, DEGRADED,
            "journal_mode is %s: the agent cannot checkpoint and readers block writers; "
            "run `%s` once, or set enforce = { journal_mode = \"wal\"; }",
            found->journal_mode,
            advice_command(fix, sizeof fix, "sqlite3", db->path, "PRAGMA journal_mode=WAL", NULL));

    char size[32], limit[32];
    units_format_size(wal, size, sizeof size);
    snprintf(wal_path, sizeof wal_path, "%s-wal", db->path);
    if (wal >= db->health.wal_crit_bytes || wal >= db->health.wal_warn_bytes) {
        bool critical = wal >= db->health.wal_crit_bytes;
        units_format_size(critical ? db->health.wal_crit_bytes : db->health.wal_warn_bytes, limit,
                          sizeof limit);
        verdict_add(verdict, critical ? UNHEALTHY : DEGRADED,
                    "WAL is %s (%s at %s): a long read transaction or a blocked checkpoint keeps "
                    "it from being reset; find the process holding it open (`%s`), end its "
                    "transaction, then run `%s`",
                    size, critical ? "critical" : "warning", limit,
                    advice_command(holders, sizeof holders, "fuser", "-v", wal_path, NULL),
                    advice_sqlprodd(fix, sizeof fix, config, "checkpoint", db->name, NULL));
    }

    double ratio = found->page_count > 0 ? (double)found->freelist / (double)found->page_count : 0;
    if (ratio >= db->health.freelist_warn || ratio >= db->health.freelist_crit) {
        bool critical = ratio >= db->health.freelist_crit;
        char free_bytes[32];
        units_format_size(found->freelist * found->page_size, free_bytes, sizeof free_bytes);
        if (found->auto_vacuum == 2)
            verdict_add(verdict, critical ? UNHEALTHY : DEGRADED,
                        "freelist is %.0f%% of the file (%s unused): run `%s` or schedule vacuum "
                        "more often",
                        ratio * 100, free_bytes,
                        advice_sqlprodd(fix, sizeof fix, config, "vacuum", db->name, NULL));
        else
            verdict_add(verdict, critical ? UNHEALTHY : DEGRADED,
                        "freelist is %.0f%% of the file (%s unused) and auto_vacuum is %s, so "
                        "sqlprodd vacuum cannot return it: at a quiet time (it rewrites the file "
                        "and blocks writers meanwhile) run `%s`, or set "
                        "enforce = { auto_vacuum = \"incremental\"; }",
                        ratio * 100, free_bytes, auto_vacuum_name(found->auto_vacuum),
                        advice_command(fix, sizeof fix, "sqlite3", db->path,
                                       "PRAGMA auto_vacuum=INCREMENTAL; VACUUM;", NULL));
    }
    /* Deviations from an enforce group that could not be applied. */
    if (db->enforce.auto_vacuum != ENFORCE_AUTO_VACUUM_UNSET &&
        found->auto_vacuum != db->enforce.auto_vacuum)
        verdict_add(verdict, DEGRADED, "auto_vacuum is %s, enforce asks for %s",
                    auto_vacuum_name(found->auto_vacuum),
                    auto_vacuum_name(db->enforce.auto_vacuum));
}

/* The interval a job is expected to succeed in: `every`, or the gap
 * between the two cron matches that follow `reference`. 0 when unknown. */
static int64_t schedule_interval(const struct schedule *schedule, time_t reference)
{
    if (schedule->kind == SCHEDULE_EVERY)
        return schedule->every_seconds;
    if (schedule->kind != SCHEDULE_CRON)
        return 0;
    time_t first = sched_cron_next(&schedule->cron, reference);
    time_t second = first == (time_t)-1 ? (time_t)-1 : sched_cron_next(&schedule->cron, first);
    return second == (time_t)-1 ? 0 : (int64_t)(second - first);
}

/*
 * A job last succeeded at record->last_success and should every `interval`
 * seconds: twice overdue is degraded, four times unhealthy. A job whose
 * last run failed but is not overdue yet is degraded: someone should look
 * before it is.
 */
static void judge_job(struct verdict *verdict, const struct config *config,
                      const struct database_config *db, enum job_kind kind,
                      const struct job_record *record, int64_t interval, time_t now)
{
    const char *job = job_name(kind);
    char age[32], every[32], at[48], rerun[ADVICE_MAX];
    advice_sqlprodd(rerun, sizeof rerun, config, job, db->name, NULL);
    if (record->runs_total == 0)
        return;
    bool failed = record->last_outcome == JOB_OUTCOME_FAILED;
    if (interval > 0 && record->last_success > 0) {
        int64_t since = (int64_t)(now - record->last_success);
        units_format_duration(since, age, sizeof age);
        units_format_duration(interval, every, sizeof every);
        /* Absolute times: the reasons are stored and read later (status,
         * STATUS=, /health), when "12s ago" would no longer be true. */
        units_format_clock(record->last_success, now, at, sizeof at);
        if (since > 2 * interval) {
            verdict_add(
                verdict, since > 4 * interval ? UNHEALTHY : DEGRADED,
                "last good %s at %s (%s before this check), %s its %s interval%s%.200s%s: fix "
                "the cause, then run `%s`",
                job, at, age, since > 4 * interval ? "over 4x" : "over 2x", every,
                failed ? " (last error: " : "", failed ? record->last_message : "",
                failed ? ")" : "", rerun);
            return;
        }
    }
    if (!failed)
        return;
    units_format_clock(record->last_finished, now, at, sizeof at);
    if (record->last_success == 0 && record->runs_total >= 2)
        verdict_add(verdict, DEGRADED,
                    "no %s has succeeded yet in %lld runs (last error at %s: %.300s): fix the "
                    "cause, then run `%s`",
                    job, (long long)record->runs_total, at, record->last_message, rerun);
    else
        verdict_add(verdict, DEGRADED,
                    "the last %s failed at %s: %.300s: fix the cause, then run `%s`", job, at,
                    record->last_message, rerun);
}

static void judge_jobs(struct job_context *context, struct verdict *verdict, time_t now)
{
    const struct database_config *db = context->database;
    if (!context->state)
        return;
    for (int kind = 0; kind < JOB_KIND_COUNT; kind++) {
        /* Its own failure is the verdict being made. */
        if (kind == JOB_HEALTH)
            continue;
        struct job_record record;
        if (state_get_job(context->state, db->name, job_name(kind), &record, NULL) != 0)
            continue;
        int64_t interval = 0;
        if (kind == JOB_BACKUP || kind == JOB_CHECKPOINT) {
            interval = schedule_interval(job_schedule(db, kind), record.last_success);
        } else if (kind == JOB_UPLOAD && db->upload.target) {
            /* The upload schedule is a retry tick; what matters is that each
             * backup leaves the machine within a backup interval. */
            interval = schedule_interval(&db->upload.schedule, record.last_success);
            int64_t backup = schedule_interval(&db->backup.schedule, record.last_success);
            if (backup > interval)
                interval = backup;
        }
        judge_job(verdict, context->config, db, (enum job_kind)kind, &record, interval, now);
    }
}

static void store_facts(struct state *state, const struct database_config *db,
                        const struct inspection *found, int64_t wal, time_t now)
{
    char value[64];
    double ratio = found->page_count > 0 ? (double)found->freelist / (double)found->page_count : 0;
    state_set_int(state, db->name, "wal_bytes", wal);
    snprintf(value, sizeof value, "%.6f", ratio);
    state_set_value(state, db->name, "freelist_ratio", value, NULL);
    state_set_int(state, db->name, "database_bytes", found->page_count * found->page_size);
    state_set_int(state, db->name, "page_size", found->page_size);
    state_set_value(state, db->name, "journal_mode", found->journal_mode, NULL);
    state_set_value(state, db->name, "auto_vacuum", auto_vacuum_name(found->auto_vacuum), NULL);
    if (found->full_check && found->check_ok)
        state_set_int(state, db->name, "integrity_checked_at", (int64_t)now);
}

int job_health(struct job_context *context, struct job_result *result)
{
    const struct database_config *db = context->database;
    struct error err = {0};
    struct verdict verdict = {0};
    struct inspection found;
    char enforced[400] = "";
    time_t now = time(NULL);

    int rc = enforce_settings(context, enforced, sizeof enforced, &err);
    if (rc == -ECANCELED)
        return rc;
    if (rc != 0) {
        verdict_add(&verdict, DEGRADED,
                    "could not apply enforce: %s: it is tried again at the next "
                    "health check",
                    err.message);
        error_clear(&err);
    }
    if (enforced[0] && context->state)
        state_set_value(context->state, db->name, "enforce_last", enforced, NULL);

    /* A full integrity_check reads every page: on its own, slower schedule. */
    int64_t every = db->health.integrity_every_seconds;
    int64_t checked_at = state_get_int(context->state, db->name, "integrity_checked_at");
    bool full = context->state && every > 0 && (int64_t)now - checked_at >= every;

    rc = inspect_database(context, full, &found, &err);
    if (rc == -ECANCELED)
        return rc;
    if (rc != -EBUSY && context->state)
        state_set_int(context->state, db->name, "locked_since", 0);
    if (rc == -EBUSY) {
        judge_locked(&verdict, context, now);
    } else if (rc != 0) {
        judge_unreadable(&verdict, context->config, db, rc, err.message);
    } else {
        int64_t wal = fs_file_size(db->path, "-wal");
        judge_database(&verdict, context->config, db, &found, wal);
        if (context->state)
            store_facts(context->state, db, &found, wal, now);
    }
    judge_jobs(context, &verdict, now);

    if (context->state) {
        state_set_value(context->state, db->name, "health", health_level_name(verdict.level), NULL);
        state_set_value(context->state, db->name, "health_reasons", verdict.reasons, NULL);
        state_set_value(context->state, db->name, "health_reason_lines", verdict.lines, NULL);
        state_set_int(context->state, db->name, "health_checked_at", (int64_t)now);
    }
    job_result_set(result,
                   verdict.level == UNHEALTHY  ? JOB_OUTCOME_FAILED
                   : verdict.level == DEGRADED ? JOB_OUTCOME_WARNING
                                               : JOB_OUTCOME_OK,
                   "%s%s%s%s%s%s", health_level_name(verdict.level), verdict.used ? ": " : "",
                   verdict.reasons, enforced[0] ? " (enforce: " : "", enforced,
                   enforced[0] ? ")" : "");
    return 0;
}
