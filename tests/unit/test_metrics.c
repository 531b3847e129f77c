/*
 * test_metrics.c: the Prometheus text metrics.c renders from a given typed
 * record, compared byte for byte: family order, HELP and TYPE lines, label
 * escaping, and a fact no job has written yet left out (never shown as 0).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "report/metrics.h"

static const char expected[] =
    "# HELP sqlprodd_job_last_success_timestamp_seconds Unix time of the end of the last "
    "successful run of the job.\n"
    "# TYPE sqlprodd_job_last_success_timestamp_seconds gauge\n"
    "sqlprodd_job_last_success_timestamp_seconds{database=\"app\",job=\"backup\"} 1800000100\n"
    "# HELP sqlprodd_job_last_duration_seconds Duration of the last run of the job.\n"
    "# TYPE sqlprodd_job_last_duration_seconds gauge\n"
    "sqlprodd_job_last_duration_seconds{database=\"app\",job=\"backup\"} 2.500\n"
    "# HELP sqlprodd_job_runs_total Runs of the job since the state was created.\n"
    "# TYPE sqlprodd_job_runs_total counter\n"
    "sqlprodd_job_runs_total{database=\"app\",job=\"backup\"} 3\n"
    "# HELP sqlprodd_job_failures_total Failed runs of the job since the state was created.\n"
    "# TYPE sqlprodd_job_failures_total counter\n"
    "sqlprodd_job_failures_total{database=\"app\",job=\"backup\"} 1\n"
    "# HELP sqlprodd_database_size_bytes Size of the database file.\n"
    "# TYPE sqlprodd_database_size_bytes gauge\n"
    "sqlprodd_database_size_bytes{database=\"app\"} 1048576\n"
    "sqlprodd_database_size_bytes{database=\"we\\\"ird\\\\name\\n\"} 0\n"
    "# HELP sqlprodd_wal_size_bytes Size of the database's -wal file.\n"
    "# TYPE sqlprodd_wal_size_bytes gauge\n"
    "sqlprodd_wal_size_bytes{database=\"app\"} 4096\n"
    "sqlprodd_wal_size_bytes{database=\"we\\\"ird\\\\name\\n\"} 0\n"
    "# HELP sqlprodd_freelist_ratio Free pages over all pages, at the last health check.\n"
    "# TYPE sqlprodd_freelist_ratio gauge\n"
    "sqlprodd_freelist_ratio{database=\"app\"} 0.125000\n"
    "# HELP sqlprodd_health Health verdict: 0 healthy, 1 degraded, 2 unhealthy.\n"
    "# TYPE sqlprodd_health gauge\n"
    "sqlprodd_health{database=\"app\"} 1\n"
    "# HELP sqlprodd_backup_last_size_bytes Size of the newest backup archive.\n"
    "# TYPE sqlprodd_backup_last_size_bytes gauge\n"
    "sqlprodd_backup_last_size_bytes{database=\"app\"} 6116\n"
    "# HELP sqlprodd_upload_pending Archives waiting to be uploaded to the target.\n"
    "# TYPE sqlprodd_upload_pending gauge\n"
    "sqlprodd_upload_pending{database=\"app\"} 2\n"
    "# HELP sqlprodd_database_page_size_bytes Page size of the database.\n"
    "# TYPE sqlprodd_database_page_size_bytes gauge\n"
    "sqlprodd_database_page_size_bytes{database=\"app\"} 4096\n"
    "# HELP sqlprodd_health_check_timestamp_seconds Unix time of the last health verdict; "
    "alert when it stops moving.\n"
    "# TYPE sqlprodd_health_check_timestamp_seconds gauge\n"
    "sqlprodd_health_check_timestamp_seconds{database=\"app\"} 1800000200\n"
    "# HELP sqlprodd_integrity_check_last_success_timestamp_seconds Unix time of the last full "
    "integrity_check that found no problem.\n"
    "# TYPE sqlprodd_integrity_check_last_success_timestamp_seconds gauge\n"
    "# HELP sqlprodd_database_info Persistent settings of the database at the last health check "
    "(value is always 1).\n"
    "# TYPE sqlprodd_database_info gauge\n"
    "sqlprodd_database_info{database=\"app\",journal_mode=\"wal\",auto_vacuum=\"incremental\"} 1\n"
    "# HELP sqlprodd_build_info Version of sqlprodd (value is always 1).\n"
    "# TYPE sqlprodd_build_info gauge\n"
    "sqlprodd_build_info{version=\"" SQLPRODD_VERSION "\"} 1\n"
    "# HELP sqlprodd_metrics_timestamp_seconds Unix time these metrics were rendered.\n"
    "# TYPE sqlprodd_metrics_timestamp_seconds gauge\n"
    "sqlprodd_metrics_timestamp_seconds 1800000300\n";

static void renders_the_record_exactly(void **unused)
{
    (void)unused;
    struct database_config databases[2] = {{.name = "app"}, {.name = "we\"ird\\name\n"}};
    struct config config = {.databases = databases, .database_count = 2};
    struct metrics_database *facts = calloc(2, sizeof *facts);
    assert_non_null(facts);
    struct metrics_input input = {.config = &config, .databases = facts, .rendered_at = 1800000300};

    facts[0].jobs[JOB_BACKUP] = (struct job_record){
        .last_success = 1800000100, .last_duration = 2.5, .runs_total = 3, .failures_total = 1};
    facts[0].file_bytes = 1048576;
    facts[0].wal_file_bytes = 4096;
    facts[0].pending_known = true;
    facts[0].uploads_pending = 2;
    struct db_facts *app = &facts[0].facts;
    app->known = FACT_FREELIST_RATIO | FACT_HEALTH | FACT_BACKUP_LAST_BYTES | FACT_PAGE_SIZE |
                 FACT_HEALTH_CHECKED_AT | FACT_JOURNAL_MODE | FACT_AUTO_VACUUM;
    app->freelist_ratio = 0.125;
    app->health = DEGRADED;
    app->backup_last_bytes = 6116;
    app->page_size = 4096;
    app->health_checked_at = 1800000200;
    app->integrity_checked_at = 1799999999; /* not in known: never shown */
    strcpy(app->journal_mode, "wal");
    strcpy(app->auto_vacuum, "incremental");
    /* The second database: nothing ran, no state: only the file sizes. */

    char *text = NULL;
    size_t size = 0;
    assert_int_equal(metrics_render_input(&input, &text, &size, NULL), 0);
    assert_string_equal(text, expected);
    assert_int_equal(size, strlen(expected));
    free(text);
    free(facts);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(renders_the_record_exactly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
