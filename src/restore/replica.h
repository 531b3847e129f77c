/*
 * replica.h: point-in-time restore from a WAL replica (sqlprodd-format(5)),
 * and the restorable windows of a replica.
 *
 * A restore reads DB/replica/index.json, picks the generation holding the
 * last commit seen at or before the chosen time, follows "from":
 * "gN/end" back to the generation that has a base file, fetches the base
 * and the segments with a few downloads in flight (each streamed to a temp
 * file beside the output: memory stays bounded whatever the window's
 * length), checks every object's SHA-256 against its manifest, rebuilds
 * each generation's WAL from its segments, checks its whole checksum chain
 * with wal_reader (a gap or a broken chain is an error naming the object),
 * cuts the last generation at the chosen commit, and replays generation by
 * generation with SQLite (checkpoint TRUNCATE). Sealed objects (age files,
 * told by their name or their first bytes) are checked as stored, then
 * opened with request->keys. Objects compaction moved into packs are read
 * through replica_objects.h, loose when listed loose, else cut out of the
 * newest pack holding them, and then checked as loose ones. The caller runs
 * integrity_check and puts the file in place (cli_restore.c, replace.h).
 *
 * What it is not: it never writes to the target, and never touches the
 * live database.
 */
#ifndef SQLPRODD_RESTORE_REPLICA_H
#define SQLPRODD_RESTORE_REPLICA_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "archive/archive.h"
#include "config/config.h"
#include "core/error.h"

#define REPLICA_LATEST    INT64_MAX /* --at latest */
#define REPLICA_TIME_TEXT 40        /* "2026-12-02T10:15:00.123Z" and NUL, with room */

/* Parses --at: "latest", a relative "-15m" / "-2h" (before `now_ms`), or
 * RFC 3339 ("2026-12-02T10:15:00Z", fractions and "+01:00" offsets
 * allowed). *at_ms is milliseconds since the epoch, or REPLICA_LATEST.
 * 0, or -EINVAL with err saying what was expected. */
int replica_parse_time(const char *text, int64_t now_ms, int64_t *at_ms, struct error *err);

/* Formats milliseconds since the epoch as RFC 3339 UTC with milliseconds. */
void replica_format_time(int64_t ms, char out[REPLICA_TIME_TEXT]);

/* One generation as index.json lists it. */
struct replica_window {
    char name[32]; /* g00000001 */
    char first_seen_at[REPLICA_TIME_TEXT];
    char last_seen_at[REPLICA_TIME_TEXT];
    int64_t first_ms, last_ms;
    char base[48];     /* "file" or "g00000001/end" */
    bool starts_chain; /* has a base file: a break before it unless it is the first */
    bool snapshot;     /* ... or unless that base was scheduled (snapshot_every) */
    /* replica_list_windows, for the first and the last generation of each
     * window only: whom its base.json says its base (or, chained, its first
     * segments) is sealed to, "" when plain or not read. */
    char sealed_to[1024];
};

struct replica_windows {
    char database[256];
    char updated_at[REPLICA_TIME_TEXT];
    struct replica_window *items; /* in generation order */
    size_t count;
};

/* Reads DB/replica/index.json of `database` on `target_config`. -ENOENT
 * (with a message) when the target holds no replica of it. */
int replica_list_windows(const struct target_config *target_config, const char *database,
                         const volatile sig_atomic_t *stop, const char *temp_prefix,
                         struct replica_windows *out, struct error *err);
void replica_windows_free(struct replica_windows *windows);

/* How each generation's WAL goes into the file. */
enum replica_apply {
    REPLICA_APPLY_SQLITE = 0, /* SQLite opens it and checkpoints (TRUNCATE) */
    REPLICA_APPLY_PAGES,      /* the last version of each page written directly */
};

struct replica_request {
    const struct target_config *target;
    const char *database;              /* name, the directory on the target */
    int64_t at_ms;                     /* or REPLICA_LATEST */
    const char *output;                /* the database file to write (must not exist) */
    const volatile sig_atomic_t *stop; /* SIGINT/SIGTERM */
    int parallel;                      /* downloads in flight; 0: 4 */
    enum replica_apply apply;
    /* Identities that open a sealed replica (base.db.gz.age,
     * S-E.wal.gz.age); count 0: none, and a sealed object is refused. */
    struct archive_keys keys;
    /* Only check that every object the restore would read is there with
     * the size its manifest gives (verify without --data): no download of
     * data, no output written. */
    bool plan_only;
    /* Replay every generation from its segments, page deltas or not
     * (SQLPRODD_RESTORE_DELTAS=off): the same bytes, the slow way. */
    bool no_deltas;
};

struct replica_result {
    char seen_at[REPLICA_TIME_TEXT]; /* of the commit restored to */
    char generation[32];             /* holding that commit */
    char base_generation[32];        /* whose base.db.gz the chain starts from */
    uint64_t frame;                  /* the commit frame's index in its generation */
    uint32_t db_pages;
    size_t generations;         /* replayed */
    size_t segments;            /* fetched and applied */
    size_t commits;             /* applied, over every generation */
    int64_t fetched_bytes;      /* bytes downloaded: base, loose segments, packs */
    size_t packs;               /* packs downloaded (replica_objects.h) */
    size_t deltas;              /* page deltas applied instead of their generations' WAL */
    uint64_t delta_pages;       /* page images they held */
    char deltas_through[32];    /* the last generation they stand for */
    enum replica_apply applied; /* how the generations went into the file */
    bool in_flight;             /* the newest segment had no sidecar yet, and was left out */
};

/* Restores request->output as the database was after the last commit seen
 * at or before request->at_ms. The output is left in place on success (the
 * caller checks and moves it), removed on failure. Every temp file it makes
 * is named from the output path and removed before it returns. */
int replica_restore(const struct replica_request *request, struct replica_result *result,
                    struct error *err);

#endif
