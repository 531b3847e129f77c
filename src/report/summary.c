/*
 * summary.c: the STATUS= line for systemd (see summary.h). Reads the state
 * database; computes nothing that the status command does not also show.
 */
#include "report/summary.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "jobs/job.h"
#include "core/units.h"

void summary_status_line(const struct config *config, struct state *state, char *out,
                         size_t out_size)
{
    int healthy = 0, degraded = 0, unhealthy = 0, unknown = 0;
    time_t newest_backup = 0, next_due = (time_t)-1, last_error_time = 0, now = time(NULL);
    const char *newest_backup_db = NULL, *next_db = NULL, *next_job = NULL;
    char newest_backup_size[32] = "", last_error[160] = "", worst[200] = "";
    int worst_level = HEALTHY; /* only degraded and unhealthy name a worst */
    int64_t pending = 0;

    for (size_t i = 0; i < config->database_count; i++) {
        const struct database_config *db = &config->databases[i];
        char value[64];
        state_get_value(state, db->name, "health", value, sizeof value, NULL);
        int level = health_level_parse(value);
        if (level == HEALTHY)
            healthy++;
        else if (level == DEGRADED)
            degraded++;
        else if (level == UNHEALTHY)
            unhealthy++;
        else
            unknown++;
        if (level > worst_level) {
            /* The first reason of the worst database: what to look at first. */
            char reasons[1024];
            worst_level = level;
            state_get_value(state, db->name, "health_reasons", reasons, sizeof reasons, NULL);
            reasons[strcspn(reasons, ";")] = '\0';
            snprintf(worst, sizeof worst, "%s %s: %.120s", db->name, value, reasons);
        }
        for (int kind = 0; kind < JOB_KIND_COUNT; kind++) {
            struct job_record record;
            if (state_get_job(state, db->name, job_name(kind), &record, NULL) != 0)
                continue;
            if (kind == JOB_BACKUP && record.last_success > newest_backup) {
                newest_backup = record.last_success;
                newest_backup_db = db->name;
                state_get_value(state, db->name, "backup_last_bytes", value, sizeof value, NULL);
                long long bytes = 0;
                if (sscanf(value, "%lld", &bytes) == 1)
                    units_format_size(bytes, newest_backup_size, sizeof newest_backup_size);
            }
            if (record.runs_total > 0 && record.last_outcome == JOB_OUTCOME_FAILED &&
                record.last_finished > last_error_time) {
                last_error_time = record.last_finished;
                snprintf(last_error, sizeof last_error, "%s %s: %.100s", db->name, job_name(kind),
                         record.last_message);
            }
            time_t due = sched_next_due(job_schedule(db, kind), record.last_started, now);
            if (due != (time_t)-1 && (next_due == (time_t)-1 || due < next_due)) {
                next_due = due;
                next_db = db->name;
                next_job = job_name(kind);
            }
        }
    }
    state_pending_upload_count(state, NULL, &pending, NULL);

    size_t used =
        (size_t)snprintf(out, out_size, "%zu database%s: %d healthy", config->database_count,
                         config->database_count == 1 ? "" : "s", healthy);
#define APPEND(...)                                                                                \
    do {                                                                                           \
        if (used < out_size)                                                                       \
            used += (size_t)snprintf(out + used, out_size - used, __VA_ARGS__);                    \
    } while (0)
    if (degraded)
        APPEND(", %d degraded", degraded);
    if (unhealthy)
        APPEND(", %d unhealthy", unhealthy);
    if (unknown)
        APPEND(", %d not checked yet", unknown);
    if (worst[0])
        APPEND(" (%s)", worst);
    /* Absolute times only: systemd shows this line until the next job ends,
     * maybe hours later, when "12s ago" or "in 3m" would be false. */
    if (newest_backup_db) {
        char at[48];
        units_format_clock(newest_backup, now, at, sizeof at);
        APPEND(" | last backup %s %s%s%s%s", newest_backup_db, at,
               newest_backup_size[0] ? " (" : "", newest_backup_size,
               newest_backup_size[0] ? ")" : "");
    } else {
        APPEND(" | no backup yet");
    }
    if (next_db) {
        char at[48];
        units_format_clock(next_due, now, at, sizeof at);
        APPEND(" | next: %s %s at %s", next_job, next_db, at);
    }
    APPEND(" | uploads pending: %lld", (long long)pending);
    if (last_error[0])
        APPEND(" | last error: %s", last_error);
#undef APPEND
}
