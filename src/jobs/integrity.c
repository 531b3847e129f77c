/*
 * integrity.c: when the full integrity_check is due and what it left as
 * the database's verdict (see integrity.h). health.c and backup.c run the
 * check; verdict.c words what was stored.
 */
#include "jobs/integrity.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "policy/schedule.h"

bool integrity_checked_by_backups(const struct database_config *db)
{
    return db->backup.schedule.kind != SCHEDULE_NONE;
}

/* The last full check of either side; a state.db from before the verdict
 * was recorded knows only the last one that passed. */
static time_t integrity_last_run(const struct db_facts *facts)
{
    if (facts->known & FACT_INTEGRITY_RUN_AT)
        return facts->integrity_run_at;
    return (facts->known & FACT_INTEGRITY_CHECKED_AT) ? facts->integrity_checked_at : 0;
}

bool integrity_check_due(const struct job_context *context, enum integrity_side side, time_t now)
{
    const struct database_config *db = context->database;
    int64_t every = db->health.integrity_every_seconds;
    struct db_facts facts;
    if (!context->state || every <= 0 ||
        state_get_facts(context->state, db->name, &facts, NULL) != 0)
        return false;
    int64_t since = (int64_t)now - (int64_t)integrity_last_run(&facts);
    if (since < 0) /* the clock went back: the next run is not a year away */
        since = every;
    if (side == INTEGRITY_ON_BACKUP_COPY || !integrity_checked_by_backups(db))
        return since >= every;
    /* Backups are scheduled but have not checked: only once they have been
     * tried, so that a fresh start leaves the first check to them. */
    struct job_record backup;
    if (state_get_job(context->state, db->name, job_name(JOB_BACKUP), &backup, NULL) != 0 ||
        backup.runs_total == 0)
        return false;
    return since >= 2 * every;
}

void integrity_record(struct job_context *context, enum integrity_side side, time_t at, bool ok,
                      const char *found, char problem[INTEGRITY_PROBLEM_SIZE])
{
    struct db_facts facts = {.integrity_run_at = at, .integrity_checked_at = at};
    unsigned fields = FACT_INTEGRITY_RUN_AT | FACT_INTEGRITY_PROBLEM;
    _Static_assert(sizeof facts.integrity_problem == INTEGRITY_PROBLEM_SIZE,
                   "one size for the stored problem");
    if (ok) {
        fields |= FACT_INTEGRITY_CHECKED_AT;
    } else {
        /* The full date: the verdict is read for days. */
        char when[48];
        struct tm tm;
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&at, &tm));
        snprintf(facts.integrity_problem, sizeof facts.integrity_problem,
                 "integrity_check of %s at %s found corruption (%.600s)",
                 side == INTEGRITY_ON_BACKUP_COPY ? "a backup copy taken" : "the database", when,
                 found);
    }
    if (problem)
        memcpy(problem, facts.integrity_problem, INTEGRITY_PROBLEM_SIZE);
    if (context->state)
        state_set_facts(context->state, context->database->name, &facts, fields, NULL);
}
