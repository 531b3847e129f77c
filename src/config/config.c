/*
 * config.c: loading sqlprodd.conf into one validated struct config.
 *
 * Reads the file with libconfig, checks the top-level keys, `metrics` and
 * `targets` here (`defaults` and `databases` in config_database.c), collects
 * every mistake rather than stopping at the first, and hands back either a
 * complete configuration or the list of "FILE:LINE: key: what is wrong" lines
 * in file order. An operator fixing a config at night should need one run
 * of `sqlprodd check`, not one per typo.
 *
 * Not for touching what the config names (databases, directories, the
 * network): that is `sqlprodd check`.
 */
#include "config/config_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "config/config_paths.h"
#include "core/log.h"

static const char *const top_level_keys[] = {"state_dir", "log_level", "metrics",   "workers",
                                             "defaults",  "targets",   "databases", NULL};
static const struct config_misplaced_key top_level_misplaced[] = {
    {"name", "it belongs in a database entry in databases = ( ... )"},
    {"path", "it belongs in a database entry in databases = ( ... )"},
    {"busy_timeout_ms", "it belongs in defaults = { ... } or in a database entry"},
    {"checkpoint", "it belongs in defaults = { ... } or in a database entry"},
    {"analyze", "it belongs in defaults = { ... } or in a database entry"},
    {"vacuum", "it belongs in defaults = { ... } or in a database entry"},
    {"backup", "it belongs in defaults = { ... } or in a database entry"},
    {"upload", "it belongs in defaults = { ... } or in a database entry"},
    {"health", "it belongs in defaults = { ... } or in a database entry"},
    {NULL, NULL},
};
static const char *const metrics_keys[] = {"textfile", "listen", NULL};
static const char *const target_keys[] = {
    "name",       "type",          "path",       "endpoint",         "region",
    "bucket",     "prefix",        "path_style", "credentials_file", "profile",
    "part_size",  "storage_class", "sse",        "sse_kms_key_id",   "tls_verify",
    "credential", "object_lock",   NULL};
/* Keys that only mean something for one type of target. */
static const char *const s3_only_keys[] = {
    "endpoint",         "region",     "bucket",     "prefix",        "path_style",
    "credentials_file", "profile",    "part_size",  "storage_class", "sse",
    "sse_kms_key_id",   "tls_verify", "credential", "object_lock",   NULL};
static const char *const dir_only_keys[] = {"path", NULL};
static const char *const target_type_names[] = {"dir", "s3", NULL}; /* enum target_type order */
static const char *const sse_names[] = {"AES256", "aws:kms", NULL};
static const char *const object_lock_keys[] = {"mode", "days", NULL};
/* enum object_lock_mode order */
static const char *const object_lock_mode_names[] = {"governance", "compliance", NULL};
static const char *const log_level_names[] = {"debug", "info", "notice", "warning", "error", NULL};

/* S3 multipart limits: every part but the last at least 5 MiB, at most 5 GiB. */
#define PART_SIZE_MINIMUM (5LL * 1024 * 1024)
#define PART_SIZE_MAXIMUM (5LL * 1024 * 1024 * 1024)

/* object_lock.days: a century is past any retention law's period, and keeps
 * now + days far inside what a 64-bit time_t and S3's dates hold. */
#define OBJECT_LOCK_DAYS_MAXIMUM 36500

const char *config_checkpoint_mode_name(enum checkpoint_mode mode)
{
    switch (mode) {
    case CHECKPOINT_PASSIVE: return "passive";
    case CHECKPOINT_FULL: return "full";
    case CHECKPOINT_RESTART: return "restart";
    case CHECKPOINT_TRUNCATE: return "truncate";
    }
    return "unknown";
}

const char *config_object_lock_mode_name(enum object_lock_mode mode)
{
    return object_lock_mode_names[mode == OBJECT_LOCK_COMPLIANCE ? 1 : 0];
}

static void target_release(struct target_config *target)
{
    free(target->name);
    free(target->path);
    free(target->path_origin.file);
    free(target->endpoint);
    free(target->region);
    free(target->bucket);
    free(target->prefix);
    free(target->credentials_file);
    free(target->credential);
    free(target->profile);
    free(target->storage_class);
    free(target->sse);
    free(target->sse_kms_key_id);
}

void config_free(struct config *config)
{
    if (!config)
        return;
    for (size_t i = 0; i < config->target_count; i++)
        target_release(&config->targets[i]);
    free(config->targets);
    for (size_t i = 0; i < config->database_count; i++)
        config_database_release(&config->databases[i]);
    free(config->databases);
    free(config->database_order);
    for (size_t i = 0; i < config->glob_count; i++)
        config_glob_release(&config->globs[i]);
    free(config->globs);
    free(config->file);
    free(config->state_dir);
    free(config->state_dir_origin.file);
    free(config->metrics_textfile);
    free(config->metrics_textfile_origin.file);
    free(config->metrics_listen);
    free(config);
}

void config_diagnostics_free(struct config_diagnostics *diag)
{
    if (!diag)
        return;
    for (size_t i = 0; i < diag->count; i++)
        free(diag->lines[i]);
    free(diag->lines);
    diag->lines = NULL;
    diag->count = 0;
}

/* Adds one line to diag; false when out of memory. */
static bool diagnostics_add(struct config_diagnostics *diag, char *line)
{
    char **grown = realloc(diag->lines, (diag->count + 1) * sizeof *diag->lines);
    if (!grown) {
        free(line);
        return false;
    }
    diag->lines = grown;
    diag->lines[diag->count++] = line;
    return true;
}

/* "HOST:PORT" with a numeric port 1-65535; an IPv6 host in brackets. */
static bool listen_address_is_valid(const char *text)
{
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text)
        return false;
    size_t host_length = (size_t)(colon - text);
    if (text[0] == '[') {
        if (text[host_length - 1] != ']' || host_length < 3)
            return false;
    } else if (memchr(text, ':', host_length) || memchr(text, ' ', host_length)) {
        return false;
    }
    const char *port = colon + 1;
    if (port[0] == '\0' || strspn(port, "0123456789") != strlen(port) || strlen(port) > 5)
        return false;
    long number = strtol(port, NULL, 10);
    return number >= 1 && number <= 65535;
}

static void read_metrics(struct config_reader *reader, const config_setting_t *root,
                         struct config *config)
{
    const config_setting_t *group = config_setting_get_member(root, "metrics");
    if (!group)
        return;
    if (config_setting_type(group) != CONFIG_TYPE_GROUP) {
        config_report(reader, group, "metrics",
                      "expected a group { textfile = \"...\"; listen = \"127.0.0.1:9187\"; }, "
                      "got %s",
                      config_type_phrase(group));
        return;
    }
    config_check_keys(reader, group, "metrics", metrics_keys, NULL);
    if (config_value_path(reader, group, "metrics", "textfile", &config->metrics_textfile) ==
        CONFIG_VALUE_SET)
        config_origin_record(reader, group, "textfile", false, &config->metrics_textfile_origin);
    if (config_value_string(reader, group, "metrics", "listen", &config->metrics_listen) ==
            CONFIG_VALUE_SET &&
        !listen_address_is_valid(config->metrics_listen)) {
        config_report(reader, config_setting_get_member(group, "listen"), "metrics.listen",
                      "must be HOST:PORT like \"127.0.0.1:9187\", got \"%s\"",
                      config->metrics_listen);
    }
}

static bool list_contains(const char *const *list, const char *word)
{
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], word) == 0)
            return true;
    return false;
}

/* Reports keys of the other type of target ("bucket" on a dir target):
 * they would be silently ignored, which hides a wrong `type`. */
static void check_type_keys(struct config_reader *reader, const config_setting_t *entry,
                            const char *key, enum target_type type)
{
    const char *const *foreign = type == TARGET_S3 ? dir_only_keys : s3_only_keys;
    const char *type_name = target_type_names[type == TARGET_S3 ? TARGET_DIR : TARGET_S3];
    int count = config_setting_length(entry);
    for (int i = 0; i < count; i++) {
        const config_setting_t *member = config_setting_get_elem(entry, (unsigned)i);
        const char *name = config_setting_name(member);
        if (!name || !list_contains(foreign, name))
            continue;
        char member_key[CONFIG_KEY_SIZE];
        config_key_join(member_key, sizeof member_key, key, name);
        config_report(reader, member, member_key,
                      "'%s' is only used by type \"%s\" targets, and this one is \"%s\"", name,
                      type_name, target_type_names[type]);
    }
}

/* Where the S3 server is: `endpoint` (a URL) or, on AWS, `region` alone. */
static int read_s3_location(struct config_reader *reader, const config_setting_t *entry,
                            const char *key, struct target_config *target)
{
    config_value_string(reader, entry, key, "region", &target->region);
    if (config_value_string(reader, entry, key, "endpoint", &target->endpoint) ==
        CONFIG_VALUE_SET) {
        const char *endpoint = target->endpoint;
        size_t scheme = strncmp(endpoint, "https://", 8) == 0  ? 8
                        : strncmp(endpoint, "http://", 7) == 0 ? 7
                                                               : 0;
        if (scheme == 0 || endpoint[scheme] == '\0' || endpoint[scheme] == '/') {
            char member_key[CONFIG_KEY_SIZE];
            config_key_join(member_key, sizeof member_key, key, "endpoint");
            config_report(reader, config_setting_get_member(entry, "endpoint"), member_key,
                          "must be a URL starting with https:// or http://, got \"%s\"", endpoint);
        }
        /* The S3 client appends "/bucket/key": keep one slash between. */
        size_t length = strlen(target->endpoint);
        while (length > scheme + 1 && target->endpoint[length - 1] == '/')
            target->endpoint[--length] = '\0';
    } else if (!config_setting_get_member(entry, "endpoint")) {
        if (!target->region) {
            config_report(reader, entry, key,
                          "missing 'endpoint' (the S3 server's URL, e.g. \"https://"
                          "minio.example.com:9000\"); on AWS set 'region' instead and the "
                          "endpoint is https://s3.REGION.amazonaws.com");
        } else if (asprintf(&target->endpoint, "https://s3.%s.amazonaws.com", target->region) < 0) {
            target->endpoint = NULL;
            return -ENOMEM;
        }
    }
    if (!target->region && !(target->region = strdup("us-east-1")))
        return -ENOMEM;

    enum config_value_result result =
        config_value_string(reader, entry, key, "bucket", &target->bucket);
    char member_key[CONFIG_KEY_SIZE];
    config_key_join(member_key, sizeof member_key, key, "bucket");
    if (result == CONFIG_VALUE_ABSENT)
        config_report(reader, entry, key, "missing 'bucket' (required for type \"s3\")");
    else if (result == CONFIG_VALUE_SET && target->bucket[0] == '\0')
        config_report(reader, config_setting_get_member(entry, "bucket"), member_key,
                      "must not be empty");
    else if (result == CONFIG_VALUE_SET && strchr(target->bucket, '/'))
        config_report(reader, config_setting_get_member(entry, "bucket"), member_key,
                      "\"%s\" is not a bucket name: put the folder part in 'prefix'",
                      target->bucket);

    config_value_string(reader, entry, key, "prefix", &target->prefix);
    if (!target->prefix && !(target->prefix = strdup("")))
        return -ENOMEM;
    config_value_bool(reader, entry, key, "path_style", &target->path_style);
    return 0;
}

/* What the S3 target signs with: a credentials file, or a systemd credential. */
static int read_s3_credentials(struct config_reader *reader, const config_setting_t *entry,
                               const char *key, struct target_config *target)
{
    config_value_path(reader, entry, key, "credentials_file", &target->credentials_file);
    /* A credential is a file name in $CREDENTIALS_DIRECTORY (systemd.exec(5)). */
    if (config_value_string(reader, entry, key, "credential", &target->credential) ==
        CONFIG_VALUE_SET) {
        const config_setting_t *member = config_setting_get_member(entry, "credential");
        char member_key[CONFIG_KEY_SIZE];
        config_key_join(member_key, sizeof member_key, key, "credential");
        if (!*target->credential || strchr(target->credential, '/') ||
            strcmp(target->credential, ".") == 0 || strcmp(target->credential, "..") == 0)
            config_report(reader, member, member_key,
                          "\"%s\" is not a credential name (the first part of "
                          "LoadCredential=NAME:PATH, without '/')",
                          target->credential);
        else if (target->credentials_file)
            config_report(reader, member, member_key,
                          "give credential or credentials_file, not both");
    }
    config_value_string(reader, entry, key, "profile", &target->profile);
    if (!target->profile && !(target->profile = strdup("default")))
        return -ENOMEM;
    return 0;
}

/* How objects are written: part size, storage class, encryption, TLS. */
static int read_s3_uploads(struct config_reader *reader, const config_setting_t *entry,
                           const char *key, struct target_config *target)
{
    char member_key[CONFIG_KEY_SIZE];
    if (config_value_size(reader, entry, key, "part_size", &target->part_size) ==
            CONFIG_VALUE_SET &&
        (target->part_size < PART_SIZE_MINIMUM || target->part_size > PART_SIZE_MAXIMUM)) {
        const config_setting_t *member = config_setting_get_member(entry, "part_size");
        config_key_join(member_key, sizeof member_key, key, "part_size");
        config_report(reader, member, member_key,
                      "must be between 5MB and 5GB (the limits of S3 multipart uploads), got "
                      "\"%s\"",
                      config_setting_get_string(member));
    }
    config_value_string(reader, entry, key, "storage_class", &target->storage_class);

    int choice;
    if (config_value_choice(reader, entry, key, "sse", sse_names, &choice) == CONFIG_VALUE_SET &&
        !(target->sse = strdup(sse_names[choice])))
        return -ENOMEM;
    if (config_value_string(reader, entry, key, "sse_kms_key_id", &target->sse_kms_key_id) ==
            CONFIG_VALUE_SET &&
        !(target->sse && strcmp(target->sse, "aws:kms") == 0)) {
        config_key_join(member_key, sizeof member_key, key, "sse_kms_key_id");
        config_report(reader, config_setting_get_member(entry, "sse_kms_key_id"), member_key,
                      "only used with sse = \"aws:kms\"");
    }
    config_value_bool(reader, entry, key, "tls_verify", &target->tls_verify);
    return 0;
}

/* object_lock = { mode = "governance"; days = 30; }: both or nothing, so a
 * half-written lock is an error rather than silently no lock. */
static void read_s3_object_lock(struct config_reader *reader, const config_setting_t *entry,
                                const char *key, struct target_config *target)
{
    const config_setting_t *group = config_setting_get_member(entry, "object_lock");
    char lock_key[CONFIG_KEY_SIZE];
    if (!group)
        return;
    config_key_join(lock_key, sizeof lock_key, key, "object_lock");
    if (config_setting_type(group) != CONFIG_TYPE_GROUP) {
        config_report(reader, group, lock_key,
                      "expected a group { mode = \"governance\"; days = 30; }, got %s",
                      config_type_phrase(group));
        return;
    }
    config_check_keys(reader, group, lock_key, object_lock_keys, NULL);
    int mode, days;
    enum config_value_result mode_result =
        config_value_choice(reader, group, lock_key, "mode", object_lock_mode_names, &mode);
    enum config_value_result days_result =
        config_value_int(reader, group, lock_key, "days", 1, OBJECT_LOCK_DAYS_MAXIMUM, &days);
    if (mode_result == CONFIG_VALUE_ABSENT)
        config_report(reader, group, lock_key, "missing 'mode' (\"governance\" or \"compliance\")");
    if (days_result == CONFIG_VALUE_ABSENT)
        config_report(reader, group, lock_key,
                      "missing 'days' (how long each uploaded object stays locked, 1 to %d)",
                      OBJECT_LOCK_DAYS_MAXIMUM);
    if (mode_result == CONFIG_VALUE_SET && days_result == CONFIG_VALUE_SET) {
        target->object_lock_mode = (enum object_lock_mode)mode;
        target->object_lock_days = days;
    }
}

static int read_s3_target(struct config_reader *reader, const config_setting_t *entry,
                          const char *key, struct target_config *target)
{
    int rc = read_s3_location(reader, entry, key, target);
    if (rc == 0)
        rc = read_s3_credentials(reader, entry, key, target);
    if (rc == 0)
        rc = read_s3_uploads(reader, entry, key, target);
    if (rc == 0)
        read_s3_object_lock(reader, entry, key, target);
    return rc;
}

static int read_target(struct config_reader *reader, const config_setting_t *entry, unsigned index,
                       struct config *config)
{
    struct target_config *target = &config->targets[index];
    target->line = config_setting_source_line(entry);
    target->tls_verify = true;
    target->part_size = 16LL * 1024 * 1024;
    char key[CONFIG_KEY_SIZE];
    snprintf(key, sizeof key, "targets[%u]", index);
    if (!config_entry_is_group(reader, entry, key, "{ name = ...; type = ...; ... }"))
        return 0;
    config_value_entry_name(reader, entry, "targets", index,
                            "what upload = { target = ...; } refers to", &target->name, key,
                            sizeof key);
    config_check_keys(reader, entry, key, target_keys, NULL);
    for (unsigned i = 0; i < index; i++) {
        const struct target_config *earlier = &config->targets[i];
        if (target->name && earlier->name && strcmp(target->name, earlier->name) == 0) {
            char name_key[CONFIG_KEY_SIZE];
            config_key_join(name_key, sizeof name_key, key, "name");
            config_report(reader, config_setting_get_member(entry, "name"), name_key,
                          "duplicate target name \"%s\" (first used at line %d)", target->name,
                          earlier->line);
        }
    }

    int type;
    enum config_value_result result =
        config_value_choice(reader, entry, key, "type", target_type_names, &type);
    if (result == CONFIG_VALUE_ABSENT)
        config_report(reader, entry, key, "missing 'type' (\"s3\" or \"dir\")");
    if (result != CONFIG_VALUE_SET)
        return 0;
    target->type = (enum target_type)type;
    check_type_keys(reader, entry, key, target->type);
    if (target->type == TARGET_S3)
        return read_s3_target(reader, entry, key, target);
    enum config_value_result path = config_value_path(reader, entry, key, "path", &target->path);
    if (path == CONFIG_VALUE_ABSENT)
        config_report(reader, entry, key,
                      "missing 'path' (required for type \"dir\": the directory that receives "
                      "the archives)");
    else if (path == CONFIG_VALUE_SET)
        config_origin_record(reader, entry, "path", false, &target->path_origin);
    return 0;
}

static int read_targets(struct config_reader *reader, const config_setting_t *root,
                        struct config *config)
{
    const config_setting_t *list = config_setting_get_member(root, "targets");
    if (!list)
        return 0;
    if (config_setting_type(list) != CONFIG_TYPE_LIST) {
        config_report(reader, list, "targets",
                      "expected a list ( { name = ...; type = ...; }, ... ), got %s",
                      config_type_phrase(list));
        return 0;
    }
    unsigned count = (unsigned)config_setting_length(list);
    if (count == 0)
        return 0;
    config->targets = calloc(count, sizeof *config->targets);
    if (!config->targets)
        return -ENOMEM;
    config->target_count = count;
    for (unsigned i = 0; i < count; i++) {
        int rc = read_target(reader, config_setting_get_elem(list, i), i, config);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int read_top_level(struct config_reader *reader, const config_setting_t *root,
                          struct config *config)
{
    config_check_keys(reader, root, "", top_level_keys, top_level_misplaced);
    if (config_value_path(reader, root, "", "state_dir", &config->state_dir) == CONFIG_VALUE_SET)
        config_origin_record(reader, root, "state_dir", false, &config->state_dir_origin);
    int choice;
    if (config_value_choice(reader, root, "", "log_level", log_level_names, &choice) ==
        CONFIG_VALUE_SET)
        config->log_level = log_level_from_name(log_level_names[choice]);
    config_value_int(reader, root, "", "workers", 1, 64, &config->workers);
    read_metrics(reader, root, config);
    int rc = read_targets(reader, root, config);
    if (rc == 0)
        rc = config_read_databases(reader, root, config);
    return rc;
}

static int compare_mistakes(const void *left, const void *right, void *main_file)
{
    const struct config_mistake *a = left, *b = right;
    return config_compare_locations(a->file, a->line_number, a->sequence, b->file, b->line_number,
                                    b->sequence, main_file);
}

/* Moves the mistakes into diag in file order; false when out of memory. */
static bool mistakes_hand_over(struct config_reader *reader, struct config_diagnostics *diag)
{
    bool ok = !reader->out_of_memory;
    if (reader->mistake_count > 1)
        qsort_r(reader->mistakes, reader->mistake_count, sizeof *reader->mistakes, compare_mistakes,
                (void *)reader->file);
    for (size_t i = 0; i < reader->mistake_count; i++) {
        free(reader->mistakes[i].file);
        if (diag && ok)
            ok = diagnostics_add(diag, reader->mistakes[i].line);
        else
            free(reader->mistakes[i].line);
    }
    free(reader->mistakes);
    reader->mistakes = NULL;
    reader->mistake_count = reader->mistake_capacity = 0;
    return ok;
}

/* Reports a file that cannot be read in the same FILE: form. */
static int report_unreadable(struct config_diagnostics *diag, const char *path, int code,
                             const char *why)
{
    char *line;
    if (asprintf(&line, "%s: cannot read: %s", path, why) < 0)
        return -ENOMEM;
    if (diag && !diagnostics_add(diag, line))
        return -ENOMEM;
    if (!diag)
        free(line);
    return code;
}

/* Opens path for libconfig; a directory is refused here because fopen()
 * accepts it and libconfig then reports a puzzling "file I/O error", and
 * a FIFO or device because reading it would block or never end (the open
 * does not block, so a FIFO cannot hang `check` or a reload). */
static int open_config_file(const char *path, struct config_diagnostics *diag, FILE **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        int code = -errno;
        return report_unreadable(diag, path, code, strerror(-code));
    }
    struct stat st;
    int code = fstat(fd, &st) != 0 ? -errno : S_ISDIR(st.st_mode) ? -EISDIR : 0;
    if (code != 0) {
        close(fd);
        return report_unreadable(diag, path, code, strerror(-code));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return report_unreadable(diag, path, -EINVAL, "not a regular file");
    }
    *out = fdopen(fd, "r");
    if (!*out) {
        code = -errno;
        close(fd);
        return report_unreadable(diag, path, code, strerror(-code));
    }
    return 0;
}

/* libconfig stops at its first syntax error: that one line is the report. */
static int report_syntax_error(const struct config_reader *reader, const config_t *parsed,
                               struct config_diagnostics *diag)
{
    const char *text = config_error_text(parsed);
    char *file = config_source_name(reader, config_error_file(parsed));
    if (!file)
        return -ENOMEM;
    char *line;
    int written =
        strcmp(text, "syntax error") == 0
            ? asprintf(&line, "%s:%d: syntax error", file, config_error_line(parsed))
            : asprintf(&line, "%s:%d: syntax error: %s", file, config_error_line(parsed), text);
    free(file);
    if (written < 0)
        return -ENOMEM;
    if (!diag) {
        free(line);
        return -EINVAL;
    }
    return diagnostics_add(diag, line) ? -EINVAL : -ENOMEM;
}

int config_load(const char *path, struct config **out, struct config_diagnostics *diag)
{
    *out = NULL;
    if (diag) {
        diag->lines = NULL;
        diag->count = 0;
    }
    struct config_reader reader = {.file = path};
    struct config *config = NULL;
    char *directory = NULL;
    FILE *stream = NULL;
    config_t parsed;
    config_init(&parsed);

    int rc = open_config_file(path, diag, &stream);
    if (rc != 0)
        goto out;
    /* `@include "x.conf"` is relative to the config file, not to the cwd. */
    char *copy = strdup(path);
    if (!copy) {
        rc = -ENOMEM;
        goto out;
    }
    directory = strdup(dirname(copy));
    free(copy);
    if (!directory) {
        rc = -ENOMEM;
        goto out;
    }
    config_set_include_dir(&parsed, directory);
    reader.directory = directory;
    /* Sizes, long lines and strings, @include files: before libconfig,
     * whose parse is quadratic in the longest token (config_scan.c). */
    rc = config_scan(&reader, path, directory);
    if (rc == 0 && reader.mistake_count > 0)
        rc = -EINVAL;
    if (rc != 0)
        goto out;
    if (!config_read(&parsed, stream)) {
        rc = report_syntax_error(&reader, &parsed, diag);
        goto out;
    }

    config = calloc(1, sizeof *config);
    if (!config || !(config->file = strdup(path)) ||
        !(config->state_dir = strdup("/var/lib/sqlprodd"))) {
        rc = -ENOMEM;
        goto out;
    }
    config->log_level = LOG_INFO;
    config->workers = 2;
    rc = read_top_level(&reader, config_root_setting(&parsed), config);
    config_literal_sites_finish(&reader, true);
    if (rc == 0 && reader.out_of_memory)
        rc = -ENOMEM;
    if (rc == 0 && reader.mistake_count > 0)
        rc = -EINVAL;
    /* Only a config that is otherwise valid has every path to compare. */
    if (rc == 0)
        rc = config_paths_check(config, diag);
    if (rc == 0)
        rc = config_order_databases(config);
out:
    config_literal_sites_finish(&reader, false);
    if (!mistakes_hand_over(&reader, diag) && rc == 0)
        rc = -ENOMEM;
    config_destroy(&parsed);
    if (stream)
        fclose(stream);
    free(directory);
    if (rc != 0) {
        config_free(config);
        return rc;
    }
    *out = config;
    return 0;
}
