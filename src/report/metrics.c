/*
 * metrics.c: Prometheus text format (see metrics.h). Reads the state
 * database and stats files; never opens a managed database, so writing
 * metrics cannot disturb the application.
 */
#include "report/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "jobs/job.h"
#include "replicate/shipper.h"

struct buffer {
    char *data;
    size_t size, capacity;
    bool failed;
};

static void buffer_printf(struct buffer *buffer, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static void buffer_printf(struct buffer *buffer, const char *format, ...)
{
    for (;;) {
        va_list args;
        va_start(args, format);
        size_t room = buffer->capacity - buffer->size;
        int n = vsnprintf(buffer->data ? buffer->data + buffer->size : NULL, room, format, args);
        va_end(args);
        if (n < 0) {
            buffer->failed = true;
            return;
        }
        if ((size_t)n < room) {
            buffer->size += (size_t)n;
            return;
        }
        size_t capacity = buffer->capacity ? buffer->capacity * 2 : 4096;
        while (capacity - buffer->size <= (size_t)n)
            capacity *= 2;
        char *grown = realloc(buffer->data, capacity);
        if (!grown) {
            buffer->failed = true;
            return;
        }
        buffer->data = grown;
        buffer->capacity = capacity;
    }
}

/* Label values escape backslash, double quote and newline (exposition format). */
static void escape_label(const char *value, char *out, size_t out_size)
{
    size_t used = 0;
    for (; *value && used + 3 < out_size; value++) {
        if (*value == '\\' || *value == '"') {
            out[used++] = '\\';
            out[used++] = *value;
        } else if (*value == '\n') {
            out[used++] = '\\';
            out[used++] = 'n';
        } else {
            out[used++] = *value;
        }
    }
    out[used] = '\0';
}

static void family(struct buffer *buffer, const char *name, const char *type, const char *help)
{
    buffer_printf(buffer, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const struct job_family {
    const char *name, *type, *help;
} job_families[] = {
    {"sqlprodd_job_last_success_timestamp_seconds", "gauge",
     "Unix time of the end of the last successful run of the job."},
    {"sqlprodd_job_last_duration_seconds", "gauge", "Duration of the last run of the job."},
    {"sqlprodd_job_runs_total", "counter", "Runs of the job since the state was created."},
    {"sqlprodd_job_failures_total", "counter",
     "Failed runs of the job since the state was created."},
};

/* Facts from the last health check an operator alerts on or graphs. A
 * family is written only when some database has a value: an empty family
 * tells nothing. */
static void render_database_details(const struct metrics_input *input, struct buffer *buffer)
{
    static const struct {
        const char *name, *type, *help;
        enum db_fact fact;
    } details[] = {
        {"sqlprodd_database_page_size_bytes", "gauge", "Page size of the database.",
         FACT_PAGE_SIZE},
        {"sqlprodd_health_check_timestamp_seconds", "gauge",
         "Unix time of the last health verdict; alert when it stops moving.",
         FACT_HEALTH_CHECKED_AT},
        {"sqlprodd_integrity_check_last_success_timestamp_seconds", "gauge",
         "Unix time of the last full integrity_check that found no problem.",
         FACT_INTEGRITY_CHECKED_AT},
    };
    const struct config *config = input->config;
    for (size_t f = 0; f < sizeof details / sizeof details[0]; f++) {
        family(buffer, details[f].name, details[f].type, details[f].help);
        for (size_t i = 0; i < config->database_count; i++) {
            const struct db_facts *facts = &input->databases[i].facts;
            char name[300];
            long long value = details[f].fact == FACT_PAGE_SIZE ? (long long)facts->page_size
                              : details[f].fact == FACT_HEALTH_CHECKED_AT
                                  ? (long long)facts->health_checked_at
                                  : (long long)facts->integrity_checked_at;
            if (!(facts->known & details[f].fact) || value < 0)
                continue;
            escape_label(config->databases[i].name, name, sizeof name);
            buffer_printf(buffer, "%s{database=\"%s\"} %lld\n", details[f].name, name, value);
        }
    }
    family(buffer, "sqlprodd_database_info", "gauge",
           "Persistent settings of the database at the last health check (value is always 1).");
    for (size_t i = 0; i < config->database_count; i++) {
        const struct db_facts *facts = &input->databases[i].facts;
        char name[300], journal_label[140], vacuum_label[140];
        if (!(facts->known & FACT_JOURNAL_MODE) || !facts->journal_mode[0])
            continue;
        escape_label(config->databases[i].name, name, sizeof name);
        escape_label(facts->journal_mode, journal_label, sizeof journal_label);
        escape_label(facts->auto_vacuum, vacuum_label, sizeof vacuum_label);
        buffer_printf(buffer,
                      "sqlprodd_database_info{database=\"%s\",journal_mode=\"%s\",auto_vacuum="
                      "\"%s\"} 1\n",
                      name, journal_label, vacuum_label);
    }
}

/* The agent itself: which version runs, and when these numbers were made
 * (a textfile that stops changing means the agent stopped writing it). */
static void render_agent(const struct metrics_input *input, struct buffer *buffer)
{
    char version[140];
    escape_label(SQLPRODD_VERSION, version, sizeof version);
    family(buffer, "sqlprodd_build_info", "gauge", "Version of sqlprodd (value is always 1).");
    buffer_printf(buffer, "sqlprodd_build_info{version=\"%s\"} 1\n", version);
    family(buffer, "sqlprodd_metrics_timestamp_seconds", "gauge",
           "Unix time these metrics were rendered.");
    buffer_printf(buffer, "sqlprodd_metrics_timestamp_seconds %lld\n",
                  (long long)input->rendered_at);
}

static void render_jobs(const struct metrics_input *input, struct buffer *buffer)
{
    const struct config *config = input->config;
    for (size_t f = 0; f < sizeof job_families / sizeof job_families[0]; f++) {
        family(buffer, job_families[f].name, job_families[f].type, job_families[f].help);
        for (size_t i = 0; i < config->database_count; i++) {
            char name[300];
            escape_label(config->databases[i].name, name, sizeof name);
            for (int kind = 0; kind < JOB_KIND_COUNT; kind++) {
                const struct job_record *record = &input->databases[i].jobs[kind];
                if (record->runs_total == 0)
                    continue;
                buffer_printf(buffer, "%s{database=\"%s\",job=\"%s\"} ", job_families[f].name,
                              name, job_name(kind));
                switch (f) {
                case 0: buffer_printf(buffer, "%lld\n", (long long)record->last_success); break;
                case 1: buffer_printf(buffer, "%.3f\n", record->last_duration); break;
                case 2: buffer_printf(buffer, "%lld\n", (long long)record->runs_total); break;
                default: buffer_printf(buffer, "%lld\n", (long long)record->failures_total); break;
                }
            }
        }
    }
}

/* One value of a per-database family; false when there is none to show. */
static bool database_value(size_t f, const struct metrics_database *database, char *value,
                           size_t value_size)
{
    const struct db_facts *facts = &database->facts;
    switch (f) {
    case 0: snprintf(value, value_size, "%lld", (long long)database->file_bytes); return true;
    case 1: snprintf(value, value_size, "%lld", (long long)database->wal_file_bytes); return true;
    case 2:
        snprintf(value, value_size, "%.6f", facts->freelist_ratio);
        return facts->known & FACT_FREELIST_RATIO;
    case 3:
        snprintf(value, value_size, "%d", (int)facts->health);
        return facts->known & FACT_HEALTH;
    case 4:
        snprintf(value, value_size, "%lld", (long long)facts->backup_last_bytes);
        return facts->known & FACT_BACKUP_LAST_BYTES;
    default:
        snprintf(value, value_size, "%lld", (long long)database->uploads_pending);
        return database->pending_known;
    }
}

static void render_databases(const struct metrics_input *input, struct buffer *buffer)
{
    static const char *const database_families[][3] = {
        {"sqlprodd_database_size_bytes", "gauge", "Size of the database file."},
        {"sqlprodd_wal_size_bytes", "gauge", "Size of the database's -wal file."},
        {"sqlprodd_freelist_ratio", "gauge",
         "Free pages over all pages, at the last health check."},
        {"sqlprodd_health", "gauge", "Health verdict: 0 healthy, 1 degraded, 2 unhealthy."},
        {"sqlprodd_backup_last_size_bytes", "gauge", "Size of the newest backup archive."},
        {"sqlprodd_upload_pending", "gauge", "Archives waiting to be uploaded to the target."},
    };
    const struct config *config = input->config;
    for (size_t f = 0; f < sizeof database_families / sizeof database_families[0]; f++) {
        family(buffer, database_families[f][0], database_families[f][1], database_families[f][2]);
        for (size_t i = 0; i < config->database_count; i++) {
            char name[300], value[64];
            if (!database_value(f, &input->databases[i], value, sizeof value))
                continue;
            escape_label(config->databases[i].name, name, sizeof name);
            buffer_printf(buffer, "%s{database=\"%s\"} %s\n", database_families[f][0], name, value);
        }
    }
}

/* Replication (replicate/shipper.c): what the target holds and how late. */
static void render_replication(const struct metrics_input *input, struct buffer *buffer)
{
    const struct config *config = input->config;
    int64_t now_ms = input->rendered_at_ms ? input->rendered_at_ms
                                           : (int64_t)input->rendered_at * 1000;
    static const char *const families[][3] = {
        {"sqlprodd_replicate_lag_seconds", "gauge",
         "What a restore from the target would lose now: 0 when every commit read is on the "
         "target, else now minus the time the newest commit there was seen."},
        {"sqlprodd_replicate_shipped_bytes_total", "counter", "WAL bytes shipped, all generations."},
        {"sqlprodd_replicate_generation", "gauge", "The WAL generation being shipped."},
        {"sqlprodd_replicate_queued_objects", "gauge",
         "Replica objects read from the WAL and not yet on the target."},
        {"sqlprodd_replicate_spool_bytes", "gauge",
         "Bytes spooled for the target, which replicate.spool_max bounds."},
        {"sqlprodd_replicate_spool_max_bytes", "gauge",
         "replicate.spool_max: at it, shipping stops until the target takes objects again."},
    };
    /* No family at all when nothing replicates: an empty family tells nothing. */
    bool any = false;
    for (size_t i = 0; i < config->database_count; i++)
        any = any || config->databases[i].replicate.target;
    if (!any)
        return;
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        family(buffer, families[f][0], families[f][1], families[f][2]);
        for (size_t i = 0; i < config->database_count; i++) {
            const struct state_replica *replica = &input->databases[i].replica;
            char name[300];
            if (!config->databases[i].replicate.target || replica->generation == 0)
                continue;
            escape_label(config->databases[i].name, name, sizeof name);
            buffer_printf(buffer, "%s{database=\"%s\"} ", families[f][0], name);
            if (f == 0)
                buffer_printf(buffer, "%.3f\n", (double)replica_lag_ms(replica, now_ms) / 1000.0);
            else if (f == 1)
                buffer_printf(buffer, "%lld\n", (long long)replica->shipped_bytes);
            else if (f == 2)
                buffer_printf(buffer, "%lu\n", (unsigned long)replica->generation);
            else if (f == 3)
                buffer_printf(buffer, "%lld\n", (long long)replica->queued_objects);
            else if (f == 4)
                buffer_printf(buffer, "%lld\n", (long long)input->databases[i].replica_spool_bytes);
            else
                buffer_printf(buffer, "%lld\n",
                              (long long)config->databases[i].replicate.spool_max_bytes);
        }
    }
    family(buffer, "sqlprodd_replicate_breaks_total", "counter",
           "Breaks in the shipped WAL, each followed by a new generation from a fresh base.");
    for (size_t i = 0; i < config->database_count; i++) {
        const struct metrics_database *database = &input->databases[i];
        char name[300], reason[80];
        escape_label(config->databases[i].name, name, sizeof name);
        for (size_t b = 0; b < database->break_count; b++) {
            escape_label(database->breaks[b].reason, reason, sizeof reason);
            buffer_printf(buffer, "sqlprodd_replicate_breaks_total{database=\"%s\",reason=\"%s\"} %lld\n",
                          name, reason, (long long)database->breaks[b].count);
        }
    }
}

/* Restore drills (jobs/drill.c): when the last one passed, how long its
 * restore took, how many failed, and how much of what is kept they cover.
 * No family at all where no database drills. */
static void render_drills(const struct metrics_input *input, struct buffer *buffer)
{
    static const struct {
        const char *name, *type, *help;
    } families[] = {
        {"sqlprodd_drill_last_success_timestamp_seconds", "gauge",
         "Unix time of the end of the last restore drill in which every backup taken restored, "
         "passed integrity_check and matched its fingerprint."},
        {"sqlprodd_drill_restore_seconds", "gauge",
         "Measured restore time of the newest backup in the last drill that restored it: "
         "download, SHA-256, decryption, decompression, integrity_check, fsync."},
        {"sqlprodd_drill_failures_total", "counter",
         "Restore drills that failed since the state was created."},
        {"sqlprodd_drill_coverage_ratio", "gauge",
         "Share of the kept backups (on the side drilled) that have passed a restore drill."},
    };
    const struct config *config = input->config;
    bool any = false;
    for (size_t i = 0; i < config->database_count && !any; i++)
        any = config->databases[i].drill.schedule.kind != SCHEDULE_NONE ||
              input->databases[i].jobs[JOB_DRILL].runs_total > 0;
    if (!any)
        return;
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        family(buffer, families[f].name, families[f].type, families[f].help);
        for (size_t i = 0; i < config->database_count; i++) {
            const struct metrics_database *database = &input->databases[i];
            const struct db_facts *facts = &database->facts;
            char name[300], value[64];
            bool known;
            switch (f) {
            case 0:
                known = facts->known & FACT_DRILL_SUCCEEDED_AT;
                snprintf(value, sizeof value, "%lld", (long long)facts->drill_succeeded_at);
                break;
            case 1:
                known = facts->known & FACT_DRILL_RESTORE_SECONDS;
                snprintf(value, sizeof value, "%.3f", facts->drill_restore_seconds);
                break;
            case 2:
                known = database->jobs[JOB_DRILL].runs_total > 0;
                snprintf(value, sizeof value, "%lld",
                         (long long)database->jobs[JOB_DRILL].failures_total);
                break;
            default:
                known = facts->known & FACT_DRILL_COVERAGE;
                snprintf(value, sizeof value, "%.6f", facts->drill_coverage);
                break;
            }
            if (!known)
                continue;
            escape_label(config->databases[i].name, name, sizeof name);
            buffer_printf(buffer, "%s{database=\"%s\"} %s\n", families[f].name, name, value);
        }
    }
}

static void collect_break(void *context, const char *reason, int64_t count)
{
    struct metrics_database *database = context;
    if (database->break_count >= sizeof database->breaks / sizeof database->breaks[0])
        return;
    snprintf(database->breaks[database->break_count].reason,
             sizeof database->breaks[0].reason, "%s", reason);
    database->breaks[database->break_count++].count = count;
}

int metrics_render_input(const struct metrics_input *input, char **text, size_t *size,
                         struct error *err)
{
    struct buffer buffer = {0};
    render_jobs(input, &buffer);
    render_databases(input, &buffer);
    render_replication(input, &buffer);
    render_drills(input, &buffer);
    render_database_details(input, &buffer);
    render_agent(input, &buffer);
    if (buffer.failed) {
        free(buffer.data);
        return error_set(err, -ENOMEM, "out of memory rendering metrics");
    }
    if (!buffer.data)
        buffer_printf(&buffer, "%s", "");
    *text = buffer.data;
    *size = buffer.size;
    return 0;
}

/* The row of one bulk query's database, NULL when it is not configured. */
static struct metrics_database *collected(struct metrics_input *input, const char *name)
{
    const struct database_config *db = config_find_database(input->config, name);
    return db ? &input->databases[db - input->config->databases] : NULL;
}

static void collect_facts(void *context, const char *name, const struct db_facts *facts)
{
    struct metrics_database *database = collected(context, name);
    if (database)
        database->facts = *facts;
}

static void collect_job(void *context, const char *name, const char *job,
                        const struct job_record *record)
{
    struct metrics_database *database = collected(context, name);
    int kind = job_kind_from_name(job);
    if (database && kind >= 0)
        database->jobs[kind] = *record;
}

static void collect_pending(void *context, const char *name, int64_t count)
{
    struct metrics_database *database = collected(context, name);
    if (database)
        database->uploads_pending = count;
}

int metrics_collect(const struct config *config, struct state *state, time_t now,
                    struct metrics_input *input, struct error *err)
{
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    *input = (struct metrics_input){.config = config, .rendered_at = now,
                                    .rendered_at_ms = now == wall.tv_sec
                                                          ? (int64_t)wall.tv_sec * 1000 +
                                                                wall.tv_nsec / 1000000
                                                          : (int64_t)now * 1000};
    input->databases = calloc(config->database_count + 1, sizeof *input->databases);
    if (!input->databases)
        return error_set(err, -ENOMEM, "out of memory rendering metrics");
    /* One query each for all databases: a glob entry can make thousands. */
    state_each_job(state, collect_job, input, NULL);
    state_each_facts(state, collect_facts, input, NULL);
    bool pending_known = state_each_pending_upload_count(state, collect_pending, input, NULL) == 0;
    for (size_t i = 0; i < config->database_count; i++) {
        const struct database_config *db = &config->databases[i];
        struct metrics_database *database = &input->databases[i];
        database->file_bytes = fs_file_size(db->path, "");
        database->wal_file_bytes = fs_file_size(db->path, "-wal");
        database->pending_known = pending_known;
        if (db->replicate.target) {
            if (state_get_replica(state, db->name, &database->replica, NULL) != 0)
                memset(&database->replica, 0, sizeof database->replica);
            state_replica_breaks(state, db->name, collect_break, database, NULL);
            char spool[PATH_MAX];
            if (replica_spool_directory(config->state_dir, db->name, spool, sizeof spool, NULL) ==
                0) {
                int64_t spooled = replica_spool_bytes(spool);
                database->replica_spool_bytes = spooled > 0 ? spooled : 0;
            }
        }
    }
    return 0;
}

void metrics_input_free(struct metrics_input *input)
{
    free(input->databases);
    input->databases = NULL;
}

int metrics_render(const struct config *config, struct state *state, char **text, size_t *size,
                   struct error *err)
{
    struct metrics_input input;
    int rc = metrics_collect(config, state, time(NULL), &input, err);
    if (rc == 0)
        rc = metrics_render_input(&input, text, size, err);
    metrics_input_free(&input);
    return rc;
}

/* Opens the textfile's directory, saying plainly when it is missing: the
 * one thing an operator must create by hand (node_exporter's packages do). */
static int metrics_open_directory(const struct config *config, int *fd, struct error *err)
{
    char directory[PATH_MAX];
    const char *path = config->metrics_textfile;
    const char *slash = strrchr(path, '/');
    size_t length = slash == path ? 1 : slash ? (size_t)(slash - path) : 1;
    if (length >= sizeof directory)
        return error_set(err, -ENAMETOOLONG, "metrics.textfile: %s: %s", path,
                         strerror(ENAMETOOLONG));
    memcpy(directory, slash ? path : ".", length);
    directory[length] = '\0';
    *fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fd >= 0)
        return 0;
    int saved = errno;
    if (saved == ENOENT)
        return error_set(err, -saved,
                         "metrics.textfile: cannot write %s: the directory %s does not exist: "
                         "create it (mkdir -p %s), writable by the user sqlprodd runs as, or "
                         "change metrics.textfile in %s",
                         path, directory, directory, config->file);
    if (saved == ENOTDIR)
        return error_set(err, -saved,
                         "metrics.textfile: cannot write %s: %s is not a directory: change "
                         "metrics.textfile in %s",
                         path, directory, config->file);
    return error_set(err, -saved, "metrics.textfile: cannot write %s: cannot open %s: %s", path,
                     directory, strerror(saved));
}

int metrics_write_textfile(const struct config *config, struct state *state, struct error *err)
{
    char *text = NULL;
    size_t size = 0;
    int directory_fd = -1;
    int rc = metrics_open_directory(config, &directory_fd, err);
    if (rc != 0)
        goto out;
    /* The agent and one-off commands write through the same temp name:
     * they take turns, or one could rename the other's half-written file
     * into place. */
    if (flock(directory_fd, LOCK_EX) < 0) {
        rc = -errno;
        error_set(err, rc, "metrics.textfile: cannot lock the directory of %s: %s",
                  config->metrics_textfile, strerror(-rc));
        goto out;
    }
    rc = metrics_render(config, state, &text, &size, err);
    if (rc == 0)
        rc = fs_write_file_atomically(config->metrics_textfile, text, size, 0644, err);

out:
    if (directory_fd >= 0)
        close(directory_fd); /* releases the lock */
    free(text);
    return rc;
}
