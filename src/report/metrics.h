/*
 * metrics.h: Prometheus text exposition of the agent's state, for
 * node_exporter's textfile collector (written atomically) and the HTTP
 * endpoint (http.c). Metric names follow Prometheus conventions: base units,
 * `_total` for counters, HELP and TYPE for every family.
 */
#ifndef SQLPRODD_METRICS_H
#define SQLPRODD_METRICS_H

#include <stddef.h>

#include "config/config.h"
#include "core/error.h"
#include "db/state.h"
#include "jobs/job.h"

/* What the metrics show about one database: read from the state database
 * and the file system by metrics_collect, or made up by a test. */
struct metrics_database {
    struct job_record jobs[JOB_KIND_COUNT];
    struct db_facts facts;
    int64_t file_bytes, wal_file_bytes; /* stat now, not at the last job */
    bool pending_known;
    int64_t uploads_pending;
    struct state_replica replica; /* generation 0: not replicated (yet) */
    int64_t replica_spool_bytes;  /* what replicate.spool_max bounds */
    struct {
        char reason[32];
        int64_t count;
    } breaks[8];
    size_t break_count;
};

struct metrics_input {
    const struct config *config;
    struct metrics_database *databases; /* one per config->databases[] */
    time_t rendered_at;
    int64_t rendered_at_ms; /* for the replication lag; 0: rendered_at * 1000 */
};

/* Reads everything metrics_render_input shows; metrics_input_free frees it. */
int metrics_collect(const struct config *config, struct state *state, time_t now,
                    struct metrics_input *input, struct error *err);
void metrics_input_free(struct metrics_input *input);

/* The text format of `input`, into a malloc'd text (caller frees). Pure:
 * reads nothing but `input`. */
int metrics_render_input(const struct metrics_input *input, char **text, size_t *size,
                         struct error *err);

/* metrics_collect, then metrics_render_input. */
int metrics_render(const struct config *config, struct state *state, char **text, size_t *size,
                   struct error *err);

/* Renders and writes config->metrics_textfile atomically (mode 0644: the
 * collector runs as another user; metrics hold no secrets). The agent after
 * every job and each one-off command write it, one at a time. */
int metrics_write_textfile(const struct config *config, struct state *state, struct error *err);

#endif
