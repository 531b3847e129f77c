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
static void render_database_details(const struct config *config, struct state *state,
                                    struct buffer *buffer)
{
    static const char *const details[][4] = {
        {"sqlprodd_database_page_size_bytes", "gauge", "Page size of the database.", "page_size"},
        {"sqlprodd_health_check_timestamp_seconds", "gauge",
         "Unix time of the last health verdict; alert when it stops moving.", "health_checked_at"},
        {"sqlprodd_integrity_check_last_success_timestamp_seconds", "gauge",
         "Unix time of the last full integrity_check that found no problem.",
         "integrity_checked_at"},
    };
    for (size_t f = 0; f < sizeof details / sizeof details[0]; f++) {
        family(buffer, details[f][0], details[f][1], details[f][2]);
        for (size_t i = 0; i < config->database_count; i++) {
            const struct database_config *db = &config->databases[i];
            char name[300], value[64] = "";
            state_get_value(state, db->name, details[f][3], value, sizeof value, NULL);
            if (!value[0] || strspn(value, "0123456789") != strlen(value))
                continue;
            escape_label(db->name, name, sizeof name);
            buffer_printf(buffer, "%s{database=\"%s\"} %s\n", details[f][0], name, value);
        }
    }
    family(buffer, "sqlprodd_database_info", "gauge",
           "Persistent settings of the database at the last health check (value is always 1).");
    for (size_t i = 0; i < config->database_count; i++) {
        const struct database_config *db = &config->databases[i];
        char name[300], journal[64] = "", vacuum[64] = "", journal_label[140], vacuum_label[140];
        state_get_value(state, db->name, "journal_mode", journal, sizeof journal, NULL);
        state_get_value(state, db->name, "auto_vacuum", vacuum, sizeof vacuum, NULL);
        if (!journal[0])
            continue;
        escape_label(db->name, name, sizeof name);
        escape_label(journal, journal_label, sizeof journal_label);
        escape_label(vacuum, vacuum_label, sizeof vacuum_label);
        buffer_printf(buffer,
                      "sqlprodd_database_info{database=\"%s\",journal_mode=\"%s\",auto_vacuum="
                      "\"%s\"} 1\n",
                      name, journal_label, vacuum_label);
    }
}

/* The agent itself: which version runs, and when these numbers were made
 * (a textfile that stops changing means the agent stopped writing it). */
static void render_agent(struct buffer *buffer)
{
    char version[140];
    escape_label(SQLPRODD_VERSION, version, sizeof version);
    family(buffer, "sqlprodd_build_info", "gauge", "Version of sqlprodd (value is always 1).");
    buffer_printf(buffer, "sqlprodd_build_info{version=\"%s\"} 1\n", version);
    family(buffer, "sqlprodd_metrics_timestamp_seconds", "gauge",
           "Unix time these metrics were rendered.");
    buffer_printf(buffer, "sqlprodd_metrics_timestamp_seconds %lld\n", (long long)time(NULL));
}

int metrics_render(const struct config *config, struct state *state, char **text, size_t *size,
                   struct error *err)
{
    struct buffer buffer = {0};
    for (size_t f = 0; f < sizeof job_families / sizeof job_families[0]; f++) {
        family(&buffer, job_families[f].name, job_families[f].type, job_families[f].help);
        for (size_t i = 0; i < config->database_count; i++) {
            const struct database_config *db = &config->databases[i];
            char name[300];
            escape_label(db->name, name, sizeof name);
            for (int kind = 0; kind < JOB_KIND_COUNT; kind++) {
                struct job_record record;
                if (state_get_job(state, db->name, job_name(kind), &record, NULL) != 0 ||
                    record.runs_total == 0)
                    continue;
                buffer_printf(&buffer, "%s{database=\"%s\",job=\"%s\"} ", job_families[f].name,
                              name, job_name(kind));
                switch (f) {
                case 0: buffer_printf(&buffer, "%lld\n", (long long)record.last_success); break;
                case 1: buffer_printf(&buffer, "%.3f\n", record.last_duration); break;
                case 2: buffer_printf(&buffer, "%lld\n", (long long)record.runs_total); break;
                default: buffer_printf(&buffer, "%lld\n", (long long)record.failures_total); break;
                }
            }
        }
    }

    static const char *const database_families[][3] = {
        {"sqlprodd_database_size_bytes", "gauge", "Size of the database file."},
        {"sqlprodd_wal_size_bytes", "gauge", "Size of the database's -wal file."},
        {"sqlprodd_freelist_ratio", "gauge",
         "Free pages over all pages, at the last health check."},
        {"sqlprodd_health", "gauge", "Health verdict: 0 healthy, 1 degraded, 2 unhealthy."},
        {"sqlprodd_backup_last_size_bytes", "gauge", "Size of the newest backup archive."},
        {"sqlprodd_upload_pending", "gauge", "Archives waiting to be uploaded to the target."},
    };
    for (size_t f = 0; f < sizeof database_families / sizeof database_families[0]; f++) {
        family(&buffer, database_families[f][0], database_families[f][1], database_families[f][2]);
        for (size_t i = 0; i < config->database_count; i++) {
            const struct database_config *db = &config->databases[i];
            char name[300], value[64] = "";
            escape_label(db->name, name, sizeof name);
            switch (f) {
            case 0:
                snprintf(value, sizeof value, "%lld", (long long)fs_file_size(db->path, ""));
                break;
            case 1:
                snprintf(value, sizeof value, "%lld", (long long)fs_file_size(db->path, "-wal"));
                break;
            case 2:
                state_get_value(state, db->name, "freelist_ratio", value, sizeof value, NULL);
                break;
            case 3: {
                char word[32];
                state_get_value(state, db->name, "health", word, sizeof word, NULL);
                int level = health_level_parse(word);
                if (level >= 0)
                    snprintf(value, sizeof value, "%d", level);
                break;
            }
            case 4:
                state_get_value(state, db->name, "backup_last_bytes", value, sizeof value, NULL);
                break;
            default: {
                int64_t pending = 0;
                if (state_pending_upload_count(state, db->name, &pending, NULL) == 0)
                    snprintf(value, sizeof value, "%lld", (long long)pending);
                break;
            }
            }
            if (value[0])
                buffer_printf(&buffer, "%s{database=\"%s\"} %s\n", database_families[f][0], name,
                              value);
        }
    }
    render_database_details(config, state, &buffer);
    render_agent(&buffer);
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
