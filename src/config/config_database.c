/*
 * config_database.c: the `defaults` group and the `databases` list of
 * sqlprodd.conf, and how they merge.
 *
 * Merge rules, in order builtin -> defaults -> database entry: a job group
 * overrides the one before it key by key; `every` and `cron` are one key
 * (giving either replaces the inherited schedule); `keep` is read as a whole
 * and replaces the inherited policy, as restic reads a set of --keep-*
 * flags. A mistake is reported once, where it is written: a bad default is
 * not repeated for every database that inherits it.
 *
 * Not for the top-level keys or targets (config.c) nor for the wording of
 * value errors (config_values.c).
 */
#include "config/config_internal.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/units.h"

enum job {
    JOB_CHECKPOINT,
    JOB_ANALYZE,
    JOB_VACUUM,
    JOB_BACKUP,
    JOB_UPLOAD,
    JOB_HEALTH,
    JOB_DRILL,
    JOB_COUNT,
};

static const char *const job_names[JOB_COUNT] = {
    "checkpoint", "analyze", "vacuum", "backup", "upload", "health", "drill",
};

#define SCHEDULE_KEYS "every", "cron", "enabled"
static const char *const checkpoint_keys[] = {SCHEDULE_KEYS, "mode", "max_wait_ms", NULL};
static const char *const analyze_keys[] = {SCHEDULE_KEYS, "optimize", "limit", NULL};
static const char *const vacuum_keys[] = {SCHEDULE_KEYS, "pages", NULL};
static const char *const backup_keys[] = {SCHEDULE_KEYS, "dir", "level", "verify", "compress", "keep", NULL};
static const char *const upload_keys[] = {SCHEDULE_KEYS, "target", "keep", NULL};
static const char *const health_keys[] = {SCHEDULE_KEYS,   "wal_warn",      "wal_crit",
                                          "freelist_warn", "freelist_crit", "integrity_every",
                                          "locked_crit",   NULL};
static const char *const drill_keys[] = {SCHEDULE_KEYS, "from", NULL};
static const char *const *const job_keys[JOB_COUNT] = {
    checkpoint_keys, analyze_keys, vacuum_keys, backup_keys, upload_keys, health_keys, drill_keys,
};
static const char *const replicate_keys[] = {"target",      "interval", "snapshot_every", "window",
                                             "spool_max",   "enabled",  "compact",        "deltas",
                                             "delta_every", NULL};
static const char *const enforce_keys[] = {"journal_mode", "auto_vacuum", NULL};
static const char *const enforce_journal_mode_names[] = {"wal", NULL};
static const char *const enforce_auto_vacuum_names[] = {"none", "full", "incremental", NULL};
static const char *const keep_keys[] = {"last",    "hourly", "daily",  "weekly",
                                        "monthly", "yearly", "within", NULL};

static const char *const defaults_keys[] = {"busy_timeout_ms", "checkpoint", "analyze",   "vacuum",
                                            "backup",          "upload",     "replicate", "health",
                                            "enforce",         "encrypt",    "drill",     NULL};
static const char *const database_keys[] = {
    "name",   "path",      "glob",   "busy_timeout_ms", "checkpoint", "analyze", "vacuum", "backup",
    "upload", "replicate", "health", "enforce",         "encrypt",    "drill",   NULL};

/* Keys written one level too high or low: say where they go. One table
 * serves `defaults` and database entries, as keys known in a group are
 * never looked up here. */
static const struct config_misplaced_key misplaced_keys[] = {
    {"name", "each database entry in databases = ( ... ) has its own name"},
    {"path", "each database entry in databases = ( ... ) has its own path"},
    {"every", "a schedule goes inside a job group, e.g. backup = { every = \"1h\"; }"},
    {"cron", "a schedule goes inside a job group, e.g. analyze = { cron = \"30 3 * * *\"; }"},
    {"enabled", "it goes inside a job group, e.g. vacuum = { enabled = false; }"},
    {"mode", "it belongs in checkpoint = { ... }"},
    {"max_wait_ms", "it belongs in checkpoint = { ... }"},
    {"optimize", "it belongs in analyze = { ... }"},
    {"pages", "it belongs in vacuum = { ... }"},
    {"dir", "it belongs in backup = { ... }"},
    {"level", "it belongs in backup = { ... }"},
    {"verify", "it belongs in backup = { ... }"},
    {"compress", "it belongs in backup = { ... }"},
    {"keep", "it belongs in backup = { ... } or upload = { ... }"},
    {"target", "it belongs in upload = { ... } or replicate = { ... }"},
    {"interval", "it belongs in replicate = { ... }"},
    {"snapshot_every", "it belongs in replicate = { ... }"},
    {"window", "it belongs in replicate = { ... }"},
    {"delta_every", "it belongs in replicate = { ... }"},
    {"wal_warn", "it belongs in health = { ... }"},
    {"wal_crit", "it belongs in health = { ... }"},
    {"freelist_warn", "it belongs in health = { ... }"},
    {"freelist_crit", "it belongs in health = { ... }"},
    {"integrity_every", "it belongs in health = { ... }"},
    {"locked_crit", "it belongs in health = { ... }"},
    {"journal_mode", "it belongs in enforce = { ... }"},
    {"auto_vacuum", "it belongs in enforce = { ... }"},
    {"from", "it belongs in drill = { ... }"},
    {NULL, NULL},
};

static const char *const checkpoint_mode_names[] = {"passive", "full", "restart", "truncate", NULL};
static const char *const verify_mode_names[] = {"integrity", "quick", NULL};
static const char *const compress_mode_names[] = {"gzip", "zstd", NULL};
static const char *const drill_source_names[] = {"local", "remote", NULL};

/* A database's settings while they are being merged. `enabled` is kept
 * apart from the schedule so that a database can say `enabled = true` to
 * turn back on a job its defaults turned off, with the inherited schedule. */
struct database_draft {
    struct database_config settings;
    bool enabled[JOB_COUNT];
    bool replicate_enabled;
    bool encrypt_enabled;
    /* drill.from as written (-1: not written: the upload target if there
     * is one, else local), and where, for the check against the target. */
    int drill_from;
    int drill_from_line;
    bool drill_from_in_defaults;
};

static struct schedule *draft_schedule(struct database_draft *draft, enum job job)
{
    struct database_config *settings = &draft->settings;
    switch (job) {
    case JOB_CHECKPOINT: return &settings->checkpoint.schedule;
    case JOB_ANALYZE: return &settings->analyze.schedule;
    case JOB_VACUUM: return &settings->vacuum.schedule;
    case JOB_BACKUP: return &settings->backup.schedule;
    case JOB_UPLOAD: return &settings->upload.schedule;
    case JOB_HEALTH: return &settings->health.schedule;
    case JOB_DRILL: return &settings->drill.schedule;
    default: break;
    }
    assert(!"unknown job");
    return NULL;
}

static void schedule_every(struct schedule *schedule, int64_t seconds, const char *text)
{
    memset(schedule, 0, sizeof *schedule);
    schedule->kind = SCHEDULE_EVERY;
    schedule->every_seconds = seconds;
    snprintf(schedule->text, sizeof schedule->text, "%s", text);
}

void config_database_release(struct database_config *database)
{
    free(database->name);
    free(database->path);
    free(database->backup.dir);
    free(database->upload.target_name);
    free(database->replicate.target_name);
    free(database->path_origin.file);
    free(database->backup.dir_origin.file);
    free(database->replicate.origin.file);
    database->name = database->path = database->backup.dir = database->upload.target_name = NULL;
    database->replicate.target_name = NULL;
    database->path_origin.file = database->backup.dir_origin.file = NULL;
    database->replicate.origin.file = NULL;
    config_encrypt_release(&database->encrypt);
}

/* The builtin defaults, as documented in config.h and etc/sqlprodd.conf. */
static int draft_init_builtin(struct database_draft *draft)
{
    memset(draft, 0, sizeof *draft);
    for (int job = 0; job < JOB_COUNT; job++)
        draft->enabled[job] = true;
    struct database_config *settings = &draft->settings;
    settings->busy_timeout_ms = 5000;

    schedule_every(&settings->checkpoint.schedule, 15 * 60, "15m");
    settings->checkpoint.mode = CHECKPOINT_TRUNCATE;
    settings->checkpoint.max_wait_ms = 2000;

    struct schedule *analyze = &settings->analyze.schedule;
    char why[128];
    if (sched_parse_cron("30 3 * * *", &analyze->cron, why, sizeof why) != 0)
        assert(!"the builtin analyze cron parses");
    analyze->kind = SCHEDULE_CRON;
    snprintf(analyze->text, sizeof analyze->text, "30 3 * * *");

    schedule_every(&settings->vacuum.schedule, 6 * 3600, "6h");
    settings->vacuum.pages = 0;
    settings->analyze.limit = 1000;

    schedule_every(&settings->backup.schedule, 3600, "1h");
    settings->backup.dir = strdup("/var/backups/sqlprodd");
    if (!settings->backup.dir)
        return -ENOMEM;
    settings->backup.level = 6;
    settings->backup.verify = VERIFY_QUICK;
    settings->backup.compress = COMPRESS_GZIP;
    settings->backup.keep = (struct keep_policy){.last = 24, .daily = 7, .weekly = 4, .monthly = 6};

    /* The queue retry cadence; it only matters once a target is set. */
    schedule_every(&settings->upload.schedule, 60, "1m");
    settings->upload.keep = (struct keep_policy){.daily = 30, .monthly = 12};

    draft->replicate_enabled = true;
    draft->encrypt_enabled = true;
    settings->replicate.interval_seconds = 1;
    settings->replicate.snapshot_every_seconds = 86400;
    settings->replicate.window_seconds = 7 * 86400;
    settings->replicate.spool_max_bytes = REPLICATE_SPOOL_DEFAULT;
    settings->replicate.compact = true;
    settings->replicate.deltas = true;
    settings->replicate.delta_every_seconds = REPLICATE_DELTA_EVERY_DEFAULT;

    schedule_every(&settings->health.schedule, 5 * 60, "5m");
    settings->health.wal_warn_bytes = 100 * 1024 * 1024;
    settings->health.wal_crit_bytes = 500 * 1024 * 1024;
    settings->health.freelist_warn = 0.2;
    settings->health.freelist_crit = 0.5;
    settings->health.integrity_every_seconds = 86400;
    settings->health.locked_crit_seconds = 15 * 60;
    settings->enforce.auto_vacuum = ENFORCE_AUTO_VACUUM_UNSET;
    /* No drill unless asked for: it downloads and unpacks a whole backup. */
    memset(&settings->drill.schedule, 0, sizeof settings->drill.schedule);
    draft->drill_from = -1;
    return 0;
}

static int copy_string(char **out, const char *text)
{
    *out = NULL;
    if (!text)
        return 0;
    *out = strdup(text);
    return *out ? 0 : -ENOMEM;
}

/* A deep copy: each database owns its strings. */
static int draft_copy(struct database_draft *to, const struct database_draft *from)
{
    *to = *from;
    to->settings.name = to->settings.path = NULL;
    to->settings.path_origin.file = NULL;
    /* Nothing may still point at `from`'s strings if a copy below fails. */
    to->settings.backup.dir = to->settings.upload.target_name = NULL;
    to->settings.backup.dir_origin.file = NULL;
    to->settings.replicate.target_name = to->settings.replicate.origin.file = NULL;
    to->settings.encrypt = (struct encrypt_settings){0};
    if (config_encrypt_copy(&to->settings.encrypt, &from->settings.encrypt) != 0 ||
        copy_string(&to->settings.backup.dir, from->settings.backup.dir) != 0 ||
        copy_string(&to->settings.replicate.target_name, from->settings.replicate.target_name) !=
            0 ||
        copy_string(&to->settings.replicate.origin.file, from->settings.replicate.origin.file) !=
            0 ||
        copy_string(&to->settings.backup.dir_origin.file, from->settings.backup.dir_origin.file) !=
            0 ||
        copy_string(&to->settings.upload.target_name, from->settings.upload.target_name) != 0) {
        config_database_release(&to->settings);
        return -ENOMEM;
    }
    return 0;
}

/* The member `name` of `parent` when it is a group; reports it otherwise. */
static const config_setting_t *group_member(struct config_reader *reader,
                                            const config_setting_t *parent, const char *key,
                                            const char *name)
{
    const config_setting_t *member = config_setting_get_member(parent, name);
    if (!member)
        return NULL;
    if (config_setting_type(member) != CONFIG_TYPE_GROUP) {
        config_report(reader, member, key, "expected a group { ... }, got %s",
                      config_type_phrase(member));
        return NULL;
    }
    return member;
}

/* The group `name` inside `parent`, its unknown keys reported, with its
 * full key (for messages) in `key`; NULL when absent or not a group. */
static const config_setting_t *subgroup(struct config_reader *reader,
                                        const config_setting_t *parent, const char *parent_key,
                                        const char *name, const char *const *allowed,
                                        char key[CONFIG_KEY_SIZE])
{
    config_key_join(key, CONFIG_KEY_SIZE, parent_key, name);
    const config_setting_t *group = group_member(reader, parent, key, name);
    if (group)
        config_check_keys(reader, group, key, allowed, NULL);
    return group;
}

/* `keep` replaces the inherited policy as a whole. */
static void read_keep(struct config_reader *reader, const config_setting_t *job_group,
                      const char *job_key, struct keep_policy *keep)
{
    char key[CONFIG_KEY_SIZE];
    const config_setting_t *group = subgroup(reader, job_group, job_key, "keep", keep_keys, key);
    if (!group)
        return;
    struct keep_policy policy = {0};
    config_value_int(reader, group, key, "last", 0, INT_MAX, &policy.last);
    config_value_int(reader, group, key, "hourly", 0, INT_MAX, &policy.hourly);
    config_value_int(reader, group, key, "daily", 0, INT_MAX, &policy.daily);
    config_value_int(reader, group, key, "weekly", 0, INT_MAX, &policy.weekly);
    config_value_int(reader, group, key, "monthly", 0, INT_MAX, &policy.monthly);
    config_value_int(reader, group, key, "yearly", 0, INT_MAX, &policy.yearly);
    config_value_duration(reader, group, key, "within", CONFIG_RETENTION_MAXIMUM,
                          &policy.within_seconds);
    *keep = policy;
}

/* `target = "NAME"` of upload and replicate: an existing target, or "" to
 * opt out of an inherited one. Returns true when the key was written. */
static bool read_target_name(struct config_reader *reader, const config_setting_t *group,
                             const char *key, const struct config *config, char **target_name)
{
    if (config_value_string(reader, group, key, "target", target_name) != CONFIG_VALUE_SET)
        return false;
    /* `target = ""` is how one database opts out of a default target. */
    if ((*target_name)[0] == '\0') {
        free(*target_name);
        *target_name = NULL;
        return true;
    }
    if (config_find_target(config, *target_name))
        return true;

    const config_setting_t *member = config_setting_get_member(group, "target");
    char target_key[CONFIG_KEY_SIZE];
    config_key_join(target_key, sizeof target_key, key, "target");
    const char *names[64];
    size_t count = 0;
    char list[512] = "";
    size_t used = 0;
    for (size_t i = 0; i < config->target_count && count < 64; i++) {
        /* A duplicate name is reported at its target; list it once here. */
        if (!config->targets[i].name ||
            config_find_target(config, config->targets[i].name) != &config->targets[i])
            continue;
        names[count++] = config->targets[i].name;
        int written = snprintf(list + used, sizeof list - used, "%s\"%s\"", used ? ", " : "",
                               config->targets[i].name);
        if (written > 0 && (size_t)written < sizeof list - used)
            used += (size_t)written;
    }
    const char *suggestion = config_closest(*target_name, names, count);
    if (suggestion)
        config_report(reader, member, target_key, "no target named \"%s\" (did you mean \"%s\"?)",
                      *target_name, suggestion);
    else if (count == 0)
        config_report(reader, member, target_key,
                      "no target named \"%s\" (no targets are defined: add one to targets = ( "
                      "... ))",
                      *target_name);
    else
        config_report(reader, member, target_key, "no target named \"%s\" (targets: %s)",
                      *target_name, list);
    return true;
}

/* The upload's target. */
static void read_upload_target(struct config_reader *reader, const config_setting_t *group,
                               const char *key, const struct config *config,
                               struct upload_settings *upload)
{
    read_target_name(reader, group, key, config, &upload->target_name);
}

/* Shipping is about losing seconds: past an hour it is a backup schedule,
 * and the window restore --at honours grows with the interval. */
#define REPLICATE_INTERVAL_MAXIMUM 3600
/* The spool must hold at least a few segments (one is at most 16 MiB of
 * WAL, gzip'd) or a short hiccup of the target would stop shipping. */
#define REPLICATE_SPOOL_MINIMUM (1LL << 20)

static void read_replicate(struct config_reader *reader, const config_setting_t *parent,
                           const char *parent_key, const struct config *config,
                           struct database_draft *draft)
{
    char key[CONFIG_KEY_SIZE], member_key[CONFIG_KEY_SIZE];
    const config_setting_t *group =
        subgroup(reader, parent, parent_key, "replicate", replicate_keys, key);
    if (!group)
        return;
    struct replicate_settings *replicate = &draft->settings.replicate;
    if (read_target_name(reader, group, key, config, &replicate->target_name))
        config_origin_record(reader, group, "target", strcmp(parent_key, "defaults") == 0,
                             &replicate->origin);
    /* A zero duration is refused by the duration parser itself. */
    config_value_duration(reader, group, key, "interval", REPLICATE_INTERVAL_MAXIMUM,
                          &replicate->interval_seconds);
    config_value_duration(reader, group, key, "snapshot_every", CONFIG_INTERVAL_MAXIMUM,
                          &replicate->snapshot_every_seconds);
    config_value_duration(reader, group, key, "window", CONFIG_RETENTION_MAXIMUM,
                          &replicate->window_seconds);
    config_value_duration(reader, group, key, "delta_every", CONFIG_INTERVAL_MAXIMUM,
                          &replicate->delta_every_seconds);
    if (config_value_size(reader, group, key, "spool_max", &replicate->spool_max_bytes) ==
            CONFIG_VALUE_SET &&
        replicate->spool_max_bytes < REPLICATE_SPOOL_MINIMUM) {
        config_key_join(member_key, sizeof member_key, key, "spool_max");
        config_report(reader, config_setting_get_member(group, "spool_max"), member_key,
                      "must be at least 1MB, got %lld bytes",
                      (long long)replicate->spool_max_bytes);
    }
    /* Checked on the merged values where one of them is written, as the
     * health thresholds are: an inherited interval meets a local base period. */
    const config_setting_t *snapshot = config_setting_get_member(group, "snapshot_every");
    const config_setting_t *interval = config_setting_get_member(group, "interval");
    if ((snapshot || interval) && replicate->snapshot_every_seconds < replicate->interval_seconds) {
        config_key_join(member_key, sizeof member_key, key,
                        snapshot ? "snapshot_every" : "interval");
        config_report(reader, snapshot ? snapshot : interval, member_key,
                      "snapshot_every (%llds) must not be shorter than interval (%llds)",
                      (long long)replicate->snapshot_every_seconds,
                      (long long)replicate->interval_seconds);
    }
    const config_setting_t *window = config_setting_get_member(group, "window");
    if (window && replicate->window_seconds < replicate->interval_seconds) {
        config_key_join(member_key, sizeof member_key, key, "window");
        config_report(reader, window, member_key,
                      "must not be shorter than interval (%llds), got %llds",
                      (long long)replicate->interval_seconds, (long long)replicate->window_seconds);
    }
    config_value_bool(reader, group, key, "enabled", &draft->replicate_enabled);
    const config_setting_t *delta = config_setting_get_member(group, "delta_every");
    if (delta && replicate->delta_every_seconds < replicate->interval_seconds) {
        config_key_join(member_key, sizeof member_key, key, "delta_every");
        config_report(
            reader, delta, member_key, "must not be shorter than interval (%llds), got %llds",
            (long long)replicate->interval_seconds, (long long)replicate->delta_every_seconds);
    }
    config_value_bool(reader, group, key, "compact", &replicate->compact);
    config_value_bool(reader, group, key, "deltas", &replicate->deltas);
}

/* warn <= crit is checked where one of the two is written, on the merged
 * values, so an inherited threshold is compared with the one given here. */
static void check_health_order(struct config_reader *reader, const config_setting_t *group,
                               const char *key, const struct health_settings *health)
{
    const config_setting_t *wal_warn = config_setting_get_member(group, "wal_warn");
    const config_setting_t *wal_crit = config_setting_get_member(group, "wal_crit");
    if ((wal_warn || wal_crit) && health->wal_warn_bytes > health->wal_crit_bytes) {
        char warn_text[32], crit_text[32], member_key[CONFIG_KEY_SIZE];
        units_format_size(health->wal_warn_bytes, warn_text, sizeof warn_text);
        units_format_size(health->wal_crit_bytes, crit_text, sizeof crit_text);
        config_key_join(member_key, sizeof member_key, key, wal_warn ? "wal_warn" : "wal_crit");
        config_report(reader, wal_warn ? wal_warn : wal_crit, member_key,
                      "wal_warn (%s) must not be above wal_crit (%s)", warn_text, crit_text);
    }
    const config_setting_t *free_warn = config_setting_get_member(group, "freelist_warn");
    const config_setting_t *free_crit = config_setting_get_member(group, "freelist_crit");
    if ((free_warn || free_crit) && health->freelist_warn > health->freelist_crit) {
        char member_key[CONFIG_KEY_SIZE];
        config_key_join(member_key, sizeof member_key, key,
                        free_warn ? "freelist_warn" : "freelist_crit");
        config_report(reader, free_warn ? free_warn : free_crit, member_key,
                      "freelist_warn (%g) must not be above freelist_crit (%g)",
                      health->freelist_warn, health->freelist_crit);
    }
}

static void read_job(struct config_reader *reader, const config_setting_t *parent,
                     const char *parent_key, enum job job, const struct config *config,
                     struct database_draft *draft)
{
    char key[CONFIG_KEY_SIZE];
    const config_setting_t *group =
        subgroup(reader, parent, parent_key, job_names[job], job_keys[job], key);
    if (!group)
        return;
    config_value_schedule(reader, group, key, draft_schedule(draft, job), &draft->enabled[job]);

    struct database_config *settings = &draft->settings;
    int choice;
    switch (job) {
    case JOB_CHECKPOINT:
        if (config_value_choice(reader, group, key, "mode", checkpoint_mode_names, &choice) ==
            CONFIG_VALUE_SET)
            settings->checkpoint.mode = (enum checkpoint_mode)choice;
        config_value_int(reader, group, key, "max_wait_ms", 0, INT_MAX,
                         &settings->checkpoint.max_wait_ms);
        break;
    case JOB_ANALYZE:
        config_value_bool(reader, group, key, "optimize", &settings->analyze.optimize);
        config_value_int(reader, group, key, "limit", 0, INT_MAX, &settings->analyze.limit);
        break;
    case JOB_VACUUM:
        config_value_int(reader, group, key, "pages", 0, INT_MAX, &settings->vacuum.pages);
        break;
    case JOB_BACKUP:
        if (config_value_path(reader, group, key, "dir", &settings->backup.dir) == CONFIG_VALUE_SET)
            config_origin_record(reader, group, "dir", strcmp(parent_key, "defaults") == 0,
                                 &settings->backup.dir_origin);
        config_value_int(reader, group, key, "level", 1, 9, &settings->backup.level);
        if (config_value_choice(reader, group, key, "compress", compress_mode_names, &choice) ==
            CONFIG_VALUE_SET)
            settings->backup.compress = (enum compress_mode)choice;
        if (config_value_choice(reader, group, key, "verify", verify_mode_names, &choice) ==
            CONFIG_VALUE_SET)
            settings->backup.verify = (enum verify_mode)choice;
        read_keep(reader, group, key, &settings->backup.keep);
        break;
    case JOB_UPLOAD:
        read_upload_target(reader, group, key, config, &settings->upload);
        read_keep(reader, group, key, &settings->upload.keep);
        break;
    case JOB_HEALTH:
        config_value_size(reader, group, key, "wal_warn", &settings->health.wal_warn_bytes);
        config_value_size(reader, group, key, "wal_crit", &settings->health.wal_crit_bytes);
        config_value_ratio(reader, group, key, "freelist_warn", &settings->health.freelist_warn);
        config_value_ratio(reader, group, key, "freelist_crit", &settings->health.freelist_crit);
        config_value_duration(reader, group, key, "integrity_every", CONFIG_INTERVAL_MAXIMUM,
                              &settings->health.integrity_every_seconds);
        config_value_duration(reader, group, key, "locked_crit", CONFIG_INTERVAL_MAXIMUM,
                              &settings->health.locked_crit_seconds);
        check_health_order(reader, group, key, &settings->health);
        break;
    case JOB_DRILL:
        if (config_value_choice(reader, group, key, "from", drill_source_names, &choice) ==
            CONFIG_VALUE_SET) {
            draft->drill_from = choice;
            draft->drill_from_line =
                config_setting_source_line(config_setting_get_member(group, "from"));
            draft->drill_from_in_defaults = strcmp(parent_key, "defaults") == 0;
        }
        break;
    default: break;
    }
}

/* `enforce` is read key by key over the inherited group, like a job group,
 * but it has no schedule: the health job applies it. */
static void read_enforce(struct config_reader *reader, const config_setting_t *parent,
                         const char *parent_key, struct enforce_settings *enforce)
{
    char key[CONFIG_KEY_SIZE];
    const config_setting_t *group =
        subgroup(reader, parent, parent_key, "enforce", enforce_keys, key);
    if (!group)
        return;
    int choice;
    if (config_value_choice(reader, group, key, "journal_mode", enforce_journal_mode_names,
                            &choice) == CONFIG_VALUE_SET)
        enforce->journal_mode_wal = true;
    if (config_value_choice(reader, group, key, "auto_vacuum", enforce_auto_vacuum_names,
                            &choice) == CONFIG_VALUE_SET)
        enforce->auto_vacuum = (enum enforce_auto_vacuum)choice;
}

/* The keys shared by `defaults` and a database entry, over what is in draft. */
static void read_settings(struct config_reader *reader, const config_setting_t *group,
                          const char *key, const struct config *config,
                          struct database_draft *draft)
{
    config_value_int(reader, group, key, "busy_timeout_ms", 0, INT_MAX,
                     &draft->settings.busy_timeout_ms);
    for (int job = 0; job < JOB_COUNT; job++)
        read_job(reader, group, key, (enum job)job, config, draft);
    read_replicate(reader, group, key, config, draft);
    read_enforce(reader, group, key, &draft->settings.enforce);
    config_read_encrypt(reader, group, key, &draft->settings.encrypt, &draft->encrypt_enabled);
}

/* Turns the merged draft into what the jobs read: a job switched off has
 * no schedule, and an upload without a target has neither. */
static void draft_finish(struct database_draft *draft, const struct config *config)
{
    for (int job = 0; job < JOB_COUNT; job++)
        if (!draft->enabled[job])
            memset(draft_schedule(draft, (enum job)job), 0, sizeof(struct schedule));
    struct upload_settings *upload = &draft->settings.upload;
    if (!draft->enabled[JOB_UPLOAD] || !upload->target_name) {
        free(upload->target_name);
        upload->target_name = NULL;
        memset(&upload->schedule, 0, sizeof upload->schedule);
    } else {
        /* NULL only when the name was already reported as unknown. */
        upload->target = config_find_target(config, upload->target_name);
    }
    draft->settings.drill.from = draft->drill_from >= 0 ? (enum drill_source)draft->drill_from
                                 : upload->target_name  ? DRILL_FROM_REMOTE
                                                        : DRILL_FROM_LOCAL;
    struct replicate_settings *replicate = &draft->settings.replicate;
    if (!draft->replicate_enabled || !replicate->target_name) {
        free(replicate->target_name);
        replicate->target_name = NULL;
    } else {
        replicate->target = config_find_target(config, replicate->target_name);
    }
    /* Switched off: new backups go out as they are; the identity stays,
     * for restoring the ones made while it was on. */
    struct encrypt_settings *encrypt = &draft->settings.encrypt;
    if (!draft->encrypt_enabled) {
        free(encrypt->recipients);
        encrypt->recipients = NULL;
        encrypt->recipient_count = 0;
        encrypt->local = false;
    }
}

/* drill.from = "remote" needs the upload target it drills from: said at
 * the entry, naming where `from` was written when it was inherited. */
static void check_drill_source(struct config_reader *reader, const config_setting_t *entry,
                               const char *key, const struct database_draft *draft)
{
    if (draft->drill_from != DRILL_FROM_REMOTE || draft->settings.upload.target_name)
        return;
    char member_key[CONFIG_KEY_SIZE];
    config_key_join(member_key, sizeof member_key, key, "drill.from");
    if (draft->drill_from_in_defaults)
        config_report(reader, entry, member_key,
                      "\"remote\" (inherited from defaults, line %d) but this database has no "
                      "upload target to drill from: give it upload = { target = ...; } or "
                      "drill = { from = \"local\"; }",
                      draft->drill_from_line);
    else
        config_report(reader,
                      config_setting_get_member(config_setting_get_member(entry, "drill"), "from"),
                      member_key,
                      "\"remote\" but this database has no upload target to drill from: give "
                      "it upload = { target = ...; }, or drill from \"local\"");
}

/* Names and paths must be unique: two entries for one file would back it
 * up twice and fight over its lock. */
static void check_unique(struct config_reader *reader, const config_setting_t *entry,
                         const char *key, const struct config *config, size_t index)
{
    const struct database_config *database = &config->databases[index];
    for (size_t i = 0; i < index; i++) {
        const struct database_config *earlier = &config->databases[i];
        char member_key[CONFIG_KEY_SIZE];
        if (database->name && earlier->name && strcmp(database->name, earlier->name) == 0) {
            config_key_join(member_key, sizeof member_key, key, "name");
            config_report(reader, config_setting_get_member(entry, "name"), member_key,
                          "duplicate database name \"%s\" (first used at line %d)", database->name,
                          earlier->line);
        }
        if (database->path && earlier->path && strcmp(database->path, earlier->path) == 0) {
            config_key_join(member_key, sizeof member_key, key, "path");
            if (earlier->name)
                config_report(reader, config_setting_get_member(entry, "path"), member_key,
                              "\"%s\" is already the path of database \"%s\" (line %d)",
                              database->path, earlier->name, earlier->line);
            else
                config_report(reader, config_setting_get_member(entry, "path"), member_key,
                              "\"%s\" is already the path of the database at line %d",
                              database->path, earlier->line);
        }
    }
}

static int read_entry(struct config_reader *reader, const config_setting_t *entry, unsigned index,
                      size_t slot, const struct database_draft *defaults, struct config *config)
{
    struct database_config *database = &config->databases[slot];
    database->line = config_setting_source_line(entry);
    char index_key[CONFIG_KEY_SIZE];
    snprintf(index_key, sizeof index_key, "databases[%u]", index);
    if (!config_entry_is_group(reader, entry, index_key, "{ name = ...; path = ...; }"))
        return 0;

    struct database_draft draft;
    if (draft_copy(&draft, defaults) != 0)
        return -ENOMEM;
    char key[CONFIG_KEY_SIZE];
    config_value_entry_name(reader, entry, "databases", index,
                            "a short name like \"app\", used in logs, metrics and backup file "
                            "names",
                            &draft.settings.name, key, sizeof key);
    config_check_keys(reader, entry, key, database_keys, misplaced_keys);
    enum config_value_result path =
        config_value_path(reader, entry, key, "path", &draft.settings.path);
    if (path == CONFIG_VALUE_ABSENT)
        config_report(reader, entry, key,
                      "missing 'path' (the absolute path of the SQLite database file), or "
                      "'glob' for one database per matching file");
    else if (path == CONFIG_VALUE_SET)
        config_origin_record(reader, entry, "path", false, &draft.settings.path_origin);
    read_settings(reader, entry, key, config, &draft);
    draft_finish(&draft, config);
    check_drill_source(reader, entry, key, &draft);

    draft.settings.line = database->line;
    draft.settings.glob = -1;
    *database = draft.settings;
    check_unique(reader, entry, key, config, slot);
    return 0;
}

/* A set of strings (names, paths) for the duplicates among thousands of
 * pattern matches: open addressing, FNV-1a. The strings are borrowed. */
struct string_set {
    const char **slots;
    size_t capacity, used;
};

static size_t string_hash(const char *text)
{
    return config_hash_bytes(text, strlen(text), 0);
}

/* Adds `text`; false when it was there already (or -ENOMEM in *rc). */
static bool string_set_add(struct string_set *set, const char *text, int *rc)
{
    if ((set->used + 1) * 2 > set->capacity) {
        size_t capacity = set->capacity ? set->capacity * 2 : 64;
        const char **slots = calloc(capacity, sizeof *slots);
        if (!slots) {
            *rc = -ENOMEM;
            return false;
        }
        for (size_t i = 0; i < set->capacity; i++)
            if (set->slots[i]) {
                size_t at = string_hash(set->slots[i]) & (capacity - 1);
                while (slots[at])
                    at = (at + 1) & (capacity - 1);
                slots[at] = set->slots[i];
            }
        free(set->slots);
        set->slots = slots;
        set->capacity = capacity;
    }
    size_t at = string_hash(text) & (set->capacity - 1);
    for (; set->slots[at]; at = (at + 1) & (set->capacity - 1))
        if (strcmp(set->slots[at], text) == 0)
            return false;
    set->slots[at] = text;
    set->used++;
    return true;
}

/* What the pattern entries found, before the databases are made. */
struct glob_found {
    unsigned index; /* in the databases list */
    size_t glob;    /* in config->globs */
    char *template;
    struct config_glob_match *matches;
    size_t count;
};

static void glob_found_release(struct glob_found *found)
{
    for (size_t i = 0; i < found->count; i++) {
        free(found->matches[i].path);
        free(found->matches[i].name);
    }
    free(found->matches);
    free(found->template);
}

static bool entry_has_glob(const config_setting_t *entry)
{
    return config_setting_type(entry) == CONFIG_TYPE_GROUP &&
           config_setting_get_member(entry, "glob") != NULL;
}

/* "DEVICE:INODE" of an existing file, kept in `keys` for freeing; NULL
 * when it does not exist. Two names of one file (a symbolic or hard link)
 * give one key. */
static const char *file_key(const char *path, char ***keys, size_t *count, int *rc)
{
    struct stat st;
    char *key = NULL;
    if (stat(path, &st) != 0)
        return NULL;
    char **grown = realloc(*keys, (*count + 1) * sizeof *grown);
    if (!grown || asprintf(&key, "%llu:%llu", (unsigned long long)st.st_dev,
                           (unsigned long long)st.st_ino) < 0) {
        if (grown)
            *keys = grown;
        *rc = -ENOMEM;
        return NULL;
    }
    *keys = grown;
    (*keys)[(*count)++] = key;
    return key;
}

/* Drops the matches whose name, path or file an entry written out has, or
 * an earlier match: written entries first, then patterns in list order. */
static int glob_drop_duplicates(const config_setting_t *list, struct config *config,
                                struct glob_found *found, size_t found_count)
{
    struct string_set names = {0}, paths = {0}, files = {0};
    char **keys = NULL;
    size_t key_count = 0;
    int rc = 0;
    for (int i = 0; i < config_setting_length(list) && rc == 0; i++) {
        const config_setting_t *entry = config_setting_get_elem(list, (unsigned)i);
        const char *text;
        if (config_setting_type(entry) != CONFIG_TYPE_GROUP || entry_has_glob(entry))
            continue;
        if (config_setting_lookup_string(entry, "name", &text))
            string_set_add(&names, text, &rc);
        if (rc == 0 && config_setting_lookup_string(entry, "path", &text)) {
            string_set_add(&paths, text, &rc);
            const char *key = file_key(text, &keys, &key_count, &rc);
            if (key && rc == 0)
                string_set_add(&files, key, &rc);
        }
    }
    for (size_t f = 0; f < found_count && rc == 0; f++) {
        struct glob_found *one = &found[f];
        struct config_glob *glob = &config->globs[one->glob];
        size_t kept = 0;
        for (size_t m = 0; m < one->count; m++) {
            struct config_glob_match *match = &one->matches[m];
            char why[200] = "";
            const char *key = file_key(match->path, &keys, &key_count, &rc);
            if (!string_set_add(&paths, match->path, &rc) ||
                (key && rc == 0 && !string_set_add(&files, key, &rc)))
                snprintf(why, sizeof why,
                         "another entry or pattern has this file (under this name or another)");
            else if (rc == 0 && !string_set_add(&names, match->name, &rc))
                snprintf(why, sizeof why,
                         "its name \"%s\" is another database's (an entry or an earlier "
                         "pattern): give it an entry of its own with another name",
                         match->name);
            if (rc != 0)
                break;
            if (why[0]) {
                if ((rc = config_glob_skip(glob, match->path, why)) != 0)
                    break;
                free(match->path);
                free(match->name);
                continue;
            }
            one->matches[kept++] = *match;
        }
        if (rc == 0)
            one->count = kept;
    }
    free(names.slots);
    free(paths.slots);
    free(files.slots);
    for (size_t i = 0; i < key_count; i++)
        free(keys[i]);
    free(keys);
    return rc;
}

/* The databases of one pattern entry: its settings read once, then one
 * copy per match. */
static int read_glob_entry(struct config_reader *reader, const config_setting_t *entry,
                           struct glob_found *found, const struct database_draft *defaults,
                           struct config *config, size_t *slot)
{
    char key[CONFIG_KEY_SIZE];
    snprintf(key, sizeof key, "databases[%u]", found->index);
    config_check_keys(reader, entry, key, database_keys, misplaced_keys);
    if (config_setting_get_member(entry, "path"))
        config_report(reader, config_setting_get_member(entry, "path"), key,
                      "give 'path' (one database) or 'glob' (one per matching file), not both");
    struct database_draft draft;
    if (draft_copy(&draft, defaults) != 0)
        return -ENOMEM;
    read_settings(reader, entry, key, config, &draft);
    draft_finish(&draft, config);
    check_drill_source(reader, entry, key, &draft);
    struct config_origin origin = {0};
    config_origin_record(reader, entry, "glob", false, &origin);
    int rc = 0;
    for (size_t m = 0; m < found->count && rc == 0; m++) {
        struct database_draft one;
        if ((rc = draft_copy(&one, &draft)) != 0)
            break;
        one.settings.name = found->matches[m].name;
        one.settings.path = found->matches[m].path;
        found->matches[m].name = found->matches[m].path = NULL;
        one.settings.line = config_setting_source_line(entry);
        one.settings.glob = (int)found->glob;
        one.settings.path_origin = (struct config_origin){.line = origin.line};
        if (origin.file && !(one.settings.path_origin.file = strdup(origin.file)))
            rc = -ENOMEM;
        config->databases[(*slot)++] = one.settings;
    }
    if (found->glob != SIZE_MAX)
        config->globs[found->glob].databases = found->count;
    free(origin.file);
    config_database_release(&draft.settings);
    return rc;
}

int config_read_databases(struct config_reader *reader, const config_setting_t *root,
                          struct config *config)
{
    struct database_draft defaults;
    if (draft_init_builtin(&defaults) != 0)
        return -ENOMEM;
    int rc = 0;

    const config_setting_t *group = group_member(reader, root, "defaults", "defaults");
    if (group) {
        config_check_keys(reader, group, "defaults", defaults_keys, misplaced_keys);
        read_settings(reader, group, "defaults", config, &defaults);
    }

    const config_setting_t *list = config_setting_get_member(root, "databases");
    if (!list) {
        config_report(reader, root, "databases",
                      "missing (list the databases to look after: databases = ( { name = "
                      "\"app\"; path = \"/var/lib/app/app.db\"; } ); an empty list ( ) is "
                      "allowed)");
        goto out;
    }
    if (config_setting_type(list) != CONFIG_TYPE_LIST) {
        config_report(reader, list, "databases",
                      "expected a list ( { name = ...; path = ...; }, ... ), got %s",
                      config_type_phrase(list));
        goto out;
    }
    unsigned count = (unsigned)config_setting_length(list);
    if (count == 0)
        goto out;
    /* Pattern entries first: how many databases they give. */
    struct glob_found *found = calloc(count, sizeof *found);
    config->globs = calloc(count, sizeof *config->globs);
    size_t found_count = 0, total = 0;
    if (!found || !config->globs) {
        free(found);
        rc = -ENOMEM;
        goto out;
    }
    for (unsigned i = 0; i < count && rc == 0; i++) {
        const config_setting_t *entry = config_setting_get_elem(list, i);
        if (!entry_has_glob(entry)) {
            total++;
            continue;
        }
        char key[CONFIG_KEY_SIZE], *template = NULL;
        snprintf(key, sizeof key, "databases[%u]", i);
        struct config_glob *glob = &config->globs[config->glob_count];
        if (!config_glob_read(reader, entry, key, glob, &template)) {
            /* Reported; its settings are still checked below. */
            config_glob_release(glob);
            free(template);
            continue;
        }
        struct glob_found *one = &found[found_count++];
        *one = (struct glob_found){.index = i, .glob = config->glob_count++, .template = template};
        rc = config_glob_find(glob, template, &one->matches, &one->count);
    }
    if (rc == 0)
        rc = glob_drop_duplicates(list, config, found, found_count);
    for (size_t f = 0; f < found_count && rc == 0; f++)
        total += found[f].count;
    if (rc == 0 && total > 0 && !(config->databases = calloc(total, sizeof *config->databases)))
        rc = -ENOMEM;
    size_t slot = 0, next_found = 0;
    for (unsigned i = 0; i < count && rc == 0; i++) {
        const config_setting_t *entry = config_setting_get_elem(list, i);
        if (!entry_has_glob(entry)) {
            rc = read_entry(reader, entry, i, slot++, &defaults, config);
            config->database_count = slot;
        } else if (next_found < found_count && found[next_found].index == i) {
            rc = read_glob_entry(reader, entry, &found[next_found++], &defaults, config, &slot);
            config->database_count = slot;
        } else {
            /* A pattern that was refused: its settings are still checked. */
            struct glob_found none = {.index = i, .glob = SIZE_MAX};
            rc = read_glob_entry(reader, entry, &none, &defaults, config, &slot);
        }
    }
    for (size_t f = 0; f < found_count; f++)
        glob_found_release(&found[f]);
    free(found);
out:
    config_database_release(&defaults.settings);
    return rc;
}
