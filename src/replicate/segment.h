/*
 * segment.h: what to ship next from a WAL, and its bytes, checked again.
 *
 * A segment is a byte range of one WAL generation holding whole committed
 * transactions only: it starts where the last shipped commit ended (at 0 for
 * a generation's first segment, so it carries the 32-byte header) and ends
 * at the end of a commit frame. A generation's segments concatenated are a
 * WAL file that SQLite replays (docs/replication-design.md, finding 1 and 4).
 *
 * segment_plan_next decides the range from a wal_reader standing at the
 * shipped position; segment_copy reads that range again and hands its bytes
 * to a sink while checking them against the same checksum chain, so bytes
 * that changed between planning and copying (the WAL reset by someone else)
 * are refused instead of shipped.
 *
 * What it is not: it does not compress, name objects on a target, store
 * positions or take SQLite locks. Memory: the reader's one frame, and the
 * commit list the caller gives.
 */
#ifndef SQLPRODD_REPLICATE_SEGMENT_H
#define SQLPRODD_REPLICATE_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "replicate/wal.h"

/* One commit inside a segment: what a restore needs to stop there. */
struct segment_commit {
    uint64_t frame_index; /* of the commit frame, 1-based in its generation */
    uint64_t end_offset;  /* byte offset just after the commit frame */
    uint32_t db_pages;    /* database size in pages after this commit */
};

struct segment_limits {
    uint64_t max_bytes; /* stop at the last commit that keeps the segment within this;
                           a single larger commit still makes one segment. 0: no limit */
    size_t max_commits; /* capacity of the commit list; at least 1 */
};

struct segment_plan {
    uint64_t start;           /* first byte, 0 when the segment carries the WAL header */
    uint64_t end;             /* just after the last commit frame */
    struct wal_position from; /* the shipped position it continues */
    struct wal_position to;   /* the position to save once it is shipped */
    size_t commit_count;
    struct segment_commit *commits; /* the caller's array, commit_count filled */
    bool full; /* cut by a limit: more commits may follow at once */
};

/*
 * Plans the next segment from `reader`, which stands at the last shipped
 * commit (reader->next == reader->committed). Reads frames until the chain
 * stops or a limit is reached, and leaves the reader at the end of the
 * planned segment, ready for the next call. 1 with *plan filled; 0 when no
 * commit follows the shipped position (nothing to ship, the reader is
 * unchanged); -errno on a read error.
 */
int segment_plan_next(struct wal_reader *reader, const struct segment_limits *limits,
                      struct segment_commit *commits, struct segment_plan *plan, struct error *err);

/* Receives the bytes of a segment in order; nonzero stops the copy and is
 * returned by segment_copy. */
typedef int (*segment_sink)(void *context, const uint8_t *bytes, size_t size);

/*
 * Reads the planned range of the WAL open on `fd` and gives it to `sink`,
 * verifying every frame against the chain from plan->from (and the header,
 * when the segment starts at 0). 0 when every byte matched the plan;
 * -ESTALE when the file no longer holds what was planned (another header,
 * a frame that changed or is gone): what the sink received must then be
 * thrown away; -errno on a read error; the sink's value if it failed.
 */
int segment_copy(int fd, const char *path, const struct segment_plan *plan, segment_sink sink,
                 void *context, struct error *err);

/* "SSSSSSSSSSSS-EEEEEEEEEEEE": start and end, zero-padded to 12 digits so
 * names sort by position (1 TB of WAL). The caller adds the extension. */
void segment_name(const struct segment_plan *plan, char name[32]);

#endif
