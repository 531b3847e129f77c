/*
 * state.h: the agent's own memory, a small SQLite database in
 * STATE_DIR/state.db (WAL mode, so `sqlprodd status` can read it while the
 * agent writes). Holds each job's last result per database, run and failure
 * counters, the last health verdict, and the upload queue. It is what lets
 * schedules and the upload backlog survive restarts.
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

/* Small per-database facts (health verdict, sizes) as key/value text. */
int state_set_value(struct state *state, const char *database, const char *key, const char *value,
                    struct error *err);
/* value_size bytes at most; missing key -> "" and returns 0. */
int state_get_value(struct state *state, const char *database, const char *key, char *value,
                    size_t value_size, struct error *err);

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

#endif
