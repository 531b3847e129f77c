/*
 * state.h: the agent's own memory, a small SQLite database in
 * STATE_DIR/state.db (WAL mode, so `sqlprodd status` can read it while the
 * agent writes). Holds each job's last result per database, run and failure
 * counters, what the jobs learned (struct db_facts: the health verdict,
 * sizes, the last upload), and the upload queue. It is what lets schedules
 * and the upload backlog survive restarts.
 *
 * One struct state per thread: SQLite connections are not shared here.
 */
#ifndef SQLPRODD_STATE_H
#define SQLPRODD_STATE_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "core/error.h"

struct state;

enum job_outcome {
    JOB_OUTCOME_OK = 0,
    JOB_OUTCOME_WARNING = 1, /* did its work, with a caveat (checkpoint blocked, vacuum not possible) */
    JOB_OUTCOME_FAILED = 2,
};

struct job_record {
    time_t last_started;      /* 0: never ran */
    time_t last_finished;
    double last_duration;     /* seconds */
    enum job_outcome last_outcome;
    char last_message[1024];
    time_t last_success;      /* end of the last run that was not FAILED; 0: never */
    int64_t runs_total;
    int64_t failures_total;
};

struct upload_entry {
    int64_t id;
    char database[128];
    char target[128];
    char archive_path[4096]; /* local archive; its manifest is archive_path + ".json" */
    time_t queued;
    int attempts;
    time_t next_attempt;
    char last_error[1024];
};

int state_open(const char *state_dir, struct state **out, struct error *err);
/* Opens read-only; a missing state database is not an error (*out = NULL). */
int state_open_readonly(const char *state_dir, struct state **out, struct error *err);
void state_close(struct state *state);

/* Job history. */
int state_record_job(struct state *state, const char *database, const char *job, time_t started,
                     double duration, enum job_outcome outcome, const char *message,
                     struct error *err);
/* Zeroes *record when the job never ran. */
int state_get_job(struct state *state, const char *database, const char *job,
                  struct job_record *record, struct error *err);

/* The health job's verdict. */
enum health_level { HEALTHY = 0, DEGRADED = 1, UNHEALTHY = 2 };
/* "healthy", "degraded", "unhealthy": the word status, /health and STATUS= show. */
const char *health_level_name(enum health_level level);
/* The level a word names, or -1 for any other word. */
int health_level_parse(const char *word);

/* One bit per field of struct db_facts: which fields a job writes, and
 * which ones have a value when read back. */
enum db_fact {
    FACT_HEALTH = 1u << 0,
    FACT_HEALTH_REASONS = 1u << 1,
    FACT_HEALTH_REASON_LINES = 1u << 2,
    FACT_HEALTH_CHECKED_AT = 1u << 3,
    FACT_INTEGRITY_CHECKED_AT = 1u << 4,
    FACT_LOCKED_SINCE = 1u << 5,
    FACT_WAL_BYTES = 1u << 6,
    FACT_FREELIST_RATIO = 1u << 7,
    FACT_DATABASE_BYTES = 1u << 8,
    FACT_PAGE_SIZE = 1u << 9,
    FACT_JOURNAL_MODE = 1u << 10,
    FACT_AUTO_VACUUM = 1u << 11,
    FACT_ENFORCE_LAST = 1u << 12,
    FACT_CHECKPOINT_BLOCKED = 1u << 13,
    FACT_BACKUP_LAST_BYTES = 1u << 14,
    FACT_UPLOAD_LAST_SENT = 1u << 15,
    FACT_INTEGRITY_RUN_AT = 1u << 16,
    FACT_INTEGRITY_PROBLEM = 1u << 17,
    FACT_DRILL_SUCCEEDED_AT = 1u << 18,
    FACT_DRILL_RESTORE_SECONDS = 1u << 19,
    FACT_DRILL_COVERAGE = 1u << 20,
};

/*
 * What the jobs learned about one database, for the reporters (status,
 * metrics, /health, STATUS=) and for the next run of a job. A job writes
 * the fields it measured with state_set_facts; a reader gets every field
 * with state_get_facts, and `known` says which ones some job has written
 * (an unknown field is shown as missing, never as zero).
 */
struct db_facts {
    unsigned known; /* enum db_fact bits */
    /* health.c: the verdict and when it was made */
    enum health_level health;
    char health_reasons[2048];      /* "; "-joined: one line */
    char health_reason_lines[2048]; /* one reason a line: for --json and /health */
    time_t health_checked_at;
    time_t integrity_checked_at; /* last full integrity_check that passed */
    /* backup.c or health.c: the integrity verdict, from the last full
     * integrity_check, of a backup copy or of the database itself */
    time_t integrity_run_at;       /* when it ran, whatever it found */
    char integrity_problem[1024];  /* what it found; "" when it passed */
    time_t locked_since;         /* first health run that found it locked; 0: not locked */
    char enforce_last[400];      /* what enforce = { ... } last changed */
    /* health.c: the database at its last check */
    double freelist_ratio;
    int64_t page_size;
    char journal_mode[32];
    char auto_vacuum[32];
    /* health.c and backup.c (the copy's size), checkpoint.c and health.c */
    int64_t database_bytes;
    int64_t wal_bytes;
    /* checkpoint.c */
    bool checkpoint_blocked;
    /* backup.c: the newest archive */
    int64_t backup_last_bytes;
    /* upload.c: the last run that sent something */
    struct {
        time_t at;
        int64_t archives;
        int64_t bytes;
    } upload_last_sent;
    /* drill.c: the end of the last drill that restored and checked every
     * backup it took, the restore time of its newest backup, and the share
     * of the kept backups (on the side drilled) that have passed a drill */
    time_t drill_succeeded_at;
    double drill_restore_seconds;
    double drill_coverage;
};

/* Stores the fields named in `fields` (enum db_fact bits), at once. */
int state_set_facts(struct state *state, const char *database, const struct db_facts *facts,
                    unsigned fields, struct error *err);
/* Fills *facts; fields never written stay zero and out of facts->known. */
int state_get_facts(struct state *state, const char *database, struct db_facts *facts,
                    struct error *err);

/* Every database's facts, one call per database that has any (in name
 * order), from one query: for reports over thousands of databases, where
 * a query per database costs seconds. `facts` is valid during the call. */
typedef void (*state_facts_fn)(void *context, const char *database, const struct db_facts *facts);
int state_each_facts(struct state *state, state_facts_fn each, void *context, struct error *err);

/* Every job record of every database, from one query. */
typedef void (*state_job_fn)(void *context, const char *database, const char *job,
                             const struct job_record *record);
int state_each_job(struct state *state, state_job_fn each, void *context, struct error *err);

/* Each database with uploads pending, with their count, from one query. */
typedef void (*state_count_fn)(void *context, const char *database, int64_t count);
int state_each_pending_upload_count(struct state *state, state_count_fn each, void *context,
                                    struct error *err);

/* Upload queue. Adding the same archive twice is a no-op. */
int state_enqueue_upload(struct state *state, const char *database, const char *target,
                         const char *archive_path, time_t now, struct error *err);
/* Up to max entries for `database` (NULL: all) whose next_attempt <= now,
 * oldest first. Returns the count (>= 0). */
int state_due_uploads(struct state *state, const char *database, time_t now,
                      struct upload_entry *entries, int max, struct error *err);
int state_complete_upload(struct state *state, int64_t id, struct error *err);
int state_defer_upload(struct state *state, int64_t id, time_t next_attempt, const char *last_error,
                       struct error *err);
/* Pending uploads for `database` (NULL: all). */
int state_pending_upload_count(struct state *state, const char *database, int64_t *count,
                               struct error *err);
/* True when `archive_path` waits in the queue (so local retention keeps it). */
int state_upload_is_pending(struct state *state, const char *archive_path, bool *pending,
                            struct error *err);

/*
 * Restore drills (jobs/drill.c): which backups of a database have passed a
 * drill, per side ("local" or "remote", as an archive and its copy on the
 * target are two objects). A backup that failed is not recorded, so it is
 * drilled again until it passes or is gone.
 */
int state_record_drilled(struct state *state, const char *database, const char *side,
                         const char *backup, time_t at, struct error *err);
/* Calls visit(context, backup) for each backup recorded for `side`. */
int state_each_drilled(struct state *state, const char *database, const char *side,
                       void (*visit)(void *, const char *), void *context, struct error *err);
/* Forgets one: a backup no longer kept. */
int state_forget_drilled(struct state *state, const char *database, const char *side,
                         const char *backup, struct error *err);

/*
 * Replication (replicate/shipper.c). One row per database: the generation
 * the agent follows and the WAL position shipped (always the end of a
 * commit), as plain integers, since the WAL reader lives in a layer above.
 * Objects to put on the target wait in an ordered queue; a row is added in
 * the same transaction as the position it ships, before any upload, so an
 * object never reaches the target before this database knows it.
 */
struct state_replica {
    uint32_t generation; /* 0: never shipped */
    uint64_t offset, frame_index;
    uint32_t checksum[2], salt[2], page_size, checkpoint_sequence;
    bool big_endian;
    bool ended;                /* shipped to its end under the write lock, reset let go */
    uint64_t db_device, db_inode; /* of the database file when the generation started */
    int64_t last_seen_at_ms;   /* of the last shipped commit; 0: none */
    int64_t shipped_bytes;     /* WAL bytes shipped, all generations */
    int64_t base_taken_at_ms;  /* of the newest base file */
    char last_break[32];       /* reason of the last break, "" if none */
    int64_t last_break_at_ms;
    /* Read only (state_get_replica; state_save_replica ignores them): */
    int64_t uploaded_seen_at_ms; /* newest commit on the target with its index; 0: none */
    int64_t queued_objects;      /* objects waiting for the uploader */
};

/* An object to put: the file at `path` (a spool file) under `key`. */
struct state_replica_object {
    int64_t id;
    uint32_t generation;
    char key[1024];
    char path[4096];
};

/* A generation as index.json lists it. */
struct state_replica_generation {
    uint32_t generation;
    uint32_t base_from; /* 0: base file */
    int64_t first_seen_at_ms, last_seen_at_ms;
    bool snapshot; /* its base file was a scheduled snapshot, not a break */
};

/* Zeroes *out when the database was never shipped. */
int state_get_replica(struct state *state, const char *database, struct state_replica *out,
                      struct error *err);
/*
 * In one transaction: the new row, the objects (appended to the queue in
 * order), the generation's time range (created when new, with `base_from`),
 * the commit range [first, last] seen_at of what is shipped now (0: none),
 * and a break counted under `break_reason` (NULL: none).
 */
int state_save_replica(struct state *state, const char *database, const struct state_replica *row,
                       const struct state_replica_object *objects, size_t object_count,
                       uint32_t base_from, int64_t first_seen_at_ms, int64_t last_seen_at_ms,
                       const char *break_reason, struct error *err);
/* Objects that belong to no new position (a page delta built on the
 * side), appended to the queue in one transaction. */
int state_queue_replica_objects(struct state *state, const char *database,
                                const struct state_replica_object *objects, size_t object_count,
                                struct error *err);
/* The oldest queued object of `database`, or *found = false. */
int state_next_replica_object(struct state *state, const char *database,
                              struct state_replica_object *out, bool *found, struct error *err);
/* An uploaded object leaves the queue with state_replica_object_done_packable
 * (state_packs.h), which also makes it an item compaction may pack. */
/* The uploader's record: the target now holds, with an index.json naming
 * them, every commit seen up to `seen_at_ms`. */
int state_replica_uploaded(struct state *state, const char *database, int64_t seen_at_ms,
                           struct error *err);
/* Every queued object's path, for spool clean-up: calls visit for each. */
int state_replica_queued_paths(struct state *state, void (*visit)(void *, const char *),
                               void *context, struct error *err);
/* The generations, oldest first; caller frees *out. With queued_up_to:
 * also, read in the same transaction, the id of the newest queued object
 * (0: none), so that the list describes exactly what the queue holds up to
 * that id (each state_save_replica queues and updates in one transaction). */
int state_replica_generations(struct state *state, const char *database,
                              struct state_replica_generation **out, size_t *count,
                              int64_t *queued_up_to, struct error *err);
/* Records that `generation`'s base file was a scheduled snapshot. */
int state_replica_mark_snapshot(struct state *state, const char *database, uint32_t generation,
                                struct error *err);
/* Retention: forgets the generations numbered below `before`, in one
 * transaction, unless one of them still has an object queued (then
 * *forgotten is false and nothing changes: an outage is drained first).
 * Their objects on the target are the caller's to delete. */
int state_replica_forget_generations(struct state *state, const char *database, uint32_t before,
                                     bool *forgotten, struct error *err);
/* Breaks counted per reason: calls visit(context, reason, count). */
int state_replica_breaks(struct state *state, const char *database,
                         void (*visit)(void *, const char *, int64_t), void *context,
                         struct error *err);

#endif
