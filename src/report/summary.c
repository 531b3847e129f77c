/*
 * summary.c: the STATUS= line for systemd (see summary.h). Reads the state
 * database; computes nothing that the status command does not also show,
 * and takes "next" from the agent rather than working it out again.
 */
#include "report/summary.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/units.h"
#include "jobs/job.h"

/* What the line says, gathered from the state database. */
struct summary {
    int healthy, degraded, unhealthy, unknown;
    int worst_level; /* only degraded and unhealthy name a worst */
    char worst[200];
    time_t newest_backup;
    const char *newest_backup_db;
    char newest_backup_size[32];
    time_t last_error_time;
    char last_error[160];
    int64_t pending;
};

static void summary_count_health(struct summary *summary, const struct database_config *db,
                                 const struct db_facts *facts)
{
    int level = facts->known & FACT_HEALTH ? (int)facts->health : -1;
    if (level == HEALTHY)
        summary->healthy++;
    else if (level == DEGRADED)
        summary->degraded++;
    else if (level == UNHEALTHY)
        summary->unhealthy++;
    else
        summary->unknown++;
    if (level > summary->worst_level) {
        /* The first reason of the worst database: what to look at first. */
        char reasons[1024];
        summary->worst_level = level;
        snprintf(reasons, sizeof reasons, "%s", facts->health_reasons);
        reasons[strcspn(reasons, ";")] = '\0';
        snprintf(summary->worst, sizeof summary->worst, "%s %s: %.120s", db->name,
                 health_level_name(facts->health), reasons);
    }
}

static void summary_read_jobs(struct summary *summary, struct state *state,
                              const struct database_config *db, const struct db_facts *facts)
{
    for (int kind = 0; kind < JOB_KIND_COUNT; kind++) {
        struct job_record record;
        if (state_get_job(state, db->name, job_name(kind), &record, NULL) != 0)
            continue;
        if (kind == JOB_BACKUP && record.last_success > summary->newest_backup) {
            summary->newest_backup = record.last_success;
            summary->newest_backup_db = db->name;
            summary->newest_backup_size[0] = '\0';
            if (facts->known & FACT_BACKUP_LAST_BYTES)
                units_format_size(facts->backup_last_bytes, summary->newest_backup_size,
                                  sizeof summary->newest_backup_size);
        }
        if (record.runs_total > 0 && record.last_outcome == JOB_OUTCOME_FAILED &&
            record.last_finished > summary->last_error_time) {
            summary->last_error_time = record.last_finished;
            snprintf(summary->last_error, sizeof summary->last_error, "%s %s: %.100s", db->name,
                     job_name(kind), record.last_message);
        }
    }
}

static void summary_gather(const struct config *config, struct state *state,
                           struct summary *summary)
{
    memset(summary, 0, sizeof *summary);
    summary->worst_level = HEALTHY;
    for (size_t i = 0; i < config->database_count; i++) {
        const struct database_config *db = &config->databases[i];
        struct db_facts facts;
        if (state_get_facts(state, db->name, &facts, NULL) != 0)
            memset(&facts, 0, sizeof facts);
        summary_count_health(summary, db, &facts);
        summary_read_jobs(summary, state, db, &facts);
    }
    state_pending_upload_count(state, NULL, &summary->pending, NULL);
}

struct line {
    char *out;
    size_t size, used;
};

static void line_append(struct line *line, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static void line_append(struct line *line, const char *format, ...)
{
    if (line->used >= line->size)
        return;
    va_list args;
    va_start(args, format);
    int n = vsnprintf(line->out + line->used, line->size - line->used, format, args);
    va_end(args);
    if (n > 0)
        line->used += (size_t)n;
}

void summary_status_line(const struct config *config, struct state *state,
                         const struct summary_next *next, char *out, size_t out_size)
{
    struct summary summary;
    struct line line = {out, out_size, 0};
    time_t now = time(NULL);
    char at[48];

    if (out_size == 0)
        return;
    out[0] = '\0';
    summary_gather(config, state, &summary);
    line_append(&line, "%zu database%s: %d healthy", config->database_count,
                config->database_count == 1 ? "" : "s", summary.healthy);
    if (summary.degraded)
        line_append(&line, ", %d degraded", summary.degraded);
    if (summary.unhealthy)
        line_append(&line, ", %d unhealthy", summary.unhealthy);
    if (summary.unknown)
        line_append(&line, ", %d not checked yet", summary.unknown);
    if (summary.worst[0])
        line_append(&line, " (%s)", summary.worst);
    /* Absolute times only: systemd shows this line until the next job ends,
     * maybe hours later, when "12s ago" or "in 3m" would be false. */
    if (summary.newest_backup_db) {
        units_format_clock(summary.newest_backup, now, at, sizeof at);
        line_append(&line, " | last backup %s %s%s%s%s", summary.newest_backup_db, at,
                    summary.newest_backup_size[0] ? " (" : "", summary.newest_backup_size,
                    summary.newest_backup_size[0] ? ")" : "");
    } else {
        line_append(&line, " | no backup yet");
    }
    if (next && next->database) {
        units_format_clock(next->due, now, at, sizeof at);
        line_append(&line, " | next: %s %s at %s", next->job, next->database, at);
    }
    line_append(&line, " | uploads pending: %lld", (long long)summary.pending);
    if (summary.last_error[0])
        line_append(&line, " | last error: %s", summary.last_error);
}
