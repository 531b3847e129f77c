/*
 * test_early_compression.c: compressing a copy while it is still being
 * written (copy_watch.c, archive_early.c). What must hold whatever happens:
 * the archive decompresses to the finished file, byte for byte.
 *
 * The watch is tested under SQLite's own VACUUM INTO; the rewrites that
 * SQLite makes only now and then (and a write the watch never saw, which
 * would be a bug of ours) are made on purpose by a writer that writes a file
 * the way SQLite does, through the same copy_watch_note_write the VFS calls.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "archive/archive.h"
#include "archive/archive_early.h"
#include "archive/copy_watch.h"
#include "shell_command.h"

#define MIB (1024 * 1024)

static char root[256];

static void path_in(const char *name, char out[PATH_MAX])
{
    snprintf(out, PATH_MAX, "%s/%s", root, name);
}

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/sqlprodd-early-XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return run("rm -rf %s", root);
}

static void exec_sql(sqlite3 *db, const char *sql)
{
    char *message = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &message);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, message ? message : sqlite3_errstr(rc));
}

/* A database of about 20 MiB with an index, so that VACUUM INTO writes
 * interior pages late, as it does on real databases. */
static void make_database(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    exec_sql(db, "PRAGMA journal_mode = WAL;"
                 "CREATE TABLE items (id INTEGER PRIMARY KEY, email TEXT, note TEXT);"
                 "CREATE INDEX items_email ON items (email);"
                 "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)"
                 " INSERT INTO items SELECT i, hex(randomblob(8)) || '@example.com',"
                 " 'order ' || i || ' ' || hex(randomblob(60)) FROM n;");
    sqlite3_close(db);
}

static void vacuum_into(const char *source, const char *target_sql_literal)
{
    sqlite3 *db = NULL;
    char sql[PATH_MAX + 64];
    assert_int_equal(sqlite3_open_v2(source, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL),
                     SQLITE_OK);
    snprintf(sql, sizeof sql, "VACUUM INTO '%s'", target_sql_literal);
    exec_sql(db, sql);
    sqlite3_close(db);
}

/* SQLite writes the copy through the watch: the copy is the same file a
 * plain VACUUM INTO makes, and the watch saw it written (blocks far enough
 * behind the end can be claimed without waiting). */
static void vacuum_into_through_the_watch_makes_the_same_copy(void **state)
{
    (void)state;
    char database[PATH_MAX], plain[PATH_MAX], watched[PATH_MAX], uri[PATH_MAX * 3];
    struct copy_watch *watch = NULL;
    struct error err = {0};
    /* A name that needs percent-encoding and would end an SQL string. */
    path_in("source.db", database);
    path_in("plain.db", plain);
    path_in("it's a copy?#%.db", watched);
    make_database(database);

    assert_int_equal(copy_watch_create(watched, 64 * MIB, &watch, &err), 0);
    assert_int_equal(copy_watch_uri(watch, uri, sizeof uri), 0);
    assert_null(strchr(uri, '\''));
    vacuum_into(database, plain);
    vacuum_into(database, uri);
    assert_int_equal(run("cmp -s '%s' \"%s\"", plain, watched), 0);

    struct stat st;
    assert_int_equal(stat(watched, &st), 0);
    assert_true(st.st_size > 12 * MIB);
    assert_true(copy_watch_claim(watch, 1)); /* written well past 1 + margin */
    assert_false(copy_watch_changed(watch, 1));
    assert_true(copy_watch_changed(watch, 2)); /* never claimed: not usable */
    copy_watch_end(watch);
    assert_false(copy_watch_claim(watch, 2)); /* the writer ended: nothing to wait for */
    copy_watch_destroy(watch);
}

/* The rules of claims, on a file nobody writes: no waiting forever, no
 * block handed out that could still be written, every later write seen. */
static void watch_claims_only_blocks_behind_the_writing(void **state)
{
    (void)state;
    char path[PATH_MAX];
    struct copy_watch *watch = NULL;
    struct error err = {0};
    path_in("claims.db", path);
    assert_int_equal(copy_watch_create(path, 32 * MIB, &watch, &err), 0);

    copy_watch_note_write(watch, 0, 12 * MIB);
    assert_true(copy_watch_claim(watch, 3)); /* ends at 4 MiB: 8 MiB behind */
    assert_false(copy_watch_changed(watch, 3));
    copy_watch_note_write(watch, 3 * MIB + 4096, 4096);
    assert_true(copy_watch_changed(watch, 3));

    /* A write that spans two blocks changes both. */
    assert_true(copy_watch_claim(watch, 1));
    assert_true(copy_watch_claim(watch, 2));
    copy_watch_note_write(watch, 2 * MIB - 2048, 4096);
    assert_true(copy_watch_changed(watch, 1));
    assert_true(copy_watch_changed(watch, 2));

    assert_false(copy_watch_claim(watch, 40)); /* beyond what the watch tracks */
    copy_watch_end(watch);
    assert_false(copy_watch_claim(watch, 0)); /* the writer ended: the rest waits for the file */
    copy_watch_destroy(watch);
}

/* Writes `blocks` MiB of varied, compressible bytes the way SQLite writes
 * its copy: 4 KiB pages in order, each noted after it is written. */
static void fill_block(unsigned char *block, uint64_t number, unsigned salt)
{
    for (size_t i = 0; i < MIB; i += 64)
        snprintf((char *)block + i, 64, "block %06llu row %07zu salt %u note %s",
                 (unsigned long long)number, i / 64, salt, (i / 64) % 3 ? "paid" : "shipped");
}

static void write_block(int fd, struct copy_watch *watch, uint64_t number, unsigned salt,
                        bool noted)
{
    static unsigned char block[MIB];
    fill_block(block, number, salt);
    for (size_t page = 0; page < MIB; page += 4096) {
        int64_t offset = (int64_t)(number * MIB + page);
        assert_int_equal(pwrite(fd, block + page, 4096, offset), 4096);
        if (noted)
            copy_watch_note_write(watch, offset, 4096);
    }
}

static bool wait_until_claimed(struct copy_watch *watch, uint64_t block)
{
    for (int i = 0; i < 3000; i++) {
        if (copy_watch_claimed(watch, block))
            return true;
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return false;
}

/* Blocks compressed early and then written again, noted or not, are
 * compressed again from the finished file: gunzip gives it back exactly. */
static void rewritten_blocks_never_reach_the_archive_stale(void **state)
{
    (void)state;
    char copy[PATH_MAX], archive[PATH_MAX];
    struct copy_watch *watch = NULL;
    struct archive_early *early = NULL;
    struct archive_result made = {0};
    struct archive_early_stats stats;
    struct error err = {0};
    enum { BLOCKS = 24 };
    path_in("written.db", copy);
    path_in("written.db.gz", archive);

    int fd = open(copy, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(copy_watch_create(copy, BLOCKS * MIB, &watch, &err), 0);
    assert_int_equal(archive_early_start(copy, root, watch, ARCHIVE_GZIP, 5, NULL, &early, &err),
                     0);
    for (uint64_t block = 0; block < BLOCKS; block++)
        write_block(fd, watch, block, 1, true);
    /* Blocks 1 to 15 end 8 MiB behind the end of the file; block 0 never
     * goes early. */
    assert_true(wait_until_claimed(watch, BLOCKS - 9));
    assert_false(copy_watch_claimed(watch, 0));
    assert_false(copy_watch_claimed(watch, BLOCKS - 8));
    write_block(fd, watch, 2, 2, true);  /* as SQLite does with an interior page */
    write_block(fd, watch, 4, 2, false); /* a write the watch missed: a bug of ours */
    write_block(fd, watch, 0, 2, true);  /* page 1, at the commit */
    assert_int_equal(close(fd), 0);
    copy_watch_end(watch);
    archive_early_finish(early);

    struct archive_options options = {.early = early};
    assert_int_equal(
        archive_compress_format(copy, archive, ARCHIVE_GZIP, 5, NULL, &options, &made, &err), 0);
    archive_early_get_stats(early, &stats);
    assert_int_equal(stats.compressed, BLOCKS - 9);
    assert_int_equal(stats.rewritten, 1);  /* block 2 */
    assert_int_equal(stats.mismatched, 1); /* block 4, caught by its CRC */
    assert_int_equal(stats.taken, BLOCKS - 9 - 2);
    assert_int_equal(run("gzip -t %s && gzip -dc %s | cmp -s - %s", archive, archive, copy), 0);
    archive_early_free(early);
    copy_watch_destroy(watch);
}

/* Early members are taken only for the archive they were made for: another
 * level (or format) compresses everything itself, and is still right. */
static void early_members_of_another_level_are_not_taken(void **state)
{
    (void)state;
    char copy[PATH_MAX], archive[PATH_MAX];
    struct copy_watch *watch = NULL;
    struct archive_early *early = NULL;
    struct archive_early_stats stats;
    struct error err = {0};
    path_in("level.db", copy);
    path_in("level.db.zst", archive);

    int fd = open(copy, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(copy_watch_create(copy, 12 * MIB, &watch, &err), 0);
    assert_int_equal(archive_early_start(copy, root, watch, ARCHIVE_GZIP, 5, NULL, &early, &err),
                     0);
    for (uint64_t block = 0; block < 12; block++)
        write_block(fd, watch, block, 3, true);
    assert_true(wait_until_claimed(watch, 3));
    close(fd);
    copy_watch_end(watch);
    archive_early_finish(early);

    struct archive_options options = {.early = early};
    assert_int_equal(
        archive_compress_format(copy, archive, ARCHIVE_ZSTD, 3, NULL, &options, NULL, &err), 0);
    archive_early_get_stats(early, &stats);
    assert_true(stats.compressed >= 3);
    assert_int_equal(stats.taken, 0);
    assert_int_equal(run("zstd -q -t %s && zstd -q -dc %s | cmp -s - %s", archive, archive, copy),
                     0);
    archive_early_free(early);
    copy_watch_destroy(watch);
}

/* The watch ends before anything was claimed (a copy that failed at once):
 * nothing hangs, nothing is kept. */
static void a_copy_that_ends_at_once_leaves_nothing_early(void **state)
{
    (void)state;
    char copy[PATH_MAX];
    struct copy_watch *watch = NULL;
    struct archive_early *early = NULL;
    struct archive_early_stats stats;
    struct error err = {0};
    path_in("never.db", copy);
    assert_int_equal(copy_watch_create(copy, 64 * MIB, &watch, &err), 0);
    assert_int_equal(archive_early_start(copy, root, watch, ARCHIVE_GZIP, 5, NULL, &early, &err),
                     0);
    copy_watch_note_write(watch, 0, 4096);
    copy_watch_end(watch);
    archive_early_finish(early);
    archive_early_get_stats(early, &stats);
    assert_int_equal(stats.compressed, 0);
    archive_early_free(early);
    copy_watch_destroy(watch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(vacuum_into_through_the_watch_makes_the_same_copy),
        cmocka_unit_test(watch_claims_only_blocks_behind_the_writing),
        cmocka_unit_test(rewritten_blocks_never_reach_the_archive_stale),
        cmocka_unit_test(early_members_of_another_level_are_not_taken),
        cmocka_unit_test(a_copy_that_ends_at_once_leaves_nothing_early),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
