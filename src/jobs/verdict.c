/*
 * verdict.c: the health verdict from what health.c measured (see
 * verdict.h). Thresholds come from the configuration; every reason names
 * the fix, as a command an operator can paste.
 */
#include "jobs/verdict.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config/advice.h"
#include "core/units.h"

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

static void verdict_add(struct health_verdict *verdict, enum health_level level, const char *format,
                        ...) __attribute__((format(printf, 3, 4)));

static void verdict_add(struct health_verdict *verdict, enum health_level level, const char *format,
                        ...)
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

const char *health_auto_vacuum_name(int64_t mode)
{
    return mode == 0 ? "none" : mode == 1 ? "full" : mode == 2 ? "incremental" : "unknown";
}

/* The reason and fix when the database cannot even be read. */
static void judge_unreadable(struct health_verdict *verdict, const struct config *config,
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
static void judge_locked(struct health_verdict *verdict, const struct database_config *db,
                         time_t locked_since, time_t now)
{
    int64_t since = (int64_t)locked_since;
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

static void judge_database(struct health_verdict *verdict, const struct config *config,
                           const struct database_config *db, const struct health_inspection *found,
                           int64_t wal)
{
    char fix[ADVICE_MAX], wal_path[PATH_MAX + 8], holders[ADVICE_MAX];
    if (!found->check_ok && !found->check_given_up)
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
                        ratio * 100, free_bytes, health_auto_vacuum_name(found->auto_vacuum),
                        advice_command(fix, sizeof fix, "sqlite3", db->path,
                                       "PRAGMA auto_vacuum=INCREMENTAL; VACUUM;", NULL));
    }
    /* Deviations from an enforce group that could not be applied. */
    if (db->enforce.auto_vacuum != ENFORCE_AUTO_VACUUM_UNSET &&
        found->auto_vacuum != db->enforce.auto_vacuum)
        verdict_add(verdict, DEGRADED, "auto_vacuum is %s, enforce asks for %s",
                    health_auto_vacuum_name(found->auto_vacuum),
                    health_auto_vacuum_name(db->enforce.auto_vacuum));
}

/* The standing verdict of the last full integrity_check (integrity.h),
 * unless this run's own full check of the database has just spoken. */
static void judge_integrity(struct health_verdict *verdict, const struct config *config,
                            const struct database_config *db, const struct health_measure *measure)
{
    char confirm[ADVICE_MAX], again[ADVICE_MAX];
    if (!measure->integrity_problem[0] || (measure->read_rc == 0 && measure->found.full_check))
        return;
    verdict_add(verdict, UNHEALTHY,
                "%.400s: confirm with `%s`; if it names indexes only, REINDEX rebuilds them, "
                "else restore a backup from before it (restore checks each in full); then `%s` "
                "checks the database again",
                measure->integrity_problem,
                advice_command(confirm, sizeof confirm, "sqlite3", db->path,
                               "PRAGMA integrity_check", NULL),
                advice_sqlprodd(again, sizeof again, config, "health", db->name, NULL));
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
 * seconds: twice overdue is degraded, four times unhealthy (at most `worst`).
 * A job whose last run failed but is not overdue yet is degraded: someone
 * should look before it is.
 */
static void judge_job(struct health_verdict *verdict, const struct config *config,
                      const struct database_config *db, enum job_kind kind,
                      const struct job_record *record, int64_t interval, enum health_level worst,
                      time_t now)
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
            enum health_level level = since > 4 * interval ? UNHEALTHY : DEGRADED;
            verdict_add(
                verdict, level < worst ? level : worst,
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

static void judge_jobs(struct health_verdict *verdict, const struct config *config,
                       const struct database_config *db, const struct health_measure *measure,
                       time_t now)
{
    if (!measure->jobs_known)
        return;
    for (int kind = 0; kind < JOB_KIND_COUNT; kind++) {
        /* Its own failure is the verdict being made. */
        if (kind == JOB_HEALTH)
            continue;
        struct job_record record = measure->jobs[kind];
        int64_t interval = 0;
        enum health_level worst = UNHEALTHY;
        if (kind == JOB_DRILL) {
            /* A drill succeeds when every backup it took passed: a run with
             * nothing to drill yet (a warning) is no proof. Overdue or
             * failed, the backups are not known to restore; the database
             * itself is no worse for it: degraded, never unhealthy. */
            record.last_success = measure->drill_succeeded_at;
            interval = schedule_interval(job_schedule(db, kind), record.last_success);
            worst = DEGRADED;
        } else if (kind == JOB_BACKUP || kind == JOB_CHECKPOINT) {
            interval = schedule_interval(job_schedule(db, kind), record.last_success);
        } else if (kind == JOB_UPLOAD && db->upload.target) {
            /* The upload schedule is a retry tick; what matters is that each
             * backup leaves the machine within a backup interval. */
            interval = schedule_interval(&db->upload.schedule, record.last_success);
            int64_t backup = schedule_interval(&db->backup.schedule, record.last_success);
            if (backup > interval)
                interval = backup;
        }
        judge_job(verdict, config, db, (enum job_kind)kind, &record, interval, worst, now);
    }
}

/* The replica's spool fills only while the target takes nothing: said from
 * half of spool_max, before shipping stops at the bound (replica_round). */
static void judge_replica_spool(struct health_verdict *verdict, const struct database_config *db,
                                int64_t spooled)
{
    int64_t bound = db->replicate.spool_max_bytes;
    if (!db->replicate.target || bound <= 0 || spooled < bound / 2)
        return;
    char size[32], limit[32];
    units_format_size(spooled, size, sizeof size);
    units_format_size(bound, limit, sizeof limit);
    if (spooled >= bound)
        verdict_add(verdict, UNHEALTHY,
                    "replica spool is full (%s, replicate.spool_max %s): target %s has not taken "
                    "objects for long, shipping has stopped and restore --at reaches no further "
                    "than the last commit queued; bring the target back (see `sqlprodd status` "
                    "and the log): the spool drains, then a new generation starts from a fresh "
                    "base",
                    size, limit, db->replicate.target_name);
    else
        verdict_add(verdict, DEGRADED,
                    "replica spool holds %s of replicate.spool_max %s: target %s is not taking "
                    "objects; at the bound shipping stops until it is back (see `sqlprodd "
                    "status` and the log), or raise replicate.spool_max",
                    size, limit, db->replicate.target_name);
}

void health_judge(const struct config *config, const struct database_config *db,
                  const struct health_measure *measure, time_t now, struct health_verdict *verdict)
{
    memset(verdict, 0, sizeof *verdict);
    if (measure->enforce_error[0])
        verdict_add(verdict, DEGRADED,
                    "could not apply enforce: %s: it is tried again at the next health check",
                    measure->enforce_error);
    if (measure->read_rc == -EBUSY)
        judge_locked(verdict, db, measure->locked_since, now);
    else if (measure->read_rc != 0)
        judge_unreadable(verdict, config, db, measure->read_rc, measure->read_error);
    else
        judge_database(verdict, config, db, &measure->found, measure->wal_bytes);
    judge_integrity(verdict, config, db, measure);
    judge_replica_spool(verdict, db, measure->replica_spool_bytes);
    judge_jobs(verdict, config, db, measure, now);
}
