/*
 * replica_internal.h: the state a point-in-time restore (replica.c) shares
 * with the part that applies the chain's WAL (replica_apply.c). Not for
 * other modules: replica.h is the interface.
 */
#ifndef SQLPRODD_RESTORE_REPLICA_INTERNAL_H
#define SQLPRODD_RESTORE_REPLICA_INTERNAL_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "archive/sealed.h"
#include "core/error.h"
#include "core/io.h"
#include "replicate/format.h"
#include "restore/replica.h"
#include "restore/replica_objects.h"

#define REPLICA_BUFFER     (64 * 1024)
#define REPLICA_READ_AHEAD (1 << 20) /* WAL bytes read at once when replaying */
#define REPLICA_BATCH      64        /* objects fetched before they are used: disk and memory */

struct replica_commit {
    uint64_t frame, end_offset;
    uint32_t db_pages;
    int64_t seen_ms;
    char seen_at[REPLICA_TIME_TEXT];
};

struct replica_segment {
    uint64_t start, end;
    char sha256[IO_SHA256_HEX];
    int64_t size;
    size_t commits;       /* in the sidecar */
    uint64_t first_frame; /* of its first commit */
    uint32_t salt[2];     /* of the generation's header, as the sidecar says */
    uint32_t checksum[2]; /* the chain's running checksum at `end` */
    int64_t first_seen_ms;
    /* Listed as S-E.wal.gz, as S-E.wal.gz.age (both after encryption was
     * switched on or off while a range was re-shipped); `sealed`: the
     * sidecar describes the .age one, the one fetched. */
    bool listed_plain, listed_sealed, sealed;
    int64_t listed_plain_size, listed_sealed_size; /* as the listing says */
    bool listed_sidecar;                           /* S-E.wal.json listed too (loose or packed) */
};

struct replica_generation {
    struct replica_window window;
    bool has_base_file;
    char from[48];
    uint64_t base_frame;
    char base_sha256[IO_SHA256_HEX];
    int64_t base_size;
    bool base_sealed;        /* base.json says base.db.gz.age */
    char base_sealed_to[96]; /* its first recipient, for the message of a wrong key */
    struct replica_segment *segments;
    size_t segment_count; /* listed */
    size_t used_segments; /* fetched and applied */
    size_t used_commits;
    bool cut;                     /* the last generation: stop at `target` */
    struct replica_commit target; /* the last commit applied */
    int64_t base_taken_at_ms;
    uint32_t base_pages;
    /* The base alone is the restore: a base file at frame 0 (a WAL with no
     * commit when it was copied) and no commit of it at or before T. */
    bool base_only;
    bool covered; /* a page delta stands for it: no segment is read */
};

/* A page delta the restore applies (replica_deltas.c). */
struct replica_delta {
    char key[FORMAT_KEY_SIZE]; /* its data object */
    char path[PATH_MAX];       /* fetched and checked there */
    struct format_delta manifest;
    uint32_t covers_from; /* the first generation it stands for */
    bool applied;
};

/* One download of the pool. */
struct replica_job {
    char key[FORMAT_KEY_SIZE];
    char path[PATH_MAX];
    const char *sha256; /* expected, or NULL */
    int64_t size;       /* expected, or -1 */
    bool done;          /* cut out of a pack before the pool ran */
    bool planned;       /* plan_only: packed, its pack listed whole; not read */
    bool loose_fetched; /* downloaded as a loose object */
    int rc;
    struct error err;
};

/* Whole-member inflation of a segment small enough to hold in memory with
 * its stored bytes (REPLICA_WHOLE_BYTES together): libdeflate, about three
 * times as fast as zlib's stream. The buffers are kept from one segment to
 * the next; only the main thread inflates. */
#define REPLICA_WHOLE_BYTES (12u << 20)

struct replica_whole {
    struct libdeflate_decompressor *decompressor;
    unsigned char *packed, *raw;
    size_t packed_capacity, raw_capacity;
};

struct replica_work {
    const struct replica_request *request;
    struct target *target; /* the main thread's */
    char prefix[1024];     /* DB/replica/ */
    char temp[PATH_MAX];   /* OUTPUT.replica-, temp names continue it */
    unsigned temp_serial;
    struct replica_windows index;
    struct replica_generation *chain; /* base generation first */
    size_t chain_count;
    struct replica_objects *objects; /* loose or packed */
    int64_t fetched_bytes;           /* of loose data objects; packs are counted there */
    struct replica_whole whole;
    struct replica_delta *deltas; /* applied after the base, in order */
    size_t delta_count;
    /* Set once the chain failed: a batch still fetched ahead starts no more
     * downloads (those under way end, and their files are removed). */
    volatile sig_atomic_t abandoned;
    bool in_flight; /* replica_plan_segments left the newest segment out */
};

/* A temp name beside the output: OUTPUT.replica-N-WHAT.sqlprodd-tmp. Main
 * thread only, or while no other thread can take one. */
void replica_temp_path(struct replica_work *work, const char *what, char out[PATH_MAX]);

/* A small object (a manifest) read whole through a temp file at
 * `temp_path`, which is removed; *text is malloc'd. */
int replica_get_text(struct target *target, const char *key, const char *temp_path, char **text,
                     size_t *size, struct error *err);

/* A segment's key, or its sidecar's (suffix ".wal.json"): built when
 * needed, so that a generation's many segments cost a few numbers each. */
const char *replica_segment_key(const struct replica_work *work, const struct replica_generation *g,
                                const struct replica_segment *s, const char *suffix,
                                char out[FORMAT_KEY_SIZE]);

#define SEGMENT_SUFFIX(s) ((s)->sealed ? ".wal.gz" SEALED_SUFFIX : ".wal.gz")
#define SEGMENT_KEY(s)                                                                             \
    replica_segment_key(work, g, (s), SEGMENT_SUFFIX(s), (char[FORMAT_KEY_SIZE]){0})
#define SIDECAR_KEY(s) replica_segment_key(work, g, (s), ".wal.json", (char[FORMAT_KEY_SIZE]){0})

/* Fetches `count` jobs (a few at once, each streamed to its path and
 * checked against its SHA-256 and size); packed ones are cut out of their
 * pack by this thread first. 0, or the first failure in list order. */
int replica_fetch_all(struct replica_work *work, struct replica_job *jobs, size_t count,
                      struct error *err);

/* replica_apply.c: every generation of work->chain after the base, in
 * order, into request->output (as request->apply says); `jobs` are two
 * arrays of REPLICA_BATCH. */
int replica_apply_chain(struct replica_work *work, struct replica_job *jobs[2],
                        struct replica_result *result, struct error *err);

void replica_whole_free(struct replica_whole *w);

/* replica_deltas.c: the deltas that stand for whole generations of the
 * chain from `base` (as index.json says) to before `chosen`, T's, each
 * fetched and checked, planned before the chain is walked, so that the walk
 * reads no base.json and the packs no object of the generations they
 * cover; replica_apply_deltas applies, in order, those not applied yet that
 * end before generation `before`; temp files removed. */
int replica_plan_deltas(struct replica_work *work, uint32_t base, uint32_t chosen,
                        struct error *err);
/* Whether a planned delta stands for `generation`. */
bool replica_delta_covers(const struct replica_work *work, uint32_t generation);
int replica_apply_deltas(struct replica_work *work, uint32_t before, struct replica_result *result,
                         struct error *err);
void replica_deltas_free(struct replica_work *work);

#endif
