/*
 * test_plan.c: what follows a job (jobs/plan.c), as sqlprodd(8) documents
 * it: local retention and the upload after a good backup only, retention
 * after an upload that sent something, remote retention only with a target.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "jobs/plan.h"

static struct target_config target = {.name = "offsite"};

static struct job_result good_backup(void)
{
    struct job_result result = {.outcome = JOB_OUTCOME_OK, .changed_backups = true};
    return result;
}

static void upload_is_made_due_after_a_good_backup_with_a_target(void **unused)
{
    (void)unused;
    struct database_config db = {.name = "app"};
    struct job_result result = good_backup();
    db.upload.target = &target;
    assert_true(plan_makes_due(JOB_BACKUP, &result, &db, JOB_UPLOAD));
    /* Nothing else is made due, and nothing after other jobs. */
    for (int kind = 0; kind < JOB_KIND_COUNT; kind++) {
        if (kind != JOB_UPLOAD)
            assert_false(plan_makes_due(JOB_BACKUP, &result, &db, (enum job_kind)kind));
        for (int after = 0; after < JOB_KIND_COUNT; after++)
            if (after != JOB_BACKUP)
                assert_false(
                    plan_makes_due((enum job_kind)after, &result, &db, (enum job_kind)kind));
    }
}

static void no_upload_after_a_failed_or_skipped_backup_or_without_a_target(void **unused)
{
    (void)unused;
    struct database_config db = {.name = "app"};
    struct job_result failed = {.outcome = JOB_OUTCOME_FAILED};
    struct job_result skipped = good_backup();
    struct job_result result = good_backup();
    skipped.skipped = true;
    db.upload.target = &target;
    assert_false(plan_makes_due(JOB_BACKUP, &failed, &db, JOB_UPLOAD));
    assert_false(plan_makes_due(JOB_BACKUP, &skipped, &db, JOB_UPLOAD));
    db.upload.target = NULL;
    assert_false(plan_makes_due(JOB_BACKUP, &result, &db, JOB_UPLOAD));
}

/* The rows of the table for one job, as "name:how" in table order. */
static void steps_after(enum job_kind after, bool needs_target, char *out, size_t out_size)
{
    size_t count;
    const struct plan_follow_up *plan = plan_follow_ups(&count);
    out[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        if (plan[i].after != after || plan[i].how == PLAN_DUE_NOW ||
            plan[i].needs_target != needs_target)
            continue;
        size_t used = strlen(out);
        snprintf(out + used, out_size - used, "%s%s", used ? "," : "",
                 plan[i].step == job_prune_local    ? "local"
                 : plan[i].step == job_prune_remote ? "remote"
                                                    : "other");
    }
}

static void retention_follows_backup_upload_and_prune_as_documented(void **unused)
{
    (void)unused;
    char steps[128];
    steps_after(JOB_BACKUP, false, steps, sizeof steps);
    assert_string_equal(steps, "local"); /* local retention only: no remote after a backup */
    steps_after(JOB_BACKUP, true, steps, sizeof steps);
    assert_string_equal(steps, "");
    steps_after(JOB_UPLOAD, false, steps, sizeof steps);
    assert_string_equal(steps, "local");
    steps_after(JOB_UPLOAD, true, steps, sizeof steps);
    assert_string_equal(steps, "remote");
    steps_after(JOB_PRUNE, true, steps, sizeof steps);
    assert_string_equal(steps, "remote");
    for (int kind = 0; kind < JOB_KIND_COUNT; kind++) {
        if (kind == JOB_BACKUP || kind == JOB_UPLOAD || kind == JOB_PRUNE)
            continue;
        steps_after((enum job_kind)kind, false, steps, sizeof steps);
        assert_string_equal(steps, "");
        steps_after((enum job_kind)kind, true, steps, sizeof steps);
        assert_string_equal(steps, "");
    }
}

static void nothing_runs_after_an_upload_that_sent_nothing(void **unused)
{
    (void)unused;
    /* Retention would append its message here; an upload that sent
     * nothing, and a backup that failed, must not start it. */
    struct database_config db = {.name = "app"};
    struct config config = {.state_dir = "/nonexistent"};
    struct job_context context = {.config = &config, .database = &db};
    struct job_result result = {.outcome = JOB_OUTCOME_OK};
    snprintf(result.message, sizeof result.message, "nothing to upload, 0 pending");
    db.upload.target = &target;
    assert_int_equal(plan_run_steps(JOB_UPLOAD, &context, &result, 0), 0);
    assert_string_equal(result.message, "nothing to upload, 0 pending");
    assert_int_equal(result.outcome, JOB_OUTCOME_OK);
    assert_int_equal(plan_run_steps(JOB_BACKUP, &context, &result, -5), -5);
    assert_string_equal(result.message, "nothing to upload, 0 pending");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(upload_is_made_due_after_a_good_backup_with_a_target),
        cmocka_unit_test(no_upload_after_a_failed_or_skipped_backup_or_without_a_target),
        cmocka_unit_test(retention_follows_backup_upload_and_prune_as_documented),
        cmocka_unit_test(nothing_runs_after_an_upload_that_sent_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
