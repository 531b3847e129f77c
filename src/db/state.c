/*
 * state.c: the agent's state database (see state.h). Not for the managed
 * databases: those are opened by the jobs, never through this file.
 */
#include "db/state.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "db/state_internal.h"

/* Bump with a migration when the schema changes; state_open applies it. */
#define STATE_SCHEMA_VERSION 3

static const char state_schema[] =
    "CREATE TABLE IF NOT EXISTS job_runs ("
    "  database TEXT NOT NULL, job TEXT NOT NULL,"
    "  last_started INTEGER NOT NULL, last_finished INTEGER NOT NULL,"
    "  last_duration REAL NOT NULL, last_outcome INTEGER NOT NULL,"
    "  last_message TEXT NOT NULL DEFAULT '', last_success INTEGER NOT NULL DEFAULT 0,"
    "  runs_total INTEGER NOT NULL DEFAULT 0, failures_total INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY (database, job));"
    "CREATE TABLE IF NOT EXISTS database_values ("
    "  database TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
    "  PRIMARY KEY (database, key));"
    "CREATE TABLE IF NOT EXISTS upload_queue ("
    "  id INTEGER PRIMARY KEY, database TEXT NOT NULL, target TEXT NOT NULL,"
    "  archive_path TEXT NOT NULL UNIQUE, queued INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0, next_attempt INTEGER NOT NULL,"
    "  last_error TEXT NOT NULL DEFAULT '');"
    /* Version 2: replication (state_*_replica*). */
    "CREATE TABLE IF NOT EXISTS replica ("
    "  database TEXT PRIMARY KEY, generation INTEGER NOT NULL, wal_offset INTEGER NOT NULL,"
    "  frame_index INTEGER NOT NULL, checksum0 INTEGER NOT NULL, checksum1 INTEGER NOT NULL,"
    "  salt0 INTEGER NOT NULL, salt1 INTEGER NOT NULL, page_size INTEGER NOT NULL,"
    "  checkpoint_sequence INTEGER NOT NULL, big_endian INTEGER NOT NULL, ended INTEGER NOT NULL,"
    "  db_device INTEGER NOT NULL, db_inode INTEGER NOT NULL, last_seen_at_ms INTEGER NOT NULL,"
    "  shipped_bytes INTEGER NOT NULL, base_taken_at_ms INTEGER NOT NULL,"
    "  last_break TEXT NOT NULL, last_break_at_ms INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS replica_queue ("
    "  id INTEGER PRIMARY KEY, database TEXT NOT NULL, generation INTEGER NOT NULL,"
    "  key TEXT NOT NULL, path TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS replica_generations ("
    "  database TEXT NOT NULL, generation INTEGER NOT NULL, base_from INTEGER NOT NULL,"
    "  first_seen_at_ms INTEGER NOT NULL, last_seen_at_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (database, generation));"
    "CREATE TABLE IF NOT EXISTS replica_breaks ("
    "  database TEXT NOT NULL, reason TEXT NOT NULL, count INTEGER NOT NULL,"
    "  PRIMARY KEY (database, reason));"
    /* Version 3: what the target holds (the uploader's own row). */
    "CREATE TABLE IF NOT EXISTS replica_uploaded ("
    "  database TEXT PRIMARY KEY, seen_at_ms INTEGER NOT NULL);";

/* Tables added since version 3 that change nothing an older version reads:
 * the generations whose base was a scheduled snapshot (snapshot_every), not
 * a break, which `backups --remote` shows as one window with the one before;
 * the backups that passed a restore drill. */
static const char state_additions[] =
    "CREATE TABLE IF NOT EXISTS replica_snapshots ("
    "  database TEXT NOT NULL, generation INTEGER NOT NULL,"
    "  PRIMARY KEY (database, generation));"
    /* The backups that passed a restore drill (jobs/drill.c). */
    "CREATE TABLE IF NOT EXISTS drilled_backups ("
    "  database TEXT NOT NULL, side TEXT NOT NULL, backup TEXT NOT NULL,"
    "  drilled_at INTEGER NOT NULL, PRIMARY KEY (database, side, backup));"
    /* Compaction (state_packs.c): what is on the target and may be packed,
     * oldest first by position; a pack row is pending from before its
     * upload until it replaces its members. */
    "CREATE TABLE IF NOT EXISTS replica_pack_items ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, database TEXT NOT NULL,"
    "  position INTEGER NOT NULL, level INTEGER NOT NULL, final INTEGER NOT NULL,"
    "  pending INTEGER NOT NULL, name TEXT NOT NULL, first_generation INTEGER NOT NULL,"
    "  last_generation INTEGER NOT NULL, bytes INTEGER NOT NULL, objects INTEGER NOT NULL,"
    "  sha256 TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS replica_pack_items_order ON replica_pack_items"
    "  (database, position);"
    /* Keys to delete from the target: what a pack replaced. */
    "CREATE TABLE IF NOT EXISTS replica_doomed ("
    "  database TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (database, key));";

int state_fail(struct state *state, struct error *err, const char *doing)
{
    /* "disk I/O error" alone hides the cause an operator can fix (a full
     * or read-only state_dir): add the errno SQLite saw, when it saw one. */
    int system_errno = sqlite3_system_errno(state->db);
    if (system_errno != 0)
        return error_set(err, -EIO, "state database %s: %s: %s (%s)", state->path, doing,
                         sqlite3_errmsg(state->db), strerror(system_errno));
    return error_set(err, -EIO, "state database %s: %s: %s", state->path, doing,
                     sqlite3_errmsg(state->db));
}

/* SQLite's open() of a FIFO blocks for good, also at -wal, -shm, -journal
 * (see database.c): anything there but a regular file is refused first. */
static int state_refuse_special_files(const char *path, struct error *err)
{
    for (int part = 0; part < FS_DATABASE_PARTS; part++) {
        char name[PATH_MAX + 16];
        struct stat st;
        snprintf(name, sizeof name, "%s%s", path, fs_database_suffixes[part]);
        if (stat(name, &st) == 0 && !S_ISREG(st.st_mode))
            return error_set(err, -EINVAL,
                             "%s is %s, not a database file: remove it (sqlprodd creates its "
                             "state database itself)",
                             name, fs_file_kind(st.st_mode));
    }
    return 0;
}

static int state_open_with_flags(const char *state_dir, int flags, struct state **out,
                                 struct error *err)
{
    struct state *state = calloc(1, sizeof *state);
    if (!state)
        return error_set(err, -ENOMEM, "out of memory");
    if (fs_join(state->path, sizeof state->path, state_dir, "state.db") != 0) {
        free(state);
        return error_set(err, -ENAMETOOLONG, "state_dir %s: path too long", state_dir);
    }
    int rc = state_refuse_special_files(state->path, err);
    if (rc != 0) {
        free(state);
        return rc;
    }
    rc = sqlite3_open_v2(state->path, &state->db, flags, NULL);
    if (rc != SQLITE_OK) {
        int code = rc == SQLITE_CANTOPEN ? -EACCES : -EIO;
        error_set(err, code, "cannot open state database %s: %s", state->path,
                  state->db ? sqlite3_errmsg(state->db) : sqlite3_errstr(rc));
        state_close(state);
        return code;
    }
    /* The agent and one-off commands share this file; wait for each other
     * rather than fail. */
    sqlite3_busy_timeout(state->db, 10000);
    *out = state;
    return 0;
}

int state_open(const char *state_dir, struct state **out, struct error *err)
{
    *out = NULL;
    int rc = fs_make_directories(state_dir, 0700, err);
    if (rc != 0)
        return rc;
    /* First-time commands started together each create the file, switch it
     * to WAL and create the tables. Rollback-journal mode, which a new file
     * starts in, answers SQLITE_BUSY without the busy handler when it meets
     * another connection's hot journal (seen: "cannot initialise: database
     * is locked"), so the set-up is taken in turns, under a lock on the
     * directory that the kernel drops if the holder dies. It lasts
     * milliseconds; readers (status) do not take it. */
    int directory = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (directory < 0)
        return error_set(err, -errno, "state_dir %s: %s", state_dir, strerror(errno));
    while (flock(directory, LOCK_EX) != 0 && errno == EINTR) {
    }
    struct state *state;
    rc = state_open_with_flags(state_dir, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &state, err);
    if (rc != 0) {
        close(directory);
        return rc;
    }
    chmod(state->path, 0600);
    int version = 0;
    sqlite3_stmt *statement = NULL;
    if (sqlite3_exec(state->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL,
                     NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(state->db, "PRAGMA user_version", -1, &statement, NULL) != SQLITE_OK) {
        rc = state_fail(state, err, "cannot initialise");
        goto out;
    }
    if (sqlite3_step(statement) == SQLITE_ROW)
        version = sqlite3_column_int(statement, 0);
    /* End the read before BEGIN IMMEDIATE: a read transaction left open
     * cannot be upgraded once another first-time command has created the
     * tables meanwhile (SQLITE_BUSY without the busy handler). */
    sqlite3_reset(statement);
    if (version > STATE_SCHEMA_VERSION) {
        rc = error_set(err, -EPROTO,
                       "state database %s was written by a newer sqlprodd (schema %d, this one "
                       "knows %d): upgrade sqlprodd or move the file away",
                       state->path, version, STATE_SCHEMA_VERSION);
        goto out;
    }
    /* Additive tables that an older sqlprodd ignores: created whatever the
     * version, so that a downgrade still opens the file. */
    if (sqlite3_exec(state->db, state_additions, NULL, NULL, NULL) != SQLITE_OK) {
        rc = state_fail(state, err, "cannot create tables");
        goto out;
    }
    if (version < STATE_SCHEMA_VERSION) {
        char sql[sizeof state_schema + 64];
        snprintf(sql, sizeof sql, "BEGIN IMMEDIATE;%sPRAGMA user_version=%d;COMMIT;", state_schema,
                 STATE_SCHEMA_VERSION);
        if (sqlite3_exec(state->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
            rc = state_fail(state, err, "cannot create tables");
            sqlite3_exec(state->db, "ROLLBACK", NULL, NULL, NULL);
            goto out;
        }
    }
out:
    sqlite3_finalize(statement);
    close(directory); /* drops the set-up lock */
    if (rc != 0)
        state_close(state);
    else
        *out = state;
    return rc;
}

int state_open_readonly(const char *state_dir, struct state **out, struct error *err)
{
    *out = NULL;
    char path[PATH_MAX];
    struct stat st;
    if (fs_join(path, sizeof path, state_dir, "state.db") != 0)
        return error_set(err, -ENAMETOOLONG, "state_dir %s: path too long", state_dir);
    if (stat(path, &st) != 0)
        return errno == ENOENT ? 0 : error_set(err, -errno, "cannot read %s: %s", path, strerror(errno));
    return state_open_with_flags(state_dir, SQLITE_OPEN_READONLY, out, err);
}

void state_close(struct state *state)
{
    if (!state)
        return;
    sqlite3_close(state->db);
    free(state);
}

/* Prepares, binds text/int64 arguments from a format string, and steps once.
 * Format letters: s = const char *, i = int64_t, d = double, t = time_t.
 * Returns SQLITE_ROW/SQLITE_DONE or an error; *out gets the statement when
 * the caller wants to read rows (then it must finalize it). */
int state_run(struct state *state, sqlite3_stmt **out, const char *sql, const char *types, ...)
{
    sqlite3_stmt *statement;
    int rc = sqlite3_prepare_v2(state->db, sql, -1, &statement, NULL);
    if (rc != SQLITE_OK)
        return rc;
    va_list args;
    va_start(args, types);
    for (int i = 0; types[i]; i++) {
        switch (types[i]) {
        case 's': sqlite3_bind_text(statement, i + 1, va_arg(args, const char *), -1, SQLITE_TRANSIENT); break;
        case 'i': sqlite3_bind_int64(statement, i + 1, va_arg(args, int64_t)); break;
        case 't': sqlite3_bind_int64(statement, i + 1, (sqlite3_int64)va_arg(args, time_t)); break;
        case 'd': sqlite3_bind_double(statement, i + 1, va_arg(args, double)); break;
        default: assert(0 && "unknown bind type");
        }
    }
    va_end(args);
    rc = sqlite3_step(statement);
    if (out && rc == SQLITE_ROW)
        *out = statement;
    else
        sqlite3_finalize(statement);
    return rc;
}

int state_record_job(struct state *state, const char *database, const char *job, time_t started,
                     double duration, enum job_outcome outcome, const char *message,
                     struct error *err)
{
    time_t finished = started + (time_t)(duration + 0.5);
    int failed = outcome == JOB_OUTCOME_FAILED;
    int rc = state_run(
        state, NULL,
        "INSERT INTO job_runs (database, job, last_started, last_finished, last_duration,"
        " last_outcome, last_message, last_success, runs_total, failures_total)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, CASE WHEN ?8 THEN 0 ELSE ?4 END, 1, ?8)"
        " ON CONFLICT (database, job) DO UPDATE SET last_started = ?3, last_finished = ?4,"
        " last_duration = ?5, last_outcome = ?6, last_message = ?7,"
        " last_success = CASE WHEN ?8 THEN last_success ELSE ?4 END,"
        " runs_total = runs_total + 1, failures_total = failures_total + ?8",
        "ssttdisi", database, job, started, finished, duration, (int64_t)outcome,
        message ? message : "", (int64_t)failed);
    return rc == SQLITE_DONE ? 0 : state_fail(state, err, "cannot record job");
}

int state_get_job(struct state *state, const char *database, const char *job,
                  struct job_record *record, struct error *err)
{
    memset(record, 0, sizeof *record);
    sqlite3_stmt *row = NULL;
    int rc = state_run(state, &row,
                       "SELECT last_started, last_finished, last_duration, last_outcome,"
                       " last_message, last_success, runs_total, failures_total"
                       " FROM job_runs WHERE database = ?1 AND job = ?2",
                       "ss", database, job);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return state_fail(state, err, "cannot read job history");
    record->last_started = (time_t)sqlite3_column_int64(row, 0);
    record->last_finished = (time_t)sqlite3_column_int64(row, 1);
    record->last_duration = sqlite3_column_double(row, 2);
    record->last_outcome = (enum job_outcome)sqlite3_column_int(row, 3);
    snprintf(record->last_message, sizeof record->last_message, "%s",
             (const char *)sqlite3_column_text(row, 4));
    record->last_success = (time_t)sqlite3_column_int64(row, 5);
    record->runs_total = sqlite3_column_int64(row, 6);
    record->failures_total = sqlite3_column_int64(row, 7);
    sqlite3_finalize(row);
    return 0;
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

/*
 * Each field of struct db_facts is one row of database_values, under the
 * key earlier versions wrote as text: a state.db from before the typed
 * record reads the same, and one written now still reads in the previous
 * version. This table is the only place a key is spelled.
 */
enum fact_type { FACT_INTEGER, FACT_TIME, FACT_REAL, FACT_TEXT, FACT_FLAG, FACT_LEVEL, FACT_SENT };

static const struct fact_column {
    enum db_fact fact;
    const char *key;
    enum fact_type type;
    size_t offset, size;
} fact_columns[] = {
#define FACT(bit, key, type, field)                                                                \
    {bit, key, type, offsetof(struct db_facts, field), sizeof((struct db_facts *)0)->field}
    FACT(FACT_HEALTH, "health", FACT_LEVEL, health),
    FACT(FACT_HEALTH_REASONS, "health_reasons", FACT_TEXT, health_reasons),
    FACT(FACT_HEALTH_REASON_LINES, "health_reason_lines", FACT_TEXT, health_reason_lines),
    FACT(FACT_HEALTH_CHECKED_AT, "health_checked_at", FACT_TIME, health_checked_at),
    FACT(FACT_INTEGRITY_CHECKED_AT, "integrity_checked_at", FACT_TIME, integrity_checked_at),
    FACT(FACT_LOCKED_SINCE, "locked_since", FACT_TIME, locked_since),
    FACT(FACT_WAL_BYTES, "wal_bytes", FACT_INTEGER, wal_bytes),
    FACT(FACT_FREELIST_RATIO, "freelist_ratio", FACT_REAL, freelist_ratio),
    FACT(FACT_DATABASE_BYTES, "database_bytes", FACT_INTEGER, database_bytes),
    FACT(FACT_PAGE_SIZE, "page_size", FACT_INTEGER, page_size),
    FACT(FACT_JOURNAL_MODE, "journal_mode", FACT_TEXT, journal_mode),
    FACT(FACT_AUTO_VACUUM, "auto_vacuum", FACT_TEXT, auto_vacuum),
    FACT(FACT_ENFORCE_LAST, "enforce_last", FACT_TEXT, enforce_last),
    FACT(FACT_CHECKPOINT_BLOCKED, "checkpoint_blocked", FACT_FLAG, checkpoint_blocked),
    FACT(FACT_BACKUP_LAST_BYTES, "backup_last_bytes", FACT_INTEGER, backup_last_bytes),
    FACT(FACT_UPLOAD_LAST_SENT, "upload_last_sent", FACT_SENT, upload_last_sent),
    FACT(FACT_INTEGRITY_RUN_AT, "integrity_run_at", FACT_TIME, integrity_run_at),
    FACT(FACT_INTEGRITY_PROBLEM, "integrity_problem", FACT_TEXT, integrity_problem),
    FACT(FACT_DRILL_SUCCEEDED_AT, "drill_succeeded_at", FACT_TIME, drill_succeeded_at),
    FACT(FACT_DRILL_RESTORE_SECONDS, "drill_restore_seconds", FACT_REAL, drill_restore_seconds),
    FACT(FACT_DRILL_COVERAGE, "drill_coverage", FACT_REAL, drill_coverage),
#undef FACT
};

/* The stored text of one field, in the format earlier versions wrote. */
static void fact_format(const struct fact_column *column, const struct db_facts *facts, char *out,
                        size_t out_size)
{
    const void *field = (const char *)facts + column->offset;
    switch (column->type) {
    case FACT_INTEGER: snprintf(out, out_size, "%lld", (long long)*(const int64_t *)field); break;
    case FACT_TIME: snprintf(out, out_size, "%lld", (long long)*(const time_t *)field); break;
    case FACT_REAL: snprintf(out, out_size, "%.6f", *(const double *)field); break;
    case FACT_TEXT: snprintf(out, out_size, "%s", (const char *)field); break;
    case FACT_FLAG: snprintf(out, out_size, "%s", *(const bool *)field ? "1" : "0"); break;
    case FACT_LEVEL:
        snprintf(out, out_size, "%s", health_level_name(*(const enum health_level *)field));
        break;
    case FACT_SENT:
        snprintf(out, out_size, "%lld %lld %lld", (long long)facts->upload_last_sent.at,
                 (long long)facts->upload_last_sent.archives,
                 (long long)facts->upload_last_sent.bytes);
        break;
    }
}

/* Reads one stored text into its field; false when it does not parse (the
 * field then stays unknown). */
static bool fact_parse(const struct fact_column *column, const char *text, struct db_facts *facts)
{
    void *field = (char *)facts + column->offset;
    char *end = NULL;
    long long a = 0, b = 0, c = 0;
    switch (column->type) {
    case FACT_INTEGER:
    case FACT_TIME:
        a = strtoll(text, &end, 10);
        if (end == text || *end)
            return false;
        if (column->type == FACT_INTEGER)
            *(int64_t *)field = a;
        else
            *(time_t *)field = (time_t)a;
        return true;
    case FACT_REAL:
        *(double *)field = strtod(text, &end);
        return end != text && !*end;
    case FACT_TEXT: snprintf(field, column->size, "%s", text); return true;
    case FACT_FLAG: *(bool *)field = strcmp(text, "1") == 0; return true;
    case FACT_LEVEL: {
        int level = health_level_parse(text);
        if (level >= 0)
            *(enum health_level *)field = (enum health_level)level;
        return level >= 0;
    }
    case FACT_SENT: {
        /* "AT ARCHIVES BYTES"; AT alone from an early version. */
        int count = sscanf(text, "%lld %lld %lld", &a, &b, &c);
        if (count < 1)
            return false;
        facts->upload_last_sent.at = (time_t)a;
        facts->upload_last_sent.archives = count >= 2 ? b : 0;
        facts->upload_last_sent.bytes = count >= 3 ? c : 0;
        return true;
    }
    }
    return false;
}

int state_set_facts(struct state *state, const char *database, const struct db_facts *facts,
                    unsigned fields, struct error *err)
{
    /* One transaction: a reader sees a verdict with its own reasons. */
    if (sqlite3_exec(state->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return state_fail(state, err, "cannot store facts");
    for (size_t i = 0; i < sizeof fact_columns / sizeof fact_columns[0]; i++) {
        const struct fact_column *column = &fact_columns[i];
        char value[sizeof facts->health_reason_lines];
        if (!(fields & column->fact))
            continue;
        fact_format(column, facts, value, sizeof value);
        int rc = state_run(state, NULL,
                           "INSERT INTO database_values (database, key, value) VALUES (?1, ?2, ?3)"
                           " ON CONFLICT (database, key) DO UPDATE SET value = ?3",
                           "sss", database, column->key, value);
        if (rc != SQLITE_DONE) {
            rc = state_fail(state, err, "cannot store facts");
            sqlite3_exec(state->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
    }
    if (sqlite3_exec(state->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        int rc = state_fail(state, err, "cannot store facts");
        sqlite3_exec(state->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    return 0;
}

int state_get_facts(struct state *state, const char *database, struct db_facts *facts,
                    struct error *err)
{
    sqlite3_stmt *statement = NULL;
    memset(facts, 0, sizeof *facts);
    if (sqlite3_prepare_v2(state->db,
                           "SELECT key, value FROM database_values WHERE database = ?1", -1,
                           &statement, NULL) != SQLITE_OK)
        return state_fail(state, err, "cannot read facts");
    sqlite3_bind_text(statement, 1, database, -1, SQLITE_TRANSIENT);
    int rc;
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(statement, 0);
        const char *value = (const char *)sqlite3_column_text(statement, 1);
        /* A key this version does not know (a newer one wrote it) is skipped. */
        for (size_t i = 0; key && value && i < sizeof fact_columns / sizeof fact_columns[0]; i++)
            if (strcmp(key, fact_columns[i].key) == 0 && fact_parse(&fact_columns[i], value, facts))
                facts->known |= fact_columns[i].fact;
    }
    sqlite3_finalize(statement);
    return rc == SQLITE_DONE ? 0 : state_fail(state, err, "cannot read facts");
}

int state_each_facts(struct state *state, state_facts_fn each, void *context, struct error *err)
{
    sqlite3_stmt *statement = NULL;
    if (sqlite3_prepare_v2(state->db,
                           "SELECT database, key, value FROM database_values ORDER BY database", -1,
                           &statement, NULL) != SQLITE_OK)
        return state_fail(state, err, "cannot read facts");
    struct db_facts *facts = calloc(1, sizeof *facts);
    char database[256] = "";
    int rc = facts ? SQLITE_OK : SQLITE_NOMEM;
    while (facts && (rc = sqlite3_step(statement)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(statement, 0);
        const char *key = (const char *)sqlite3_column_text(statement, 1);
        const char *value = (const char *)sqlite3_column_text(statement, 2);
        if (!name || !key || !value)
            continue;
        if (strcmp(name, database) != 0) {
            if (database[0])
                each(context, database, facts);
            memset(facts, 0, sizeof *facts);
            snprintf(database, sizeof database, "%s", name);
        }
        for (size_t i = 0; i < sizeof fact_columns / sizeof fact_columns[0]; i++)
            if (strcmp(key, fact_columns[i].key) == 0 && fact_parse(&fact_columns[i], value, facts))
                facts->known |= fact_columns[i].fact;
    }
    if (rc == SQLITE_DONE && database[0])
        each(context, database, facts);
    free(facts);
    sqlite3_finalize(statement);
    return rc == SQLITE_DONE ? 0 : state_fail(state, err, "cannot read facts");
}

int state_each_job(struct state *state, state_job_fn each, void *context, struct error *err)
{
    sqlite3_stmt *row = NULL;
    if (sqlite3_prepare_v2(state->db,
                           "SELECT database, job, last_started, last_finished, last_duration,"
                           " last_outcome, last_message, last_success, runs_total, failures_total"
                           " FROM job_runs",
                           -1, &row, NULL) != SQLITE_OK)
        return state_fail(state, err, "cannot read job history");
    int rc;
    while ((rc = sqlite3_step(row)) == SQLITE_ROW) {
        const char *database = (const char *)sqlite3_column_text(row, 0);
        const char *job = (const char *)sqlite3_column_text(row, 1);
        if (!database || !job)
            continue;
        struct job_record record = {
            .last_started = (time_t)sqlite3_column_int64(row, 2),
            .last_finished = (time_t)sqlite3_column_int64(row, 3),
            .last_duration = sqlite3_column_double(row, 4),
            .last_outcome = (enum job_outcome)sqlite3_column_int(row, 5),
            .last_success = (time_t)sqlite3_column_int64(row, 7),
            .runs_total = sqlite3_column_int64(row, 8),
            .failures_total = sqlite3_column_int64(row, 9),
        };
        snprintf(record.last_message, sizeof record.last_message, "%s",
                 (const char *)sqlite3_column_text(row, 6));
        each(context, database, job, &record);
    }
    sqlite3_finalize(row);
    return rc == SQLITE_DONE ? 0 : state_fail(state, err, "cannot read job history");
}

int state_enqueue_upload(struct state *state, const char *database, const char *target,
                         const char *archive_path, time_t now, struct error *err)
{
    int rc = state_run(state, NULL,
                       "INSERT INTO upload_queue (database, target, archive_path, queued, next_attempt)"
                       " VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (archive_path) DO NOTHING",
                       "ssst", database, target, archive_path, now);
    return rc == SQLITE_DONE ? 0 : state_fail(state, err, "cannot queue an upload");
}

int state_due_uploads(struct state *state, const char *database, time_t now,
                      struct upload_entry *entries, int max, struct error *err)
{
    sqlite3_stmt *statement;
    if (sqlite3_prepare_v2(state->db,
                           "SELECT id, database, target, archive_path, queued, attempts,"
                           " next_attempt, last_error FROM upload_queue"
                           " WHERE (?1 IS NULL OR database = ?1) AND next_attempt <= ?2"
                           " ORDER BY queued, id LIMIT ?3",
                           -1, &statement, NULL) != SQLITE_OK)
        return state_fail(state, err, "cannot read the upload queue");
    sqlite3_bind_text(statement, 1, database, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(statement, 2, (sqlite3_int64)now);
    sqlite3_bind_int(statement, 3, max);
    int count = 0, rc;
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW && count < max) {
        struct upload_entry *entry = &entries[count++];
        memset(entry, 0, sizeof *entry);
        entry->id = sqlite3_column_int64(statement, 0);
        snprintf(entry->database, sizeof entry->database, "%s", sqlite3_column_text(statement, 1));
        snprintf(entry->target, sizeof entry->target, "%s", sqlite3_column_text(statement, 2));
        snprintf(entry->archive_path, sizeof entry->archive_path, "%s",
                 sqlite3_column_text(statement, 3));
        entry->queued = (time_t)sqlite3_column_int64(statement, 4);
        entry->attempts = sqlite3_column_int(statement, 5);
        entry->next_attempt = (time_t)sqlite3_column_int64(statement, 6);
        snprintf(entry->last_error, sizeof entry->last_error, "%s",
                 sqlite3_column_text(statement, 7));
    }
    sqlite3_finalize(statement);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return state_fail(state, err, "cannot read the upload queue");
    return count;
}

int state_complete_upload(struct state *state, int64_t id, struct error *err)
{
    int rc = state_run(state, NULL, "DELETE FROM upload_queue WHERE id = ?1", "i", id);
    return rc == SQLITE_DONE ? 0 : state_fail(state, err, "cannot complete an upload");
}

int state_defer_upload(struct state *state, int64_t id, time_t next_attempt, const char *last_error,
                       struct error *err)
{
    int rc = state_run(state, NULL,
                       "UPDATE upload_queue SET attempts = attempts + 1, next_attempt = ?2,"
                       " last_error = ?3 WHERE id = ?1",
                       "its", id, next_attempt, last_error ? last_error : "");
    return rc == SQLITE_DONE ? 0 : state_fail(state, err, "cannot defer an upload");
}

int state_pending_upload_count(struct state *state, const char *database, int64_t *count,
                               struct error *err)
{
    *count = 0;
    sqlite3_stmt *statement;
    if (sqlite3_prepare_v2(state->db,
                           "SELECT count(*) FROM upload_queue WHERE ?1 IS NULL OR database = ?1",
                           -1, &statement, NULL) != SQLITE_OK)
        return state_fail(state, err, "cannot count pending uploads");
    sqlite3_bind_text(statement, 1, database, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(statement);
    if (rc == SQLITE_ROW)
        *count = sqlite3_column_int64(statement, 0);
    sqlite3_finalize(statement);
    return rc == SQLITE_ROW ? 0 : state_fail(state, err, "cannot count pending uploads");
}

int state_each_pending_upload_count(struct state *state, state_count_fn each, void *context,
                                    struct error *err)
{
    sqlite3_stmt *statement;
    if (sqlite3_prepare_v2(state->db,
                           "SELECT database, count(*) FROM upload_queue GROUP BY database", -1,
                           &statement, NULL) != SQLITE_OK)
        return state_fail(state, err, "cannot count pending uploads");
    int rc;
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        const char *database = (const char *)sqlite3_column_text(statement, 0);
        if (database)
            each(context, database, sqlite3_column_int64(statement, 1));
    }
    sqlite3_finalize(statement);
    return rc == SQLITE_DONE ? 0 : state_fail(state, err, "cannot count pending uploads");
}

int state_upload_is_pending(struct state *state, const char *archive_path, bool *pending,
                            struct error *err)
{
    *pending = false;
    int rc = state_run(state, NULL, "SELECT 1 FROM upload_queue WHERE archive_path = ?1", "s",
                       archive_path);
    if (rc == SQLITE_ROW)
        *pending = true;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : state_fail(state, err, "cannot read the upload queue");
}

/* ---- replication ---- */

int state_get_replica(struct state *state, const char *database, struct state_replica *out,
                      struct error *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *row = NULL;
    int rc = state_run(state, &row,
                       "SELECT generation, wal_offset, frame_index, checksum0, checksum1, salt0,"
                       " salt1, page_size, checkpoint_sequence, big_endian, ended, db_device,"
                       " db_inode, last_seen_at_ms, shipped_bytes, base_taken_at_ms, last_break,"
                       " last_break_at_ms,"
                       " (SELECT seen_at_ms FROM replica_uploaded u WHERE u.database = ?1),"
                       " (SELECT count(*) FROM replica_queue q WHERE q.database = ?1)"
                       " FROM replica WHERE database = ?1",
                       "s", database);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return state_fail(state, err, "cannot read the replica position");
    out->generation = (uint32_t)sqlite3_column_int64(row, 0);
    out->offset = (uint64_t)sqlite3_column_int64(row, 1);
    out->frame_index = (uint64_t)sqlite3_column_int64(row, 2);
    out->checksum[0] = (uint32_t)sqlite3_column_int64(row, 3);
    out->checksum[1] = (uint32_t)sqlite3_column_int64(row, 4);
    out->salt[0] = (uint32_t)sqlite3_column_int64(row, 5);
    out->salt[1] = (uint32_t)sqlite3_column_int64(row, 6);
    out->page_size = (uint32_t)sqlite3_column_int64(row, 7);
    out->checkpoint_sequence = (uint32_t)sqlite3_column_int64(row, 8);
    out->big_endian = sqlite3_column_int(row, 9) != 0;
    out->ended = sqlite3_column_int(row, 10) != 0;
    out->db_device = (uint64_t)sqlite3_column_int64(row, 11);
    out->db_inode = (uint64_t)sqlite3_column_int64(row, 12);
    out->last_seen_at_ms = sqlite3_column_int64(row, 13);
    out->shipped_bytes = sqlite3_column_int64(row, 14);
    out->base_taken_at_ms = sqlite3_column_int64(row, 15);
    const unsigned char *reason = sqlite3_column_text(row, 16);
    snprintf(out->last_break, sizeof out->last_break, "%s", reason ? (const char *)reason : "");
    out->last_break_at_ms = sqlite3_column_int64(row, 17);
    out->uploaded_seen_at_ms = sqlite3_column_int64(row, 18);
    out->queued_objects = sqlite3_column_int64(row, 19);
    sqlite3_finalize(row);
    return 0;
}

/* Appends the objects to the upload queue, inside the caller's transaction. */
static bool state_queue_objects(struct state *state, const char *database,
                                const struct state_replica_object *objects, size_t object_count)
{
    for (size_t i = 0; i < object_count; i++)
        if (state_run(state, NULL,
                      "INSERT INTO replica_queue (database, generation, key, path)"
                      " VALUES (?1, ?2, ?3, ?4)",
                      "siss", database, (int64_t)objects[i].generation, objects[i].key,
                      objects[i].path) != SQLITE_DONE)
            return false;
    return true;
}

int state_save_replica(struct state *state, const char *database, const struct state_replica *r,
                       const struct state_replica_object *objects, size_t object_count,
                       uint32_t base_from, int64_t first_seen_at_ms, int64_t last_seen_at_ms,
                       const char *break_reason, struct error *err)
{
    const char *doing = "cannot begin";
    if (sqlite3_exec(state->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    doing = "cannot save the replica position";
    sqlite3_stmt *statement = NULL;
    if (sqlite3_prepare_v2(state->db,
                           "INSERT OR REPLACE INTO replica (database, generation, wal_offset,"
                           " frame_index, checksum0, checksum1, salt0, salt1, page_size,"
                           " checkpoint_sequence, big_endian, ended, db_device, db_inode,"
                           " last_seen_at_ms, shipped_bytes, base_taken_at_ms, last_break,"
                           " last_break_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
                           " ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
                           -1, &statement, NULL) != SQLITE_OK)
        goto fail;
    const int64_t values[] = {r->generation,       (int64_t)r->offset,   (int64_t)r->frame_index,
                              r->checksum[0],      r->checksum[1],       r->salt[0],
                              r->salt[1],          r->page_size,         r->checkpoint_sequence,
                              r->big_endian,       r->ended,             (int64_t)r->db_device,
                              (int64_t)r->db_inode, r->last_seen_at_ms,  r->shipped_bytes,
                              r->base_taken_at_ms};
    sqlite3_bind_text(statement, 1, database, -1, SQLITE_TRANSIENT);
    for (int i = 0; i < (int)(sizeof values / sizeof values[0]); i++)
        sqlite3_bind_int64(statement, i + 2, values[i]);
    sqlite3_bind_text(statement, 18, r->last_break, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(statement, 19, r->last_break_at_ms);
    int rc = sqlite3_step(statement);
    sqlite3_finalize(statement);
    if (rc != SQLITE_DONE)
        goto fail;
    doing = "cannot queue replica objects";
    if (!state_queue_objects(state, database, objects, object_count))
        goto fail;
    doing = "cannot record the generation";
    if (state_run(state, NULL,
                  "INSERT OR IGNORE INTO replica_generations (database, generation, base_from,"
                  " first_seen_at_ms, last_seen_at_ms) VALUES (?1, ?2, ?3, 0, 0)",
                  "sii", database, (int64_t)r->generation, (int64_t)base_from) != SQLITE_DONE)
        goto fail;
    if (first_seen_at_ms > 0 &&
        state_run(state, NULL,
                  "UPDATE replica_generations SET first_seen_at_ms = CASE WHEN"
                  " first_seen_at_ms = 0 THEN ?3 ELSE first_seen_at_ms END, last_seen_at_ms = ?4"
                  " WHERE database = ?1 AND generation = ?2",
                  "siii", database, (int64_t)r->generation, first_seen_at_ms,
                  last_seen_at_ms) != SQLITE_DONE)
        goto fail;
    doing = "cannot count the break";
    if (break_reason &&
        state_run(state, NULL,
                  "INSERT INTO replica_breaks (database, reason, count) VALUES (?1, ?2, 1)"
                  " ON CONFLICT (database, reason) DO UPDATE SET count = count + 1",
                  "ss", database, break_reason) != SQLITE_DONE)
        goto fail;
    doing = "cannot commit the replica position";
    if (sqlite3_exec(state->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    return 0;
fail:
    rc = state_fail(state, err, doing);
    sqlite3_exec(state->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int state_queue_replica_objects(struct state *state, const char *database,
                                const struct state_replica_object *objects, size_t object_count,
                                struct error *err)
{
    if (sqlite3_exec(state->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
        !state_queue_objects(state, database, objects, object_count))
        goto fail;
    if (sqlite3_exec(state->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    return 0;
fail:;
    int rc = state_fail(state, err, "cannot queue replica objects");
    sqlite3_exec(state->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int state_next_replica_object(struct state *state, const char *database,
                              struct state_replica_object *out, bool *found, struct error *err)
{
    sqlite3_stmt *row = NULL;
    *found = false;
    int rc = state_run(state, &row,
                       "SELECT id, generation, key, path FROM replica_queue WHERE database = ?1"
                       " ORDER BY id LIMIT 1",
                       "s", database);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return state_fail(state, err, "cannot read the replica queue");
    out->id = sqlite3_column_int64(row, 0);
    out->generation = (uint32_t)sqlite3_column_int64(row, 1);
    snprintf(out->key, sizeof out->key, "%s", (const char *)sqlite3_column_text(row, 2));
    snprintf(out->path, sizeof out->path, "%s", (const char *)sqlite3_column_text(row, 3));
    sqlite3_finalize(row);
    *found = true;
    return 0;
}

int state_replica_uploaded(struct state *state, const char *database, int64_t seen_at_ms,
                           struct error *err)
{
    return state_run(state, NULL,
                     "INSERT OR REPLACE INTO replica_uploaded (database, seen_at_ms)"
                     " VALUES (?1, ?2)",
                     "si", database, seen_at_ms) == SQLITE_DONE
               ? 0
               : state_fail(state, err, "cannot record what the target holds");
}

int state_replica_queued_paths(struct state *state, void (*visit)(void *, const char *),
                               void *context, struct error *err)
{
    sqlite3_stmt *row = NULL;
    int rc = state_run(state, &row, "SELECT path FROM replica_queue", "");
    while (rc == SQLITE_ROW) {
        visit(context, (const char *)sqlite3_column_text(row, 0));
        rc = sqlite3_step(row);
    }
    sqlite3_finalize(row);
    return rc == SQLITE_DONE ? 0 : state_fail(state, err, "cannot read the replica queue");
}

int state_replica_generations(struct state *state, const char *database,
                              struct state_replica_generation **out, size_t *count,
                              int64_t *queued_up_to, struct error *err)
{
    sqlite3_stmt *row = NULL;
    size_t used = 0, capacity = 0;
    struct state_replica_generation *list = NULL;
    *out = NULL;
    *count = 0;
    /* One read transaction: the generations as of the last queued object. */
    if (sqlite3_exec(state->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return state_fail(state, err, "cannot begin");
    int rc = SQLITE_DONE;
    if (queued_up_to) {
        *queued_up_to = 0;
        rc = state_run(state, &row,
                       "SELECT coalesce(max(id), 0) FROM replica_queue WHERE database = ?1", "s",
                       database);
        if (rc == SQLITE_ROW)
            *queued_up_to = sqlite3_column_int64(row, 0);
        sqlite3_finalize(row);
        row = NULL;
        if (rc != SQLITE_ROW) {
            sqlite3_exec(state->db, "ROLLBACK", NULL, NULL, NULL);
            return state_fail(state, err, "cannot read the replica queue");
        }
    }
    rc = state_run(state, &row,
                       "SELECT g.generation, g.base_from, g.first_seen_at_ms, g.last_seen_at_ms,"
                       " s.generation IS NOT NULL FROM replica_generations g LEFT JOIN"
                       " replica_snapshots s ON s.database = g.database AND"
                       " s.generation = g.generation WHERE g.database = ?1 ORDER BY g.generation",
                       "s", database);
    while (rc == SQLITE_ROW) {
        if (used == capacity) {
            capacity = capacity ? 2 * capacity : 8;
            struct state_replica_generation *grown = realloc(list, capacity * sizeof *list);
            if (!grown) {
                sqlite3_finalize(row);
                free(list);
                return error_set(err, -ENOMEM, "out of memory");
            }
            list = grown;
        }
        list[used].generation = (uint32_t)sqlite3_column_int64(row, 0);
        list[used].base_from = (uint32_t)sqlite3_column_int64(row, 1);
        list[used].first_seen_at_ms = sqlite3_column_int64(row, 2);
        list[used].last_seen_at_ms = sqlite3_column_int64(row, 3);
        list[used].snapshot = sqlite3_column_int(row, 4) != 0;
        used++;
        rc = sqlite3_step(row);
    }
    sqlite3_finalize(row);
    if (rc != SQLITE_DONE) {
        free(list);
        rc = state_fail(state, err, "cannot read the replica generations");
        sqlite3_exec(state->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    sqlite3_exec(state->db, "COMMIT", NULL, NULL, NULL);
    *out = list;
    *count = used;
    return 0;
}

int state_replica_mark_snapshot(struct state *state, const char *database, uint32_t generation,
                                struct error *err)
{
    return state_run(state, NULL,
                     "INSERT OR IGNORE INTO replica_snapshots (database, generation) VALUES (?1, ?2)",
                     "si", database, (int64_t)generation) == SQLITE_DONE
               ? 0
               : state_fail(state, err, "cannot record the snapshot");
}

int state_replica_forget_generations(struct state *state, const char *database, uint32_t before,
                                     bool *forgotten, struct error *err)
{
    sqlite3_stmt *row = NULL;
    *forgotten = false;
    if (sqlite3_exec(state->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return state_fail(state, err, "cannot begin");
    int rc = state_run(state, &row,
                       "SELECT count(*) FROM replica_queue WHERE database = ?1 AND generation < ?2",
                       "si", database, (int64_t)before);
    int64_t queued = rc == SQLITE_ROW ? sqlite3_column_int64(row, 0) : -1;
    sqlite3_finalize(row);
    if (queued < 0)
        goto fail;
    if (queued == 0) {
        if (state_run(state, NULL,
                      "DELETE FROM replica_generations WHERE database = ?1 AND generation < ?2",
                      "si", database, (int64_t)before) != SQLITE_DONE ||
            state_run(state, NULL,
                      "DELETE FROM replica_snapshots WHERE database = ?1 AND generation < ?2", "si",
                      database, (int64_t)before) != SQLITE_DONE ||
            state_run(state, NULL,
                      "DELETE FROM replica_pack_items WHERE database = ?1 AND pending = 0"
                      " AND last_generation < ?2",
                      "si", database, (int64_t)before) != SQLITE_DONE)
            goto fail;
        *forgotten = true;
    }
    if (sqlite3_exec(state->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    return 0;
fail:
    *forgotten = false;
    rc = state_fail(state, err, "cannot forget replica generations");
    sqlite3_exec(state->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int state_replica_breaks(struct state *state, const char *database,
                         void (*visit)(void *, const char *, int64_t), void *context,
                         struct error *err)
{
    sqlite3_stmt *row = NULL;
    int rc = state_run(state, &row,
                       "SELECT reason, count FROM replica_breaks WHERE database = ?1 ORDER BY reason",
                       "s", database);
    while (rc == SQLITE_ROW) {
        visit(context, (const char *)sqlite3_column_text(row, 0), sqlite3_column_int64(row, 1));
        rc = sqlite3_step(row);
    }
    sqlite3_finalize(row);
    return rc == SQLITE_DONE ? 0 : state_fail(state, err, "cannot read the replica breaks");
}

int state_record_drilled(struct state *state, const char *database, const char *side,
                         const char *backup, time_t at, struct error *err)
{
    int rc = state_run(state, NULL,
                       "INSERT INTO drilled_backups (database, side, backup, drilled_at)"
                       " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (database, side, backup)"
                       " DO UPDATE SET drilled_at = ?4",
                       "ssst", database, side, backup, at);
    return rc == SQLITE_DONE ? 0 : state_fail(state, err, "cannot record a drill");
}

int state_each_drilled(struct state *state, const char *database, const char *side,
                       void (*visit)(void *, const char *), void *context, struct error *err)
{
    sqlite3_stmt *statement = NULL;
    int rc = state_run(state, &statement,
                       "SELECT backup FROM drilled_backups WHERE database = ?1 AND side = ?2"
                       " ORDER BY backup",
                       "ss", database, side);
    while (rc == SQLITE_ROW) {
        const char *backup = (const char *)sqlite3_column_text(statement, 0);
        if (backup)
            visit(context, backup);
        rc = sqlite3_step(statement);
    }
    sqlite3_finalize(statement);
    return rc == SQLITE_DONE ? 0 : state_fail(state, err, "cannot read the drilled backups");
}

int state_forget_drilled(struct state *state, const char *database, const char *side,
                         const char *backup, struct error *err)
{
    int rc = state_run(state, NULL,
                       "DELETE FROM drilled_backups WHERE database = ?1 AND side = ?2"
                       " AND backup = ?3",
                       "sss", database, side, backup);
    return rc == SQLITE_DONE ? 0 : state_fail(state, err, "cannot forget a drill");
}
