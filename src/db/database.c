/*
 * database.c: careful access to SQLite files that belong to someone else.
 * Not for the agent's own state (state.c).
 */
#include "db/database.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "core/io.h"
#include "core/units.h"

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

/* How long one sleep of a busy wait lasts at most: the stop flag is looked
 * at between sleeps, so SIGTERM ends a wait within this. */
#define DATABASE_BUSY_SLICE_MS 50

#define DATABASE_ACCESS_FIX                                                                        \
    "give the sqlprodd user access to the file and its directory (add it to the file's "           \
    "group, or an ACL) and list the directory in ReadWritePaths= (see the README, "                \
    "\"Granting access to an application's database\")"

/*
 * SQLite open()s the file and its companions with a blocking open(2): a
 * FIFO there blocks the thread for good (SQLite retries the open on EINTR,
 * so not even SIGTERM frees it), and a device such as /dev/zero reads as
 * an endless file. stat(2) never blocks and never opens, so nothing is
 * opened unless it is a regular file; a symlink to one is followed.
 */
static int database_refuse_file(const char *path, const char *suffix, bool must_exist,
                                struct error *err)
{
    char name[PATH_MAX + 16];
    struct stat st;
    if (snprintf(name, sizeof name, "%s%s", path, suffix) >= (int)sizeof name)
        return error_set(err, -ENAMETOOLONG, "%s%s: path too long", path, suffix);
    if (stat(name, &st) == 0) {
        if (S_ISREG(st.st_mode))
            return 0;
        if (suffix[0])
            return error_set(err, -EINVAL,
                             "%s is %s, not a database file (the %s file of %s): remove it; "
                             "SQLite would block or read garbage through it",
                             name, fs_file_kind(st.st_mode), suffix, path);
        return error_set(err, -EINVAL,
                         "%s is %s, not a database file: fix the path in the configuration", name,
                         fs_file_kind(st.st_mode));
    }
    int code = errno;
    if (code == ENOENT && !must_exist)
        return 0;
    if (code == EACCES)
        return error_set(err, -EACCES, "cannot open %s: permission denied: %s", name,
                         DATABASE_ACCESS_FIX);
    if (code == ELOOP)
        return error_set(err, -ELOOP, "%s is a symbolic link loop, not a database file", name);
    if (code == ENOENT || code == ENOTDIR) {
        if (lstat(name, &st) == 0 && S_ISLNK(st.st_mode))
            return error_set(err, -ENOENT,
                             "%s is a symbolic link to a file that does not exist: fix the link "
                             "or the path in the configuration",
                             name);
        return error_set(err, -ENOENT, "database file %s does not exist", name);
    }
    return error_set(err, -code, "cannot open %s: %s", name, strerror(code));
}

int database_refuse_special_files(const char *path, struct error *err)
{
    int rc = database_refuse_file(path, "", true, err);
    for (int part = 1; rc == 0 && part < FS_DATABASE_PARTS; part++)
        rc = database_refuse_file(path, fs_database_suffixes[part], false, err);
    return rc;
}

/* A busy wait that ends early when *stop is set. Lives as long as its
 * connection (see database_set_busy_timeout). */
struct database_wait {
    const volatile sig_atomic_t *stop;
    int timeout_ms;
    int64_t started_ms; /* io_monotonic_ms at the first call of this wait */
};

static int database_busy_wait(void *context, int count)
{
    struct database_wait *wait = context;
    if (wait->stop && *wait->stop)
        return 0;
    int64_t now_ms = io_monotonic_ms();
    if (count == 0)
        wait->started_ms = now_ms;
    int64_t waited_ms = now_ms - wait->started_ms;
    if (waited_ms >= wait->timeout_ms)
        return 0;
    /* Short first sleeps, like SQLite's own handler, for locks held briefly. */
    int64_t slice = count < 6 ? (int64_t)1 << count : DATABASE_BUSY_SLICE_MS;
    if (slice > DATABASE_BUSY_SLICE_MS)
        slice = DATABASE_BUSY_SLICE_MS;
    if (slice > wait->timeout_ms - waited_ms)
        slice = wait->timeout_ms - waited_ms;
    struct timespec pause = {0, (long)slice * 1000000L};
    nanosleep(&pause, NULL);
    return !(wait->stop && *wait->stop);
}

static void database_function_unused(sqlite3_context *context, int argc, sqlite3_value **argv)
{
    (void)argc;
    (void)argv;
    sqlite3_result_null(context);
}

int database_set_busy_timeout(sqlite3 *connection, int timeout_ms,
                              const volatile sig_atomic_t *stop)
{
    struct database_wait *wait = calloc(1, sizeof *wait);
    if (!wait)
        return -ENOMEM;
    wait->stop = stop;
    wait->timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
    sqlite3_busy_handler(connection, database_busy_wait, wait);
    /* SQLite 3.40 has no sqlite3_set_clientdata(): a function's destructor
     * is the one way to free data when the connection closes, whoever closes
     * it. Registering the name again frees the previous wait. */
    int rc = sqlite3_create_function_v2(connection, "sqlprodd_busy_wait", 0, SQLITE_UTF8, wait,
                                        database_function_unused, NULL, NULL, free);
    return rc == SQLITE_OK ? 0 : -ENOMEM;
}

/* The busy timeout is set before the first read: the header read below
 * takes a shared lock like any other, and the application may hold an
 * exclusive one at that very moment. */
static int database_connect(const char *path, int flags, int busy_timeout_ms,
                            const volatile sig_atomic_t *stop, sqlite3 **out, struct error *err)
{
    sqlite3 *connection = NULL;
    *out = NULL;
    int rc = database_refuse_special_files(path, err);
    if (rc != 0)
        return rc;
    rc = sqlite3_open_v2(path, &connection, flags, NULL);
    if (rc != SQLITE_OK) {
        int code = sqlite_error_code(rc);
        if (code == -ENOENT && access(path, F_OK) == 0)
            code = -EACCES;
        if (code == -EACCES)
            error_set(err, code, "cannot open %s: permission denied: %s", path,
                      DATABASE_ACCESS_FIX);
        else
            error_set(err, code, "cannot open %s: %s", path,
                      connection ? sqlite3_errmsg(connection) : sqlite3_errstr(rc));
        sqlite3_close(connection);
        return code;
    }
    sqlite3_extended_result_codes(connection, 1);
    if (database_set_busy_timeout(connection, busy_timeout_ms, stop) != 0) {
        sqlite3_close(connection);
        return error_set(err, -ENOMEM, "%s: out of memory", path);
    }
    sqlite3_progress_handler(connection, 1000, database_should_stop, (void *)stop);
    /* Reading the schema forces SQLite to read the header: a file that is not
     * a database, or is encrypted, fails here rather than midway through a job. */
    int64_t ignored;
    rc = database_query_int(connection, "PRAGMA schema_version", &ignored, err);
    if (rc == -EBUSY && stop && *stop) {
        rc = error_set(err, -ECANCELED, "stopped while waiting for the lock on %s", path);
    } else if (rc == -EBUSY) {
        error_set(err, rc,
                  "%s is locked by another connection for longer than busy_timeout_ms (%d ms): "
                  "retry later, or raise busy_timeout_ms if the application holds its "
                  "transactions that long",
                  path, busy_timeout_ms);
    } else if (rc == -EACCES) {
        error_set(err, rc, "cannot read %s: permission denied: %s", path, DATABASE_ACCESS_FIX);
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
    /* SQLITE_OPEN_URI lets the backup's VACUUM INTO name a VFS for its copy
     * (copy_watch.h). db->path itself is absolute (config.c insists), and
     * only a name that starts with "file:" is read as a URI. */
    int flags = (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX |
                SQLITE_OPEN_URI;
    return database_connect(db->path, flags, db->busy_timeout_ms, stop, out, err);
}

/* 100 ms doubling to 6.4 s, plus up to half again: up to 9.6 s, so it
 * sleeps in slices and ends early when *stop is set. */
static void database_backoff(int attempt, const volatile sig_atomic_t *stop)
{
    int64_t delay_ms = io_backoff(100, 6400, attempt, IO_JITTER_ABOVE);
    io_sleep_ms(delay_ms, DATABASE_BUSY_SLICE_MS, stop);
}

int database_exec(sqlite3 *connection, const char *sql, int attempts,
                  const volatile sig_atomic_t *stop, struct error *err)
{
    int rc = SQLITE_OK;
    for (int attempt = 0; attempt < (attempts > 0 ? attempts : 1); attempt++) {
        if (attempt > 0)
            database_backoff(attempt - 1, stop);
        if (stop && *stop)
            return error_set(err, -ECANCELED, "stopped");
        char *message = NULL;
        rc = sqlite3_exec(connection, sql, NULL, NULL, &message);
        if (rc == SQLITE_OK)
            return 0;
        int code = sqlite_error_code(rc);
        error_set(err, code, "%s: %s", sql, message ? message : sqlite3_errstr(rc));
        sqlite3_free(message);
        if (code == -EBUSY && stop && *stop)
            return error_set(err, -ECANCELED, "%s: stopped while waiting for a lock", sql);
        if (code != -EBUSY)
            return code;
    }
    return error_set(err, -EBUSY,
                     "%s: the database stayed locked by another connection through %d attempt%s "
                     "of busy_timeout_ms each (%s): retry later, or raise busy_timeout_ms if the "
                     "application holds its transactions that long",
                     sql, attempts, attempts == 1 ? "" : "s", sqlite3_errstr(rc));
}

/* Prepares `sql` and steps to its first row: 0 with *statement on that row
 * (the caller finalizes it), or a negative code with err set (-ENODATA: no
 * row) and nothing to finalize. */
static int database_first_row(sqlite3 *connection, const char *sql, sqlite3_stmt **statement,
                              struct error *err)
{
    int rc = sqlite3_prepare_v2(connection, sql, -1, statement, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(*statement);
    if (rc == SQLITE_ROW)
        return 0;
    int code = rc == SQLITE_DONE ? -ENODATA : sqlite_error_code(rc);
    error_set(err, code, "%s: %s", sql,
              rc == SQLITE_DONE ? "no result" : sqlite3_errmsg(connection));
    sqlite3_finalize(*statement);
    *statement = NULL;
    return code;
}

int database_query_int(sqlite3 *connection, const char *sql, int64_t *value, struct error *err)
{
    sqlite3_stmt *statement = NULL;
    int rc = database_first_row(connection, sql, &statement, err);
    if (rc == 0)
        *value = sqlite3_column_int64(statement, 0);
    sqlite3_finalize(statement);
    return rc;
}

int database_query_text(sqlite3 *connection, const char *sql, char *out, size_t out_size,
                        struct error *err)
{
    sqlite3_stmt *statement = NULL;
    int rc = database_first_row(connection, sql, &statement, err);
    if (rc == 0) {
        const unsigned char *text = sqlite3_column_text(statement, 0);
        snprintf(out, out_size, "%s", text ? (const char *)text : "");
    }
    sqlite3_finalize(statement);
    return rc;
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

/* ---- the check's watcher (database_check_limits) ---- */

#define CHECK_WATCH_INTERVAL_MS 100

enum check_end { CHECK_RUNS, CHECK_STOPPED, CHECK_HELD_THE_WAL };

struct check_watch {
    sqlite3 *connection;
    const struct database_check_limits *limits;
    int64_t wal_bytes_at_start, wal_bytes_at_end;
    pthread_mutex_t lock;
    pthread_cond_t finished_changed;
    bool finished;      /* the check returned: the watcher ends */
    enum check_end end; /* why the watcher interrupted it */
};

static int64_t check_watch_wal_bytes(const struct check_watch *watch)
{
    struct stat st;
    return stat(watch->limits->wal_path, &st) == 0 ? (int64_t)st.st_size : 0;
}

static enum check_end check_watch_look(struct check_watch *watch)
{
    const struct database_check_limits *limits = watch->limits;
    if (limits->stop && *limits->stop)
        return CHECK_STOPPED;
    if (limits->wal_path) {
        int64_t wal = check_watch_wal_bytes(watch);
        if (wal > limits->wal_limit_bytes && wal > watch->wal_bytes_at_start) {
            watch->wal_bytes_at_end = wal;
            return CHECK_HELD_THE_WAL;
        }
    }
    return CHECK_RUNS;
}

static void *check_watch_run(void *context)
{
    struct check_watch *watch = context;
    pthread_mutex_lock(&watch->lock);
    while (!watch->finished) {
        /* The condition waits on CLOCK_MONOTONIC, which io_monotonic_ms reads. */
        int64_t until_ms = io_monotonic_ms() + CHECK_WATCH_INTERVAL_MS;
        struct timespec until = {.tv_sec = until_ms / 1000,
                                 .tv_nsec = (long)(until_ms % 1000) * 1000000};
        pthread_cond_timedwait(&watch->finished_changed, &watch->lock, &until);
        if (watch->finished)
            break;
        enum check_end end = check_watch_look(watch);
        if (end != CHECK_RUNS) {
            watch->end = end;
            /* Safe from another thread, and a no-op once the check is done. */
            sqlite3_interrupt(watch->connection);
            break;
        }
    }
    pthread_mutex_unlock(&watch->lock);
    return NULL;
}

/* Starts the watcher; false if there is nothing to watch or no thread (the
 * check then runs as SQLite runs it, stopped only between its rows). */
static bool check_watch_start(struct check_watch *watch, pthread_t *thread)
{
    const struct database_check_limits *limits = watch->limits;
    if (!limits || (!limits->stop && !limits->wal_path))
        return false;
    if (limits->wal_path)
        watch->wal_bytes_at_start = check_watch_wal_bytes(watch);
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&watch->finished_changed, &attributes);
    pthread_condattr_destroy(&attributes);
    pthread_mutex_init(&watch->lock, NULL);
    if (io_thread_start(thread, check_watch_run, watch) == 0)
        return true;
    pthread_cond_destroy(&watch->finished_changed);
    pthread_mutex_destroy(&watch->lock);
    return false;
}

static void check_watch_finish(struct check_watch *watch, pthread_t thread)
{
    pthread_mutex_lock(&watch->lock);
    watch->finished = true;
    pthread_cond_signal(&watch->finished_changed);
    pthread_mutex_unlock(&watch->lock);
    pthread_join(thread, NULL);
    pthread_cond_destroy(&watch->finished_changed);
    pthread_mutex_destroy(&watch->lock);
}

static int database_check_rows(sqlite3 *connection, bool quick, bool *ok, char *result,
                               size_t result_size, struct error *err);

int database_check(sqlite3 *connection, bool quick, const struct database_check_limits *limits,
                   bool *ok, char *result, size_t result_size, struct error *err)
{
    struct check_watch watch = {.connection = connection, .limits = limits};
    int64_t start_ms = io_monotonic_ms();
    pthread_t thread;
    bool watched = check_watch_start(&watch, &thread);
    int rc = database_check_rows(connection, quick, ok, result, result_size, err);
    if (!watched)
        return rc;
    check_watch_finish(&watch, thread);
    if (rc != -ECANCELED || watch.end != CHECK_HELD_THE_WAL)
        return rc;
    double seconds = (double)(io_monotonic_ms() - start_ms) / 1000.0;
    char grown[32], limit[32];
    units_format_size(watch.wal_bytes_at_end, grown, sizeof grown);
    units_format_size(limits->wal_limit_bytes, limit, sizeof limit);
    *ok = false;
    result[0] = '\0';
    return error_set(err, -EAGAIN,
                     "%s given up after %.1f s: %s grew to %s meanwhile (over %s), as no "
                     "checkpoint can pass a read transaction",
                     quick ? "quick_check" : "integrity_check", seconds, limits->wal_path, grown,
                     limit);
}

static int database_check_rows(sqlite3 *connection, bool quick, bool *ok, char *result,
                               size_t result_size, struct error *err)
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
