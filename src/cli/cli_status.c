/*
 * cli_status.c: `sqlprodd status [--json] [DB]`. Reads the state database
 * (read-only, so it works while the agent runs and when it does not) and
 * stats the files; never opens a managed database.
 *
 * It tells the truth on its own: whether an agent runs (tested on its lock,
 * see lock.h), which jobs are overdue judged against the clock now, and
 * every relative time computed when it is printed. When no agent runs, the
 * stored verdicts are shown as what they are: as of their last check.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"
#include "core/fsutil.h"
#include "jobs/job.h"
#include "core/lock.h"
#include "db/state.h"
#include "core/units.h"
#include "replicate/shipper.h"

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

/* A job due this long ago while the agent runs is only waiting its turn
 * (a worker is busy, the database lock is held): "due now", not overdue. */
#define STATUS_DUE_GRACE_SECONDS 60

/* What every line is judged against: the clock now and whether an agent runs. */
struct status_view {
    time_t now;
    struct agent_probe agent;
    bool agent_running;
};

enum due_state { DUE_NONE, DUE_LATER, DUE_NOW, DUE_OVERDUE, DUE_RUNNING };

struct database_status {
    const struct database_config *db;
    struct job_record jobs[JOB_KIND_COUNT];
    /* When the next run fell or falls due, not clamped to now: in the past
     * for an overdue job. (time_t)-1 when not scheduled. */
    time_t next_due[JOB_KIND_COUNT];
    struct lock_holder lock; /* who works on the database right now */
    int running_kind;        /* the job named in the held lock, or -1 */
    time_t upload_sent_at;   /* the last upload run that sent something */
    long long upload_sent_archives, upload_sent_bytes;
    char health[32]; /* the verdict's word, or "unknown" */
    struct db_facts facts;
    int64_t pending;
    struct state_replica replica; /* generation 0: not shipped yet */
    int64_t breaks;               /* all reasons */
};

/* sched_next_due() clamps an overdue time to `now` (what the agent's loop
 * wants); asked with the clock at the last run, it gives when the next run
 * really fell due. */
static time_t status_due_time(const struct schedule *schedule, const struct job_record *record,
                              time_t now)
{
    if (record->last_started > 0 && record->last_started <= now)
        return sched_next_due(schedule, record->last_started, record->last_started);
    return sched_next_due(schedule, record->last_started, now);
}

static enum due_state status_due_state(const struct database_status *status, int kind,
                                       const struct status_view *view)
{
    time_t due = status->next_due[kind];
    /* Its last run is recorded when it ends: until then the time it was
     * due is past, and "overdue" would be false. */
    if (kind == status->running_kind)
        return DUE_RUNNING;
    if (due == (time_t)-1)
        return DUE_NONE;
    if (due > view->now)
        return DUE_LATER;
    /* Never run: due at the agent's start, not overdue since any moment. */
    if (status->jobs[kind].last_started == 0)
        return DUE_NOW;
    if (view->agent_running && view->now - due < STATUS_DUE_GRACE_SECONDS)
        return DUE_NOW;
    return DUE_OVERDUE;
}

/* "in 5m", "due now", "overdue since 06:12:03 UTC": right when read. */
static void format_due(const struct database_status *status, int kind,
                       const struct status_view *view, char *out, size_t out_size)
{
    char text[48];
    time_t due = status->next_due[kind];
    switch (status_due_state(status, kind, view)) {
    case DUE_LATER:
        units_format_duration(due - view->now, text, sizeof text);
        snprintf(out, out_size, "in %s", text);
        break;
    case DUE_NOW: snprintf(out, out_size, "due now"); break;
    case DUE_RUNNING:
        units_format_clock(status->lock.since, view->now, text, sizeof text);
        snprintf(out, out_size, "running since %s", text);
        break;
    case DUE_OVERDUE:
        units_format_clock(due, view->now, text, sizeof text);
        snprintf(out, out_size, "overdue since %s", text);
        break;
    case DUE_NONE:
    default: snprintf(out, out_size, "%s", kind == JOB_PRUNE ? "after backup" : "not scheduled");
    }
}

static void status_collect_upload(struct state *state, struct database_status *status)
{
    (void)state;
    if (status->facts.known & FACT_UPLOAD_LAST_SENT) {
        status->upload_sent_at = status->facts.upload_last_sent.at;
        status->upload_sent_archives = status->facts.upload_last_sent.archives;
        status->upload_sent_bytes = status->facts.upload_last_sent.bytes;
        return;
    }
    /* A state written before "upload_last_sent" existed: the last run
     * counts only if it sent something. */
    const struct job_record *upload = &status->jobs[JOB_UPLOAD];
    if (upload->last_success > 0 && upload->last_outcome != JOB_OUTCOME_FAILED &&
        strncmp(upload->last_message, "uploaded ", 9) == 0)
        status->upload_sent_at = upload->last_success;
}

static void status_count_break(void *context, const char *reason, int64_t count)
{
    (void)reason;
    *(int64_t *)context += count;
}

static int64_t status_now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* A break's reason code (state.db, metrics label) in an operator's words. */
static const char *break_words(const char *reason)
{
    static const char *const words[][2] = {
        {"restarted", "the WAL was restarted by another process before it was all shipped"},
        {"broken", "the WAL chain no longer held the last frame shipped"},
        {"chain", "the WAL chain broke"},
        {"no_header", "the WAL was emptied before it was all shipped"},
        {"replaced", "the database file was replaced"},
        {"not_wal", "the database left WAL mode"},
    };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcmp(reason, words[i][0]) == 0)
            return words[i][1];
    return reason;
}

/* "to offsite, generation 3, on the target up to 2026-12-02T11:24:07.123Z (lag 0.8s),
 * 0 objects queued, 12 MB of WAL, 2 breaks (last: restarted at ...): words" */
static void format_replica(const struct database_status *status, char *out, size_t size)
{
    const struct state_replica *r = &status->replica;
    if (r->generation == 0) {
        snprintf(out, size, "to %s, nothing shipped yet", status->db->replicate.target_name);
        return;
    }
    /* What a restore from the target gets now: the newest commit uploaded
     * with its index.json, and how long ago it was seen. */
    char seen[48] = "no commit yet", at[40] = "";
    int64_t on_target = r->uploaded_seen_at_ms;
    if (on_target) {
        time_t t = (time_t)(on_target / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(seen, sizeof seen, "%Y-%m-%dT%H:%M:%S", &tm);
        size_t used = strlen(seen);
        int64_t lag = replica_lag_ms(r, status_now_ms());
        snprintf(seen + used, sizeof seen - used, ".%03dZ (lag %.1fs)", (int)(on_target % 1000),
                 (double)(lag > 0 ? lag : 0) / 1000.0);
    }
    if (r->last_break[0] && r->last_break_at_ms) {
        time_t t = (time_t)(r->last_break_at_ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    char shipped[32];
    units_format_size(r->shipped_bytes, shipped, sizeof shipped);
    snprintf(out, size,
             "to %s, generation %lu, on the target up to %s, %lld object%s queued, %s of WAL "
             "shipped, %lld break%s%s%s%s%s",
             status->db->replicate.target_name, (unsigned long)r->generation, seen,
             (long long)r->queued_objects, r->queued_objects == 1 ? "" : "s", shipped,
             (long long)status->breaks,
             status->breaks == 1 ? "" : "s", r->last_break[0] ? " (last: " : "", r->last_break,
             r->last_break[0] ? " at " : "", r->last_break[0] ? at : "");
    if (r->last_break[0]) {
        size_t used = strlen(out);
        snprintf(out + used, size - used, ": %s", break_words(r->last_break));
    }
    if (r->last_break[0]) {
        size_t used = strlen(out);
        snprintf(out + used, size - used, ")");
    }
}

static void status_collect(const struct config *config, struct state *state,
                           const struct database_config *db, time_t now,
                           struct database_status *status)
{
    memset(status, 0, sizeof *status);
    status->db = db;
    status->running_kind = -1;
    lock_probe_database(config->state_dir, db->name, &status->lock);
    for (int kind = 0; status->lock.held && kind < JOB_KIND_COUNT; kind++) {
        char tag[32];
        snprintf(tag, sizeof tag, "(%s)", job_name(kind));
        if (strstr(status->lock.line, tag))
            status->running_kind = kind;
    }
    for (int kind = 0; kind < JOB_KIND_COUNT; kind++) {
        if (state)
            state_get_job(state, db->name, job_name(kind), &status->jobs[kind], NULL);
        status->next_due[kind] = status_due_time(job_schedule(db, kind), &status->jobs[kind], now);
    }
    if (state && state_get_facts(state, db->name, &status->facts, NULL) != 0)
        memset(&status->facts, 0, sizeof status->facts);
    if (state) {
        status_collect_upload(state, status);
        state_pending_upload_count(state, db->name, &status->pending, NULL);
        if (db->replicate.target) {
            state_get_replica(state, db->name, &status->replica, NULL);
            state_replica_breaks(state, db->name, status_count_break, &status->breaks, NULL);
        }
    }
    snprintf(status->health, sizeof status->health, "%s",
             status->facts.known & FACT_HEALTH ? health_level_name(status->facts.health)
                                               : "unknown");
}

static int status_next_job(const struct database_status *status)
{
    if (status->running_kind >= 0)
        return status->running_kind;
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

static time_t status_checked_at(const struct database_status *status)
{
    return status->facts.known & FACT_HEALTH_CHECKED_AT ? status->facts.health_checked_at : 0;
}

/* The verdict as a person must read it: when no agent runs nothing renews
 * it, so it is a verdict as of its check ("healthy as of 06:12:03 UTC"). */
static void format_health(const struct database_status *status, const struct status_view *view,
                          char *out, size_t out_size)
{
    time_t checked = status_checked_at(status);
    if (view->agent_running || checked <= 0 || strcmp(status->health, "unknown") == 0) {
        snprintf(out, out_size, "%s", status->health);
        return;
    }
    char at[48];
    units_format_clock(checked, view->now, at, sizeof at);
    snprintf(out, out_size, "%s as of %s", status->health, at);
}

/* A fact's number, or JSON null when no job has measured it yet. */
static json_t *json_fact(const struct db_facts *facts, enum db_fact fact, json_t *value)
{
    if (facts->known & fact)
        return value;
    json_decref(value);
    return json_null();
}

static json_t *json_fact_text(const struct db_facts *facts, enum db_fact fact, const char *text)
{
    return facts->known & fact && text[0] ? json_string(text) : json_null();
}

static json_t *json_time_or_null(time_t t)
{
    char when[32];
    if (t <= 0)
        return json_null();
    format_time(t, when, sizeof when);
    return json_string(when);
}

static const char *due_word(enum due_state state)
{
    switch (state) {
    case DUE_LATER: return "later";
    case DUE_NOW: return "now";
    case DUE_OVERDUE: return "overdue";
    case DUE_RUNNING: return "running";
    case DUE_NONE:
    default: return NULL;
    }
}

/* When a job is next due, judged against now: the same for a job and the next job. */
static void status_due_to_json(const struct database_status *status, int kind,
                               const struct status_view *view, json_t *object)
{
    time_t due = status->next_due[kind];
    enum due_state state = status_due_state(status, kind, view);
    const char *word = due_word(state);
    json_object_set_new(object, "next_due",
                        due == (time_t)-1 ? json_null() : json_time_or_null(due));
    json_object_set_new(object, "due", word ? json_string(word) : json_null());
    json_object_set_new(object, "overdue_since",
                        state == DUE_OVERDUE ? json_time_or_null(due) : json_null());
    json_object_set_new(object, "overdue_seconds",
                        state == DUE_OVERDUE ? json_integer(view->now - due) : json_null());
}

/* The table's columns as data: what a script checks is what a person reads. */
static void status_summary_to_json(const struct database_status *status,
                                   const struct status_view *view, json_t *object)
{
    time_t now = view->now;
    json_t *reasons = json_array();
    const struct db_facts *facts = &status->facts;
    char lines[sizeof facts->health_reason_lines];
    snprintf(lines, sizeof lines, "%s", facts->health_reason_lines);
    for (char *save = NULL, *line = strtok_r(lines, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save))
        json_array_append_new(reasons, json_string(line));
    json_object_set_new(object, "reasons_list", reasons);
    json_object_set_new(object, "health_checked_at", json_time_or_null(status_checked_at(status)));
    /* Nothing renews the verdict while no agent runs. */
    json_object_set_new(object, "health_stale", json_boolean(!view->agent_running));
    json_object_set_new(object, "integrity_checked_at",
                        json_time_or_null(facts->known & FACT_INTEGRITY_CHECKED_AT
                                              ? facts->integrity_checked_at
                                              : 0));
    json_object_set_new(object, "journal_mode",
                        json_fact_text(facts, FACT_JOURNAL_MODE, facts->journal_mode));
    json_object_set_new(object, "auto_vacuum",
                        json_fact_text(facts, FACT_AUTO_VACUUM, facts->auto_vacuum));
    json_object_set_new(object, "page_size_bytes",
                        json_fact(facts, FACT_PAGE_SIZE, json_integer(facts->page_size)));
    json_object_set_new(object, "freelist_ratio",
                        json_fact(facts, FACT_FREELIST_RATIO, json_real(facts->freelist_ratio)));

    const struct job_record *backup = &status->jobs[JOB_BACKUP];
    json_t *last_backup = json_null();
    if (backup->last_success > 0) {
        last_backup = json_object();
        json_object_set_new(last_backup, "at", json_time_or_null(backup->last_success));
        json_object_set_new(
            last_backup, "age_seconds",
            json_integer(now > backup->last_success ? now - backup->last_success : 0));
        json_object_set_new(
            last_backup, "bytes",
            json_fact(facts, FACT_BACKUP_LAST_BYTES, json_integer(facts->backup_last_bytes)));
    }
    json_object_set_new(object, "last_backup", last_backup);

    /* The last upload that sent something; a run that found nothing to
     * send is not an upload. */
    json_t *last_upload = json_null();
    if (status->db->upload.target && status->upload_sent_at > 0) {
        last_upload = json_object();
        json_object_set_new(last_upload, "at", json_time_or_null(status->upload_sent_at));
        json_object_set_new(
            last_upload, "age_seconds",
            json_integer(now > status->upload_sent_at ? now - status->upload_sent_at : 0));
        json_object_set_new(last_upload, "archives",
                            status->upload_sent_archives
                                ? json_integer(status->upload_sent_archives)
                                : json_null());
        json_object_set_new(last_upload, "bytes",
                            status->upload_sent_archives ? json_integer(status->upload_sent_bytes)
                                                         : json_null());
    }
    json_object_set_new(object, "last_upload", last_upload);
    json_object_set_new(object, "upload_target",
                        status->db->upload.target ? json_string(status->db->upload.target_name)
                                                  : json_null());

    int next = status_next_job(status);
    json_t *next_job = json_null();
    if (next >= 0) {
        time_t due = status->next_due[next];
        next_job = json_object();
        json_object_set_new(next_job, "job", json_string(job_name(next)));
        json_object_set_new(next_job, "in_seconds", json_integer(due > now ? due - now : 0));
        status_due_to_json(status, next, view, next_job);
    }
    json_object_set_new(object, "next_job", next_job);

    json_t *running = json_null();
    if (status->lock.held) {
        running = json_object();
        json_object_set_new(running, "job",
                            status->running_kind >= 0 ? json_string(job_name(status->running_kind))
                                                      : json_null());
        json_object_set_new(running, "since", json_time_or_null(status->lock.since));
        json_object_set_new(running, "holder", json_string(status->lock.line));
    }
    json_object_set_new(object, "running_job", running);

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

static json_t *status_to_json(const struct database_status *status, const struct status_view *view)
{
    const struct database_config *db = status->db;
    time_t now = view->now;
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
        json_object_set_new(job, "last_started",
                            record->last_started ? json_string(when) : json_null());
        format_time(record->last_success, when, sizeof when);
        json_object_set_new(job, "last_success",
                            record->last_success ? json_string(when) : json_null());
        json_object_set_new(job, "last_duration_seconds", json_real(record->last_duration));
        json_object_set_new(job, "last_message", json_string(record->last_message));
        json_object_set_new(job, "runs_total", json_integer(record->runs_total));
        json_object_set_new(job, "failures_total", json_integer(record->failures_total));
        time_t due = status->next_due[kind];
        status_due_to_json(status, kind, view, job);
        json_object_set_new(job, "next_due_in_seconds",
                            due == (time_t)-1 ? json_null()
                                              : json_integer(due > now ? due - now : 0));
        json_object_set_new(jobs, job_name(kind), job);
    }
    backup_bytes = status->facts.backup_last_bytes; /* 0 until a backup */
    json_t *object = json_object();
    json_object_set_new(object, "name", json_string(db->name));
    json_object_set_new(object, "path", json_string(db->path));
    json_object_set_new(object, "health", json_string(status->health));
    json_object_set_new(object, "reasons", json_string(status->facts.health_reasons));
    json_object_set_new(object, "size_bytes", json_integer(fs_file_size(db->path, "")));
    json_object_set_new(object, "wal_bytes", json_integer(fs_file_size(db->path, "-wal")));
    json_object_set_new(object, "backup_last_bytes", json_integer(backup_bytes));
    json_object_set_new(object, "uploads_pending", json_integer(status->pending));
    if (db->replicate.target) {
        const struct state_replica *r = &status->replica;
        json_t *replica = json_object();
        json_object_set_new(replica, "target", json_string(db->replicate.target_name));
        json_object_set_new(replica, "generation", json_integer(r->generation));
        json_object_set_new(replica, "last_seen_at_ms",
                            r->last_seen_at_ms ? json_integer(r->last_seen_at_ms) : json_null());
        /* lag: as the metric, from what the target holds */
        json_object_set_new(replica, "on_target_seen_at_ms",
                            r->uploaded_seen_at_ms ? json_integer(r->uploaded_seen_at_ms)
                                                   : json_null());
        json_object_set_new(replica, "lag_seconds",
                            r->uploaded_seen_at_ms
                                ? json_real((double)replica_lag_ms(r, status_now_ms()) / 1000.0)
                                : json_null());
        json_object_set_new(replica, "queued_objects", json_integer(r->queued_objects));
        json_object_set_new(replica, "shipped_bytes", json_integer(r->shipped_bytes));
        json_object_set_new(replica, "breaks", json_integer(status->breaks));
        json_object_set_new(replica, "last_break",
                            r->last_break[0] ? json_string(r->last_break) : json_null());
        json_object_set_new(object, "replica", replica);
    }
    json_object_set_new(object, "jobs", jobs);
    status_summary_to_json(status, view, object);
    return object;
}

/* ---- whether an agent runs ------------------------------------------- */

/*
 * The first thing status says. When no agent runs, no job runs and nothing
 * below is renewed; saying so at the top is what keeps a stored "healthy"
 * from reading as a current one.
 */
static void format_agent(const struct config *config, const struct status_view *view, char *out,
                         size_t out_size)
{
    const struct agent_probe *agent = &view->agent;
    char started[48] = "", stopped[48] = "", age[32] = "";
    if (agent->started > 0)
        units_format_clock(agent->started, view->now, started, sizeof started);
    if (agent->stopped > 0) {
        units_format_clock(agent->stopped, view->now, stopped, sizeof stopped);
        units_format_duration(view->now > agent->stopped ? view->now - agent->stopped : 0, age,
                              sizeof age);
    }
    switch (agent->presence) {
    case AGENT_RUNNING:
        units_format_duration(
            agent->started > 0 && view->now > agent->started ? view->now - agent->started : 0, age,
            sizeof age);
        if (agent->started > 0)
            snprintf(out, out_size, "agent: running since %s (%s), pid %ld", started, age,
                     agent->pid);
        else
            snprintf(out, out_size, "agent: running (%s)", agent->holder);
        return;
    case AGENT_NOT_RUNNING:
        if (agent->pid == 0)
            snprintf(out, out_size,
                     "AGENT NOT RUNNING: no sqlprodd agent has run on state_dir %s yet; no job "
                     "runs on a schedule until it is started.",
                     config->state_dir);
        else if (agent->stopped > 0)
            snprintf(out, out_size,
                     "AGENT NOT RUNNING since %s (%s ago; pid %ld, started %s, stopped "
                     "cleanly). No job runs and nothing below is renewed: verdicts are as of "
                     "their check. Start the agent.",
                     stopped, age, agent->pid, started[0] ? started : "at an unknown time");
        else
            snprintf(out, out_size,
                     "AGENT NOT RUNNING: the last agent (pid %ld, started %s) did not stop "
                     "cleanly: it was killed or crashed. No job runs and nothing below is "
                     "renewed: verdicts are as of their check. Start the agent.",
                     agent->pid, started[0] ? started : "at an unknown time");
        return;
    case AGENT_UNKNOWN:
    default:
        snprintf(out, out_size,
                 "AGENT STATE UNKNOWN: %s. Whether jobs run cannot be told: verdicts below may "
                 "be stale.",
                 agent->problem);
    }
}

static json_t *agent_to_json(const struct config *config, const struct status_view *view)
{
    const struct agent_probe *agent = &view->agent;
    char message[1400];
    format_agent(config, view, message, sizeof message);
    json_t *object = json_object();
    bool known = agent->presence != AGENT_UNKNOWN;
    bool running = agent->presence == AGENT_RUNNING;
    json_object_set_new(object, "running", known ? json_boolean(running) : json_null());
    json_object_set_new(object, "state",
                        json_string(running ? "running"
                                    : known ? "not running"
                                            : "unknown"));
    json_object_set_new(object, "pid", agent->pid > 0 ? json_integer(agent->pid) : json_null());
    json_object_set_new(object, "started_at", json_time_or_null(agent->started));
    json_object_set_new(object, "running_seconds",
                        running && agent->started > 0 && view->now >= agent->started
                            ? json_integer(view->now - agent->started)
                            : json_null());
    json_object_set_new(object, "stopped_at", json_time_or_null(agent->stopped));
    json_object_set_new(object, "stopped_cleanly",
                        known && !running && agent->pid > 0 ? json_boolean(agent->stopped > 0)
                                                            : json_null());
    json_object_set_new(object, "message", json_string(message));
    return object;
}

/* ---- the table --------------------------------------------------------- */

enum { COLUMN_COUNT = 8, CELL_SIZE = 256 };

struct status_row {
    char cells[COLUMN_COUNT][CELL_SIZE];
};

static void status_fill_row(const struct database_status *status, const struct status_view *view,
                            struct status_row *row)
{
    time_t now = view->now;
    char(*cell)[CELL_SIZE] = row->cells;
    snprintf(cell[0], CELL_SIZE, "%s", status->db->name);
    format_health(status, view, cell[1], CELL_SIZE);
    units_format_size(fs_file_size(status->db->path, ""), cell[2], CELL_SIZE);
    units_format_size(fs_file_size(status->db->path, "-wal"), cell[3], CELL_SIZE);

    format_age(status->jobs[JOB_BACKUP].last_success, now, cell[4], CELL_SIZE);
    if (status->jobs[JOB_BACKUP].last_success &&
        status->facts.known & FACT_BACKUP_LAST_BYTES) {
        char bytes[32];
        units_format_size(status->facts.backup_last_bytes, bytes, sizeof bytes);
        size_t used = strlen(cell[4]);
        snprintf(cell[4] + used, CELL_SIZE - used, " (%s)", bytes);
    }

    if (!status->db->upload.target)
        snprintf(cell[5], CELL_SIZE, "no target");
    else if (status->upload_sent_at > 0)
        format_age(status->upload_sent_at, now, cell[5], CELL_SIZE);
    else if (status->pending)
        snprintf(cell[5], CELL_SIZE, "none sent yet");
    else if (status->jobs[JOB_UPLOAD].runs_total > 0)
        snprintf(cell[5], CELL_SIZE, "nothing to upload");
    else
        snprintf(cell[5], CELL_SIZE, "never");
    if (status->db->upload.target && status->pending) {
        size_t used = strlen(cell[5]);
        snprintf(cell[5] + used, CELL_SIZE - used, ", %lld queued", (long long)status->pending);
    }

    snprintf(cell[6], CELL_SIZE, "-");
    int next_kind = status_next_job(status);
    if (next_kind >= 0) {
        char due[96];
        format_due(status, next_kind, view, due, sizeof due);
        snprintf(cell[6], CELL_SIZE, "%s %s", job_name(next_kind), due);
    }
    snprintf(cell[7], CELL_SIZE, "-");
    int error_kind = status_last_error(status);
    if (error_kind >= 0)
        snprintf(cell[7], CELL_SIZE, "%s: %.150s", job_name(error_kind),
                 status->jobs[error_kind].last_message);
}

/* Columns as wide as their widest cell, so a long "overdue since" or
 * "healthy as of" never shifts the columns after it. */
static void print_table(const struct database_status *statuses, size_t count,
                        const struct status_view *view)
{
    static const char *const headers[COLUMN_COUNT] = {"DATABASE", "HEALTH",      "SIZE",
                                                      "WAL",      "LAST BACKUP", "LAST UPLOAD",
                                                      "NEXT JOB", "LAST ERROR"};
    static const int minimum[COLUMN_COUNT] = {16, 10, 9, 9, 22, 12, 24, 0};
    static const bool right[COLUMN_COUNT] = {false, false, true, true, false, false, false, false};
    int width[COLUMN_COUNT];
    struct status_row *rows = calloc(count + 1, sizeof *rows);
    if (!rows)
        return;
    for (int c = 0; c < COLUMN_COUNT; c++)
        width[c] = minimum[c] > (int)strlen(headers[c]) ? minimum[c] : (int)strlen(headers[c]);
    for (size_t i = 0; i < count; i++) {
        status_fill_row(&statuses[i], view, &rows[i]);
        for (int c = 0; c < COLUMN_COUNT; c++)
            if ((int)strlen(rows[i].cells[c]) > width[c])
                width[c] = (int)strlen(rows[i].cells[c]);
    }
    for (size_t i = 0; i <= count; i++) {
        for (int c = 0; c < COLUMN_COUNT; c++) {
            const char *text = i == 0 ? headers[c] : rows[i - 1].cells[c];
            const char *gap = c == 0 ? "" : c == 4 ? "  " : " ";
            if (c == COLUMN_COUNT - 1)
                printf("%s%s\n", gap, text);
            else
                printf(right[c] ? "%s%*s" : "%s%-*s", gap, width[c], text);
        }
    }
    free(rows);

    /* Replication under the table, one line per replicated database. */
    bool replicated = false;
    for (size_t i = 0; i < count; i++) {
        if (!statuses[i].db->replicate.target)
            continue;
        char replica[768];
        format_replica(&statuses[i], replica, sizeof replica);
        printf("%s%s replica: %s\n", replicated ? "" : "\n", statuses[i].db->name, replica);
        replicated = true;
    }

    /* Why a database is not healthy, and the fix, under the table: the
     * table stays one line per database and the reasons stay whole. */
    bool heading = false;
    for (size_t i = 0; i < count; i++) {
        const struct database_status *status = &statuses[i];
        const struct db_facts *facts = &status->facts;
        if (!facts->health_reason_lines[0] && !facts->health_reasons[0])
            continue;
        if (!heading)
            printf("\n");
        heading = true;
        const char *lines =
            facts->health_reason_lines[0] ? facts->health_reason_lines : facts->health_reasons;
        if (view->agent_running) {
            printf("%s is %s:\n", status->db->name, status->health);
        } else {
            char health[96];
            format_health(status, view, health, sizeof health);
            printf("%s was %s (no agent runs to check it again):\n", status->db->name, health);
        }
        for (const char *line = lines; *line;) {
            size_t length = strcspn(line, "\n");
            printf("  - %.*s\n", (int)length, line);
            line += length;
            if (*line == '\n')
                line++;
        }
    }
}

static void print_details(const struct database_status *status, const struct status_view *view)
{
    char health[96], checked[48] = "never", age[32];
    format_health(status, view, health, sizeof health);
    time_t checked_at = status_checked_at(status);
    if (checked_at > 0) {
        units_format_clock(checked_at, view->now, checked, sizeof checked);
        units_format_duration(view->now > checked_at ? view->now - checked_at : 0, age, sizeof age);
        size_t used = strlen(checked);
        snprintf(checked + used, sizeof checked - used, " (%s ago)", age);
    }
    printf("\n%s (%s): %s%s%s\n", status->db->name, status->db->path, health,
           status->facts.health_reasons[0] ? ": " : "", status->facts.health_reasons);
    printf("  health checked: %s\n", checked);
    int next_width = 16;
    char next[JOB_KIND_COUNT][96];
    for (int kind = 0; kind < JOB_KIND_COUNT; kind++) {
        format_due(status, kind, view, next[kind], sizeof next[kind]);
        if ((int)strlen(next[kind]) > next_width)
            next_width = (int)strlen(next[kind]);
    }
    printf("  %-11s %-8s %-20s %9s %-*s %6s %8s  %s\n", "JOB", "RESULT", "LAST RUN", "DURATION",
           next_width, "NEXT", "RUNS", "FAILURES", "MESSAGE");
    for (int kind = 0; kind < JOB_KIND_COUNT; kind++) {
        const struct job_record *record = &status->jobs[kind];
        char last[32];
        format_time(record->last_started, last, sizeof last);
        printf("  %-11s %-8s %-20s %8.1fs %-*s %6lld %8lld  %s\n", job_name(kind),
               outcome_word(record), last, record->last_duration, next_width, next[kind],
               (long long)record->runs_total, (long long)record->failures_total,
               record->last_message);
    }
    printf("  uploads pending: %lld\n", (long long)status->pending);
    if (status->db->replicate.target) {
        char replica[768];
        format_replica(status, replica, sizeof replica);
        printf("  replica: %s\n", replica);
    }
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
        fprintf(stderr, "sqlprodd: %s%s\n", err.message,
                err.code == -EACCES ? "; run status as the agent's user or as root" : "");
        return CLI_FAILED;
    }
    /* The clock and the agent's presence are read once, after the state:
     * every line below is judged against the same moment. */
    struct status_view view = {.now = time(NULL)};
    lock_agent_probe(config->state_dir, &view.agent);
    view.agent_running = view.agent.presence == AGENT_RUNNING;
    struct database_status *statuses = calloc(config->database_count + 1, sizeof *statuses);
    if (!statuses) {
        state_close(state);
        fprintf(stderr, "sqlprodd: out of memory\n");
        return CLI_FAILED;
    }
    size_t count = 0;
    for (size_t i = 0; i < config->database_count; i++) {
        if (only && &config->databases[i] != only)
            continue;
        status_collect(config, state, &config->databases[i], view.now, &statuses[count]);
        count++;
    }
    if (json) {
        json_t *root = json_object(), *databases = json_array();
        for (size_t i = 0; i < count; i++)
            json_array_append_new(databases, status_to_json(&statuses[i], &view));
        int64_t pending = 0;
        if (state)
            state_pending_upload_count(state, NULL, &pending, NULL);
        json_object_set_new(root, "agent", agent_to_json(config, &view));
        json_object_set_new(root, "config", json_string(config->file));
        json_object_set_new(root, "state_dir", json_string(config->state_dir));
        json_object_set_new(root, "agent_state_found", json_boolean(state != NULL));
        json_object_set_new(root, "now", json_time_or_null(view.now));
        json_object_set_new(root, "uploads_pending", json_integer(pending));
        json_object_set_new(root, "databases", databases);
        json_dumpf(root, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
        fputc('\n', stdout);
        json_decref(root);
    } else {
        char agent[1400];
        format_agent(config, &view, agent, sizeof agent);
        printf("%s\n", agent);
        if (!state)
            printf("(no agent state in %s yet: no job has run)\n", config->state_dir);
        print_table(statuses, count, &view);
        if (only)
            print_details(&statuses[0], &view);
    }
    free(statuses);
    state_close(state);
    /* status reports; it fails only when it cannot read the state. A
     * stopped agent or an unhealthy database is news, not a failure of
     * status: scripts read "agent"."running" and "health" in --json. */
    return CLI_OK;
}
