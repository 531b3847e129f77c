/*
 * database.h: opening a managed (application) database the way every job
 * must: never creating it, with the configured busy timeout, and with a
 * progress handler that aborts long statements when the agent is stopping.
 */
#ifndef SQLPRODD_DATABASE_H
#define SQLPRODD_DATABASE_H

#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>

#include "config/config.h"
#include "core/error.h"

/* Opens db->path read-write (or read-only) and reads its header, so "not a
 * database" and "permission denied" are found here with a clear message. */
int database_open(const struct database_config *db, bool read_only,
                  const volatile sig_atomic_t *stop, sqlite3 **out, struct error *err);

/* Opens any SQLite file (a backup copy, a restored file) read-only. */
int database_open_path(const char *path, bool read_only, const volatile sig_atomic_t *stop,
                       sqlite3 **out, struct error *err);

/* Refuses, without opening anything, a path that is not a regular file (a
 * FIFO, socket, device or directory, also through a symlink) or whose -wal,
 * -shm or -journal is not: SQLite would block in open() on a FIFO. A
 * missing database is -ENOENT, an unreachable one -EACCES, with the fix.
 * database_open() and database_open_path() call it first. */
int database_refuse_special_files(const char *path, struct error *err);

/* Like sqlite3_busy_timeout(), but the wait ends within 50 ms once *stop
 * is set (stop may be NULL). */
int database_set_busy_timeout(sqlite3 *connection, int timeout_ms,
                              const volatile sig_atomic_t *stop);

/* Runs one statement; retries SQLITE_BUSY/LOCKED up to `attempts` times with
 * backoff (100 ms doubling, jitter), on top of the busy timeout. */
int database_exec(sqlite3 *connection, const char *sql, int attempts,
                  const volatile sig_atomic_t *stop, struct error *err);

/* Reads one integer (PRAGMA page_count, ...). */
int database_query_int(sqlite3 *connection, const char *sql, int64_t *value, struct error *err);

/* Reads one text value into out. */
int database_query_text(sqlite3 *connection, const char *sql, char *out, size_t out_size,
                        struct error *err);

/* For a connection that writes to an application's database (ANALYZE,
 * incremental_vacuum): in WAL mode, commit without fsync (synchronous =
 * NORMAL), so that our commit does not flush the application's unsynced WAL
 * frames while it holds the write lock, which stalled its writers for tens
 * of milliseconds. WAL with NORMAL stays consistent through a power loss and
 * loses at most our own last commit; the application's durability is its own
 * connection's setting. Rollback-journal databases keep FULL, where NORMAL
 * could corrupt the file on a power loss. */
int database_commit_without_fsync_in_wal(sqlite3 *connection, struct error *err);

/* What may end a check early. SQLite calls no progress handler while it
 * walks the b-trees, which is nearly all of a check (2.6 s without a call
 * on a 128 MiB file), so a thread of the check's own looks every 100 ms and
 * interrupts it. */
struct database_check_limits {
    const volatile sig_atomic_t *stop; /* set: -ECANCELED */
    /* A check is one read transaction: while it runs, the application's WAL
     * cannot be checkpointed past it and grows with every commit. With
     * wal_path set, the check gives up (-EAGAIN, saying how far the file
     * grew and in how long) once that file is larger than wal_limit_bytes
     * and than it was when the check began. */
    const char *wal_path;
    int64_t wal_limit_bytes;
};

/* Runs integrity_check (quick = false) or quick_check; *ok tells the verdict,
 * `result` gets "ok" or the first problems reported. `limits` may be NULL. */
int database_check(sqlite3 *connection, bool quick, const struct database_check_limits *limits,
                   bool *ok, char *result, size_t result_size, struct error *err);

#endif
