/*
 * test_database_stop.c: a wait on a locked database ends soon after the
 * stop flag is set, however long busy_timeout_ms is (the busy handler),
 * and so does a retry back-off of database_exec(). A real lock, held by a
 * second connection to a real file; the flag is set from another thread,
 * as the signal handler would.
 *
 * A check (database_check) is stopped by a watcher thread, as SQLite calls no
 * progress handler while it walks the b-trees: a file on a slow disk is
 * played by a VFS whose reads take 200 us each (the seam; SQLite and the
 * file are real), and the WAL a check must not hold is grown by a real
 * writer on a second connection.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db/database.h"

static char directory[PATH_MAX], path[PATH_MAX];
static sqlite3 *holder;

struct stopper {
    volatile sig_atomic_t stop;
    int after_ms;
};

static void *stop_later(void *context)
{
    struct stopper *stopper = context;
    struct timespec pause = {stopper->after_ms / 1000, (stopper->after_ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
    stopper->stop = 1;
    return NULL;
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* A rollback-journal database held under BEGIN EXCLUSIVE: readers wait. */
static int setup(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(directory, sizeof directory, "%s/sqlprodd-stop-XXXXXX", tmp);
    if (!mkdtemp(directory))
        return -1;
    snprintf(path, sizeof path, "%s/app.db", directory);
    if (sqlite3_open(path, &holder) != SQLITE_OK ||
        sqlite3_exec(holder, "CREATE TABLE t (x); BEGIN EXCLUSIVE; INSERT INTO t VALUES (1)", NULL,
                     NULL, NULL) != SQLITE_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sqlite3_close(holder);
    char journal[PATH_MAX + 16];
    snprintf(journal, sizeof journal, "%s-journal", path);
    unlink(journal);
    unlink(path);
    rmdir(directory);
    return 0;
}

static void busy_wait_of_ten_minutes_ends_on_stop(void **state)
{
    (void)state;
    sqlite3 *connection = NULL;
    struct stopper stopper = {.after_ms = 300};
    assert_int_equal(sqlite3_open_v2(path, &connection, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(database_set_busy_timeout(connection, 600000, &stopper.stop), 0);
    pthread_t thread;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    pthread_create(&thread, NULL, stop_later, &stopper);
    struct error err = {0};
    int rc = database_exec(connection, "SELECT count(*) FROM t", 1, &stopper.stop, &err);
    double elapsed = seconds_since(&start);
    pthread_join(thread, NULL);
    sqlite3_close(connection);
    assert_int_equal(rc, -ECANCELED);
    if (elapsed > 0.3 + 0.2)
        fail_msg("the wait went on %.2fs after the stop", elapsed - 0.3);
}

/* Retries back off 100 ms, 200, 400, 800, 1600 (plus up to half of it):
 * the stop at 2 s falls in the 1.6-2.4 s back-off, which must end early. */
static void retry_backoff_ends_on_stop(void **state)
{
    (void)state;
    sqlite3 *connection = NULL;
    struct stopper stopper = {.after_ms = 2000};
    assert_int_equal(sqlite3_open_v2(path, &connection, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(database_set_busy_timeout(connection, 10, &stopper.stop), 0);
    pthread_t thread;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    pthread_create(&thread, NULL, stop_later, &stopper);
    struct error err = {0};
    int rc = database_exec(connection, "SELECT count(*) FROM t", 20, &stopper.stop, &err);
    double elapsed = seconds_since(&start);
    pthread_join(thread, NULL);
    sqlite3_close(connection);
    assert_int_equal(rc, -ECANCELED);
    if (elapsed > 2.0 + 0.5)
        fail_msg("the back-off went on %.2fs after the stop", elapsed - 2.0);
}

/* Without a stop the wait still ends at busy_timeout_ms, as SQLite's own. */
static void busy_wait_still_ends_at_the_timeout(void **state)
{
    (void)state;
    sqlite3 *connection = NULL;
    volatile sig_atomic_t stop = 0;
    assert_int_equal(sqlite3_open_v2(path, &connection, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(database_set_busy_timeout(connection, 300, &stop), 0);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct error err = {0};
    int rc = database_exec(connection, "SELECT count(*) FROM t", 1, &stop, &err);
    double elapsed = seconds_since(&start);
    sqlite3_close(connection);
    assert_int_equal(rc, -EBUSY);
    assert_true(elapsed >= 0.29 && elapsed < 1.0);
}

/* ---- a disk that reads slowly: the default VFS, each xRead 1 ms late ---- */

struct slow_file {
    sqlite3_file base;
    sqlite3_file *real; /* allocated after this struct */
};

static sqlite3_vfs slow_vfs, *real_vfs;
static sqlite3_io_methods slow_methods;

static sqlite3_file *real_of(sqlite3_file *file)
{
    return ((struct slow_file *)file)->real;
}

static int slow_read(sqlite3_file *file, void *out, int amount, sqlite3_int64 offset)
{
    struct timespec pause = {0, 1000000};
    nanosleep(&pause, NULL);
    return real_of(file)->pMethods->xRead(real_of(file), out, amount, offset);
}

static int slow_close(sqlite3_file *file)
{
    return real_of(file)->pMethods->xClose(real_of(file));
}
static int slow_write(sqlite3_file *f, const void *in, int amount, sqlite3_int64 offset)
{
    return real_of(f)->pMethods->xWrite(real_of(f), in, amount, offset);
}
static int slow_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return real_of(f)->pMethods->xTruncate(real_of(f), size);
}
static int slow_sync(sqlite3_file *f, int flags)
{
    return real_of(f)->pMethods->xSync(real_of(f), flags);
}
static int slow_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return real_of(f)->pMethods->xFileSize(real_of(f), size);
}
static int slow_lock(sqlite3_file *f, int level)
{
    return real_of(f)->pMethods->xLock(real_of(f), level);
}
static int slow_unlock(sqlite3_file *f, int level)
{
    return real_of(f)->pMethods->xUnlock(real_of(f), level);
}
static int slow_check_reserved(sqlite3_file *f, int *out)
{
    return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}
static int slow_file_control(sqlite3_file *f, int op, void *argument)
{
    return real_of(f)->pMethods->xFileControl(real_of(f), op, argument);
}
static int slow_sector_size(sqlite3_file *f)
{
    return real_of(f)->pMethods->xSectorSize(real_of(f));
}
static int slow_device_characteristics(sqlite3_file *f)
{
    return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}

static int slow_shm_map(sqlite3_file *f, int region, int size, int extend, void volatile **out)
{
    return real_of(f)->pMethods->xShmMap(real_of(f), region, size, extend, out);
}
static int slow_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    return real_of(f)->pMethods->xShmLock(real_of(f), offset, n, flags);
}
static void slow_shm_barrier(sqlite3_file *f)
{
    real_of(f)->pMethods->xShmBarrier(real_of(f));
}
static int slow_shm_unmap(sqlite3_file *f, int delete_flag)
{
    return real_of(f)->pMethods->xShmUnmap(real_of(f), delete_flag);
}

static int slow_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
                     int *out_flags)
{
    (void)vfs;
    struct slow_file *slow = (struct slow_file *)file;
    slow->real = (sqlite3_file *)(slow + 1);
    int rc = real_vfs->xOpen(real_vfs, name, slow->real, flags, out_flags);
    if (rc != SQLITE_OK) {
        file->pMethods = NULL;
        return rc;
    }
    slow_methods = (sqlite3_io_methods){
        .iVersion = 2, /* no xFetch: reads go through xRead */
        .xClose = slow_close,
        .xRead = slow_read,
        .xWrite = slow_write,
        .xTruncate = slow_truncate,
        .xSync = slow_sync,
        .xFileSize = slow_file_size,
        .xLock = slow_lock,
        .xUnlock = slow_unlock,
        .xCheckReservedLock = slow_check_reserved,
        .xFileControl = slow_file_control,
        .xSectorSize = slow_sector_size,
        .xDeviceCharacteristics = slow_device_characteristics,
        .xShmMap = slow_shm_map,
        .xShmLock = slow_shm_lock,
        .xShmBarrier = slow_shm_barrier,
        .xShmUnmap = slow_shm_unmap,
    };
    file->pMethods = &slow_methods;
    return SQLITE_OK;
}

/* Made the default, so that database_open_path() opens through it; the
 * setup of the check tests registers it, their teardown takes it away. */
static void slow_vfs_register(void)
{
    real_vfs = sqlite3_vfs_find(NULL);
    slow_vfs = *real_vfs;
    slow_vfs.zName = "slow";
    slow_vfs.szOsFile = (int)sizeof(struct slow_file) + real_vfs->szOsFile;
    slow_vfs.xOpen = slow_open;
    sqlite3_vfs_register(&slow_vfs, 1);
}

static void slow_vfs_unregister(void)
{
    sqlite3_vfs_unregister(&slow_vfs);
    sqlite3_vfs_register(real_vfs, 1);
}

/* 40,000 rows of a random token under an index: about 750 pages to walk. */
static int setup_checked(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(directory, sizeof directory, "%s/sqlprodd-check-XXXXXX", tmp);
    if (!mkdtemp(directory))
        return -1;
    snprintf(path, sizeof path, "%s/app.db", directory);
    sqlite3 *connection = NULL;
    int rc = sqlite3_open(path, &connection);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(connection,
                          "CREATE TABLE t (id INTEGER PRIMARY KEY, token TEXT, body BLOB);"
                          "CREATE INDEX t_token ON t (token);"
                          "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                          "WHERE x < 40000) INSERT INTO t SELECT x, hex(randomblob(8)), "
                          "randomblob(20) FROM c",
                          NULL, NULL, NULL);
    sqlite3_close(connection);
    if (rc != SQLITE_OK)
        return -1;
    slow_vfs_register(); /* from here on, every file of the test reads slowly */
    return 0;
}

static int teardown_checked(void **state)
{
    (void)state;
    slow_vfs_unregister();
    char other[PATH_MAX + 16];
    const char *suffixes[] = {"-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        snprintf(other, sizeof other, "%s%s", path, suffixes[i]);
        unlink(other);
    }
    unlink(path);
    rmdir(directory);
    return 0;
}

/* The b-tree walk alone takes over 0.4 s on the slow disk (a read per
 * page): stopped at 50 ms, the check must end within 0.3 s. Without the
 * watcher it ends when the walk does and the progress handler first runs. */
static void check_on_a_slow_disk_ends_soon_after_the_stop(void **state)
{
    (void)state;
    struct stopper stopper = {.after_ms = 50};
    sqlite3 *connection = NULL;
    struct error err = {0};
    assert_int_equal(database_open_path(path, true, &stopper.stop, &connection, &err), 0);
    pthread_t thread;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    pthread_create(&thread, NULL, stop_later, &stopper);
    bool ok = true;
    char result[256];
    int rc =
        database_check(connection, true, &(struct database_check_limits){.stop = &stopper.stop},
                       &ok, result, sizeof result, &err);
    double elapsed = seconds_since(&start);
    pthread_join(thread, NULL);
    sqlite3_close(connection);

    /* The same check unstopped: how long the walk is. */
    assert_int_equal(database_open_path(path, true, NULL, &connection, &err), 0);
    clock_gettime(CLOCK_MONOTONIC, &start);
    assert_int_equal(database_check(connection, true, NULL, &ok, result, sizeof result, &err), 0);
    double whole = seconds_since(&start);
    sqlite3_close(connection);

    assert_true(ok);
    assert_int_equal(rc, -ECANCELED);
    if (whole < 0.4)
        fail_msg("the unstopped check took %.2fs: too short to tell", whole);
    if (elapsed > 0.05 + 0.3)
        fail_msg("the check went on %.2fs after the stop (%.2fs unstopped)", elapsed - 0.05, whole);
}

struct wal_writer {
    char path[PATH_MAX];
    volatile int done;
    int commits;
};

/* Commits 16 KiB rows until told to stop, as an application would. */
static void *write_until_done(void *context)
{
    struct wal_writer *writer = context;
    sqlite3 *connection = NULL;
    if (sqlite3_open(writer->path, &connection) != SQLITE_OK)
        return NULL;
    sqlite3_busy_timeout(connection, 5000);
    while (!writer->done &&
           sqlite3_exec(connection, "INSERT INTO t (token, body) VALUES ('w', randomblob(16384))",
                        NULL, NULL, NULL) == SQLITE_OK)
        writer->commits++;
    sqlite3_close(connection);
    return NULL;
}

/* A check on the slow disk (over a second) while a writer commits: the WAL passes 1 MiB and the
 * check gives up, saying so; the writer's commits then go on without the check's read mark. */
static void check_gives_up_once_the_wal_grows_past_its_limit(void **state)
{
    (void)state;
    sqlite3 *connection = NULL;
    struct error err = {0};
    assert_int_equal(sqlite3_open(path, &connection), SQLITE_OK);
    assert_int_equal(sqlite3_exec(connection,
                                  "PRAGMA journal_mode=WAL; PRAGMA wal_checkpoint(TRUNCATE)", NULL,
                                  NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(connection);
    assert_int_equal(database_open_path(path, true, NULL, &connection, &err), 0);

    struct wal_writer writer = {0};
    snprintf(writer.path, sizeof writer.path, "%s", path);
    char wal[PATH_MAX + 8];
    snprintf(wal, sizeof wal, "%s-wal", path);
    struct database_check_limits limits = {.wal_path = wal, .wal_limit_bytes = 1048576};
    pthread_t thread;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    pthread_create(&thread, NULL, write_until_done, &writer);
    bool ok = true;
    char result[256] = "x";
    int rc = database_check(connection, false, &limits, &ok, result, sizeof result, &err);
    double elapsed = seconds_since(&start);
    writer.done = 1;
    pthread_join(thread, NULL);
    sqlite3_close(connection);

    assert_int_equal(rc, -EAGAIN);
    assert_false(ok);
    assert_string_equal(result, "");
    assert_non_null(strstr(err.message, "integrity_check given up after"));
    assert_non_null(strstr(err.message, wal));
    if (!strstr(err.message, "(over 1.0 MiB)"))
        fail_msg("%s", err.message);
    assert_true(writer.commits > 0); /* the growth was the writer's */
    if (elapsed > 5.0)
        fail_msg("the check went on %.2fs", elapsed);
}

/* Under the limit the check runs to its end, beside the same writer. */
static void check_under_its_wal_limit_runs_to_the_end(void **state)
{
    (void)state;
    sqlite3 *connection = NULL;
    struct error err = {0};
    char wal[PATH_MAX + 8];
    snprintf(wal, sizeof wal, "%s-wal", path);
    assert_int_equal(sqlite3_open(path, &connection), SQLITE_OK);
    assert_int_equal(sqlite3_exec(connection, "PRAGMA journal_mode=WAL", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(connection);
    assert_int_equal(database_open_path(path, true, NULL, &connection, &err), 0);
    struct database_check_limits limits = {.wal_path = wal, .wal_limit_bytes = INT64_MAX};
    bool ok = false;
    char result[256];
    assert_int_equal(database_check(connection, false, &limits, &ok, result, sizeof result, &err),
                     0);
    sqlite3_close(connection);
    assert_true(ok);
    assert_string_equal(result, "ok");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(check_on_a_slow_disk_ends_soon_after_the_stop,
                                        setup_checked, teardown_checked),
        cmocka_unit_test_setup_teardown(check_gives_up_once_the_wal_grows_past_its_limit,
                                        setup_checked, teardown_checked),
        cmocka_unit_test_setup_teardown(check_under_its_wal_limit_runs_to_the_end, setup_checked,
                                        teardown_checked),
        cmocka_unit_test_setup_teardown(busy_wait_of_ten_minutes_ends_on_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(retry_backoff_ends_on_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(busy_wait_still_ends_at_the_timeout, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
