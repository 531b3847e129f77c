/*
 * test_database_stop.c: a wait on a locked database ends soon after the
 * stop flag is set, however long busy_timeout_ms is (the busy handler),
 * and so does a retry back-off of database_exec(). A real lock, held by a
 * second connection to a real file; the flag is set from another thread,
 * as the signal handler would.
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(busy_wait_of_ten_minutes_ends_on_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(retry_backoff_ends_on_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(busy_wait_still_ends_at_the_timeout, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
