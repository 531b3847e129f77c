/*
 * test_verdict.c: health verdicts (jobs/verdict.c) on made-up measurements:
 * each threshold gives the level the man page promises, each reason names
 * its fix, and the reasons come in order, "; "-joined and one a line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "jobs/verdict.h"

#define NOW ((time_t)1800000000)
#define MiB (1024 * 1024)

static struct config config = {.file = "/etc/sqlprodd.conf"};
static struct database_config db;
static struct health_measure measure;
static struct health_verdict verdict;

/* A database in good shape, with the defaults of sqlprodd.conf(5). */
static int set_up(void **unused)
{
    (void)unused;
    memset(&db, 0, sizeof db);
    db.name = "app";
    db.path = "/srv/app.db";
    db.busy_timeout_ms = 5000;
    db.health.wal_warn_bytes = 100 * MiB;
    db.health.wal_crit_bytes = 500 * MiB;
    db.health.freelist_warn = 0.2;
    db.health.freelist_crit = 0.5;
    db.health.locked_crit_seconds = 900;
    db.enforce.auto_vacuum = ENFORCE_AUTO_VACUUM_UNSET;
    db.backup.schedule = (struct schedule){.kind = SCHEDULE_EVERY, .every_seconds = 3600};
    memset(&measure, 0, sizeof measure);
    snprintf(measure.found.journal_mode, sizeof measure.found.journal_mode, "wal");
    snprintf(measure.found.check, sizeof measure.found.check, "ok");
    measure.found.check_ok = true;
    measure.found.page_count = 1000;
    measure.found.page_size = 4096;
    measure.found.auto_vacuum = 2;
    measure.jobs_known = true;
    return 0;
}

static void judge(void)
{
    health_judge(&config, &db, &measure, NOW, &verdict);
}

static void good_database_is_healthy_without_reasons(void **unused)
{
    (void)unused;
    judge();
    assert_int_equal(verdict.level, HEALTHY);
    assert_string_equal(verdict.reasons, "");
}

static void wal_past_warn_is_degraded_and_past_crit_unhealthy(void **unused)
{
    (void)unused;
    measure.wal_bytes = 100 * MiB - 1;
    judge();
    assert_int_equal(verdict.level, HEALTHY);
    measure.wal_bytes = 100 * MiB;
    judge();
    assert_int_equal(verdict.level, DEGRADED);
    assert_non_null(strstr(verdict.reasons, "WAL is 100.0 MiB (warning at 100.0 MiB)"));
    assert_non_null(strstr(verdict.reasons, "`sqlprodd checkpoint app`"));
    measure.wal_bytes = 500 * MiB;
    judge();
    assert_int_equal(verdict.level, UNHEALTHY);
    assert_non_null(strstr(verdict.reasons, "(critical at 500.0 MiB)"));
}

static void freelist_fix_depends_on_auto_vacuum(void **unused)
{
    (void)unused;
    measure.found.freelist = 200; /* 20% */
    judge();
    assert_int_equal(verdict.level, DEGRADED);
    assert_non_null(strstr(verdict.reasons, "freelist is 20% of the file"));
    assert_non_null(strstr(verdict.reasons, "`sqlprodd vacuum app`"));
    measure.found.auto_vacuum = 0;
    measure.found.freelist = 500; /* 50% */
    judge();
    assert_int_equal(verdict.level, UNHEALTHY);
    assert_non_null(strstr(verdict.reasons, "auto_vacuum is none, so sqlprodd vacuum cannot"));
}

static void corruption_is_unhealthy_and_names_restore(void **unused)
{
    (void)unused;
    measure.found.check_ok = false;
    snprintf(measure.found.check, sizeof measure.found.check, "*** in database main ***");
    judge();
    assert_int_equal(verdict.level, UNHEALTHY);
    assert_non_null(strstr(verdict.reasons, "quick_check found corruption"));
    assert_non_null(strstr(verdict.reasons, "`sqlprodd restore app --to /srv/app.db --force`"));
}

/* A quick_check given up because it would hold the WAL (database_check
 * limits) found nothing: no corruption is claimed, and the standing verdict
 * of the last full check still counts. */
static void check_given_up_is_no_corruption(void **unused)
{
    (void)unused;
    measure.found.check_ok = false;
    measure.found.check_given_up = true;
    snprintf(measure.found.check, sizeof measure.found.check,
             "quick_check given up after 6.1 s: /srv/app.db-wal grew to 50.1 MiB meanwhile");
    judge();
    assert_int_equal(verdict.level, HEALTHY);
    assert_null(strstr(verdict.reasons, "corruption"));

    snprintf(measure.integrity_problem, sizeof measure.integrity_problem,
             "integrity_check of a backup copy at 2026-12-05 found corruption (row 7 missing)");
    judge();
    assert_int_equal(verdict.level, UNHEALTHY);
    assert_non_null(strstr(verdict.reasons, "row 7 missing"));
}

/* The standing verdict of the last full check, stored by a backup copy's
 * check or an earlier health run, stays until a full check passes. */
static void integrity_problem_found_earlier_is_unhealthy_until_cleared(void **unused)
{
    (void)unused;
    snprintf(measure.integrity_problem, sizeof measure.integrity_problem,
             "integrity_check of a backup copy taken at 2027-01-15 08:00:00 UTC found "
             "corruption (row 5 missing from index items_name)");
    judge();
    assert_int_equal(verdict.level, UNHEALTHY);
    assert_non_null(strstr(verdict.reasons, "a backup copy taken at 2027-01-15 08:00:00 UTC"));
    assert_non_null(strstr(verdict.reasons, "`sqlite3 /srv/app.db 'PRAGMA integrity_check'`"));
    assert_non_null(strstr(verdict.reasons, "`sqlprodd health app`"));
    /* This run's own full check of the database failed too: said once. */
    measure.found.full_check = true;
    measure.found.check_ok = false;
    snprintf(measure.found.check, sizeof measure.found.check, "row 5 missing from index items_name");
    judge();
    assert_int_equal(verdict.level, UNHEALTHY);
    assert_null(strstr(verdict.reasons, "backup copy"));
    assert_non_null(strstr(verdict.reasons, "integrity_check found corruption"));
    /* No problem stored: nothing said. */
    measure.found.full_check = false;
    measure.found.check_ok = true;
    measure.integrity_problem[0] = '\0';
    judge();
    assert_int_equal(verdict.level, HEALTHY);
}

static void rollback_journal_is_degraded(void **unused)
{
    (void)unused;
    snprintf(measure.found.journal_mode, sizeof measure.found.journal_mode, "delete");
    judge();
    assert_int_equal(verdict.level, DEGRADED);
    assert_non_null(strstr(verdict.reasons, "journal_mode is delete"));
}

static void locked_is_degraded_until_locked_crit(void **unused)
{
    (void)unused;
    measure.read_rc = -EBUSY;
    measure.locked_since = NOW - 899;
    judge();
    assert_int_equal(verdict.level, DEGRADED);
    assert_non_null(strstr(verdict.reasons, "locked since 2027-01-15 07:45:01 UTC (for 14m59s)"));
    measure.locked_since = NOW - 900;
    judge();
    assert_int_equal(verdict.level, UNHEALTHY);
    assert_non_null(strstr(verdict.reasons, "longer than health.locked_crit 15m"));
    assert_non_null(strstr(verdict.reasons, "`fuser -v /srv/app.db`"));
}

static void missing_file_is_unhealthy_with_the_path_to_check(void **unused)
{
    (void)unused;
    measure.read_rc = -ENOENT;
    snprintf(measure.read_error, sizeof measure.read_error, "/srv/app.db does not exist");
    judge();
    assert_int_equal(verdict.level, UNHEALTHY);
    assert_string_equal(verdict.reasons,
                        "/srv/app.db does not exist: check the path in the configuration");
}

static void backup_overdue_twice_is_degraded_four_times_unhealthy(void **unused)
{
    (void)unused;
    struct job_record *backup = &measure.jobs[JOB_BACKUP];
    backup->runs_total = 5;
    backup->last_success = NOW - 2 * 3600;
    backup->last_finished = backup->last_success;
    judge();
    assert_int_equal(verdict.level, HEALTHY);
    backup->last_success = NOW - 2 * 3600 - 1;
    judge();
    assert_int_equal(verdict.level, DEGRADED);
    assert_non_null(strstr(verdict.reasons, "last good backup at"));
    assert_non_null(strstr(verdict.reasons, "over 2x its 1h interval"));
    backup->last_success = NOW - 4 * 3600 - 1;
    judge();
    assert_int_equal(verdict.level, UNHEALTHY);
    /* Without a state database the jobs are not judged at all. */
    measure.jobs_known = false;
    judge();
    assert_int_equal(verdict.level, HEALTHY);
}

static void failed_job_not_yet_overdue_is_degraded(void **unused)
{
    (void)unused;
    struct job_record *backup = &measure.jobs[JOB_BACKUP];
    backup->runs_total = 5;
    backup->last_success = NOW - 1800;
    backup->last_finished = NOW - 60;
    backup->last_outcome = JOB_OUTCOME_FAILED;
    snprintf(backup->last_message, sizeof backup->last_message, "no space left");
    judge();
    assert_int_equal(verdict.level, DEGRADED);
    assert_non_null(strstr(verdict.reasons, "the last backup failed at"));
    assert_non_null(strstr(verdict.reasons, "no space left: fix the cause, then run "
                                            "`sqlprodd backup app`"));
}

/* The replica's spool is said from half of spool_max (degraded), and full
 * at it (unhealthy, shipping stopped); without replication it is not looked
 * at, whatever the number. */
static void drill_not_passed_for_two_intervals_is_degraded_never_unhealthy(void **unused)
{
    (void)unused;
    db.drill.schedule = (struct schedule){.kind = SCHEDULE_EVERY, .every_seconds = 86400};
    struct job_record *drill = &measure.jobs[JOB_DRILL];
    /* Its runs end in warnings ("nothing to drill yet"): the job record's
     * last_success moves, but no drill has passed since this one. */
    drill->runs_total = 10;
    drill->last_outcome = JOB_OUTCOME_WARNING;
    drill->last_success = NOW - 60;
    drill->last_finished = NOW - 60;
    measure.drill_succeeded_at = NOW - 2 * 86400 + 60;
    judge();
    assert_int_equal(verdict.level, HEALTHY);
    measure.drill_succeeded_at = NOW - 2 * 86400 - 60;
    judge();
    assert_int_equal(verdict.level, DEGRADED);
    assert_non_null(strstr(verdict.reasons, "last good drill at"));
    assert_non_null(strstr(verdict.reasons, "`sqlprodd drill app`"));
    measure.drill_succeeded_at = NOW - 10 * 86400;
    judge();
    assert_int_equal(verdict.level, DEGRADED);
}

static void failed_drill_is_degraded_with_its_reason(void **unused)
{
    (void)unused;
    db.drill.schedule = (struct schedule){.kind = SCHEDULE_EVERY, .every_seconds = 86400};
    struct job_record *drill = &measure.jobs[JOB_DRILL];
    drill->runs_total = 3;
    drill->last_outcome = JOB_OUTCOME_FAILED;
    drill->last_finished = NOW - 60;
    snprintf(drill->last_message, sizeof drill->last_message,
             "backup 20261203T080000Z (db/app/app-20261203T080000Z.db.gz on target offsite): "
             "archive is truncated or corrupt");
    measure.drill_succeeded_at = NOW - 3600;
    judge();
    assert_int_equal(verdict.level, DEGRADED);
    assert_non_null(strstr(verdict.reasons, "the last drill failed"));
    assert_non_null(strstr(verdict.reasons, "app-20261203T080000Z.db.gz on target offsite"));
    assert_non_null(strstr(verdict.reasons, "`sqlprodd drill app`"));
}

static void replica_spool_degraded_from_half_and_unhealthy_when_full(void **unused)
{
    (void)unused;
    static struct target_config offsite = {.name = "offsite"};
    measure.replica_spool_bytes = 900 * MiB;
    judge();
    assert_int_equal(verdict.level, HEALTHY);
    db.replicate.target = &offsite;
    db.replicate.target_name = "offsite";
    db.replicate.spool_max_bytes = 1024 * MiB;
    measure.replica_spool_bytes = 511 * MiB;
    judge();
    assert_int_equal(verdict.level, HEALTHY);
    measure.replica_spool_bytes = 512 * MiB;
    judge();
    assert_int_equal(verdict.level, DEGRADED);
    assert_non_null(strstr(verdict.reasons, "replica spool holds 512"));
    assert_non_null(strstr(verdict.reasons, "target offsite"));
    measure.replica_spool_bytes = 1024 * MiB;
    judge();
    assert_int_equal(verdict.level, UNHEALTHY);
    assert_non_null(strstr(verdict.reasons, "replica spool is full"));
    assert_non_null(strstr(verdict.reasons, "shipping has stopped"));
}

static void reasons_keep_their_order_joined_and_one_a_line(void **unused)
{
    (void)unused;
    snprintf(measure.enforce_error, sizeof measure.enforce_error, "database is locked");
    snprintf(measure.found.journal_mode, sizeof measure.found.journal_mode, "delete");
    judge();
    assert_int_equal(verdict.level, DEGRADED);
    const char *second = strstr(verdict.reasons, "; journal_mode is delete");
    assert_non_null(second);
    assert_true(strncmp(verdict.reasons, "could not apply enforce: database is locked", 43) == 0);
    assert_non_null(strstr(verdict.lines, "next health check\njournal_mode is delete"));
    assert_null(strchr(verdict.reasons, '\n'));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(good_database_is_healthy_without_reasons, set_up),
        cmocka_unit_test_setup(wal_past_warn_is_degraded_and_past_crit_unhealthy, set_up),
        cmocka_unit_test_setup(freelist_fix_depends_on_auto_vacuum, set_up),
        cmocka_unit_test_setup(corruption_is_unhealthy_and_names_restore, set_up),
        cmocka_unit_test_setup(check_given_up_is_no_corruption, set_up),
        cmocka_unit_test_setup(integrity_problem_found_earlier_is_unhealthy_until_cleared, set_up),
        cmocka_unit_test_setup(rollback_journal_is_degraded, set_up),
        cmocka_unit_test_setup(locked_is_degraded_until_locked_crit, set_up),
        cmocka_unit_test_setup(missing_file_is_unhealthy_with_the_path_to_check, set_up),
        cmocka_unit_test_setup(backup_overdue_twice_is_degraded_four_times_unhealthy, set_up),
        cmocka_unit_test_setup(failed_job_not_yet_overdue_is_degraded, set_up),
        cmocka_unit_test_setup(drill_not_passed_for_two_intervals_is_degraded_never_unhealthy,
                               set_up),
        cmocka_unit_test_setup(failed_drill_is_degraded_with_its_reason, set_up),
        cmocka_unit_test_setup(replica_spool_degraded_from_half_and_unhealthy_when_full, set_up),
        cmocka_unit_test_setup(reasons_keep_their_order_joined_and_one_a_line, set_up),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
