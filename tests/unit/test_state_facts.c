/*
 * test_state_facts.c: struct db_facts through a real state.db in a temp
 * directory: what a job writes is what a reporter reads, only the fields a
 * job wrote are known, and rows an older or newer version left are read
 * or skipped, never misread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "db/state.h"

static char directory[64];
static struct state *state;

static int open_state(void **unused)
{
    (void)unused;
    snprintf(directory, sizeof directory, "/tmp/sqlprodd-facts-XXXXXX");
    assert_non_null(mkdtemp(directory));
    assert_int_equal(state_open(directory, &state, NULL), 0);
    return 0;
}

static int close_state(void **unused)
{
    (void)unused;
    char command[128];
    state_close(state);
    snprintf(command, sizeof command, "rm -rf %s", directory);
    assert_int_equal(system(command), 0);
    return 0;
}

static void nothing_written_is_nothing_known(void **unused)
{
    (void)unused;
    struct db_facts facts;
    memset(&facts, 0xff, sizeof facts);
    assert_int_equal(state_get_facts(state, "app", &facts, NULL), 0);
    assert_int_equal(facts.known, 0);
    assert_int_equal(facts.backup_last_bytes, 0);
}

static void fields_written_read_back_and_only_they_are_known(void **unused)
{
    (void)unused;
    struct db_facts written = {0}, read;
    written.health = UNHEALTHY;
    snprintf(written.health_reasons, sizeof written.health_reasons, "a; b");
    snprintf(written.health_reason_lines, sizeof written.health_reason_lines, "a\nb");
    written.freelist_ratio = 0.333333;
    written.upload_last_sent.at = 1800000000;
    written.upload_last_sent.archives = 3;
    written.upload_last_sent.bytes = 123456789012LL;
    written.wal_bytes = 77; /* not in the mask: not stored */
    unsigned fields = FACT_HEALTH | FACT_HEALTH_REASONS | FACT_HEALTH_REASON_LINES |
                      FACT_FREELIST_RATIO | FACT_UPLOAD_LAST_SENT;
    assert_int_equal(state_set_facts(state, "app", &written, fields, NULL), 0);
    assert_int_equal(state_get_facts(state, "app", &read, NULL), 0);
    assert_int_equal(read.known, fields);
    assert_int_equal(read.health, UNHEALTHY);
    assert_string_equal(read.health_reasons, "a; b");
    assert_string_equal(read.health_reason_lines, "a\nb");
    assert_true(read.freelist_ratio > 0.333332 && read.freelist_ratio < 0.333334);
    assert_int_equal(read.upload_last_sent.at, 1800000000);
    assert_int_equal(read.upload_last_sent.archives, 3);
    assert_int_equal(read.upload_last_sent.bytes, 123456789012LL);
    assert_int_equal(read.wal_bytes, 0);
    /* Another database shares nothing. */
    assert_int_equal(state_get_facts(state, "other", &read, NULL), 0);
    assert_int_equal(read.known, 0);
}

static void rows_of_other_versions_are_read_or_skipped_not_misread(void **unused)
{
    (void)unused;
    char path[128];
    sqlite3 *db;
    struct db_facts read;
    snprintf(path, sizeof path, "%s/state.db", directory);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db,
                     "INSERT INTO database_values VALUES"
                     " ('app', 'upload_last_sent', '1700000000')," /* its first format */
                     " ('app', 'health', 'splendid'),"             /* a word this one lacks */
                     " ('app', 'page_size', '4096 bytes'),"        /* not a number */
                     " ('app', 'replication_lag', '12')",          /* a newer version's */
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(state_get_facts(state, "app", &read, NULL), 0);
    assert_int_equal(read.known, FACT_UPLOAD_LAST_SENT);
    assert_int_equal(read.upload_last_sent.at, 1700000000);
    assert_int_equal(read.upload_last_sent.archives, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(nothing_written_is_nothing_known, open_state, close_state),
        cmocka_unit_test_setup_teardown(fields_written_read_back_and_only_they_are_known,
                                        open_state, close_state),
        cmocka_unit_test_setup_teardown(rows_of_other_versions_are_read_or_skipped_not_misread,
                                        open_state, close_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
