/*
 * test_config.c: sqlprodd.conf as an operator writes it. Every mistake must
 * come back as the exact "FILE:LINE: key: what is wrong" line `sqlprodd
 * check` prints, all of them in one run and in file order; a good config
 * must come back merged (builtin -> defaults -> entry) as documented; the
 * packaged configs in etc/ must load cleanly and tell the truth about the
 * defaults.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "policy/schedule.h"
#include "core/units.h"

#define MIB (1024LL * 1024)

/* A database entry that is right, for configs whose mistake is elsewhere. */
#define APP "databases = ( { name = \"app\"; path = \"/var/lib/app/app.db\"; } );\n"

/* Writes text to a new temporary file; path receives its name. */
static void write_temp_config(const char *text, char *path, size_t path_size)
{
    snprintf(path, path_size, "/tmp/sqlprodd-test-config-XXXXXX.conf");
    int fd = mkstemps(path, 5);
    assert_true(fd >= 0);
    size_t length = strlen(text);
    assert_int_equal(write(fd, text, length), (ssize_t)length);
    assert_int_equal(close(fd), 0);
}

/* Loads text as a config file; path receives the file's name (removed). */
static int load_text(const char *text, struct config **config, struct config_diagnostics *diag,
                     char *path, size_t path_size)
{
    write_temp_config(text, path, path_size);
    int rc = config_load(path, config, diag);
    unlink(path);
    return rc;
}

/* Loads text that must be valid and returns the config. */
static struct config *load_good(const char *text)
{
    char path[64];
    struct config *config = NULL;
    struct config_diagnostics diag;
    int rc = load_text(text, &config, &diag, path, sizeof path);
    for (size_t i = 0; i < diag.count; i++)
        print_error("unexpected: %s\n", diag.lines[i]);
    assert_int_equal(rc, 0);
    assert_int_equal(diag.count, 0);
    assert_non_null(config);
    config_diagnostics_free(&diag);
    return config;
}

/* Loads the file at path, which must be valid. */
static struct config *load_good_path(const char *path)
{
    struct config *config = NULL;
    struct config_diagnostics diag;
    int rc = config_load(path, &config, &diag);
    for (size_t i = 0; i < diag.count; i++)
        print_error("unexpected: %s\n", diag.lines[i]);
    assert_int_equal(rc, 0);
    config_diagnostics_free(&diag);
    return config;
}

/* The single diagnostic of a bad config, compared with `expected`
 * ("LINE: key: message", the file name prepended here). Returns whether it
 * matched, printing both lines when it did not. */
static bool bad_config_reports(const char *name, const char *text, const char *expected)
{
    char path[64];
    struct config *config = (struct config *)1;
    struct config_diagnostics diag;
    int rc = load_text(text, &config, &diag, path, sizeof path);
    char *want;
    assert_true(asprintf(&want, "%s:%s", path, expected) > 0);
    bool ok =
        rc == -EINVAL && config == NULL && diag.count == 1 && strcmp(diag.lines[0], want) == 0;
    if (!ok) {
        print_error("case %s: rc %d, %zu line(s)\n  want: %s\n", name, rc, diag.count, want);
        for (size_t i = 0; i < diag.count; i++)
            print_error("  got:  %s\n", diag.lines[i]);
    }
    free(want);
    config_diagnostics_free(&diag);
    return ok;
}

struct bad_config {
    const char *name;
    const char *text;
    const char *expected; /* "LINE: key: message" */
};

static const struct bad_config bad_configs[] = {
    /* drill = { from = ...; } */
    {"drill from remote without an upload target",
     "databases = ( { name = \"app\"; path = \"/a.db\";\n"
     "  drill = { every = \"1d\"; from = \"remote\"; }; } );\n",
     "2: databases.app.drill.from: \"remote\" but this database has no upload target to drill "
     "from: give it upload = { target = ...; }, or drill from \"local\""},
    {"drill from remote inherited without an upload target",
     "defaults = { drill = { from = \"remote\"; }; };\n"
     "databases = ( { name = \"app\"; path = \"/a.db\"; } );\n",
     "2: databases.app.drill.from: \"remote\" (inherited from defaults, line 1) but this "
     "database has no upload target to drill from: give it upload = { target = ...; } or "
     "drill = { from = \"local\"; }"},
    {"from outside the drill group", "defaults = { from = \"local\"; };\n" APP,
     "1: defaults.from: unknown key 'from' here (it belongs in drill = { ... })"},
    /* Unknown keys, with a suggestion for typos and a hint for misplaced keys. */
    {"top-level typo", "workes = 2;\n" APP,
     "1: workes: unknown key 'workes' (did you mean 'workers'?)"},
    {"typo in a job group", "defaults = {\n  backup = { evry = \"1h\"; };\n};\n" APP,
     "2: defaults.backup.evry: unknown key 'evry' (did you mean 'every'?)"},
    {"typo in keep", "defaults = { backup = { keep = { dayly = 7; }; }; };\n" APP,
     "1: defaults.backup.keep.dayly: unknown key 'dayly' (did you mean 'daily'?)"},
    {"typo in a target",
     "targets = ( { name = \"t\"; type = \"s3\"; region = \"eu-west-1\";\n"
     "  bucekt = \"b\"; bucket = \"b\"; } );\n" APP,
     "2: targets.t.bucekt: unknown key 'bucekt' (did you mean 'bucket'?)"},
    {"unknown key without a near one", "defaults = { vacuum = { frequency = \"1h\"; }; };\n" APP,
     "1: defaults.vacuum.frequency: unknown key 'frequency' (known keys here: every, cron, "
     "enabled, pages)"},
    {"unknown key in metrics", "metrics = { file = \"/tmp/x.prom\"; };\n" APP,
     "1: metrics.file: unknown key 'file' (known keys here: textfile, listen)"},
    {"schedule outside its job group",
     "databases = (\n  { name = \"app\"; path = \"/a.db\"; every = \"1h\"; }\n);\n",
     "2: databases.app.every: unknown key 'every' here (a schedule goes inside a job group, "
     "e.g. backup = { every = \"1h\"; })"},
    {"name in defaults", "defaults = {\n  name = \"x\";\n};\n" APP,
     "2: defaults.name: unknown key 'name' here (each database entry in databases = ( ... ) "
     "has its own name)"},
    {"job group at top level", "backup = { every = \"1h\"; };\n" APP,
     "1: backup: unknown key 'backup' here (it belongs in defaults = { ... } or in a database "
     "entry)"},

    /* Wrong types. */
    {"duration as an integer", "defaults = { checkpoint = { every = 900; }; };\n" APP,
     "1: defaults.checkpoint.every: expected a string like \"15m\", got an integer"},
    {"integer in quotes", "defaults = { backup = { level = \"6\"; }; };\n" APP,
     "1: defaults.backup.level: expected an integer, got a string (write it without quotes)"},
    {"boolean in quotes", "defaults = { analyze = { optimize = \"false\"; }; };\n" APP,
     "1: defaults.analyze.optimize: expected true or false, got a string (write it without "
     "quotes)"},
    {"boolean as a word", "defaults = { analyze = { optimize = \"yes\"; }; };\n" APP,
     "1: defaults.analyze.optimize: expected true or false, got a string"},
    {"size as an integer", "defaults = { health = { wal_warn = 100; }; };\n" APP,
     "1: defaults.health.wal_warn: expected a string like \"100MB\", got an integer"},
    {"ratio in quotes", "defaults = { health = { freelist_crit = \"0.5\"; }; };\n" APP,
     "1: defaults.health.freelist_crit: expected a number like 0.2, got a string (write it "
     "without quotes)"},
    {"word in quotes for an integer", "defaults = { vacuum = { pages = \"all\"; }; };\n" APP,
     "1: defaults.vacuum.pages: expected an integer, got a string"},
    {"ratio as a string", "defaults = { health = { freelist_warn = \"20%\"; }; };\n" APP,
     "1: defaults.health.freelist_warn: expected a number like 0.2, got a string"},
    {"job group as a string", APP "defaults = { backup = \"hourly\"; };\n",
     "2: defaults.backup: expected a group { ... }, got a string"},
    {"enum as an integer", "defaults = { checkpoint = { mode = 3; }; };\n" APP,
     "1: defaults.checkpoint.mode: expected \"passive\", \"full\", \"restart\" or "
     "\"truncate\", got an integer"},
    {"cron as a list", "defaults = { analyze = { cron = ( \"30 3 * * *\" ); }; };\n" APP,
     "1: defaults.analyze.cron: expected a string like \"30 3 * * *\", got a list ( ... )"},
    {"path as an integer", "state_dir = 0;\n" APP,
     "1: state_dir: expected a string (an absolute path), got an integer"},
    {"databases as a group", "databases = { name = \"app\"; path = \"/a.db\"; };\n",
     "1: databases: expected a list ( { name = ...; path = ...; }, ... ), got a group { ... }"},
    {"database entry as a string", "\ndatabases = ( \"/var/lib/app.db\" );\n",
     "2: databases[0]: expected a group { name = ...; path = ...; }, got a string"},
    {"targets as a group", "targets = { name = \"nas\"; };\n" APP,
     "1: targets: expected a list ( { name = ...; type = ...; }, ... ), got a group { ... }"},
    {"metrics as a string", "metrics = \"/tmp/x.prom\";\n" APP,
     "1: metrics: expected a group { textfile = \"...\"; listen = \"127.0.0.1:9187\"; }, got a "
     "string"},
    {"database name as an integer", "databases = ( { name = 7; path = \"/a.db\"; } );\n",
     "1: databases[0].name: expected a string, got an integer"},

    /* Units and schedules. */
    {"bad duration unit", "# comment\ndefaults = { backup = { every = \"15x\"; }; };\n" APP,
     "2: defaults.backup.every: bad duration \"15x\": @DURATION 15x@"},
    {"bad size unit", "defaults = { health = { wal_crit = \"1PB\"; }; };\n" APP,
     "1: defaults.health.wal_crit: bad size \"1PB\": @SIZE 1PB@"},
    {"bad health.locked_crit", "defaults = { health = { locked_crit = \"soon\"; }; };\n" APP,
     "1: defaults.health.locked_crit: bad duration \"soon\": @DURATION soon@"},
    {"bad keep.within", "defaults = { upload = { keep = { within = \"soon\"; }; }; };\n" APP,
     "1: defaults.upload.keep.within: bad duration \"soon\": @DURATION soon@"},
    {"cron field out of range",
     "databases = ( { name = \"app\"; path = \"/a.db\";\n"
     "  analyze = { cron = \"61 * * * *\"; }; } );\n",
     "2: databases.app.analyze.cron: bad cron expression \"61 * * * *\": @CRON 61 * * * *@"},
    {"cron with four fields", "defaults = { analyze = { cron = \"30 3 * *\"; }; };\n" APP,
     "1: defaults.analyze.cron: bad cron expression \"30 3 * *\": @CRON 30 3 * *@"},
    {"every and cron both",
     "defaults = {\n  vacuum = { every = \"6h\";\n    cron = \"0 4 * * *\"; };\n};\n" APP,
     "2: defaults.vacuum: both 'every' and 'cron' are set; keep one"},

    /* Names and paths. */
    {"duplicate database name",
     "databases = (\n  { name = \"app\"; path = \"/a.db\"; },\n"
     "  { name = \"app\"; path = \"/b.db\"; }\n);\n",
     "3: databases.app.name: duplicate database name \"app\" (first used at line 2)"},
    {"duplicate target name",
     "targets = (\n  { name = \"nas\"; type = \"dir\"; path = \"/mnt/a\"; },\n"
     "  { name = \"nas\"; type = \"dir\"; path = \"/mnt/b\"; }\n);\n" APP,
     "3: targets.nas.name: duplicate target name \"nas\" (first used at line 2)"},
    {"same path twice",
     "databases = (\n  { name = \"a\"; path = \"/srv/x.db\"; },\n"
     "  { name = \"b\"; path = \"/srv/x.db\"; }\n);\n",
     "3: databases.b.path: \"/srv/x.db\" is already the path of database \"a\" (line 2)"},
    {"database without a name", "databases = (\n  { path = \"/a.db\"; }\n);\n",
     "2: databases[0]: missing 'name' (a short name like \"app\", used in logs, metrics and "
     "backup file names)"},
    {"database without a path",
     "databases = (\n  { name = \"x\"; path = \"/x.db\"; },\n  { name = \"app\"; }\n);\n",
     "3: databases.app: missing 'path' (the absolute path of the SQLite database file), or 'glob' for one database per matching file"},
    {"target without a name", "targets = (\n  { type = \"dir\"; path = \"/mnt\"; }\n);\n" APP,
     "2: targets[0]: missing 'name' (what upload = { target = ...; } refers to)"},
    {"relative database path", "databases = ( { name = \"app\"; path = \"data/app.db\"; } );\n",
     "1: databases.app.path: must be an absolute path (starting with /), got \"data/app.db\""},
    {"relative backup dir", "defaults = { backup = { dir = \"backups\"; }; };\n" APP,
     "1: defaults.backup.dir: must be an absolute path (starting with /), got \"backups\""},
    {"relative state_dir", "state_dir = \"./state\";\n" APP,
     "1: state_dir: must be an absolute path (starting with /), got \"./state\""},
    {"relative credentials_file",
     "targets = ( { name = \"s\"; type = \"s3\"; region = \"eu-west-1\"; bucket = \"b\";\n"
     "  credentials_file = \"~/.aws/credentials\"; } );\n" APP,
     "2: targets.s.credentials_file: must be an absolute path (starting with /), got "
     "\"~/.aws/credentials\""},
    {"credential with a slash",
     "targets = ( { name = \"s\"; type = \"s3\"; region = \"eu-west-1\"; bucket = \"b\";\n"
     "  credential = \"/etc/creds\"; } );\n" APP,
     "2: targets.s.credential: \"/etc/creds\" is not a credential name (the first part of "
     "LoadCredential=NAME:PATH, without '/')"},
    {"credential and credentials_file",
     "targets = ( { name = \"s\"; type = \"s3\"; region = \"eu-west-1\"; bucket = \"b\";\n"
     "  credentials_file = \"/etc/c\"; credential = \"c\"; } );\n" APP,
     "2: targets.s.credential: give credential or credentials_file, not both"},
    {"name escaping the backup dir", "databases = ( { name = \"../x\"; path = \"/a.db\"; } );\n",
     "1: databases[0].name: \"../x\" is not a usable name: use only letters, digits, '_', '.' "
     "and '-', and not \".\" or \"..\" (it becomes a directory name)"},
    {"name ..", "databases = ( { name = \"..\"; path = \"/a.db\"; } );\n",
     "1: databases[0].name: \"..\" is not a usable name: use only letters, digits, '_', '.' "
     "and '-', and not \".\" or \"..\" (it becomes a directory name)"},
    {"name with a space", "databases = ( { name = \"my app\"; path = \"/a.db\"; } );\n",
     "1: databases[0].name: \"my app\" is not a usable name: use only letters, digits, '_', "
     "'.' and '-', and not \".\" or \"..\" (it becomes a directory name)"},
    {"target name with a slash",
     "targets = ( { name = \"a/b\"; type = \"dir\"; path = \"/mnt\"; } );\n" APP,
     "1: targets[0].name: \"a/b\" is not a usable name: use only letters, digits, '_', '.' and "
     "'-', and not \".\" or \"..\" (it becomes a directory name)"},

    /* Upload targets. */
    {"unknown target, near a known one",
     "targets = ( { name = \"offsite\"; type = \"dir\"; path = \"/mnt\"; } );\n"
     "defaults = { upload = { target = \"ofsite\"; }; };\n" APP,
     "2: defaults.upload.target: no target named \"ofsite\" (did you mean \"offsite\"?)"},
    {"unknown target, none near",
     "targets = ( { name = \"offsite\"; type = \"dir\"; path = \"/mnt/a\"; },\n"
     "  { name = \"nas\"; type = \"dir\"; path = \"/mnt/b\"; } );\n"
     "databases = ( { name = \"app\"; path = \"/a.db\";\n"
     "  upload = { target = \"backup-server\"; }; } );\n",
     "4: databases.app.upload.target: no target named \"backup-server\" (targets: \"offsite\", "
     "\"nas\")"},
    {"target but no targets list", "defaults = { upload = { target = \"offsite\"; }; };\n" APP,
     "1: defaults.upload.target: no target named \"offsite\" (no targets are defined: add one "
     "to targets = ( ... ))"},

    /* Replication. */
    {"unknown replicate target",
     "targets = ( { name = \"offsite\"; type = \"dir\"; path = \"/mnt\"; } );\n"
     "databases = ( { name = \"app\"; path = \"/a.db\";\n"
     "  replicate = { target = \"ofsite\"; }; } );\n",
     "3: databases.app.replicate.target: no target named \"ofsite\" (did you mean \"offsite\"?)"},
    {"replicate interval zero",
     "targets = ( { name = \"offsite\"; type = \"dir\"; path = \"/mnt\"; } );\n"
     "defaults = { replicate = { target = \"offsite\";\n interval = \"0s\"; }; };\n" APP,
     "3: defaults.replicate.interval: bad duration \"0s\": duration must be greater than zero"},
    {"replicate interval past an hour",
     "defaults = { replicate = { interval = \"2h\"; }; };\n" APP,
     "1: defaults.replicate.interval: \"2h\" is too large (at most 1h)"},
    {"replicate snapshot shorter than interval",
     "defaults = { replicate = { interval = \"10m\";\n snapshot_every = \"5m\"; }; };\n" APP,
     "2: defaults.replicate.snapshot_every: snapshot_every (300s) must not be shorter than "
     "interval (600s)"},
    {"replicate window shorter than interval",
     "defaults = { replicate = { interval = \"10m\"; window = \"1m\"; }; };\n" APP,
     "1: defaults.replicate.window: must not be shorter than interval (600s), got 60s"},
    {"replicate unknown key",
     "defaults = { replicate = { intervall = \"1s\"; }; };\n" APP,
     "1: defaults.replicate.intervall: unknown key 'intervall' (did you mean 'interval'?)"},
    {"interval outside replicate", "defaults = { interval = \"1s\"; };\n" APP,
     "1: defaults.interval: unknown key 'interval' here (it belongs in replicate = { ... })"},

    /* Values out of their set. */
    {"checkpoint mode", "defaults = { checkpoint = { mode = \"fast\"; }; };\n" APP,
     "1: defaults.checkpoint.mode: unknown value \"fast\" (expected \"passive\", \"full\", "
     "\"restart\" or \"truncate\")"},
    {"verify typo", "defaults = { backup = { verify = \"quik\"; }; };\n" APP,
     "1: defaults.backup.verify: unknown value \"quik\" (did you mean \"quick\"?)"},
    {"verify", "defaults = { backup = { verify = \"sha256\"; }; };\n" APP,
     "1: defaults.backup.verify: unknown value \"sha256\" (expected \"integrity\" or "
     "\"quick\")"},
    {"log_level", "log_level = \"verbose\";\n" APP,
     "1: log_level: unknown value \"verbose\" (expected \"debug\", \"info\", \"notice\", "
     "\"warning\" or \"error\")"},
    {"target type", "targets = ( { name = \"t\"; type = \"ftp\"; } );\n" APP,
     "1: targets.t.type: unknown value \"ftp\" (expected \"dir\" or \"s3\")"},
    {"target without a type", "targets = (\n  { name = \"t\"; path = \"/mnt\"; }\n);\n" APP,
     "2: targets.t: missing 'type' (\"s3\" or \"dir\")"},
    {"sse typo",
     "targets = ( { name = \"s\"; type = \"s3\"; region = \"r\"; bucket = \"b\";\n"
     "  sse = \"aes-256\"; } );\n" APP,
     "2: targets.s.sse: unknown value \"aes-256\" (did you mean \"AES256\"?)"},
    {"sse",
     "targets = ( { name = \"s\"; type = \"s3\"; region = \"r\"; bucket = \"b\";\n"
     "  sse = \"AES128\"; } );\n" APP,
     "2: targets.s.sse: unknown value \"AES128\" (expected \"AES256\" or \"aws:kms\")"},
    {"kms key without aws:kms",
     "targets = ( { name = \"s\"; type = \"s3\"; region = \"r\"; bucket = \"b\";\n"
     "  sse = \"AES256\"; sse_kms_key_id = \"k\"; } );\n" APP,
     "2: targets.s.sse_kms_key_id: only used with sse = \"aws:kms\""},
    {"s3 key on a dir target",
     "targets = ( { name = \"nas\"; type = \"dir\"; path = \"/mnt\";\n  bucket = \"b\"; } );\n" APP,
     "2: targets.nas.bucket: 'bucket' is only used by type \"s3\" targets, and this one is "
     "\"dir\""},
    {"object_lock on a dir target",
     "targets = ( { name = \"nas\"; type = \"dir\"; path = \"/mnt\";\n"
     "  object_lock = { mode = \"governance\"; days = 30; }; } );\n" APP,
     "2: targets.nas.object_lock: 'object_lock' is only used by type \"s3\" targets, and this "
     "one is \"dir\""},
    {"object_lock mode",
     "targets = ( { name = \"s\"; type = \"s3\"; region = \"r\"; bucket = \"b\";\n"
     "  object_lock = { mode = \"strict\"; days = 30; }; } );\n" APP,
     "2: targets.s.object_lock.mode: unknown value \"strict\" (expected \"governance\" or "
     "\"compliance\")"},
    {"object_lock mode typo",
     "targets = ( { name = \"s\"; type = \"s3\"; region = \"r\"; bucket = \"b\";\n"
     "  object_lock = { mode = \"complience\"; days = 30; }; } );\n" APP,
     "2: targets.s.object_lock.mode: unknown value \"complience\" (did you mean "
     "\"compliance\"?)"},
    {"object_lock days 0",
     "targets = ( { name = \"s\"; type = \"s3\"; region = \"r\"; bucket = \"b\";\n"
     "  object_lock = { mode = \"governance\"; days = 0; }; } );\n" APP,
     "2: targets.s.object_lock.days: must be between 1 and 36500, got 0"},
    {"object_lock days past a century",
     "targets = ( { name = \"s\"; type = \"s3\"; region = \"r\"; bucket = \"b\";\n"
     "  object_lock = { mode = \"governance\"; days = 36501; }; } );\n" APP,
     "2: targets.s.object_lock.days: must be between 1 and 36500, got 36501"},
    {"object_lock days as a duration",
     "targets = ( { name = \"s\"; type = \"s3\"; region = \"r\"; bucket = \"b\";\n"
     "  object_lock = { mode = \"governance\"; days = \"30d\"; }; } );\n" APP,
     "2: targets.s.object_lock.days: expected an integer, got a string"},
    {"object_lock without days",
     "targets = ( { name = \"s\"; type = \"s3\"; region = \"r\"; bucket = \"b\";\n"
     "  object_lock = { mode = \"governance\"; }; } );\n" APP,
     "2: targets.s.object_lock: missing 'days' (how long each uploaded object stays locked, 1 "
     "to 36500)"},
    {"object_lock without mode",
     "targets = ( { name = \"s\"; type = \"s3\"; region = \"r\"; bucket = \"b\";\n"
     "  object_lock = { days = 30; }; } );\n" APP,
     "2: targets.s.object_lock: missing 'mode' (\"governance\" or \"compliance\")"},
    {"object_lock not a group",
     "targets = ( { name = \"s\"; type = \"s3\"; region = \"r\"; bucket = \"b\";\n"
     "  object_lock = true; } );\n" APP,
     "2: targets.s.object_lock: expected a group { mode = \"governance\"; days = 30; }, got "
     "true/false"},
    {"object_lock unknown key",
     "targets = ( { name = \"s\"; type = \"s3\"; region = \"r\"; bucket = \"b\";\n"
     "  object_lock = { mode = \"governance\"; days = 30; years = 1; }; } );\n" APP,
     "2: targets.s.object_lock.years: unknown key 'years' (known keys here: mode, "
     "days)"},

    /* Numbers out of range. */
    {"level 0", "defaults = { backup = { level = 0; }; };\n" APP,
     "1: defaults.backup.level: must be between 1 and 9, got 0"},
    {"level 10",
     "databases = ( { name = \"app\"; path = \"/a.db\"; backup = { level = 10; }; } );\n",
     "1: databases.app.backup.level: must be between 1 and 9, got 10"},
    {"negative busy timeout", "defaults = { busy_timeout_ms = -1; };\n" APP,
     "1: defaults.busy_timeout_ms: must be 0 or more, got -1"},
    {"negative max_wait_ms", "defaults = { checkpoint = { max_wait_ms = -5; }; };\n" APP,
     "1: defaults.checkpoint.max_wait_ms: must be 0 or more, got -5"},
    {"negative pages", "defaults = { vacuum = { pages = -1; }; };\n" APP,
     "1: defaults.vacuum.pages: must be 0 or more, got -1"},
    {"negative analysis limit", "defaults = { analyze = { limit = -1; }; };\n" APP,
     "1: defaults.analyze.limit: must be 0 or more, got -1"},
    {"negative keep count", "defaults = { backup = { keep = { weekly = -4; }; }; };\n" APP,
     "1: defaults.backup.keep.weekly: must be 0 or more, got -4"},
    {"ratio above 1", "defaults = { health = { freelist_crit = 1.5; }; };\n" APP,
     "1: defaults.health.freelist_crit: must be between 0 and 1, got 1.5"},
    {"freelist warn above the inherited crit",
     "defaults = { health = { freelist_warn = 0.6; }; };\n" APP,
     "1: defaults.health.freelist_warn: freelist_warn (0.6) must not be above freelist_crit "
     "(0.5)"},
    {"wal crit below the inherited warn",
     "databases = ( { name = \"app\"; path = \"/a.db\";\n  health = { wal_crit = \"50MB\"; }; } "
     ");\n",
     "2: databases.app.health.wal_crit: wal_warn (@FORMAT 104857600@) must not be above wal_crit "
     "(@FORMAT 52428800@)"},
    {"workers 0", "workers = 0;\n" APP, "1: workers: must be between 1 and 64, got 0"},
    {"workers 65", "workers = 65;\n" APP, "1: workers: must be between 1 and 64, got 65"},
    {"part size too small",
     "targets = ( { name = \"s\"; type = \"s3\"; region = \"r\"; bucket = \"b\";\n"
     "  part_size = \"4MB\"; } );\n" APP,
     "2: targets.s.part_size: must be between 5MB and 5GB (the limits of S3 multipart uploads), "
     "got \"4MB\""},
    {"part size too large",
     "targets = ( { name = \"s\"; type = \"s3\"; region = \"r\"; bucket = \"b\";\n"
     "  part_size = \"6GB\"; } );\n" APP,
     "2: targets.s.part_size: must be between 5MB and 5GB (the limits of S3 multipart uploads), "
     "got \"6GB\""},

    /* Targets. */
    {"s3 without bucket",
     "targets = (\n  { name = \"s\"; type = \"s3\"; region = \"r\"; }\n);\n" APP,
     "2: targets.s: missing 'bucket' (required for type \"s3\")"},
    {"s3 without endpoint or region",
     "targets = (\n  { name = \"s\"; type = \"s3\"; bucket = \"b\"; }\n);\n" APP,
     "2: targets.s: missing 'endpoint' (the S3 server's URL, e.g. "
     "\"https://minio.example.com:9000\"); on AWS set 'region' instead and the endpoint is "
     "https://s3.REGION.amazonaws.com"},
    {"endpoint without scheme",
     "targets = ( { name = \"s\"; type = \"s3\"; bucket = \"b\";\n"
     "  endpoint = \"s3.amazonaws.com\"; } );\n" APP,
     "2: targets.s.endpoint: must be a URL starting with https:// or http://, got "
     "\"s3.amazonaws.com\""},
    {"bucket with a folder",
     "targets = ( { name = \"s\"; type = \"s3\"; region = \"r\";\n  bucket = \"acme/db\"; } "
     ");\n" APP,
     "2: targets.s.bucket: \"acme/db\" is not a bucket name: put the folder part in 'prefix'"},
    {"dir target without path", "targets = (\n  { name = \"nas\"; type = \"dir\"; }\n);\n" APP,
     "2: targets.nas: missing 'path' (required for type \"dir\": the directory that receives the "
     "archives)"},

    /* Metrics and the file as a whole. */
    {"listen without a port", "metrics = { listen = \"127.0.0.1\"; };\n" APP,
     "1: metrics.listen: must be HOST:PORT like \"127.0.0.1:9187\", got \"127.0.0.1\""},
    {"listen port out of range", "metrics = { listen = \"localhost:99999\"; };\n" APP,
     "1: metrics.listen: must be HOST:PORT like \"127.0.0.1:9187\", got \"localhost:99999\""},
    {"relative metrics textfile", "metrics = { textfile = \"sqlprodd.prom\"; };\n" APP,
     "1: metrics.textfile: must be an absolute path (starting with /), got \"sqlprodd.prom\""},
    {"no databases", "state_dir = \"/var/lib/sqlprodd\";\n",
     "1: databases: missing (list the databases to look after: databases = ( { name = \"app\"; "
     "path = \"/var/lib/app/app.db\"; } ); an empty list ( ) is allowed)"},
    {"syntax error", "state_dir = \"/var/lib/sqlprodd\";\nworkers = ;\n" APP, "2: syntax error"},
    {"duplicate setting", "workers = 2;\nworkers = 3;\n" APP,
     "2: syntax error: duplicate setting name"},
};

/* The expected texts name what units.c and schedule.c say about a bad
 * value as "@DURATION text@", "@SIZE text@", "@CRON text@" and
 * "@FORMAT bytes@": the config parser must pass their words through. */
static char *expand_expected(const char *template)
{
    char *out = malloc(2048);
    assert_non_null(out);
    size_t used = 0;
    const char *cursor = template;
    while (*cursor) {
        const char *at = strchr(cursor, '@');
        if (!at) {
            snprintf(out + used, 2048 - used, "%s", cursor);
            break;
        }
        used += (size_t)snprintf(out + used, 2048 - used, "%.*s", (int)(at - cursor), cursor);
        const char *end = strchr(at + 1, '@');
        assert_non_null(end);
        char token[128];
        snprintf(token, sizeof token, "%.*s", (int)(end - at - 1), at + 1);
        char why[256] = "";
        if (strncmp(token, "DURATION ", 9) == 0) {
            int64_t seconds;
            assert_int_not_equal(units_parse_duration(token + 9, &seconds, why, sizeof why), 0);
        } else if (strncmp(token, "SIZE ", 5) == 0) {
            int64_t bytes;
            assert_int_not_equal(units_parse_size(token + 5, &bytes, why, sizeof why), 0);
        } else if (strncmp(token, "CRON ", 5) == 0) {
            struct cron_expression cron;
            assert_int_not_equal(sched_parse_cron(token + 5, &cron, why, sizeof why), 0);
        } else if (strncmp(token, "FORMAT ", 7) == 0) {
            units_format_size(strtoll(token + 7, NULL, 10), why, sizeof why);
        } else {
            fail_msg("unknown token %s", token);
        }
        assert_true(why[0] != '\0');
        used += (size_t)snprintf(out + used, 2048 - used, "%s", why);
        cursor = end + 1;
    }
    return out;
}

static void each_bad_config_reports_its_exact_line(void **state)
{
    (void)state;
    size_t count = sizeof bad_configs / sizeof bad_configs[0];
    assert_true(count >= 45);
    size_t failures = 0;
    for (size_t i = 0; i < count; i++) {
        char *expected = expand_expected(bad_configs[i].expected);
        if (!bad_config_reports(bad_configs[i].name, bad_configs[i].text, expected))
            failures++;
        free(expected);
    }
    if (failures)
        fail_msg("%zu of %zu bad configs were not reported as expected", failures, count);
}

static void several_mistakes_are_all_reported_in_file_order(void **state)
{
    (void)state;
    /* The parser reads targets before defaults and databases, and the
     * top-level keys first: the report must still follow the file. */
    const char *text = "databases = (\n"                                   /* 1 */
                       "  { name = \"app\"; path = \"app.db\"; },\n"       /* 2 */
                       "  { name = \"app\"; path = \"/b.db\";\n"           /* 3 */
                       "    backup = { every = \"1h\"; level = 12; }; }\n" /* 4 */
                       ");\n"                                              /* 5 */
                       "defaults = {\n"                                    /* 6 */
                       "  checkpoint = { mode = \"fast\"; };\n"            /* 7 */
                       "  upload = { target = \"nowhere\"; };\n"           /* 8 */
                       "};\n"                                              /* 9 */
                       "targets = (\n"                                     /* 10 */
                       "  { name = \"nas\"; type = \"dir\"; }\n"           /* 11 */
                       ");\n"                                              /* 12 */
                       "workers = 0;\n"                                    /* 13 */
                       "state_dir = \"state\";\n";                         /* 14 */
    const char *expected[] = {
        "2: databases.app.path: must be an absolute path (starting with /), got \"app.db\"",
        "3: databases.app.name: duplicate database name \"app\" (first used at line 2)",
        "4: databases.app.backup.level: must be between 1 and 9, got 12",
        "7: defaults.checkpoint.mode: unknown value \"fast\" (expected \"passive\", \"full\", "
        "\"restart\" or \"truncate\")",
        "8: defaults.upload.target: no target named \"nowhere\" (targets: \"nas\")",
        "11: targets.nas: missing 'path' (required for type \"dir\": the directory that receives "
        "the archives)",
        "13: workers: must be between 1 and 64, got 0",
        "14: state_dir: must be an absolute path (starting with /), got \"state\"",
    };
    size_t count = sizeof expected / sizeof expected[0];
    char path[64];
    struct config *config = NULL;
    struct config_diagnostics diag;
    assert_int_equal(load_text(text, &config, &diag, path, sizeof path), -EINVAL);
    assert_null(config);
    if (diag.count != count)
        for (size_t i = 0; i < diag.count; i++)
            print_error("got: %s\n", diag.lines[i]);
    assert_int_equal(diag.count, count);
    for (size_t i = 0; i < count; i++) {
        char want[512];
        snprintf(want, sizeof want, "%s:%s", path, expected[i]);
        assert_string_equal(diag.lines[i], want);
    }
    config_diagnostics_free(&diag);
}

/* SPEC.md's example, verbatim. */
static const char spec_example[] =
    "state_dir = \"/var/lib/sqlprodd\";        # agent state (a small SQLite db), locks, temp "
    "files\n"
    "log_level = \"info\";                     # debug | info | notice | warning | error\n"
    "metrics = { textfile = \"/var/lib/prometheus/node-exporter/sqlprodd.prom\"; };  # "
    "optional\n"
    "\n"
    "defaults = {                            # every key of a database entry; entries "
    "override\n"
    "  busy_timeout_ms = 5000;\n"
    "  checkpoint = { every = \"15m\"; mode = \"truncate\"; max_wait_ms = 2000; };\n"
    "  analyze    = { cron = \"30 3 * * *\"; };\n"
    "  vacuum     = { every = \"6h\"; pages = 0; };        # PRAGMA incremental_vacuum(pages); "
    "0 = all\n"
    "  backup     = { every = \"1h\"; dir = \"/var/backups/sqlprodd\"; level = 6;\n"
    "                 verify = \"integrity\";               # integrity | quick\n"
    "                 keep = { last = 24; daily = 7; weekly = 4; monthly = 6; }; };\n"
    "  upload     = { target = \"offsite\"; keep = { daily = 30; monthly = 12; }; };\n"
    "  health     = { every = \"5m\"; wal_warn = \"100MB\"; wal_crit = \"500MB\";\n"
    "                 freelist_warn = 0.2; freelist_crit = 0.5; };\n"
    "};\n"
    "\n"
    "targets = (\n"
    "  { name = \"offsite\"; type = \"s3\";\n"
    "    endpoint = \"https://s3.eu-central-1.amazonaws.com\"; region = \"eu-central-1\";\n"
    "    bucket = \"acme-backups\"; prefix = \"db/\"; path_style = false;\n"
    "    credentials_file = \"/etc/sqlprodd/offsite.credentials\";  # AWS shared-credentials "
    "format\n"
    "    part_size = \"16MB\"; storage_class = \"STANDARD_IA\"; },\n"
    "  { name = \"nas\"; type = \"dir\"; path = \"/mnt/nas/sqlprodd\"; }\n"
    ");\n"
    "\n"
    "databases = (\n"
    "  { name = \"app\";       path = \"/var/lib/myapp/production.db\"; },\n"
    "  { name = \"analytics\"; path = \"/srv/analytics.db\"; backup = { every = \"6h\"; }; "
    "upload = { target = \"nas\"; }; }\n"
    ");\n";

static void spec_example_loads_with_merged_values(void **state)
{
    (void)state;
    struct config *config = load_good(spec_example);
    assert_string_equal(config->state_dir, "/var/lib/sqlprodd");
    assert_int_equal(config->log_level, LOG_INFO);
    assert_string_equal(config->metrics_textfile,
                        "/var/lib/prometheus/node-exporter/sqlprodd.prom");
    assert_null(config->metrics_listen);
    assert_int_equal(config->workers, 2);
    assert_int_equal(config->target_count, 2);
    assert_int_equal(config->database_count, 2);

    const struct target_config *offsite = config_find_target(config, "offsite");
    assert_non_null(offsite);
    assert_int_equal(offsite->type, TARGET_S3);
    assert_string_equal(offsite->endpoint, "https://s3.eu-central-1.amazonaws.com");
    assert_string_equal(offsite->region, "eu-central-1");
    assert_string_equal(offsite->bucket, "acme-backups");
    assert_string_equal(offsite->prefix, "db/");
    assert_false(offsite->path_style);
    assert_string_equal(offsite->credentials_file, "/etc/sqlprodd/offsite.credentials");
    assert_string_equal(offsite->profile, "default");
    assert_int_equal(offsite->part_size, 16 * MIB);
    assert_string_equal(offsite->storage_class, "STANDARD_IA");
    assert_null(offsite->sse);
    assert_true(offsite->tls_verify);
    assert_int_equal(offsite->line, 19);
    const struct target_config *nas = config_find_target(config, "nas");
    assert_non_null(nas);
    assert_int_equal(nas->type, TARGET_DIR);
    assert_string_equal(nas->path, "/mnt/nas/sqlprodd");

    const struct database_config *app = config_find_database(config, "app");
    assert_non_null(app);
    assert_string_equal(app->path, "/var/lib/myapp/production.db");
    assert_int_equal(app->line, 28);
    assert_int_equal(app->busy_timeout_ms, 5000);
    assert_int_equal(app->checkpoint.schedule.kind, SCHEDULE_EVERY);
    assert_int_equal(app->checkpoint.schedule.every_seconds, 900);
    assert_int_equal(app->checkpoint.mode, CHECKPOINT_TRUNCATE);
    assert_int_equal(app->analyze.schedule.kind, SCHEDULE_CRON);
    assert_string_equal(app->analyze.schedule.text, "30 3 * * *");
    assert_int_equal(app->backup.schedule.every_seconds, 3600);
    assert_ptr_equal(app->upload.target, offsite);
    assert_string_equal(app->upload.target_name, "offsite");
    assert_int_equal(app->upload.keep.daily, 30);
    assert_int_equal(app->upload.keep.monthly, 12);
    assert_int_equal(app->upload.keep.last, 0);

    const struct database_config *analytics = config_find_database(config, "analytics");
    assert_non_null(analytics);
    assert_ptr_equal(analytics, &config->databases[1]);
    assert_string_equal(analytics->path, "/srv/analytics.db");
    /* Its backup group overrides `every` only. */
    assert_int_equal(analytics->backup.schedule.kind, SCHEDULE_EVERY);
    assert_int_equal(analytics->backup.schedule.every_seconds, 6 * 3600);
    assert_string_equal(analytics->backup.schedule.text, "6h");
    assert_string_equal(analytics->backup.dir, "/var/backups/sqlprodd");
    assert_int_equal(analytics->backup.level, 6);
    assert_int_equal(analytics->backup.verify, VERIFY_INTEGRITY);
    assert_int_equal(analytics->backup.keep.last, 24);
    assert_int_equal(analytics->backup.keep.monthly, 6);
    /* Its upload goes to nas, with the default keep and retry cadence. */
    assert_ptr_equal(analytics->upload.target, nas);
    assert_string_equal(analytics->upload.target_name, "nas");
    assert_int_equal(analytics->upload.keep.daily, 30);
    assert_int_equal(analytics->upload.schedule.kind, SCHEDULE_EVERY);
    assert_int_equal(analytics->upload.schedule.every_seconds, 60);
    assert_int_equal(analytics->health.wal_crit_bytes, 500 * MIB);
    config_free(config);
}

static void a_config_with_no_databases_is_valid(void **state)
{
    (void)state;
    struct config *config = load_good("databases = ( );\n");
    assert_int_equal(config->database_count, 0);
    assert_null(config->databases);
    assert_int_equal(config->target_count, 0);
    assert_null(config_find_database(config, "app"));
    config_free(config);
}

static void builtin_defaults_apply_to_a_bare_entry(void **state)
{
    (void)state;
    struct config *config = load_good(APP);
    assert_string_equal(config->state_dir, "/var/lib/sqlprodd");
    assert_int_equal(config->log_level, LOG_INFO);
    assert_int_equal(config->workers, 2);
    assert_null(config->metrics_textfile);
    assert_null(config->metrics_listen);
    const struct database_config *app = &config->databases[0];
    assert_string_equal(app->name, "app");
    assert_int_equal(app->busy_timeout_ms, 5000);
    assert_int_equal(app->checkpoint.schedule.kind, SCHEDULE_EVERY);
    assert_int_equal(app->checkpoint.schedule.every_seconds, 15 * 60);
    assert_int_equal(app->checkpoint.mode, CHECKPOINT_TRUNCATE);
    assert_int_equal(app->checkpoint.max_wait_ms, 2000);
    assert_int_equal(app->analyze.schedule.kind, SCHEDULE_CRON);
    assert_string_equal(app->analyze.schedule.text, "30 3 * * *");
    struct cron_expression expected;
    char why[128];
    assert_int_equal(sched_parse_cron("30 3 * * *", &expected, why, sizeof why), 0);
    assert_memory_equal(&app->analyze.schedule.cron, &expected, sizeof expected);
    assert_false(app->analyze.optimize);
    assert_int_equal(app->analyze.limit, 1000);
    assert_int_equal(app->vacuum.schedule.every_seconds, 6 * 3600);
    assert_int_equal(app->vacuum.pages, 0);
    assert_int_equal(app->backup.schedule.every_seconds, 3600);
    assert_string_equal(app->backup.dir, "/var/backups/sqlprodd");
    assert_int_equal(app->backup.level, 6);
    assert_int_equal(app->backup.verify, VERIFY_QUICK);
    assert_int_equal(app->backup.keep.last, 24);
    assert_int_equal(app->backup.keep.hourly, 0);
    assert_int_equal(app->backup.keep.daily, 7);
    assert_int_equal(app->backup.keep.weekly, 4);
    assert_int_equal(app->backup.keep.monthly, 6);
    assert_int_equal(app->backup.keep.yearly, 0);
    assert_int_equal(app->backup.keep.within_seconds, 0);
    /* No target by default: no upload, no upload schedule. */
    assert_null(app->upload.target_name);
    assert_null(app->upload.target);
    assert_int_equal(app->upload.schedule.kind, SCHEDULE_NONE);
    assert_int_equal(app->upload.keep.daily, 30);
    assert_int_equal(app->upload.keep.monthly, 12);
    assert_int_equal(app->health.schedule.every_seconds, 5 * 60);
    assert_int_equal(app->health.wal_warn_bytes, 100 * MIB);
    assert_int_equal(app->health.wal_crit_bytes, 500 * MIB);
    assert_true(app->health.freelist_warn == 0.2);
    assert_true(app->health.freelist_crit == 0.5);
    config_free(config);
}

static const char merge_targets[] =
    "targets = ( { name = \"offsite\"; type = \"dir\"; path = \"/mnt/offsite\"; },\n"
    "            { name = \"nas\"; type = \"dir\"; path = \"/mnt/nas\"; } );\n";

static void an_entry_overrides_defaults_key_by_key(void **state)
{
    (void)state;
    char text[2048];
    snprintf(text, sizeof text,
             "%s"
             "defaults = {\n"
             "  busy_timeout_ms = 100;\n"
             "  backup = { every = \"2h\"; dir = \"/srv/backups\"; level = 9; verify = \"quick\";\n"
             "             keep = { last = 5; daily = 3; }; };\n"
             "  analyze = { cron = \"0 1 * * *\"; optimize = true; };\n"
             "  health = { wal_warn = \"1GB\"; wal_crit = \"2GB\"; };\n"
             "};\n"
             "databases = (\n"
             "  { name = \"plain\"; path = \"/plain.db\"; },\n"
             "  { name = \"tuned\"; path = \"/tuned.db\"; busy_timeout_ms = 0;\n"
             "    backup = { level = 1; };\n"
             "    analyze = { every = \"12h\"; };\n"
             "    health = { wal_crit = \"3GB\"; freelist_warn = 0; }; }\n"
             ");\n",
             merge_targets);
    struct config *config = load_good(text);
    const struct database_config *plain = config_find_database(config, "plain");
    const struct database_config *tuned = config_find_database(config, "tuned");
    assert_non_null(plain);
    assert_non_null(tuned);

    assert_int_equal(plain->busy_timeout_ms, 100);
    assert_int_equal(plain->backup.schedule.every_seconds, 2 * 3600);
    assert_string_equal(plain->backup.dir, "/srv/backups");
    assert_int_equal(plain->backup.level, 9);
    assert_int_equal(plain->backup.verify, VERIFY_QUICK);
    assert_int_equal(plain->backup.keep.last, 5);
    assert_int_equal(plain->backup.keep.daily, 3);
    assert_int_equal(plain->backup.keep.weekly, 0); /* defaults' keep replaced the builtin one */
    assert_int_equal(plain->analyze.schedule.kind, SCHEDULE_CRON);
    assert_true(plain->analyze.optimize);

    assert_int_equal(tuned->busy_timeout_ms, 0);
    assert_int_equal(tuned->backup.level, 1);
    assert_int_equal(tuned->backup.schedule.every_seconds, 2 * 3600);
    assert_string_equal(tuned->backup.dir, "/srv/backups");
    assert_int_equal(tuned->backup.verify, VERIFY_QUICK);
    assert_int_equal(tuned->backup.keep.last, 5);
    /* `every` in the entry drops the inherited cron; optimize stays. */
    assert_int_equal(tuned->analyze.schedule.kind, SCHEDULE_EVERY);
    assert_int_equal(tuned->analyze.schedule.every_seconds, 12 * 3600);
    assert_string_equal(tuned->analyze.schedule.text, "12h");
    assert_true(tuned->analyze.optimize);
    assert_int_equal(tuned->health.wal_warn_bytes, 1024 * MIB);
    assert_int_equal(tuned->health.wal_crit_bytes, 3072 * MIB);
    assert_true(tuned->health.freelist_warn == 0.0);
    assert_true(tuned->health.freelist_crit == 0.5);
    /* Each entry owns its strings. */
    assert_ptr_not_equal(plain->backup.dir, tuned->backup.dir);
    config_free(config);
}

static void a_cron_in_an_entry_replaces_an_inherited_every(void **state)
{
    (void)state;
    struct config *config =
        load_good("defaults = { backup = { every = \"1h\"; }; };\n"
                  "databases = ( { name = \"app\"; path = \"/a.db\";\n"
                  "                backup = { cron = \"15 2 * * 0\"; }; } );\n");
    const struct schedule *schedule = &config->databases[0].backup.schedule;
    assert_int_equal(schedule->kind, SCHEDULE_CRON);
    assert_string_equal(schedule->text, "15 2 * * 0");
    assert_int_equal(schedule->every_seconds, 0);
    config_free(config);
}

static void an_entry_keep_replaces_the_default_keep_entirely(void **state)
{
    (void)state;
    struct config *config = load_good(
        "defaults = { backup = { keep = { last = 24; daily = 7; weekly = 4; }; }; };\n"
        "databases = ( { name = \"app\"; path = \"/a.db\";\n"
        "                backup = { keep = { monthly = 2; within = \"2d\"; }; }; },\n"
        "              { name = \"all\"; path = \"/all.db\"; backup = { keep = { }; }; } );\n");
    const struct keep_policy *keep = &config->databases[0].backup.keep;
    assert_int_equal(keep->last, 0);
    assert_int_equal(keep->daily, 0);
    assert_int_equal(keep->weekly, 0);
    assert_int_equal(keep->monthly, 2);
    assert_int_equal(keep->within_seconds, 2 * 86400);
    /* An empty keep means keep everything. */
    const struct keep_policy *all = &config->databases[1].backup.keep;
    assert_int_equal(
        all->last + all->hourly + all->daily + all->weekly + all->monthly + all->yearly, 0);
    assert_int_equal(all->within_seconds, 0);
    config_free(config);
}

static void enabled_false_switches_a_job_off_and_an_entry_back_on(void **state)
{
    (void)state;
    struct config *config = load_good(
        "defaults = { vacuum = { every = \"3h\"; enabled = false; };\n"
        "             checkpoint = { enabled = true; }; };\n"
        "databases = ( { name = \"off\"; path = \"/off.db\"; },\n"
        "              { name = \"on\"; path = \"/on.db\"; vacuum = { enabled = true; }; },\n"
        "              { name = \"quiet\"; path = \"/quiet.db\"; health = { enabled = false; }; } "
        ");\n");
    const struct database_config *off = config_find_database(config, "off");
    const struct database_config *on = config_find_database(config, "on");
    const struct database_config *quiet = config_find_database(config, "quiet");
    assert_int_equal(off->vacuum.schedule.kind, SCHEDULE_NONE);
    assert_int_equal(off->checkpoint.schedule.kind, SCHEDULE_EVERY);
    assert_int_equal(on->vacuum.schedule.kind, SCHEDULE_EVERY);
    assert_int_equal(on->vacuum.schedule.every_seconds, 3 * 3600);
    assert_int_equal(quiet->health.schedule.kind, SCHEDULE_NONE);
    assert_int_equal(quiet->vacuum.schedule.kind, SCHEDULE_NONE);
    assert_int_equal(quiet->backup.schedule.kind, SCHEDULE_EVERY);
    config_free(config);
}

static void upload_targets_resolve_and_entries_can_opt_out(void **state)
{
    (void)state;
    char text[2048];
    snprintf(text, sizeof text,
             "%s"
             "defaults = { upload = { target = \"offsite\"; }; };\n"
             "databases = (\n"
             "  { name = \"default\"; path = \"/1.db\"; },\n"
             "  { name = \"other\"; path = \"/2.db\"; upload = { target = \"nas\"; every = \"5m\"; "
             "}; },\n"
             "  { name = \"empty\"; path = \"/3.db\"; upload = { target = \"\"; }; },\n"
             "  { name = \"disabled\"; path = \"/4.db\"; upload = { enabled = false; }; }\n"
             ");\n",
             merge_targets);
    struct config *config = load_good(text);
    const struct database_config *dflt = config_find_database(config, "default");
    assert_ptr_equal(dflt->upload.target, &config->targets[0]);
    assert_int_equal(dflt->upload.schedule.kind, SCHEDULE_EVERY);
    assert_int_equal(dflt->upload.schedule.every_seconds, 60);
    const struct database_config *other = config_find_database(config, "other");
    assert_ptr_equal(other->upload.target, &config->targets[1]);
    assert_string_equal(other->upload.target->path, "/mnt/nas");
    assert_int_equal(other->upload.schedule.every_seconds, 300);
    for (int i = 2; i < 4; i++) {
        const struct database_config *out = &config->databases[i];
        assert_null(out->upload.target);
        assert_null(out->upload.target_name);
        assert_int_equal(out->upload.schedule.kind, SCHEDULE_NONE);
        /* Opting out of uploads leaves the local backups alone. */
        assert_int_equal(out->backup.schedule.kind, SCHEDULE_EVERY);
    }
    config_free(config);
}

static void replicate_merges_from_defaults_and_entries_can_opt_out(void **state)
{
    (void)state;
    char text[2048];
    snprintf(text, sizeof text,
             "%s"
             "defaults = { replicate = { target = \"offsite\"; interval = \"5s\"; }; };\n"
             "databases = (\n"
             "  { name = \"default\"; path = \"/1.db\"; },\n"
             "  { name = \"other\"; path = \"/2.db\";\n"
             "    replicate = { target = \"nas\"; snapshot_every = \"6h\"; window = \"30d\"; }; },\n"
             "  { name = \"empty\"; path = \"/3.db\"; replicate = { target = \"\"; }; },\n"
             "  { name = \"disabled\"; path = \"/4.db\"; replicate = { enabled = false; }; }\n"
             ");\n",
             merge_targets);
    struct config *config = load_good(text);
    const struct database_config *dflt = config_find_database(config, "default");
    assert_ptr_equal(dflt->replicate.target, &config->targets[0]);
    assert_int_equal(dflt->replicate.interval_seconds, 5);
    assert_int_equal(dflt->replicate.snapshot_every_seconds, 86400);
    assert_int_equal(dflt->replicate.window_seconds, 7 * 86400);
    assert_true(dflt->replicate.origin.in_defaults);
    assert_int_equal(dflt->replicate.origin.line, 3);
    const struct database_config *other = config_find_database(config, "other");
    assert_ptr_equal(other->replicate.target, &config->targets[1]);
    assert_int_equal(other->replicate.interval_seconds, 5);
    assert_int_equal(other->replicate.snapshot_every_seconds, 6 * 3600);
    assert_int_equal(other->replicate.window_seconds, 30 * 86400);
    assert_false(other->replicate.origin.in_defaults);
    assert_int_equal(other->replicate.origin.line, 7);
    for (int i = 2; i < 4; i++) {
        assert_null(config->databases[i].replicate.target);
        assert_null(config->databases[i].replicate.target_name);
    }
    /* Without a replicate group nothing is shipped. */
    config_free(config);
    config = load_good(APP);
    assert_null(config->databases[0].replicate.target);
    assert_int_equal(config->databases[0].replicate.interval_seconds, 1);
    config_free(config);
}

static void drill_runs_only_when_scheduled_and_from_follows_the_target(void **state)
{
    (void)state;
    char text[2048];
    snprintf(text, sizeof text,
             "%s"
             "defaults = { drill = { every = \"1d\"; }; };\n"
             "databases = (\n"
             "  { name = \"remote\"; path = \"/1.db\"; upload = { target = \"offsite\"; }; },\n"
             "  { name = \"local\"; path = \"/2.db\"; },\n"
             "  { name = \"chosen\"; path = \"/3.db\"; upload = { target = \"nas\"; };\n"
             "    drill = { cron = \"0 4 * * *\"; from = \"local\"; }; },\n"
             "  { name = \"off\"; path = \"/4.db\"; drill = { enabled = false; }; }\n"
             ");\n",
             merge_targets);
    struct config *config = load_good(text);
    const struct database_config *remote = config_find_database(config, "remote");
    assert_int_equal(remote->drill.schedule.kind, SCHEDULE_EVERY);
    assert_int_equal(remote->drill.schedule.every_seconds, 86400);
    assert_int_equal(remote->drill.from, DRILL_FROM_REMOTE);
    assert_int_equal(config_find_database(config, "local")->drill.from, DRILL_FROM_LOCAL);
    const struct database_config *chosen = config_find_database(config, "chosen");
    assert_int_equal(chosen->drill.schedule.kind, SCHEDULE_CRON);
    assert_int_equal(chosen->drill.from, DRILL_FROM_LOCAL);
    assert_int_equal(config_find_database(config, "off")->drill.schedule.kind, SCHEDULE_NONE);
    config_free(config);

    /* No drill group: no drill. */
    snprintf(text, sizeof text, "databases = ( { name = \"app\"; path = \"/1.db\"; } );\n");
    config = load_good(text);
    assert_int_equal(config->databases[0].drill.schedule.kind, SCHEDULE_NONE);
    config_free(config);
}

static void a_bad_default_is_reported_once_not_per_database(void **state)
{
    (void)state;
    char path[64];
    struct config *config = NULL;
    struct config_diagnostics diag;
    int rc = load_text("defaults = { backup = { level = 0; }; };\n"
                       "databases = ( { name = \"a\"; path = \"/a.db\"; },\n"
                       "              { name = \"b\"; path = \"/b.db\"; },\n"
                       "              { name = \"c\"; path = \"/c.db\"; } );\n",
                       &config, &diag, path, sizeof path);
    assert_int_equal(rc, -EINVAL);
    assert_int_equal(diag.count, 1);
    char want[256];
    snprintf(want, sizeof want, "%s:1: defaults.backup.level: must be between 1 and 9, got 0",
             path);
    assert_string_equal(diag.lines[0], want);
    config_diagnostics_free(&diag);
}

static void s3_target_defaults_and_normalisation(void **state)
{
    (void)state;
    struct config *config =
        load_good("targets = (\n"
                  "  { name = \"aws\"; type = \"s3\"; region = \"eu-west-3\"; bucket = \"b\";\n"
                  "    sse = \"AWS:KMS\"; sse_kms_key_id = \"alias/backups\"; tls_verify = false;\n"
                  "    part_size = \"5MB\"; profile = \"backup\"; },\n"
                  "  { name = \"minio\"; type = \"s3\"; endpoint = \"http://127.0.0.1:9000/\";\n"
                  "    bucket = \"b\"; path_style = true; part_size = \"5GB\"; }\n"
                  ");\n" APP);
    const struct target_config *aws = config_find_target(config, "aws");
    assert_string_equal(aws->endpoint, "https://s3.eu-west-3.amazonaws.com");
    assert_string_equal(aws->region, "eu-west-3");
    assert_string_equal(aws->prefix, "");
    assert_string_equal(aws->sse, "aws:kms");
    assert_string_equal(aws->sse_kms_key_id, "alias/backups");
    assert_false(aws->tls_verify);
    assert_int_equal(aws->part_size, 5 * MIB);
    assert_string_equal(aws->profile, "backup");
    assert_null(aws->credentials_file);
    assert_null(aws->storage_class);
    const struct target_config *minio = config_find_target(config, "minio");
    assert_string_equal(minio->endpoint, "http://127.0.0.1:9000");
    assert_string_equal(minio->region, "us-east-1");
    assert_true(minio->path_style);
    assert_true(minio->tls_verify);
    assert_int_equal(minio->part_size, 5 * 1024 * MIB);
    config_free(config);
}

static void object_lock_is_read_per_target_and_off_by_default(void **state)
{
    (void)state;
    struct config *config =
        load_good("targets = (\n"
                  "  { name = \"locked\"; type = \"s3\"; region = \"r\"; bucket = \"b\";\n"
                  "    object_lock = { mode = \"COMPLIANCE\"; days = 36500; }; },\n"
                  "  { name = \"governed\"; type = \"s3\"; region = \"r\"; bucket = \"b\";\n"
                  "    object_lock = { mode = \"governance\"; days = 1; }; },\n"
                  "  { name = \"plain\"; type = \"s3\"; region = \"r\"; bucket = \"b\"; }\n"
                  ");\n" APP);
    const struct target_config *locked = config_find_target(config, "locked");
    assert_int_equal(locked->object_lock_mode, OBJECT_LOCK_COMPLIANCE);
    assert_int_equal(locked->object_lock_days, 36500);
    assert_string_equal(config_object_lock_mode_name(locked->object_lock_mode), "compliance");
    const struct target_config *governed = config_find_target(config, "governed");
    assert_int_equal(governed->object_lock_mode, OBJECT_LOCK_GOVERNANCE);
    assert_int_equal(governed->object_lock_days, 1);
    assert_string_equal(config_object_lock_mode_name(governed->object_lock_mode), "governance");
    assert_int_equal(config_find_target(config, "plain")->object_lock_days, 0);
    config_free(config);
}

static void top_level_settings_are_read(void **state)
{
    (void)state;
    struct config *config =
        load_good("state_dir = \"/srv/state\"; log_level = \"debug\"; workers = 64;\n"
                  "metrics = { textfile = \"/srv/m.prom\"; listen = \"[::1]:9187\"; };\n" APP);
    assert_string_equal(config->state_dir, "/srv/state");
    assert_int_equal(config->log_level, LOG_DEBUG);
    assert_int_equal(config->workers, 64);
    assert_string_equal(config->metrics_textfile, "/srv/m.prom");
    assert_string_equal(config->metrics_listen, "[::1]:9187");
    config_free(config);

    config = load_good("log_level = \"warning\"; metrics = { listen = \"localhost:80\"; };\n" APP);
    assert_int_equal(config->log_level, LOG_WARNING);
    assert_string_equal(config->metrics_listen, "localhost:80");
    assert_null(config->metrics_textfile);
    config_free(config);
}

static void a_missing_file_is_enoent_with_a_diagnostic(void **state)
{
    (void)state;
    struct config *config = (struct config *)1;
    struct config_diagnostics diag;
    const char *path = "/tmp/sqlprodd-test-config-does-not-exist.conf";
    assert_int_equal(config_load(path, &config, &diag), -ENOENT);
    assert_null(config);
    assert_int_equal(diag.count, 1);
    assert_string_equal(diag.lines[0], "/tmp/sqlprodd-test-config-does-not-exist.conf: cannot "
                                       "read: No such file or directory");
    config_diagnostics_free(&diag);

    assert_int_equal(config_load("/tmp", &config, &diag), -EISDIR);
    assert_int_equal(diag.count, 1);
    assert_string_equal(diag.lines[0], "/tmp: cannot read: Is a directory");
    config_diagnostics_free(&diag);
}

static void diagnostics_are_optional(void **state)
{
    (void)state;
    char path[64];
    struct config *config = NULL;
    write_temp_config("workers = 0;\n" APP, path, sizeof path);
    assert_int_equal(config_load(path, &config, NULL), -EINVAL);
    assert_null(config);
    unlink(path);
    assert_int_equal(config_load("/tmp/sqlprodd-test-config-does-not-exist.conf", &config, NULL),
                     -ENOENT);
}

static void write_file(const char *path, const char *text)
{
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    assert_int_equal(fputs(text, file) >= 0, 1);
    assert_int_equal(fclose(file), 0);
}

static void mistakes_in_an_included_file_name_that_file(void **state)
{
    (void)state;
    char directory[] = "/tmp/sqlprodd-test-config-XXXXXX";
    assert_non_null(mkdtemp(directory));
    char main_path[128], targets_path[128];
    snprintf(main_path, sizeof main_path, "%s/main.conf", directory);
    snprintf(targets_path, sizeof targets_path, "%s/targets.conf", directory);
    /* The include is relative to the config file, not to the cwd. */
    write_file(main_path, "@include \"targets.conf\"\n"
                          "databases = ( { name = \"app\"; path = \"/a.db\";\n"
                          "                upload = { target = \"nas\"; level = 3; }; } );\n");
    write_file(targets_path, "# targets\ntargets = ( { name = \"nas\"; type = \"dir\"; } );\n");
    struct config *config = NULL;
    struct config_diagnostics diag;
    assert_int_equal(config_load(main_path, &config, &diag), -EINVAL);
    assert_int_equal(diag.count, 2);
    char want[512];
    snprintf(want, sizeof want,
             "%s:3: databases.app.upload.level: unknown key 'level' (known keys here: every, cron, "
             "enabled, target, keep)",
             main_path);
    assert_string_equal(diag.lines[0], want);
    snprintf(want, sizeof want,
             "%s:2: targets.nas: missing 'path' (required for type \"dir\": the directory that "
             "receives the archives)",
             targets_path);
    assert_string_equal(diag.lines[1], want);
    config_diagnostics_free(&diag);

    write_file(targets_path,
               "# targets\n"
               "targets = ( { name = \"nas\"; type = \"dir\"; path = = \"/mnt\"; } );\n");
    assert_int_equal(config_load(main_path, &config, &diag), -EINVAL);
    assert_int_equal(diag.count, 1);
    snprintf(want, sizeof want, "%s:2: syntax error", targets_path);
    assert_string_equal(diag.lines[0], want);
    config_diagnostics_free(&diag);
    unlink(targets_path);
    unlink(main_path);
    rmdir(directory);
}

static void find_database_and_target_by_name(void **state)
{
    (void)state;
    struct config *config = load_good(spec_example);
    assert_ptr_equal(config_find_database(config, "app"), &config->databases[0]);
    assert_ptr_equal(config_find_database(config, "analytics"), &config->databases[1]);
    assert_null(config_find_database(config, "App"));
    assert_null(config_find_database(config, "ap"));
    assert_null(config_find_database(config, NULL));
    assert_ptr_equal(config_find_target(config, "nas"), &config->targets[1]);
    assert_null(config_find_target(config, "offsite2"));
    assert_null(config_find_target(config, NULL));
    assert_null(config_find_database(NULL, "app"));
    config_free(config);
}

static void checkpoint_modes_have_names(void **state)
{
    (void)state;
    assert_string_equal(config_checkpoint_mode_name(CHECKPOINT_PASSIVE), "passive");
    assert_string_equal(config_checkpoint_mode_name(CHECKPOINT_FULL), "full");
    assert_string_equal(config_checkpoint_mode_name(CHECKPOINT_RESTART), "restart");
    assert_string_equal(config_checkpoint_mode_name(CHECKPOINT_TRUNCATE), "truncate");
}

/* The source tree, from this file's path (absolute under CMake). */
static void source_path(const char *relative, char *out, size_t out_size)
{
    const char *file = __FILE__;
    const char *tests = strstr(file, "/tests/unit/");
    if (file[0] != '/' || !tests)
        fail_msg("cannot locate the source tree from __FILE__ = %s", file);
    snprintf(out, out_size, "%.*s/%s", (int)(tests - file), file, relative);
}

static char *read_whole_file(const char *path)
{
    FILE *file = fopen(path, "r");
    if (!file)
        fail_msg("cannot open %s", path);
    char *text = calloc(1, 1 << 16);
    assert_non_null(text);
    size_t length = fread(text, 1, (1 << 16) - 1, file);
    assert_true(length > 0 && length < (1 << 16) - 1);
    fclose(file);
    return text;
}

static void packaged_configs_load_without_diagnostics(void **state)
{
    (void)state;
    char path[4096];
    struct config_diagnostics diag;
    struct config *config = NULL;

    source_path("etc/sqlprodd.conf", path, sizeof path);
    int rc = config_load(path, &config, &diag);
    for (size_t i = 0; i < diag.count; i++)
        print_error("%s\n", diag.lines[i]);
    assert_int_equal(rc, 0);
    assert_int_equal(diag.count, 0);
    assert_int_equal(config->database_count, 0);
    config_free(config);

    source_path("etc/sqlprodd-demo.conf", path, sizeof path);
    rc = config_load(path, &config, &diag);
    for (size_t i = 0; i < diag.count; i++)
        print_error("%s\n", diag.lines[i]);
    assert_int_equal(rc, 0);
    assert_int_equal(diag.count, 0);
    assert_string_equal(config->state_dir, "/tmp/sqlprodd-demo/state");
    assert_string_equal(config->metrics_textfile, "/tmp/sqlprodd-demo/sqlprodd.prom");
    assert_int_equal(config->database_count, 1);
    const struct database_config *demo = config_find_database(config, "demo");
    assert_non_null(demo);
    assert_string_equal(demo->path, "/tmp/sqlprodd-demo/demo.db");
    assert_string_equal(demo->backup.dir, "/tmp/sqlprodd-demo/backups");
    assert_int_equal(demo->checkpoint.schedule.every_seconds, 30);
    assert_int_equal(demo->backup.schedule.every_seconds, 60);
    assert_int_equal(demo->health.schedule.every_seconds, 30);
    assert_int_equal(demo->vacuum.schedule.every_seconds, 120);
    assert_int_equal(demo->analyze.schedule.kind, SCHEDULE_CRON);
    assert_string_equal(demo->analyze.schedule.text, "*/5 * * * *");
    assert_non_null(demo->upload.target);
    assert_string_equal(demo->upload.target->name, "local-offsite");
    assert_int_equal(demo->upload.target->type, TARGET_DIR);
    assert_string_equal(demo->upload.target->path, "/tmp/sqlprodd-demo/offsite");
    config_free(config);
}

/* etc/sqlprodd.conf says every key there is at its builtin default: a
 * database added to it must come out exactly as one in a bare config. */
static void packaged_config_states_the_builtin_defaults(void **state)
{
    (void)state;
    char path[4096];
    source_path("etc/sqlprodd.conf", path, sizeof path);
    char *packaged = read_whole_file(path);
    const char *marker = "\ndatabases = (";
    char *databases = strstr(packaged, marker);
    assert_non_null(databases);
    databases += strlen(marker);
    char *text;
    assert_true(asprintf(&text, "%.*s\n  { name = \"app\"; path = \"/var/lib/app/app.db\"; }%s",
                         (int)(databases - packaged), packaged, databases) > 0);
    struct config *from_package = load_good(text);
    struct config *bare = load_good(APP);
    assert_int_equal(from_package->database_count, 1);

    assert_string_equal(from_package->state_dir, bare->state_dir);
    assert_int_equal(from_package->log_level, bare->log_level);
    assert_int_equal(from_package->workers, bare->workers);
    const struct database_config *a = &from_package->databases[0], *b = &bare->databases[0];
    assert_int_equal(a->busy_timeout_ms, b->busy_timeout_ms);
    assert_memory_equal(&a->checkpoint, &b->checkpoint, sizeof a->checkpoint);
    assert_memory_equal(&a->analyze, &b->analyze, sizeof a->analyze);
    assert_memory_equal(&a->vacuum, &b->vacuum, sizeof a->vacuum);
    assert_memory_equal(&a->backup.schedule, &b->backup.schedule, sizeof a->backup.schedule);
    assert_string_equal(a->backup.dir, b->backup.dir);
    assert_int_equal(a->backup.level, b->backup.level);
    assert_int_equal(a->backup.verify, b->backup.verify);
    assert_memory_equal(&a->backup.keep, &b->backup.keep, sizeof a->backup.keep);
    assert_memory_equal(&a->upload.schedule, &b->upload.schedule, sizeof a->upload.schedule);
    assert_null(a->upload.target_name);
    assert_memory_equal(&a->upload.keep, &b->upload.keep, sizeof a->upload.keep);
    assert_memory_equal(&a->health, &b->health, sizeof a->health);
    config_free(from_package);
    config_free(bare);
    free(text);
    free(packaged);
}

/* ---- limits: issue 13 ------------------------------------------------- */

/* Hostile values that used to pass or to come back garbled: each must be
 * one exact line naming its key and, for a bound, the bound. */
static const struct bad_config limit_configs[] = {
    {"every past a year",
     "databases = ( { name = \"app\"; path = \"/a.db\";\n  backup = { every = \"367d\"; }; } );\n",
     "2: databases.app.backup.every: \"367d\" is too large (at most 366d)"},
    {"every of INT64_MAX seconds",
     "defaults = { backup = { every = \"9223372036854775807s\"; }; };\n" APP,
     "1: defaults.backup.every: \"9223372036854775807s\" is too large (at most 366d)"},
    {"every that overflows int64",
     "defaults = { health = { every = \"99999999999999999999w\"; }; };\n" APP,
     "1: defaults.health.every: \"99999999999999999999w\" is too large (at most 366d)"},
    {"integrity_every past a year",
     "defaults = { health = { integrity_every = \"53w\"; }; };\n" APP,
     "1: defaults.health.integrity_every: \"53w\" is too large (at most 366d)"},
    {"keep.within past a century",
     "defaults = { backup = { keep = { within = \"36526d\"; }; }; };\n" APP,
     "1: defaults.backup.keep.within: \"36526d\" is too large (at most 36525d)"},
    {"wal_warn past a pebibyte", "defaults = { health = { wal_warn = \"1025TB\"; }; };\n" APP,
     "1: defaults.health.wal_warn: \"1025TB\" is too large (at most 1024TB)"},
    {"wal_crit that overflows int64",
     "defaults = { health = { wal_crit = \"8388608TB\"; }; };\n" APP,
     "1: defaults.health.wal_crit: \"8388608TB\" is too large (at most 1024TB)"},
    {"cron on February 31",
     "databases = ( { name = \"app\"; path = \"/a.db\";\n  backup = { cron = \"0 0 31 2 *\"; }; } "
     ");\n",
     "2: databases.app.backup.cron: \"0 0 31 2 *\" never fires: February has no day 31"},
    {"cron on April 31", "defaults = { backup = { cron = \"0 0 31 4 *\"; }; };\n" APP,
     "1: defaults.backup.cron: \"0 0 31 4 *\" never fires: April has no day 31"},
    {"cron on February 30", "defaults = { vacuum = { cron = \"0 0 30 2 *\"; }; };\n" APP,
     "1: defaults.vacuum.cron: \"0 0 30 2 *\" never fires: February has no day 30"},
    {"cron on February 30 or 31 by name",
     "defaults = { analyze = { cron = \"15 4 30,31 feb *\"; }; };\n" APP,
     "1: defaults.analyze.cron: \"15 4 30,31 feb *\" never fires: February has no day 30 or 31"},
    {"cron on the 31st of the short months",
     "defaults = { backup = { cron = \"0 0 31 4,6,9,11 *\"; }; };\n" APP,
     "1: defaults.backup.cron: \"0 0 31 4,6,9,11 *\" never fires: April, June, September and "
     "November have no day 31"},
    {"integer past 32 bits", "defaults = { backup = { keep = { last = 3000000000; }; }; };\n" APP,
     "1: defaults.backup.keep.last: too large (at most 2147483647), got 3000000000"},
    {"negative integer past 32 bits",
     "defaults = { backup = { keep = { daily = -3000000000; }; }; };\n" APP,
     "1: defaults.backup.keep.daily: must be 0 or more, got -3000000000"},
    {"integer past 64 bits", "defaults = { busy_timeout_ms = 99999999999999999999; };\n" APP,
     "1: defaults.busy_timeout_ms: too large (at most 2147483647), got 99999999999999999999"},
    {"64-bit integer past an int", "defaults = { vacuum = { pages = 3000000000L; }; };\n" APP,
     "1: defaults.vacuum.pages: too large (at most 2147483647), got 3000000000"},
    {"hex integer past 32 bits", "defaults = { analyze = { limit = 0x80000000; }; };\n" APP,
     "1: defaults.analyze.limit: too large (at most 2147483647), got 0x80000000"},
    {"workers past 32 bits", "workers = 4294967298;\n" APP,
     "1: workers: must be between 1 and 64, got 4294967298"},
    {"ratio past 32 bits", "defaults = { health = { freelist_warn = 4294967296; }; };\n" APP,
     "1: defaults.health.freelist_warn: must be between 0 and 1, got 4294967296"},
    {"NUL escape in a database path",
     "databases = ( { name = \"app\";\n  path = \"/var/lib/app\\x00/evil.db\"; } );\n",
     "2: databases.app.path: contains a NUL character (\\x00 or a zero byte), which would "
     "silently cut the value short"},
    {"NUL escape in a backup dir", "defaults = { backup = { dir = \"/b\\x00/c\"; }; };\n" APP,
     "1: defaults.backup.dir: contains a NUL character (\\x00 or a zero byte), which would "
     "silently cut the value short"},
    {"NUL escape in a cron line",
     "defaults = { analyze = { cron = \"0 3 * * *\\x00 x\"; }; };\n" APP,
     "1: defaults.analyze.cron: contains a NUL character (\\x00 or a zero byte), which would "
     "silently cut the value short"},
    {"NUL escape in a name", "databases = ( { name = \"app\\x00x\"; path = \"/a.db\"; } );\n",
     "1: databases[0].name: contains a NUL character (\\x00 or a zero byte), which would "
     "silently cut the value short"},
};

static void each_value_past_its_limit_reports_its_exact_line(void **state)
{
    (void)state;
    size_t count = sizeof limit_configs / sizeof limit_configs[0];
    size_t failures = 0;
    for (size_t i = 0; i < count; i++)
        if (!bad_config_reports(limit_configs[i].name, limit_configs[i].text,
                                limit_configs[i].expected))
            failures++;
    if (failures)
        fail_msg("%zu of %zu configs past a limit were not reported as expected", failures, count);
}

/* `count` copies of c, NUL-terminated; caller frees. */
static char *repeated(char c, size_t count)
{
    char *text = malloc(count + 1);
    assert_non_null(text);
    memset(text, c, count);
    text[count] = '\0';
    return text;
}

static void lengths_past_their_limit_report_their_exact_line(void **state)
{
    (void)state;
    char *name65 = repeated('n', 65), *name5000 = repeated('t', 5000);
    char *path3073 = repeated('p', 3072), *endpoint = repeated('e', 1025 - 8);
    char *literal = repeated('s', 16385), *comment = repeated('#', 16385);
    /* 16384 bytes with a newline inside, so that no line is too long. */
    char *longest = repeated('l', 16383);
    longest[8000] = '\n';
    struct {
        const char *name;
        char *text, *expected;
    } cases[8];
    assert_true(asprintf(&cases[0].text, "databases = ( { name = \"%s\"; path = \"/a.db\"; } );\n",
                         name65) > 0);
    cases[0].name = "65-character database name";
    cases[0].expected = strdup("1: databases[0].name: too long (65 characters, at most 64): it "
                               "becomes part of every log line, directory and archive name of "
                               "this entry");
    assert_true(asprintf(&cases[1].text,
                         "targets = (\n { name = \"%s\"; type = \"dir\"; path = \"/t\"; } );\n" APP,
                         name5000) > 0);
    cases[1].name = "5000-character target name";
    cases[1].expected = strdup("2: targets[0].name: too long (5000 characters, at most 64): it "
                               "becomes part of every log line, directory and archive name of "
                               "this entry");
    assert_true(asprintf(&cases[2].text, "state_dir = \"/%s\";\n" APP, path3073) > 0);
    cases[2].name = "3073-character path";
    cases[2].expected = strdup("1: state_dir: too long (3073 characters, at most 3072)");
    assert_true(asprintf(&cases[3].text,
                         "targets = ( { name = \"s\"; type = \"s3\"; bucket = \"b\";\n"
                         "  endpoint = \"https://%s\"; } );\n" APP,
                         endpoint) > 0);
    cases[3].name = "1025-character endpoint";
    cases[3].expected = strdup("2: targets.s.endpoint: too long (1025 characters, at most 1024)");
    assert_true(asprintf(&cases[4].text,
                         "state_dir = \"/x\";\nmetrics = { textfile =\n\"%s\"; };\n" APP,
                         literal) > 0);
    cases[4].name = "16385-byte quoted string";
    cases[4].expected = strdup("3: textfile: quoted string too long (16385 bytes, at most 16384)");
    assert_true(asprintf(&cases[5].text, "state_dir = \"/x\";\n\n%s\n" APP, comment) > 0);
    cases[5].name = "16385-byte comment line";
    cases[5].expected = strdup("3: line too long (16385 bytes, at most 16384)");
    /* Past 4 MiB in lines that are each allowed: the file as a whole. */
    size_t big = 4 * 1024 * 1024 + 1;
    cases[6].text = repeated('\n', big);
    memcpy(cases[6].text, "# big\n", 6);
    cases[6].name = "file past 4 MiB";
    cases[6].expected = strdup("1: the file is larger than 4 MiB: is it the right file?");

    /* A quoted string right at the bound passes the scan: only the value's
     * own limit speaks. */
    assert_true(asprintf(&cases[7].text, "state_dir = \"/%s\";\n" APP, longest) > 0);
    cases[7].name = "16384-byte quoted path";
    cases[7].expected = strdup("1: state_dir: too long (16384 characters, at most 3072)");

    size_t failures = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_non_null(cases[i].expected);
        if (!bad_config_reports(cases[i].name, cases[i].text, cases[i].expected))
            failures++;
        free(cases[i].text);
        free(cases[i].expected);
    }
    free(name65);
    free(name5000);
    free(path3073);
    free(endpoint);
    free(literal);
    free(comment);
    free(longest);
    if (failures)
        fail_msg("%zu long values were not reported as expected", failures);
}

/* A zero byte written as such in a string, not as \x00. */
static void a_zero_byte_in_a_quoted_path_is_an_error(void **state)
{
    (void)state;
    static const char text[] = "databases = ( { name = \"app\";\n  path = \"/a\0b.db\"; } );\n";
    char path[64];
    snprintf(path, sizeof path, "/tmp/sqlprodd-test-config-XXXXXX.conf");
    int fd = mkstemps(path, 5);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    struct config *config = NULL;
    struct config_diagnostics diag;
    assert_int_equal(config_load(path, &config, &diag), -EINVAL);
    unlink(path);
    assert_int_equal(diag.count, 1);
    char want[256];
    snprintf(want, sizeof want,
             "%s:2: databases.app.path: contains a NUL character (\\x00 or a zero byte), which "
             "would silently cut the value short",
             path);
    assert_string_equal(diag.lines[0], want);
    config_diagnostics_free(&diag);
}

/* Right at each bound, and the cron lines that fire only some years or
 * only through their day-of-week: all accepted as written. */
static void values_at_their_limit_are_accepted(void **state)
{
    (void)state;
    char *name64 = repeated('n', 64), *path3072 = repeated('p', 3071);
    char *comment = repeated('#', 16384), *text;
    assert_true(
        asprintf(
            &text,
            "state_dir = \"/%s\";\n%s\n"
            "defaults = { backup = { keep = { last = 2147483647; within = \"36525d\"; }; };\n"
            "  health = { wal_warn = \"1TB\"; wal_crit = \"1024TB\"; integrity_every = \"366d\"; "
            "};\n"
            "  analyze = { cron = \"0 0 31 1,2 *\"; }; vacuum = { cron = \"0 0 31 2 mon\"; }; };\n"
            "databases = (\n"
            "  { name = \"%s\"; path = \"/a.db\"; backup = { every = \"366d\"; }; },\n"
            "  { name = \"leap\"; path = \"/b.db\"; backup = { cron = \"0 0 29 2 *\"; }; },\n"
            "  { name = \"end\"; path = \"/c.db\"; backup = { cron = \"0 0 30,31 2,4 *\"; }; }\n"
            ");\n",
            path3072, comment, name64) > 0);
    struct config *config = load_good(text);
    assert_int_equal(strlen(config->state_dir), 3072);
    assert_int_equal(config->database_count, 3);
    const struct database_config *first = &config->databases[0];
    assert_int_equal(strlen(first->name), 64);
    assert_int_equal(first->backup.schedule.every_seconds, 366 * 86400LL);
    assert_int_equal(first->backup.keep.last, 2147483647);
    assert_int_equal(first->backup.keep.within_seconds, 36525 * 86400LL);
    assert_int_equal(first->health.wal_crit_bytes, 1024LL * 1024 * 1024 * 1024 * 1024);
    assert_int_equal(config->databases[1].backup.schedule.kind, SCHEDULE_CRON);
    assert_int_equal(config->databases[2].backup.schedule.kind, SCHEDULE_CRON);
    config_free(config);
    free(text);
    free(name64);
    free(path3072);
    free(comment);
}

/* template with {MAIN} and {DIR} replaced. */
static void fill_placeholders(char *out, size_t out_size, const char *template, const char *main,
                              const char *directory)
{
    size_t used = 0;
    for (const char *p = template; *p && used + 1 < out_size;) {
        const char *with = strncmp(p, "{MAIN}", 6) == 0  ? main
                           : strncmp(p, "{DIR}", 5) == 0 ? directory
                                                         : NULL;
        if (with) {
            used += (size_t)snprintf(out + used, out_size - used, "%s", with);
            p += with == main ? 6 : 5;
        } else {
            out[used++] = *p++;
        }
    }
    out[used < out_size ? used : out_size - 1] = '\0';
}

/* Every @include that cannot be read is named, with the path tried and
 * why; none of them hangs or takes libconfig's "cannot open include file". */
static void an_include_that_cannot_be_read_is_named_with_the_reason(void **state)
{
    (void)state;
    char directory[] = "/tmp/sqlprodd-test-config-XXXXXX";
    assert_non_null(mkdtemp(directory));
    char main_path[128], part[128], fifo[128], self[128], want[1024];
    snprintf(main_path, sizeof main_path, "%s/main.conf", directory);
    snprintf(part, sizeof part, "%s/part.conf", directory);
    snprintf(fifo, sizeof fifo, "%s/fifo.conf", directory);
    snprintf(self, sizeof self, "%s/self.conf", directory);
    write_file(part, APP);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    write_file(self, "@include \"self.conf\"\n");
    struct {
        const char *text, *expected;
    } cases[] = {
        {"state_dir = \"/x\";\n@include \"missing.conf\"\n",
         "{MAIN}:2: @include \"missing.conf\": cannot open {DIR}/missing.conf: No such file or "
         "directory"},
        {"@include \"fifo.conf\"\n",
         "{MAIN}:1: @include \"fifo.conf\": cannot open {DIR}/fifo.conf: not a regular file"},
        {"@include \"..\"\n", "{MAIN}:1: @include \"..\": cannot open {DIR}/..: Is a directory"},
        {"@include \"self.conf\"\n",
         "{DIR}/self.conf:1: @include \"self.conf\": included files nest more than 10 deep (does a "
         "file include itself?)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(main_path, cases[i].text);
        struct config *config = NULL;
        struct config_diagnostics diag;
        assert_int_equal(config_load(main_path, &config, &diag), -EINVAL);
        fill_placeholders(want, sizeof want, cases[i].expected, main_path, directory);
        assert_int_equal(diag.count, 1);
        assert_string_equal(diag.lines[0], want);
        config_diagnostics_free(&diag);
    }

    /* libconfig 1.5 puts its include directory in front of an absolute
     * name: say so, with the relative spelling that works, and check it. */
    char real[PATH_MAX];
    assert_non_null(realpath(directory, real));
    char absolute[256];
    snprintf(absolute, sizeof absolute, "@include \"%s\"\n", part);
    write_file(main_path, absolute);
    struct config *config = NULL;
    struct config_diagnostics diag;
    int rc = config_load(main_path, &config, &diag);
    if (rc == 0) {
        config_free(config); /* libconfig 1.7 and later read it as written */
    } else {
        assert_int_equal(diag.count, 1);
        const char *hint =
            strstr(diag.lines[0], "write it relative to that directory: @include \"");
        assert_non_null(hint);
        assert_non_null(strstr(diag.lines[0], part));
        char relative[512];
        snprintf(relative, sizeof relative, "%s\n",
                 hint + strlen("write it relative to that directory: "));
        config_diagnostics_free(&diag);
        write_file(main_path, relative);
        config = load_good_path(main_path);
        assert_int_equal(config->database_count, 1);
        config_free(config);
    }
    unlink(main_path);
    unlink(part);
    unlink(fifo);
    unlink(self);
    rmdir(directory);
}

/* A FIFO named as the config file would block the open and the read. */
static void a_fifo_as_the_config_file_is_refused_at_once(void **state)
{
    (void)state;
    char directory[] = "/tmp/sqlprodd-test-config-XXXXXX";
    assert_non_null(mkdtemp(directory));
    char fifo[128], want[256];
    snprintf(fifo, sizeof fifo, "%s/sqlprodd.conf", directory);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    struct config *config = NULL;
    struct config_diagnostics diag;
    assert_int_equal(config_load(fifo, &config, &diag), -EINVAL);
    assert_int_equal(diag.count, 1);
    snprintf(want, sizeof want, "%s: cannot read: not a regular file", fifo);
    assert_string_equal(diag.lines[0], want);
    config_diagnostics_free(&diag);
    unlink(fifo);
    rmdir(directory);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(each_bad_config_reports_its_exact_line),
        cmocka_unit_test(several_mistakes_are_all_reported_in_file_order),
        cmocka_unit_test(spec_example_loads_with_merged_values),
        cmocka_unit_test(a_config_with_no_databases_is_valid),
        cmocka_unit_test(builtin_defaults_apply_to_a_bare_entry),
        cmocka_unit_test(an_entry_overrides_defaults_key_by_key),
        cmocka_unit_test(a_cron_in_an_entry_replaces_an_inherited_every),
        cmocka_unit_test(an_entry_keep_replaces_the_default_keep_entirely),
        cmocka_unit_test(enabled_false_switches_a_job_off_and_an_entry_back_on),
        cmocka_unit_test(upload_targets_resolve_and_entries_can_opt_out),
        cmocka_unit_test(replicate_merges_from_defaults_and_entries_can_opt_out),
        cmocka_unit_test(drill_runs_only_when_scheduled_and_from_follows_the_target),
        cmocka_unit_test(a_bad_default_is_reported_once_not_per_database),
        cmocka_unit_test(s3_target_defaults_and_normalisation),
        cmocka_unit_test(object_lock_is_read_per_target_and_off_by_default),
        cmocka_unit_test(top_level_settings_are_read),
        cmocka_unit_test(a_missing_file_is_enoent_with_a_diagnostic),
        cmocka_unit_test(diagnostics_are_optional),
        cmocka_unit_test(mistakes_in_an_included_file_name_that_file),
        cmocka_unit_test(find_database_and_target_by_name),
        cmocka_unit_test(checkpoint_modes_have_names),
        cmocka_unit_test(packaged_configs_load_without_diagnostics),
        cmocka_unit_test(packaged_config_states_the_builtin_defaults),
        cmocka_unit_test(each_value_past_its_limit_reports_its_exact_line),
        cmocka_unit_test(lengths_past_their_limit_report_their_exact_line),
        cmocka_unit_test(a_zero_byte_in_a_quoted_path_is_an_error),
        cmocka_unit_test(values_at_their_limit_are_accepted),
        cmocka_unit_test(an_include_that_cannot_be_read_is_named_with_the_reason),
        cmocka_unit_test(a_fifo_as_the_config_file_is_refused_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
