/*
 * test_agenda.c: the agent's decisions about time (agent/agenda.c) on made-up
 * due times: which job starts, how long the loop sleeps, and which job the
 * STATUS= line names as next.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "agent/agenda.h"

#define NOW  ((time_t)1800000000)
#define NONE ((time_t)-1)

static void unscheduled(struct agenda_database *database)
{
    for (int kind = 0; kind < JOB_KIND_COUNT; kind++)
        database->next_due[kind] = NONE;
    database->busy = false;
}

static void nothing_due_picks_nothing(void **unused)
{
    (void)unused;
    struct agenda_database database;
    unscheduled(&database);
    database.next_due[JOB_BACKUP] = NOW + 1;
    assert_int_equal(agenda_pick_job(&database, NOW), -1);
}

static void earliest_due_job_runs_first(void **unused)
{
    (void)unused;
    struct agenda_database database;
    unscheduled(&database);
    database.next_due[JOB_CHECKPOINT] = NOW - 10;
    database.next_due[JOB_HEALTH] = NOW - 60; /* waited longest */
    database.next_due[JOB_BACKUP] = NOW + 5;  /* not due yet */
    assert_int_equal(agenda_pick_job(&database, NOW), JOB_HEALTH);
}

static void tie_goes_to_the_cheaper_job_in_enum_order(void **unused)
{
    (void)unused;
    struct agenda_database database;
    unscheduled(&database);
    database.next_due[JOB_HEALTH] = NOW;
    database.next_due[JOB_BACKUP] = NOW;
    database.next_due[JOB_CHECKPOINT] = NOW;
    assert_int_equal(agenda_pick_job(&database, NOW), JOB_CHECKPOINT);
}

static void job_due_exactly_now_is_due(void **unused)
{
    (void)unused;
    struct agenda_database database;
    unscheduled(&database);
    database.next_due[JOB_UPLOAD] = NOW;
    assert_int_equal(agenda_pick_job(&database, NOW), JOB_UPLOAD);
}

static void sleeps_until_the_earliest_job_of_an_idle_database(void **unused)
{
    (void)unused;
    struct agenda_database databases[2];
    unscheduled(&databases[0]);
    unscheduled(&databases[1]);
    databases[0].next_due[JOB_BACKUP] = NOW + 90;
    databases[1].next_due[JOB_CHECKPOINT] = NOW + 30;
    assert_int_equal(agenda_sleep_ms(databases, 2, true, NOW), 30000);
}

static void busy_database_does_not_wake_the_loop(void **unused)
{
    (void)unused;
    struct agenda_database databases[2];
    unscheduled(&databases[0]);
    unscheduled(&databases[1]);
    databases[0].next_due[JOB_CHECKPOINT] = NOW - 5; /* waits for its running job */
    databases[0].busy = true;
    databases[1].next_due[JOB_BACKUP] = NOW + 7;
    assert_int_equal(agenda_sleep_ms(databases, 2, true, NOW), 7000);
}

static void overdue_job_means_no_sleep(void **unused)
{
    (void)unused;
    struct agenda_database database;
    unscheduled(&database);
    database.next_due[JOB_VACUUM] = NOW - 3600;
    assert_int_equal(agenda_sleep_ms(&database, 1, true, NOW), 0);
}

static void no_free_worker_or_nothing_scheduled_waits_for_an_event(void **unused)
{
    (void)unused;
    struct agenda_database database;
    unscheduled(&database);
    assert_int_equal(agenda_sleep_ms(&database, 1, true, NOW), -1);
    database.next_due[JOB_BACKUP] = NOW;
    assert_int_equal(agenda_sleep_ms(&database, 1, false, NOW), -1);
}

static void sleep_is_at_most_a_day(void **unused)
{
    (void)unused;
    struct agenda_database database;
    unscheduled(&database);
    database.next_due[JOB_ANALYZE] = NOW + 40 * 86400;
    assert_int_equal(agenda_sleep_ms(&database, 1, true, NOW), 86400 * 1000);
}

static void next_names_the_job_the_agent_will_start_next(void **unused)
{
    (void)unused;
    struct agenda_database databases[2];
    unscheduled(&databases[0]);
    unscheduled(&databases[1]);
    databases[0].next_due[JOB_CHECKPOINT] = NOW + 900;
    databases[1].next_due[JOB_UPLOAD] = NOW + 30; /* a lock retry or an upload after a backup */
    databases[1].busy = true;                     /* still counts: it runs once the job ends */
    size_t database = 99;
    enum job_kind kind = JOB_KIND_COUNT;
    time_t due = 0;
    assert_true(agenda_next(databases, 2, &database, &kind, &due));
    assert_int_equal(database, 1);
    assert_int_equal(kind, JOB_UPLOAD);
    assert_int_equal(due, NOW + 30);
}

static void next_is_none_when_nothing_is_scheduled(void **unused)
{
    (void)unused;
    struct agenda_database database;
    size_t index;
    enum job_kind kind;
    time_t due;
    unscheduled(&database);
    assert_false(agenda_next(&database, 1, &index, &kind, &due));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nothing_due_picks_nothing),
        cmocka_unit_test(earliest_due_job_runs_first),
        cmocka_unit_test(tie_goes_to_the_cheaper_job_in_enum_order),
        cmocka_unit_test(job_due_exactly_now_is_due),
        cmocka_unit_test(sleeps_until_the_earliest_job_of_an_idle_database),
        cmocka_unit_test(busy_database_does_not_wake_the_loop),
        cmocka_unit_test(overdue_job_means_no_sleep),
        cmocka_unit_test(no_free_worker_or_nothing_scheduled_waits_for_an_event),
        cmocka_unit_test(sleep_is_at_most_a_day),
        cmocka_unit_test(next_names_the_job_the_agent_will_start_next),
        cmocka_unit_test(next_is_none_when_nothing_is_scheduled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
