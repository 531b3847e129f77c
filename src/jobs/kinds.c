/*
 * kinds.c: the names and schedules of the job kinds and the result helper
 * every job body uses. Calls nothing in src/jobs/, so job bodies, the runner
 * and the reporters can all use it without a circle.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "jobs/job.h"

static const char *const job_names[JOB_KIND_COUNT] = {
    [JOB_CHECKPOINT] = "checkpoint", [JOB_ANALYZE] = "analyze", [JOB_VACUUM] = "vacuum",
    [JOB_BACKUP] = "backup",         [JOB_UPLOAD] = "upload",   [JOB_PRUNE] = "prune",
    [JOB_HEALTH] = "health",         [JOB_DRILL] = "drill",
};

const char *job_name(enum job_kind kind)
{
    return kind >= 0 && kind < JOB_KIND_COUNT ? job_names[kind] : "unknown";
}

int job_kind_from_name(const char *name)
{
    for (int kind = 0; kind < JOB_KIND_COUNT; kind++)
        if (strcmp(name, job_names[kind]) == 0)
            return kind;
    return -1;
}

const struct schedule *job_schedule(const struct database_config *db, enum job_kind kind)
{
    static const struct schedule never = {.kind = SCHEDULE_NONE};
    switch (kind) {
    case JOB_CHECKPOINT: return &db->checkpoint.schedule;
    case JOB_ANALYZE: return &db->analyze.schedule;
    case JOB_VACUUM: return &db->vacuum.schedule;
    case JOB_BACKUP: return &db->backup.schedule;
    case JOB_UPLOAD: return db->upload.target ? &db->upload.schedule : &never;
    case JOB_HEALTH: return &db->health.schedule;
    case JOB_DRILL: return &db->drill.schedule;
    default: return &never;
    }
}

void job_result_set(struct job_result *result, enum job_outcome outcome, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(result->message, sizeof result->message, format, args);
    va_end(args);
    result->outcome = outcome;
}
