/*
 * database.c: careful access to SQLite files that belong to someone else.
 * Not for the agent's own state (state.c).
 */
#include "database.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* SQLite calls this every N virtual-machine steps; non-zero interrupts the
 * statement with SQLITE_INTERRUPT, which is how SIGTERM aborts a job. */
static int database_should_stop(void *context)
{
    const volatile sig_atomic_t *stop = context;
    return stop && *stop;
}

static int sqlite_error_code(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return -EBUSY;
    case SQLITE_INTERRUPT: return -ECANCELED;
    case SQLITE_PERM:
    case SQLITE_AUTH:
    case SQLITE_READONLY: return -EACCES;
    case SQLITE_CANTOPEN: return -ENOENT;
    case SQLITE_FULL: return -ENOSPC;
    case SQLITE_NOMEM: return -ENOMEM;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return -EBADMSG;
    default: return -EIO;
    }
}

/* Files nobody else should be writing (a backup's copy, a restored file):
 * a wait only happens if someone does. */
#define DATABASE_PRIVATE_BUSY_TIMEOUT_MS 5000

/* The busy timeout is set before the first read: the header read below
 * takes a shared lock like any other, and the application may hold an
 * exclusive one at that very moment. */
static int database_connect(const char *path, int flags, int busy_timeout_ms,
                            const volatile sig_atomic_t *stop, sqlite3 **out, struct error *err)
{
    sqlite3 *connection = NULL;
    *out = NULL;
    int rc = sqlite3_open_v2(path, &connection, flags, NULL);
    if (rc != SQLITE_OK) {
        int code = sqlite_error_code(rc);
        if (code == -ENOENT && access(path, F_OK) == 0)
            code = -EACCES;
        error_set(err, code, "cannot open %s: %s", path,
                  code == -EACCES ? "permission denied (check the file and its directory)"
                  : connection    ? sqlite3_errmsg(connection)
                                  : sqlite3_errstr(rc));
        sqlite3_close(connection);
        return code;
    }
    sqlite3_extended_result_codes(connection, 1);
    sqlite3_busy_timeout(connection, busy_timeout_ms);
    sqlite3_progress_handler(connection, 1000, database_should_stop, (void *)stop);
    /* Reading the schema forces SQLite to read the header: a file that is not
     * a database, or is encrypted, fails here rather than midway through a job. */
    int64_t ignored;
    rc = database_query_int(connection, "PRAGMA schema_version", &ignored, err);
    if (rc == -EBUSY) {
        error_set(err, rc,
                  "%s is locked by another connection for longer than busy_timeout_ms (%d ms): "
                  "retry later, or raise busy_timeout_ms if the application holds its "
                  "transactions that long",
                  path, busy_timeout_ms);
    } else if (rc != 0) {
        error_prefix(err, "%s: ", path);
    }
    if (rc != 0) {
        sqlite3_close(connection);
        return rc;
    }
    *out = connection;
    return 0;
}

int database_open_path(const char *path, bool read_only, const volatile sig_atomic_t *stop,
                       sqlite3 **out, struct error *err)
{
    int flags = (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX;
    return database_connect(path, flags, DATABASE_PRIVATE_BUSY_TIMEOUT_MS, stop, out, err);
}

int database_open(const struct database_config *db, bool read_only,
                  const volatile sig_atomic_t *stop, sqlite3 **out, struct error *err)
{
    if (access(db->path, F_OK) != 0)
        return error_set(err, -ENOENT, "database file %s does not exist", db->path);
    /* SQLITE_OPEN_URI lets the backup's VACUUM INTO name a VFS for its copy
     * (copy_watch.h). db->path itself is absolute (config.c insists), and
     * only a name that starts with "file:" is read as a URI. */
    int flags = (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX |
                SQLITE_OPEN_URI;
    return database_connect(db->path, flags, db->busy_timeout_ms, stop, out, err);
}

static void database_backoff(int attempt)
{
    long delay_ms = 100L << (attempt < 6 ? attempt : 6);
    delay_ms += rand() % (delay_ms / 2 + 1);
    struct timespec pause = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

int database_exec(sqlite3 *connection, const char *sql, int attempts,
                  const volatile sig_atomic_t *stop, struct error *err)
{
    int rc = SQLITE_OK;
    for (int attempt = 0; attempt < (attempts > 0 ? attempts : 1); attempt++) {
        if (attempt > 0)
            database_backoff(attempt - 1);
        if (stop && *stop)
            return error_set(err, -ECANCELED, "stopped");
        char *message = NULL;
        rc = sqlite3_exec(connection, sql, NULL, NULL, &message);
        if (rc == SQLITE_OK)
            return 0;
        int code = sqlite_error_code(rc);
        error_set(err, code, "%s: %s", sql, message ? message : sqlite3_errstr(rc));
        sqlite3_free(message);
        if (code != -EBUSY)
            return code;
    }
    return error_set(err, -EBUSY,
                     "%s: the database stayed locked by another connection through %d attempt%s "
                     "of busy_timeout_ms each (%s): retry later, or raise busy_timeout_ms if the "
                     "application holds its transactions that long",
                     sql, attempts, attempts == 1 ? "" : "s", sqlite3_errstr(rc));
}

int database_query_int(sqlite3 *connection, const char *sql, int64_t *value, struct error *err)
{
    sqlite3_stmt *statement = NULL;
    int rc = sqlite3_prepare_v2(connection, sql, -1, &statement, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(statement);
    if (rc == SQLITE_ROW) {
        *value = sqlite3_column_int64(statement, 0);
        sqlite3_finalize(statement);
        return 0;
    }
    int code = rc == SQLITE_DONE ? -ENODATA : sqlite_error_code(rc);
    error_set(err, code, "%s: %s", sql,
              rc == SQLITE_DONE ? "no result" : sqlite3_errmsg(connection));
    sqlite3_finalize(statement);
    return code;
}

int database_query_text(sqlite3 *connection, const char *sql, char *out, size_t out_size,
                        struct error *err)
{
    sqlite3_stmt *statement = NULL;
    int rc = sqlite3_prepare_v2(connection, sql, -1, &statement, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(statement);
    if (rc == SQLITE_ROW) {
        const unsigned char *text = sqlite3_column_text(statement, 0);
        snprintf(out, out_size, "%s", text ? (const char *)text : "");
        sqlite3_finalize(statement);
        return 0;
    }
    int code = rc == SQLITE_DONE ? -ENODATA : sqlite_error_code(rc);
    error_set(err, code, "%s: %s", sql,
              rc == SQLITE_DONE ? "no result" : sqlite3_errmsg(connection));
    sqlite3_finalize(statement);
    return code;
}

int database_commit_without_fsync_in_wal(sqlite3 *connection, struct error *err)
{
    char journal_mode[32];
    int rc = database_query_text(connection, "PRAGMA journal_mode", journal_mode,
                                 sizeof journal_mode, err);
    if (rc != 0 || strcmp(journal_mode, "wal") != 0)
        return rc;
    return database_exec(connection, "PRAGMA synchronous=NORMAL", 1, NULL, err);
}

int database_check(sqlite3 *connection, bool quick, bool *ok, char *result, size_t result_size,
                   struct error *err)
{
    const char *sql = quick ? "PRAGMA quick_check(10)" : "PRAGMA integrity_check(10)";
    sqlite3_stmt *statement = NULL;
    *ok = false;
    result[0] = '\0';
    int rc = sqlite3_prepare_v2(connection, sql, -1, &statement, NULL);
    size_t used = 0;
    int rows = 0;
    while (rc == SQLITE_OK && (rc = sqlite3_step(statement)) == SQLITE_ROW) {
        const char *line = (const char *)sqlite3_column_text(statement, 0);
        if (rows++ == 0 && line && strcmp(line, "ok") == 0)
            *ok = true;
        if (used < result_size)
            used += (size_t)snprintf(result + used, result_size - used, "%s%s",
                                     rows > 1 ? "; " : "", line ? line : "");
        rc = SQLITE_OK;
    }
    if (rc == SQLITE_DONE) {
        *ok = *ok && rows == 1;
        sqlite3_finalize(statement);
        return 0;
    }
    int code = sqlite_error_code(rc);
    /* A corrupt file often fails the check itself rather than returning rows. */
    if (code == -EBADMSG) {
        snprintf(result, result_size, "%s", sqlite3_errmsg(connection));
        sqlite3_finalize(statement);
        return 0;
    }
    error_set(err, code, "%s: %s", sql, sqlite3_errmsg(connection));
    sqlite3_finalize(statement);
    return code;
}
