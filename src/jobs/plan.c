/*
 * plan.c: what follows a job (see plan.h). The chaining as it is documented
 * in sqlprodd(8): local retention after a good backup, the upload after it,
 * local then remote retention after an upload that sent something, remote
 * retention after local retention when `sqlprodd prune` runs.
 */
#include "jobs/plan.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"

static const struct plan_follow_up plan[] = {
    /* after       name      step              job         target when             how */
    /* Retention only after a good backup: a failed one never costs an old one. */
    {JOB_BACKUP, "prune", job_prune_local, JOB_PRUNE, false, PLAN_IF_CHANGED, PLAN_STEP_LOGGED},
    /* A new archive should leave the machine now, not at the next retry tick. */
    {JOB_BACKUP, "upload", NULL, JOB_UPLOAD, true, PLAN_IF_CHANGED, PLAN_DUE_NOW},
    /* Uploaded archives are no longer pinned locally; the target's keep rules
     * may now count them. The archives are safe off-site: a retention
     * problem is a caveat of the upload, not its failure. */
    {JOB_UPLOAD, "prune", job_prune_local, JOB_PRUNE, false, PLAN_IF_CHANGED, PLAN_STEP_CAVEAT},
    {JOB_UPLOAD, "prune", job_prune_remote, JOB_PRUNE, true, PLAN_IF_CHANGED, PLAN_STEP_CAVEAT},
    /* `sqlprodd prune`: locally, then on the target. */
    {JOB_PRUNE, "prune", job_prune_remote, JOB_PRUNE, true, PLAN_ALWAYS, PLAN_STEP_MERGED},
};

const struct plan_follow_up *plan_follow_ups(size_t *count)
{
    *count = sizeof plan / sizeof plan[0];
    return plan;
}

static bool plan_applies(const struct plan_follow_up *row, enum job_kind after,
                         const struct job_result *result, const struct database_config *db)
{
    if (row->after != after || (row->needs_target && !db->upload.target))
        return false;
    return row->when == PLAN_ALWAYS || result->changed_backups;
}

static void plan_append_message(struct job_result *result, const char *message)
{
    size_t used = strlen(result->message);
    snprintf(result->message + used, sizeof result->message - used, "; %s", message);
}

int plan_run_steps(enum job_kind kind, struct job_context *context, struct job_result *result,
                   int rc)
{
    const struct database_config *db = context->database;
    if (rc == -ECANCELED)
        return rc;
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
        const struct plan_follow_up *row = &plan[i];
        if (row->how == PLAN_DUE_NOW || !plan_applies(row, kind, result, db))
            continue;
        assert(row->step);
        struct job_result step = {0};
        int step_rc = row->step(context, &step);
        switch (row->how) {
        case PLAN_STEP_LOGGED:
            if (step_rc != 0 || step.outcome == JOB_OUTCOME_FAILED)
                log_event(LOG_WARNING, db->name, row->name, "%s", step.message);
            else if (step.message[0])
                log_event(LOG_INFO, db->name, row->name, "%s", step.message);
            break;
        case PLAN_STEP_CAVEAT:
            plan_append_message(result, step.message);
            if (step.outcome != JOB_OUTCOME_OK && result->outcome < JOB_OUTCOME_WARNING)
                result->outcome = JOB_OUTCOME_WARNING;
            break;
        case PLAN_STEP_MERGED:
        default:
            plan_append_message(result, step.message);
            if (step.outcome > result->outcome)
                result->outcome = step.outcome;
            if (rc == 0)
                rc = step_rc;
            break;
        }
    }
    return rc;
}

bool plan_makes_due(enum job_kind after, const struct job_result *result,
                    const struct database_config *db, enum job_kind job)
{
    if (result->skipped)
        return false;
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++)
        if (plan[i].how == PLAN_DUE_NOW && plan[i].job == job &&
            plan_applies(&plan[i], after, result, db))
            return true;
    return false;
}
