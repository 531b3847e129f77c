/*
 * test_file_watch.c: file_watch on real files and a real inotify. A write
 * to a watched database's -wal, a file renamed over it and a symbolic
 * link's target each report the database's tag; a file beside it that is
 * not one of its names reports nothing; a wake from another thread ends a
 * wait long before its deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/file_watch.h"

static char root[PATH_MAX];

struct seen {
    int count[4];
};

static void on_changed(void *context, size_t tag)
{
    struct seen *seen = context;
    assert_true(tag < 4);
    seen->count[tag]++;
}

static void path_in_root(char out[PATH_MAX], const char *name)
{
    snprintf(out, PATH_MAX, "%s/%s", root, name);
}

static void write_file(const char *name, const char *text)
{
    char path[PATH_MAX];
    path_in_root(path, name);
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static int64_t monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/sqlprodd-file-watch-XXXXXX");
    assert_non_null(mkdtemp(root));
    char sub[PATH_MAX];
    path_in_root(sub, "real");
    assert_int_equal(mkdir(sub, 0700), 0);
    write_file("a.db", "a");
    write_file("b.db", "b");
    write_file("real/c.db", "c");
    char link[PATH_MAX], target[PATH_MAX];
    path_in_root(link, "c.db");
    path_in_root(target, "real/c.db");
    assert_int_equal(symlink(target, link), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char command[PATH_MAX + 16];
    snprintf(command, sizeof command, "rm -rf '%s'", root);
    return system(command) == 0 ? 0 : -1;
}

static struct file_watch *watching_three(void)
{
    struct file_watch *watch;
    char path[PATH_MAX];
    assert_int_equal(file_watch_open(&watch), 0);
    path_in_root(path, "a.db");
    assert_int_equal(file_watch_add(watch, path, 0), 0);
    path_in_root(path, "b.db");
    assert_int_equal(file_watch_add(watch, path, 1), 0);
    path_in_root(path, "c.db"); /* a symbolic link into real/ */
    assert_int_equal(file_watch_add(watch, path, 2), 0);
    return watch;
}

static void events_name_the_database_they_touch(void **state)
{
    (void)state;
    struct file_watch *watch = watching_three();
    struct seen seen = {0};

    /* Nothing happened: the wait times out and reports nothing. */
    int64_t started = monotonic_ms();
    assert_int_equal(file_watch_wait(watch, 100, true, on_changed, &seen), 0);
    assert_true(monotonic_ms() - started >= 90);
    assert_int_equal(seen.count[0] + seen.count[1] + seen.count[2], 0);

    /* A commit writes the -wal: a's tag, and only a's. */
    write_file("a.db-wal", "frame");
    assert_int_equal(file_watch_wait(watch, 1000, true, on_changed, &seen), 0);
    assert_int_equal(seen.count[0], 1);
    assert_int_equal(seen.count[1], 0);

    /* A file beside them that is none of their names wakes the wait but
     * reports no tag. */
    memset(&seen, 0, sizeof seen);
    write_file("a.db.log", "noise");
    write_file("b.db-shm-not", "noise");
    assert_int_equal(file_watch_wait(watch, 1000, true, on_changed, &seen), 0);
    assert_int_equal(seen.count[0] + seen.count[1] + seen.count[2], 0);

    /* Another file renamed over b: b's tag. */
    char from[PATH_MAX], to[PATH_MAX];
    write_file("new.db", "new");
    assert_int_equal(file_watch_wait(watch, 0, true, on_changed, &seen), 0);
    path_in_root(from, "new.db");
    path_in_root(to, "b.db");
    assert_int_equal(rename(from, to), 0);
    assert_int_equal(file_watch_wait(watch, 1000, true, on_changed, &seen), 0);
    assert_int_equal(seen.count[1], 1);

    /* SQLite writes the -wal beside the file the link names. */
    memset(&seen, 0, sizeof seen);
    write_file("real/c.db-wal", "frame");
    assert_int_equal(file_watch_wait(watch, 1000, true, on_changed, &seen), 0);
    assert_int_equal(seen.count[2], 1);
    assert_int_equal(seen.count[0] + seen.count[1], 0);
    file_watch_close(watch);
}

static void events_that_did_not_wake_are_still_reported(void **state)
{
    (void)state;
    struct file_watch *watch = watching_three();
    struct seen seen = {0};
    write_file("a.db-journal", "x");
    /* Not listening for events: the deadline ends the wait, and the event
     * that came meanwhile is reported all the same. */
    int64_t started = monotonic_ms();
    assert_int_equal(file_watch_wait(watch, 100, false, on_changed, &seen), 0);
    assert_true(monotonic_ms() - started >= 90);
    assert_int_equal(seen.count[0], 1);
    file_watch_close(watch);
}

static void *wake_later(void *argument)
{
    usleep(100 * 1000);
    file_watch_wake(argument);
    return NULL;
}

static void a_wake_ends_a_wait_without_deadline(void **state)
{
    (void)state;
    struct file_watch *watch = watching_three();
    struct seen seen = {0};
    pthread_t thread;
    int64_t started = monotonic_ms();
    assert_int_equal(pthread_create(&thread, NULL, wake_later, watch), 0);
    assert_int_equal(file_watch_wait(watch, -1, true, on_changed, &seen), 0);
    assert_true(monotonic_ms() - started < 5000);
    pthread_join(thread, NULL);
    file_watch_close(watch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(events_name_the_database_they_touch, setup, teardown),
        cmocka_unit_test_setup_teardown(events_that_did_not_wake_are_still_reported, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_wake_ends_a_wait_without_deadline, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
