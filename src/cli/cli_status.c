/*
 * cli_status.c: `sqlprodd status [--json] [DB]`. Reads the state database
 * (read-only, so it works while the agent runs and when it does not) and
 * stats the files; never opens a managed database.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "fsutil.h"
#include "jobs/job.h"
#include "state.h"
#include "units.h"

static const char *outcome_word(const struct job_record *record)
{
    if (record->runs_total == 0)
        return "never";
    switch (record->last_outcome) {
    case JOB_OUTCOME_OK: return "ok";
    case JOB_OUTCOME_WARNING: return "warning";
    default: return "failed";
    }
}

static void format_time(time_t t, char *out, size_t out_size)
{
    struct tm tm;
    if (t <= 0) {
        snprintf(out, out_size, "never");
        return;
    }
    strftime(out, out_size, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
}

static void format_age(time_t t, time_t now, char *out, size_t out_size)
{
    char duration[32];
    if (t <= 0) {
        snprintf(out, out_size, "never");
        return;
    }
    units_format_duration(now > t ? now - t : 0, duration, sizeof duration);
    snprintf(out, out_size, "%s ago", duration);
}

struct database_status {
    const struct database_config *db;
    struct job_record jobs[JOB_KIND_COUNT];
    time_t next_due[JOB_KIND_COUNT];
    char health[32];
    char reasons[2048];
    char reason_lines[2048];
    char backup_bytes[32];
    char journal_mode[32];
    char auto_vacuum[32];
    char page_size[32];
    char freelist_ratio[32];
    char checked_at[32];
    char integrity_checked_at[32];
    int64_t pending;
};

static void status_collect(struct state *state, const struct database_config *db, time_t now,
                           struct database_status *status)
{
    memset(status, 0, sizeof *status);
    status->db = db;
    for (int kind = 0; kind < JOB_KIND_COUNT; kind++) {
        if (state)
            state_get_job(state, db->name, job_name(kind), &status->jobs[kind], NULL);
        status->next_due[kind] =
            sched_next_due(job_schedule(db, kind), status->jobs[kind].last_started, now);
    }
    if (state) {
        state_get_value(state, db->name, "health", status->health, sizeof status->health, NULL);
        state_get_value(state, db->name, "health_reasons", status->reasons, sizeof status->reasons,
                        NULL);
        state_get_value(state, db->name, "health_reason_lines", status->reason_lines,
                        sizeof status->reason_lines, NULL);
        state_get_value(state, db->name, "backup_last_bytes", status->backup_bytes,
                        sizeof status->backup_bytes, NULL);
        state_get_value(state, db->name, "journal_mode", status->journal_mode,
                        sizeof status->journal_mode, NULL);
        state_get_value(state, db->name, "auto_vacuum", status->auto_vacuum,
                        sizeof status->auto_vacuum, NULL);
        state_get_value(state, db->name, "page_size", status->page_size, sizeof status->page_size,
                        NULL);
        state_get_value(state, db->name, "freelist_ratio", status->freelist_ratio,
                        sizeof status->freelist_ratio, NULL);
        state_get_value(state, db->name, "health_checked_at", status->checked_at,
                        sizeof status->checked_at, NULL);
        state_get_value(state, db->name, "integrity_checked_at", status->integrity_checked_at,
                        sizeof status->integrity_checked_at, NULL);
        state_pending_upload_count(state, db->name, &status->pending, NULL);
    }
    if (!status->health[0])
        snprintf(status->health, sizeof status->health, "unknown");
}

static int status_next_job(const struct database_status *status)
{
    int next = -1;
    for (int kind = 0; kind < JOB_KIND_COUNT; kind++)
        if (status->next_due[kind] != (time_t)-1 &&
            (next < 0 || status->next_due[kind] < status->next_due[next]))
            next = kind;
    return next;
}

static int status_last_error(const struct database_status *status)
{
    int last = -1;
    for (int kind = 0; kind < JOB_KIND_COUNT; kind++)
        if (status->jobs[kind].runs_total > 0 &&
            status->jobs[kind].last_outcome == JOB_OUTCOME_FAILED &&
            (last < 0 || status->jobs[kind].last_finished > status->jobs[last].last_finished))
            last = kind;
    return last;
}

/* A stored decimal number or JSON null when there is none yet. */
static json_t *json_number_or_null(const char *text, bool real)
{
    char *end = NULL;
    if (!text[0])
        return json_null();
    if (real) {
        double value = strtod(text, &end);
        return *end ? json_null() : json_real(value);
    }
    long long value = strtoll(text, &end, 10);
    return *end ? json_null() : json_integer(value);
}

static json_t *json_time_or_null(time_t t)
{
    char when[32];
    if (t <= 0)
        return json_null();
    format_time(t, when, sizeof when);
    return json_string(when);
}

/* The table's columns as data: what a script checks is what a person reads. */
static void status_summary_to_json(const struct database_status *status, time_t now,
                                   json_t *object)
{
    json_t *reasons = json_array();
    char lines[sizeof status->reason_lines];
    snprintf(lines, sizeof lines, "%s", status->reason_lines);
    for (char *save = NULL, *line = strtok_r(lines, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save))
        json_array_append_new(reasons, json_string(line));
    json_object_set_new(object, "reasons_list", reasons);
    json_object_set_new(object, "health_checked_at",
                        json_time_or_null((time_t)strtoll(status->checked_at, NULL, 10)));
    json_object_set_new(object, "integrity_checked_at",
                        json_time_or_null((time_t)strtoll(status->integrity_checked_at, NULL, 10)));
    json_object_set_new(object, "journal_mode",
                        status->journal_mode[0] ? json_string(status->journal_mode) : json_null());
    json_object_set_new(object, "auto_vacuum",
                        status->auto_vacuum[0] ? json_string(status->auto_vacuum) : json_null());
    json_object_set_new(object, "page_size_bytes", json_number_or_null(status->page_size, false));
    json_object_set_new(object, "freelist_ratio", json_number_or_null(status->freelist_ratio, true));

    const struct job_record *backup = &status->jobs[JOB_BACKUP];
    json_t *last_backup = json_null();
    if (backup->last_success > 0) {
        last_backup = json_object();
        json_object_set_new(last_backup, "at", json_time_or_null(backup->last_success));
        json_object_set_new(last_backup, "age_seconds",
                            json_integer(now > backup->last_success ? now - backup->last_success : 0));
        json_object_set_new(last_backup, "bytes", json_number_or_null(status->backup_bytes, false));
    }
    json_object_set_new(object, "last_backup", last_backup);

    const struct job_record *upload = &status->jobs[JOB_UPLOAD];
    json_t *last_upload = json_null();
    if (status->db->upload.target && upload->last_success > 0) {
        last_upload = json_object();
        json_object_set_new(last_upload, "at", json_time_or_null(upload->last_success));
        json_object_set_new(last_upload, "age_seconds",
                            json_integer(now > upload->last_success ? now - upload->last_success : 0));
    }
    json_object_set_new(object, "last_upload", last_upload);
    json_object_set_new(object, "upload_target", status->db->upload.target
                                                     ? json_string(status->db->upload.target_name)
                                                     : json_null());

    int next = status_next_job(status);
    json_t *next_job = json_null();
    if (next >= 0) {
        time_t due = status->next_due[next];
        next_job = json_object();
        json_object_set_new(next_job, "job", json_string(job_name(next)));
        json_object_set_new(next_job, "in_seconds", json_integer(due > now ? due - now : 0));
    }
    json_object_set_new(object, "next_job", next_job);

    int error = status_last_error(status);
    json_t *last_error = json_null();
    if (error >= 0) {
        last_error = json_object();
        json_object_set_new(last_error, "job", json_string(job_name(error)));
        json_object_set_new(last_error, "message", json_string(status->jobs[error].last_message));
        json_object_set_new(last_error, "at", json_time_or_null(status->jobs[error].last_finished));
    }
    json_object_set_new(object, "last_error", last_error);
}

static json_t *status_to_json(const struct database_status *status, time_t now)
{
    const struct database_config *db = status->db;
    char when[32];
    long long backup_bytes = 0;
    json_t *jobs = json_object();
    for (int kind = 0; kind < JOB_KIND_COUNT; kind++) {
        const struct job_record *record = &status->jobs[kind];
        json_t *job = json_object();
        json_object_set_new(job, "schedule_enabled",
                            json_boolean(job_schedule(db, kind)->kind != SCHEDULE_NONE));
        json_object_set_new(job, "last_result", json_string(outcome_word(record)));
        format_time(record->last_started, when, sizeof when);
        json_object_set_new(job, "last_started", record->last_started ? json_string(when) : json_null());
        format_time(record->last_success, when, sizeof when);
        json_object_set_new(job, "last_success", record->last_success ? json_string(when) : json_null());
        json_object_set_new(job, "last_duration_seconds", json_real(record->last_duration));
        json_object_set_new(job, "last_message", json_string(record->last_message));
        json_object_set_new(job, "runs_total", json_integer(record->runs_total));
        json_object_set_new(job, "failures_total", json_integer(record->failures_total));
        time_t due = status->next_due[kind];
        format_time(due, when, sizeof when);
        json_object_set_new(job, "next_due", due == (time_t)-1 ? json_null() : json_string(when));
        json_object_set_new(job, "next_due_in_seconds",
                            due == (time_t)-1 ? json_null() : json_integer(due > now ? due - now : 0));
        json_object_set_new(jobs, job_name(kind), job);
    }
    sscanf(status->backup_bytes, "%lld", &backup_bytes);
    json_t *object = json_object();
    json_object_set_new(object, "name", json_string(db->name));
    json_object_set_new(object, "path", json_string(db->path));
    json_object_set_new(object, "health", json_string(status->health));
    json_object_set_new(object, "reasons", json_string(status->reasons));
    json_object_set_new(object, "size_bytes", json_integer(fs_file_size(db->path, "")));
    json_object_set_new(object, "wal_bytes", json_integer(fs_file_size(db->path, "-wal")));
    json_object_set_new(object, "backup_last_bytes", json_integer(backup_bytes));
    json_object_set_new(object, "uploads_pending", json_integer(status->pending));
    json_object_set_new(object, "jobs", jobs);
    status_summary_to_json(status, now, object);
    return object;
}

static void print_table(const struct database_status *statuses, size_t count, time_t now)
{
    printf("%-16s %-10s %9s %9s  %-22s %-12s %-24s %s\n", "DATABASE", "HEALTH", "SIZE", "WAL",
           "LAST BACKUP", "LAST UPLOAD", "NEXT JOB", "LAST ERROR");
    for (size_t i = 0; i < count; i++) {
        const struct database_status *status = &statuses[i];
        char size[32], wal[32], backup[64], upload[32], next[64] = "-", error[200] = "-", bytes[32] = "";
        units_format_size(fs_file_size(status->db->path, ""), size, sizeof size);
        units_format_size(fs_file_size(status->db->path, "-wal"), wal, sizeof wal);
        format_age(status->jobs[JOB_BACKUP].last_success, now, backup, sizeof backup);
        long long backup_bytes;
        if (status->jobs[JOB_BACKUP].last_success && sscanf(status->backup_bytes, "%lld", &backup_bytes) == 1) {
            units_format_size(backup_bytes, bytes, sizeof bytes);
            size_t used = strlen(backup);
            snprintf(backup + used, sizeof backup - used, " (%s)", bytes);
        }
        if (status->db->upload.target) {
            format_age(status->jobs[JOB_UPLOAD].last_success, now, upload, sizeof upload);
            if (status->pending) {
                size_t used = strlen(upload);
                snprintf(upload + used, sizeof upload - used, ", %lld queued", (long long)status->pending);
            }
        } else {
            snprintf(upload, sizeof upload, "no target");
        }
        int next_kind = status_next_job(status);
        if (next_kind >= 0) {
            char in[32];
            time_t due = status->next_due[next_kind];
            units_format_duration(due > now ? due - now : 0, in, sizeof in);
            snprintf(next, sizeof next, "%s in %s", job_name(next_kind), in);
        }
        int error_kind = status_last_error(status);
        if (error_kind >= 0)
            snprintf(error, sizeof error, "%s: %.150s", job_name(error_kind),
                     status->jobs[error_kind].last_message);
        printf("%-16s %-10s %9s %9s  %-22s %-12s %-24s %s\n", status->db->name, status->health, size,
               wal, backup, upload, next, error);
    }
    /* Why a database is not healthy, and the fix, under the table: the
     * table stays one line per database and the reasons stay whole. */
    bool heading = false;
    for (size_t i = 0; i < count; i++) {
        const struct database_status *status = &statuses[i];
        if (!status->reason_lines[0] && !status->reasons[0])
            continue;
        if (!heading)
            printf("\n");
        heading = true;
        const char *lines = status->reason_lines[0] ? status->reason_lines : status->reasons;
        printf("%s is %s:\n", status->db->name, status->health);
        for (const char *line = lines; *line;) {
            size_t length = strcspn(line, "\n");
            printf("  - %.*s\n", (int)length, line);
            line += length;
            if (*line == '\n')
                line++;
        }
    }
}

static void print_details(const struct database_status *status, time_t now)
{
    printf("\n%s (%s): %s%s%s\n", status->db->name, status->db->path, status->health,
           status->reasons[0] ? ": " : "", status->reasons);
    printf("  %-11s %-8s %-20s %9s %-16s %6s %8s  %s\n", "JOB", "RESULT", "LAST RUN", "DURATION",
           "NEXT", "RUNS", "FAILURES", "MESSAGE");
    for (int kind = 0; kind < JOB_KIND_COUNT; kind++) {
        const struct job_record *record = &status->jobs[kind];
        char last[32], next[32] = "-", in[32];
        format_time(record->last_started, last, sizeof last);
        if (status->next_due[kind] != (time_t)-1) {
            time_t due = status->next_due[kind];
            units_format_duration(due > now ? due - now : 0, in, sizeof in);
            snprintf(next, sizeof next, "in %s", in);
        } else if (kind != JOB_PRUNE) {
            snprintf(next, sizeof next, "not scheduled");
        } else {
            snprintf(next, sizeof next, "after backup");
        }
        printf("  %-11s %-8s %-20s %8.1fs %-16s %6lld %8lld  %s\n", job_name(kind),
               outcome_word(record), last, record->last_duration, next,
               (long long)record->runs_total, (long long)record->failures_total,
               record->last_message);
    }
    printf("  uploads pending: %lld\n", (long long)status->pending);
}

int cli_status(const struct config *config, int argc, char **argv)
{
    static const struct option options[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    bool json = false;
    int option;
    optind = 0; /* 0, not 1: glibc then also resets its internal state */
    while ((option = getopt_long(argc, argv, "j", options, NULL)) != -1) {
        if (option != 'j') {
            fprintf(stderr, "usage: sqlprodd status [--json] [DB]\n");
            return CLI_USAGE;
        }
        json = true;
    }
    const struct database_config *only = NULL;
    if (argc - optind > 1) {
        fprintf(stderr, "usage: sqlprodd status [--json] [DB]\n");
        return CLI_USAGE;
    }
    if (argc - optind == 1 && !(only = cli_select_database(config, argv[optind])))
        return CLI_USAGE;

    struct error err = {0};
    struct state *state = NULL;
    if (state_open_readonly(config->state_dir, &state, &err) != 0) {
        fprintf(stderr, "sqlprodd: %s\n", err.message);
        return CLI_FAILED;
    }
    time_t now = time(NULL);
    struct database_status *statuses = calloc(config->database_count + 1, sizeof *statuses);
    size_t count = 0;
    int unhealthy = 0;
    for (size_t i = 0; i < config->database_count; i++) {
        if (only && &config->databases[i] != only)
            continue;
        status_collect(state, &config->databases[i], now, &statuses[count]);
        if (strcmp(statuses[count].health, "unhealthy") == 0)
            unhealthy++;
        count++;
    }
    if (json) {
        json_t *root = json_object(), *databases = json_array();
        for (size_t i = 0; i < count; i++)
            json_array_append_new(databases, status_to_json(&statuses[i], now));
        int64_t pending = 0;
        if (state)
            state_pending_upload_count(state, NULL, &pending, NULL);
        json_object_set_new(root, "config", json_string(config->file));
        json_object_set_new(root, "state_dir", json_string(config->state_dir));
        json_object_set_new(root, "agent_state_found", json_boolean(state != NULL));
        json_object_set_new(root, "uploads_pending", json_integer(pending));
        json_object_set_new(root, "databases", databases);
        json_dumpf(root, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
        fputc('\n', stdout);
        json_decref(root);
    } else {
        if (!state)
            printf("(no agent state in %s yet: no job has run)\n", config->state_dir);
        print_table(statuses, count, now);
        if (only)
            print_details(&statuses[0], now);
    }
    free(statuses);
    state_close(state);
    /* status reports; it fails only when it cannot read. */
    (void)unhealthy;
    return CLI_OK;
}
