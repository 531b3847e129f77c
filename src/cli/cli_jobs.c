/*
 * cli_jobs.c: `sqlprodd JOB [DB]`, one job now, on one or all databases,
 * through the same job_execute() the agent uses, waiting for the database
 * lock if the agent holds it.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "jobs/job.h"
#include "core/log.h"
#include "report/metrics.h"
#include "report/progress.h"
#include "db/state.h"

volatile sig_atomic_t cli_stop;

const struct database_config *cli_select_database(const struct config *config, const char *name)
{
    const struct database_config *db = config_find_database(config, name);
    if (!db) {
        fprintf(stderr, "sqlprodd: no database named '%s' in %s (configured:", name, config->file);
        for (size_t i = 0; i < config->database_count; i++)
            fprintf(stderr, " %s", config->databases[i].name);
        fprintf(stderr, "%s)\n", config->database_count ? "" : " none");
    }
    return db;
}

/* The terminal bar of report/progress.c, handed to the jobs as callbacks. */
static void cli_progress_begin(void *self, const char *label)
{
    progress_begin(self, true, label);
}

static void cli_progress_end(void *self)
{
    progress_end(self);
}

int cli_run_job(const struct config *config, const char *job, int argc, char **argv)
{
    enum job_kind kind = (enum job_kind)job_kind_from_name(job);
    const struct database_config *only = NULL;
    if (argc > 2) {
        fprintf(stderr, "usage: sqlprodd %s [DB]\n", job);
        return CLI_USAGE;
    }
    if (argc == 2 && !(only = cli_select_database(config, argv[1])))
        return CLI_USAGE;

    struct error err = {0};
    struct state *state = NULL;
    if (state_open(config->state_dir, &state, &err) != 0) {
        fprintf(stderr, "sqlprodd: %s\n", err.message);
        return CLI_FAILED;
    }
    /* One-off output should be seen even at log_level = warning. */
    if (log_get_level() < LOG_INFO)
        log_set_level(LOG_INFO);

    char who[64];
    snprintf(who, sizeof who, "sqlprodd %s", job);
    int failures = 0, ran = 0;
    struct progress bar;
    const struct job_progress progress = {cli_progress_begin, progress_update, cli_progress_end,
                                          &bar};
    for (size_t i = 0; i < config->database_count && !cli_stop; i++) {
        const struct database_config *db = &config->databases[i];
        if (only && db != only)
            continue;
        struct job_context context = {
            .config = config,
            .database = db,
            .state = state,
            .stop = &cli_stop,
            .progress = isatty(STDERR_FILENO) ? &progress : NULL,
            .wait_for_lock = true,
            .who = who,
            .one_off = true,
        };
        struct job_result result;
        int rc = job_execute(kind, &context, &result);
        ran++;
        if (rc != 0 || result.outcome == JOB_OUTCOME_FAILED)
            failures++;
    }
    /* The textfile promises the state after every job, not only the
     * agent's: a one-off backup must not look missing to an alert. */
    if (ran && config->metrics_textfile && metrics_write_textfile(config, state, &err) != 0)
        fprintf(stderr, "sqlprodd: warning: %s\n", err.message);
    state_close(state);
    if (cli_stop) {
        fprintf(stderr, "sqlprodd: %s: interrupted\n", job);
        return CLI_FAILED;
    }
    if (ran == 0)
        fprintf(stderr, "sqlprodd: %s: no databases configured in %s\n", job, config->file);
    return failures ? CLI_FAILED : CLI_OK;
}
