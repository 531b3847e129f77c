/*
 * summary.c: the STATUS= line for systemd (see summary.h). Reads the state
 * database; computes nothing that the status command does not also show,
 * and takes "next" from the agent rather than working it out again.
 */
#include "report/summary.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/units.h"
#include "jobs/job.h"

/* What the line says, gathered from the state database. Ties go to the
 * database listed first in the configuration, then to the first job. */
struct summary {
    int healthy, degraded, unhealthy, unknown;
    int worst_level; /* only degraded and unhealthy name a worst */
    size_t worst_index;
    char worst[200];
    time_t newest_backup;
    size_t newest_backup_index;
    const char *newest_backup_db;
    char newest_backup_size[32];
    time_t last_error_time;
    size_t last_error_index;
    int last_error_kind;
    char last_error[160];
    int64_t pending;
};

/* Per database of the configuration, from one query over all of them
 * (thousands: a query per database would take seconds). */
struct summary_gathering {
    const struct config *config;
    struct summary *summary;
    int *level;            /* per database: its health level, -1 unknown */
    int64_t *backup_bytes; /* per database: FACT_BACKUP_LAST_BYTES, -1 unknown */
};

/* False for a database no longer in the configuration. */
static bool summary_find(const struct summary_gathering *gathering, const char *name, size_t *index)
{
    const struct database_config *db = config_find_database(gathering->config, name);
    if (db)
        *index = (size_t)(db - gathering->config->databases);
    return db != NULL;
}

static void summary_take_facts(void *context, const char *database, const struct db_facts *facts)
{
    struct summary_gathering *gathering = context;
    struct summary *summary = gathering->summary;
    size_t index;
    if (!summary_find(gathering, database, &index))
        return; /* a database no longer in the configuration */
    int level = facts->known & FACT_HEALTH ? (int)facts->health : -1;
    gathering->level[index] = level;
    if (facts->known & FACT_BACKUP_LAST_BYTES)
        gathering->backup_bytes[index] = facts->backup_last_bytes;
    if (level > summary->worst_level ||
        (level == summary->worst_level && level > HEALTHY && index < summary->worst_index)) {
        /* The first reason of the worst database: what to look at first. */
        char reasons[1024];
        summary->worst_level = level;
        summary->worst_index = index;
        snprintf(reasons, sizeof reasons, "%s", facts->health_reasons);
        reasons[strcspn(reasons, ";")] = '\0';
        snprintf(summary->worst, sizeof summary->worst, "%s %s: %.120s", database,
                 health_level_name(facts->health), reasons);
    }
}

static void summary_take_job(void *context, const char *database, const char *job,
                             const struct job_record *record)
{
    struct summary_gathering *gathering = context;
    struct summary *summary = gathering->summary;
    size_t index;
    int kind = job_kind_from_name(job);
    if (kind < 0 || !summary_find(gathering, database, &index))
        return;
    const char *name = gathering->config->databases[index].name;
    if (kind == JOB_BACKUP && record->last_success > 0 &&
        (record->last_success > summary->newest_backup ||
         (record->last_success == summary->newest_backup && index < summary->newest_backup_index))) {
        summary->newest_backup = record->last_success;
        summary->newest_backup_index = index;
        summary->newest_backup_db = name;
    }
    if (record->runs_total > 0 && record->last_outcome == JOB_OUTCOME_FAILED &&
        (record->last_finished > summary->last_error_time ||
         (record->last_finished == summary->last_error_time &&
          (index < summary->last_error_index ||
           (index == summary->last_error_index && kind < summary->last_error_kind))))) {
        summary->last_error_time = record->last_finished;
        summary->last_error_index = index;
        summary->last_error_kind = kind;
        snprintf(summary->last_error, sizeof summary->last_error, "%s %s: %.100s", name, job,
                 record->last_message);
    }
}

static void summary_gather(const struct config *config, struct state *state,
                           struct summary *summary)
{
    size_t count = config->database_count;
    memset(summary, 0, sizeof *summary);
    summary->worst_level = HEALTHY;
    summary->worst_index = summary->newest_backup_index = summary->last_error_index = SIZE_MAX;
    struct summary_gathering gathering = {
        .config = config,
        .summary = summary,
        .level = calloc(count + 1, sizeof *gathering.level),
        .backup_bytes = calloc(count + 1, sizeof *gathering.backup_bytes),
    };
    if (gathering.level && gathering.backup_bytes) {
        for (size_t i = 0; i < count; i++) {
            gathering.level[i] = -1;
            gathering.backup_bytes[i] = -1;
        }
        state_each_facts(state, summary_take_facts, &gathering, NULL);
        state_each_job(state, summary_take_job, &gathering, NULL);
        for (size_t i = 0; i < count; i++) {
            int level = gathering.level[i];
            if (level == HEALTHY)
                summary->healthy++;
            else if (level == DEGRADED)
                summary->degraded++;
            else if (level == UNHEALTHY)
                summary->unhealthy++;
            else
                summary->unknown++;
        }
        if (summary->newest_backup_db && gathering.backup_bytes[summary->newest_backup_index] >= 0)
            units_format_size(gathering.backup_bytes[summary->newest_backup_index],
                              summary->newest_backup_size, sizeof summary->newest_backup_size);
    } else {
        summary->unknown = (int)count;
    }
    free(gathering.level);
    free(gathering.backup_bytes);
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
