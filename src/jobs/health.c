/*
 * health.c: measures one database for its health verdict, which verdict.c
 * makes, with reasons an operator can act on, each followed by its fix.
 * Reads the database (quick_check; a full integrity_check where no backup
 * copy carries it, see integrity.h; pragmas), the sizes of
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
#include "jobs/integrity.h"
#include "jobs/job.h"
#include "jobs/verdict.h"
#include "core/units.h"
#include "replicate/shipper.h"

/* What earlier health runs stored: zeroes without a state database. */
static void health_previous_facts(struct job_context *context, struct db_facts *facts)
{
    memset(facts, 0, sizeof *facts);
    if (context->state)
        state_get_facts(context->state, context->database->name, facts, NULL);
}

static void health_store(struct job_context *context, const struct db_facts *facts,
                         unsigned fields)
{
    if (context->state)
        state_set_facts(context->state, context->database->name, facts, fields, NULL);
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
                             health_auto_vacuum_name(auto_vacuum), health_auto_vacuum_name(enforce->auto_vacuum),
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

static int inspect_database(struct job_context *context, bool full_check, struct health_inspection *found,
                            struct error *err)
{
    sqlite3 *connection = NULL;
    memset(found, 0, sizeof *found);
    found->full_check = full_check;
    const struct database_config *db = context->database;
    char wal_path[PATH_MAX + 8];
    snprintf(wal_path, sizeof wal_path, "%s-wal", db->path);
    struct database_check_limits limits = {.stop = context->stop};
    /* Where backups run, their copies carry quick_check and the full check,
     * so this one may not be what pushes the application's WAL towards
     * wal_warn: under a heavy writer a large database's check holds its
     * read transaction for seconds (defect 12, replication-design.md). */
    if (!full_check && !context->one_off && integrity_checked_by_backups(db)) {
        limits.wal_path = wal_path;
        limits.wal_limit_bytes = db->health.wal_warn_bytes / 2;
    }
    int rc = database_open(db, true, context->stop, &connection, err);
    if (rc == 0)
        rc = database_check(connection, !full_check, &limits, &found->check_ok, found->check,
                            sizeof found->check, err);
    if (rc == -EAGAIN) {
        found->check_given_up = true;
        snprintf(found->check, sizeof found->check,
                 "%.400s (each backup checks its copy; the next health run tries again)",
                 err->message);
        rc = 0;
    }
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

static void store_facts(struct job_context *context, const struct health_inspection *found, int64_t wal)
{
    struct db_facts facts = {
        .wal_bytes = wal,
        .freelist_ratio =
            found->page_count > 0 ? (double)found->freelist / (double)found->page_count : 0,
        .database_bytes = found->page_count * found->page_size,
        .page_size = found->page_size,
    };
    unsigned fields = FACT_WAL_BYTES | FACT_FREELIST_RATIO | FACT_DATABASE_BYTES | FACT_PAGE_SIZE |
                      FACT_JOURNAL_MODE | FACT_AUTO_VACUUM;
    snprintf(facts.journal_mode, sizeof facts.journal_mode, "%s", found->journal_mode);
    snprintf(facts.auto_vacuum, sizeof facts.auto_vacuum, "%s",
             health_auto_vacuum_name(found->auto_vacuum));
    health_store(context, &facts, fields);
}

/* When the database was first found locked: kept from an earlier run, or
 * now (and stored, so the time survives restarts). */
static time_t health_locked_since(struct job_context *context, const struct db_facts *previous,
                                  time_t now)
{
    if (previous->locked_since > 0 && previous->locked_since <= now)
        return previous->locked_since;
    struct db_facts facts = {.locked_since = now};
    health_store(context, &facts, FACT_LOCKED_SINCE);
    return now;
}

/* Reads the database, its files and the jobs' history into `measure`, and
 * stores the facts found. -ECANCELED on stop. */
static int health_measure(struct job_context *context, const struct db_facts *previous,
                          time_t now, struct health_measure *measure)
{
    const struct database_config *db = context->database;
    struct error err = {0};
    /* A full integrity_check reads every page: once per integrity_every,
     * on a backup copy where backups run (integrity.h). Asked for by hand,
     * on the database itself now: that is how a fixed problem is cleared. */
    bool full = context->one_off ? db->health.integrity_every_seconds > 0
                                 : integrity_check_due(context, INTEGRITY_ON_DATABASE, now);

    int rc = inspect_database(context, full, &measure->found, &err);
    if (rc == -ECANCELED)
        return rc;
    /* The standing verdict: this check's when it was full, else the last. */
    if (rc == 0 && full)
        integrity_record(context, INTEGRITY_ON_DATABASE, now, measure->found.check_ok,
                         measure->found.check, measure->integrity_problem);
    else
        snprintf(measure->integrity_problem, sizeof measure->integrity_problem, "%s",
                 previous->integrity_problem);
    measure->read_rc = rc;
    if (rc == -EBUSY) {
        measure->locked_since = health_locked_since(context, previous, now);
    } else {
        struct db_facts unlocked = {.locked_since = 0};
        health_store(context, &unlocked, FACT_LOCKED_SINCE);
    }
    if (rc != 0 && rc != -EBUSY)
        snprintf(measure->read_error, sizeof measure->read_error, "%s", err.message);
    if (rc == 0) {
        measure->wal_bytes = fs_file_size(db->path, "-wal");
        store_facts(context, &measure->found, measure->wal_bytes);
    }
    if (db->replicate.target) {
        char spool[PATH_MAX];
        if (replica_spool_directory(context->config->state_dir, db->name, spool, sizeof spool,
                                    NULL) == 0)
            measure->replica_spool_bytes = replica_spool_bytes(spool);
    }
    measure->jobs_known = context->state != NULL;
    for (int kind = 0; measure->jobs_known && kind < JOB_KIND_COUNT; kind++)
        if (state_get_job(context->state, db->name, job_name(kind), &measure->jobs[kind], NULL) != 0)
            memset(&measure->jobs[kind], 0, sizeof measure->jobs[kind]);
    if (previous->known & FACT_DRILL_SUCCEEDED_AT)
        measure->drill_succeeded_at = previous->drill_succeeded_at;
    return 0;
}

int job_health(struct job_context *context, struct job_result *result)
{
    const struct database_config *db = context->database;
    struct error err = {0};
    struct health_measure measure = {0};
    struct health_verdict verdict;
    char enforced[400] = "";
    time_t now = time(NULL);

    int rc = enforce_settings(context, enforced, sizeof enforced, &err);
    if (rc == -ECANCELED)
        return rc;
    if (rc != 0)
        snprintf(measure.enforce_error, sizeof measure.enforce_error, "%s", err.message);
    struct db_facts previous, facts = {0};
    health_previous_facts(context, &previous);
    if (enforced[0]) {
        snprintf(facts.enforce_last, sizeof facts.enforce_last, "%s", enforced);
        health_store(context, &facts, FACT_ENFORCE_LAST);
    }
    if ((rc = health_measure(context, &previous, now, &measure)) != 0)
        return rc;
    health_judge(context->config, db, &measure, now, &verdict);

    facts.health = verdict.level;
    snprintf(facts.health_reasons, sizeof facts.health_reasons, "%s", verdict.reasons);
    snprintf(facts.health_reason_lines, sizeof facts.health_reason_lines, "%s", verdict.lines);
    facts.health_checked_at = now;
    health_store(context, &facts,
                 FACT_HEALTH | FACT_HEALTH_REASONS | FACT_HEALTH_REASON_LINES |
                     FACT_HEALTH_CHECKED_AT);
    job_result_set(result,
                   verdict.level == UNHEALTHY  ? JOB_OUTCOME_FAILED
                   : verdict.level == DEGRADED ? JOB_OUTCOME_WARNING
                                               : JOB_OUTCOME_OK,
                   "%s%s%s%s%s%s%s%s", health_level_name(verdict.level), verdict.used ? ": " : "",
                   verdict.reasons, enforced[0] ? " (enforce: " : "", enforced,
                   enforced[0] ? ")" : "", measure.found.check_given_up ? "; " : "",
                   measure.found.check_given_up ? measure.found.check : "");
    return 0;
}
