/*
 * config.h: the one validated configuration structure.
 *
 * config_load() reads a libconfig file, merges `defaults` into every database
 * entry, parses every size, duration and schedule, and either returns a
 * complete struct config or reports *every* mistake as
 * "FILE:LINE: key: what is wrong". Nothing else in sqlprodd looks at
 * libconfig. The only file-system access is config_paths.c resolving the
 * configured paths, read-only (stat and realpath: it never opens a database
 * and never blocks on a FIFO), to refuse a config whose writes would land
 * on something they do not own, and config_encrypt.c reading the public keys
 * of a recipients file. Opening databases, writing to directories
 * and the network are `sqlprodd check` (cli_check.c).
 */
#ifndef SQLPRODD_CONFIG_H
#define SQLPRODD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/age.h"
#include "policy/retention.h"
#include "policy/schedule.h"

#define CONFIG_DEFAULT_PATH "/etc/sqlprodd.conf"

enum checkpoint_mode {
    CHECKPOINT_PASSIVE = 0, /* values match SQLITE_CHECKPOINT_* */
    CHECKPOINT_FULL = 1,
    CHECKPOINT_RESTART = 2,
    CHECKPOINT_TRUNCATE = 3,
};

enum verify_mode { VERIFY_INTEGRITY, VERIFY_QUICK };
enum compress_mode { COMPRESS_GZIP, COMPRESS_ZSTD }; /* backup.compress; same order as enum archive_format */

enum target_type { TARGET_DIR, TARGET_S3 };

/* S3 Object Lock retention modes (object_lock.mode): GOVERNANCE can be lifted
 * by a user with s3:BypassGovernanceRetention, COMPLIANCE by no one. */
enum object_lock_mode { OBJECT_LOCK_GOVERNANCE, OBJECT_LOCK_COMPLIANCE };

/* Where a path setting was written, so that a message about two settings
 * can name both: file NULL and line 0 for a built-in default. */
struct config_origin {
    char *file; /* as the operator can open it */
    int line;
    bool in_defaults; /* written in defaults = { ... }, inherited */
};

struct target_config {
    char *name;
    enum target_type type;
    int line;
    /* type = "dir" */
    char *path;
    struct config_origin path_origin;
    /* type = "s3" */
    char *endpoint;         /* "https://s3.eu-central-1.amazonaws.com" */
    char *region;           /* default "us-east-1" */
    char *bucket;
    char *prefix;           /* "" or ending in "/" as written */
    bool path_style;        /* default false */
    char *credentials_file; /* NULL: AWS_* environment variables */
    char *credential;       /* name of a systemd credential (LoadCredential=) instead */
    char *profile;          /* section of credentials_file, default "default" */
    int64_t part_size;      /* default 16 MiB, at least 5 MiB */
    char *storage_class;    /* NULL: bucket default */
    char *sse;              /* NULL, "AES256" or "aws:kms" */
    char *sse_kms_key_id;   /* optional with aws:kms */
    bool tls_verify;        /* default true */
    /* object_lock = { mode; days; }: every object uploaded is locked for
     * this many days from its upload; remote retention keeps it that long. */
    int object_lock_days; /* 0: no Object Lock; else 1..36500 */
    enum object_lock_mode object_lock_mode;
};

struct checkpoint_settings {
    struct schedule schedule;
    enum checkpoint_mode mode; /* default TRUNCATE */
    int max_wait_ms;           /* default 2000 */
};

struct analyze_settings {
    struct schedule schedule;
    bool optimize; /* PRAGMA optimize instead of ANALYZE */
    int limit;     /* PRAGMA analysis_limit: rows sampled per index, default 1000; 0 = all */
};

struct vacuum_settings {
    struct schedule schedule;
    int pages; /* 0 = all free pages */
};

struct backup_settings {
    struct schedule schedule;
    char *dir;          /* default "/var/backups/sqlprodd"; archives in DIR/NAME/ */
    struct config_origin dir_origin;
    int level;          /* gzip level 1-9, default 6 */
    enum verify_mode verify;
    enum compress_mode compress; /* default gzip; zstd archives are NAME-STAMP.db.zst */
    struct keep_policy keep;
};

struct upload_settings {
    struct schedule schedule; /* how often the queue is retried; default every 1m when a target is set */
    char *target_name;        /* NULL: no upload */
    const struct target_config *target; /* resolved, points into config->targets */
    struct keep_policy keep;
};

/* replicate.spool_max when not written: an outage of hours at a busy
 * database's pace, a small share of a state_dir disk. */
#define REPLICATE_SPOOL_DEFAULT (1LL << 30)

/* replicate.delta_every when not written: a restore past a span applies
 * its delta, then at most this long of WAL. */
#define REPLICATE_DELTA_EVERY_DEFAULT 120

/* Continuous WAL shipping (sqlprodd-format(5)). Not a job with a schedule:
 * the shipper looks every `interval` while the agent runs. */
struct replicate_settings {
    char *target_name;                  /* NULL: no replication */
    const struct target_config *target; /* resolved, points into config->targets */
    int64_t interval_seconds;           /* default 1s, 1s..1h */
    int64_t snapshot_every_seconds;     /* a fresh base this often, default 1d */
    int64_t window_seconds;             /* how far back restore --at reaches, default 7d */
    int64_t spool_max_bytes;            /* the local spool while the target is away, 1GB */
    bool compact;                       /* merge small objects into packs (compactor.h) */
    bool deltas;                        /* page deltas of spans of generations (delta.h) */
    int64_t delta_every_seconds;        /* a span closes after this long, default 2m */
    struct config_origin origin;        /* where `target` was written, for check's messages */
};

/* At most this many recipients: each is a stanza in every object's header. */
#define ENCRYPT_RECIPIENTS_MAXIMUM 32

/* Client-side encryption in the age v1 format (sqlprodd.conf(5), ENCRYPTION):
 * whatever leaves the machine (archives, the replica's bases and segments)
 * is encrypted to every recipient. Backing up needs the public keys alone;
 * restoring takes an identity (a secret key), which of the agent's jobs only
 * the restore drill reads. */
struct encrypt_settings {
    struct age_recipient *recipients; /* `recipients` and `recipients_file` together;
                                         none: nothing is encrypted */
    size_t recipient_count;
    char *recipients_file;     /* as written, for messages; NULL: none */
    char *identity;            /* identity file for restore and drills; NULL: --identity only */
    char *identity_credential; /* or a systemd credential by this name (LoadCredential=) */
    bool local;                /* local archives encrypted too (default false) */
};

/* Where a restore drill takes its backups from (drill.from). */
enum drill_source { DRILL_FROM_LOCAL, DRILL_FROM_REMOTE };

/* The restore drill (jobs/drill.c): a job like the others, off unless its
 * group has a schedule. `from` defaults to the upload target when the
 * database has one, else to the local backups. */
struct drill_settings {
    struct schedule schedule;
    enum drill_source from;
};

struct health_settings {
    struct schedule schedule;
    int64_t wal_warn_bytes;  /* default 100 MiB */
    int64_t wal_crit_bytes;  /* default 500 MiB */
    double freelist_warn;    /* default 0.2 */
    double freelist_crit;    /* default 0.5 */
    int64_t integrity_every_seconds; /* full integrity_check this often, else quick_check;
                                        default 1d; 0 (tests
                                        only): never */
    int64_t locked_crit_seconds;     /* locked this long: unhealthy, before: degraded;
                                        default 15m */
};

/* Persistent settings the health job applies once when the database
 * deviates (opt-in `enforce = { ... }`); unset members are only reported. */
enum enforce_auto_vacuum {
    ENFORCE_AUTO_VACUUM_UNSET = -1,
    ENFORCE_AUTO_VACUUM_NONE = 0, /* values match PRAGMA auto_vacuum */
    ENFORCE_AUTO_VACUUM_FULL = 1,
    ENFORCE_AUTO_VACUUM_INCREMENTAL = 2,
};

struct enforce_settings {
    bool journal_mode_wal;                /* journal_mode = "wal" */
    enum enforce_auto_vacuum auto_vacuum; /* a change runs one VACUUM */
};

struct database_config {
    char *name; /* [A-Za-z0-9_.-]+, not "." or "..": used in paths */
    char *path;
    int line;
    int glob;   /* index in config->globs of the entry that found it; -1: none */
    struct config_origin path_origin;
    int busy_timeout_ms; /* default 5000 */
    struct checkpoint_settings checkpoint;
    struct analyze_settings analyze;
    struct vacuum_settings vacuum;
    struct backup_settings backup;
    struct upload_settings upload;
    struct replicate_settings replicate;
    struct encrypt_settings encrypt;
    struct health_settings health;
    struct enforce_settings enforce;
    struct drill_settings drill;
};

/* A databases entry written with `glob` instead of `path`: one database
 * per matching file, each with the entry's settings and a name made from
 * `name` (default "%stem"). Found when the configuration is loaded, and
 * loaded again by the agent when the directory changes (agent/discovery.c). */
struct config_glob {
    char *pattern;   /* absolute; wildcards only in its last component */
    char *directory; /* the pattern's directory, watched */
    char *file_pattern; /* its last component, for fnmatch(3) */
    int line;
    size_t databases;   /* the databases it gave */
    char **skipped;     /* "PATH: why" for each match that gave none */
    size_t skipped_count;
};

struct config {
    char *file;             /* the path it was loaded from */
    char *state_dir;        /* default "/var/lib/sqlprodd" */
    struct config_origin state_dir_origin;
    int log_level;          /* LOG_* from syslog.h, default LOG_INFO */
    char *metrics_textfile; /* NULL: no textfile */
    struct config_origin metrics_textfile_origin;
    char *metrics_listen;   /* NULL: no HTTP endpoint ("127.0.0.1:9187") */
    int workers;            /* jobs run at once on different databases, default 2 */
    struct target_config *targets;
    size_t target_count;
    struct database_config *databases;
    size_t database_count;
    size_t *database_order; /* indices into databases by name, for config_find_database;
                               NULL until config_load has finished */
    struct config_glob *globs;
    size_t glob_count;
};

/* A list of "FILE:LINE: key: what is wrong" lines, in file order. */
struct config_diagnostics {
    char **lines;
    size_t count;
};

/*
 * Loads and validates `path`. On success returns 0 and *out (caller frees with
 * config_free). On failure returns -EINVAL (or -ENOENT/-EACCES when the file
 * cannot be read) and diag holds one line per mistake; *out is NULL.
 */
int config_load(const char *path, struct config **out, struct config_diagnostics *diag);

void config_free(struct config *config);
void config_diagnostics_free(struct config_diagnostics *diag);

/* By name: a binary search in a loaded configuration (ten thousand
 * databases of a glob entry are looked up by every report). */
const struct database_config *config_find_database(const struct config *config, const char *name);
const struct target_config *config_find_target(const struct config *config, const char *name);

/* "truncate" etc. for messages. */
const char *config_checkpoint_mode_name(enum checkpoint_mode mode);
/* "governance" or "compliance", as written in object_lock.mode. */
const char *config_object_lock_mode_name(enum object_lock_mode mode);

#endif
