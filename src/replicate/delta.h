/*
 * delta.h: page deltas (sqlprodd-format(5) DELTAS, design 2.7): the last
 * image of every page a run of generations wrote, so that a restore applies
 * one image per page instead of every frame of that run's WAL.
 *
 * Three parts, one file format:
 *
 * - The plain delta (before gzip and age): a 32-byte header, then one
 *   record per page in increasing page order, each a 4-byte big-endian page
 *   number and the page's bytes:
 *       "SQLPDLT1" | page_size u32 | db_pages u32 | pages u64 |
 *       first_generation u32 | last_generation u32        (big-endian)
 *   Every page number is in 1..db_pages; the file it is applied to is cut
 *   to db_pages pages afterwards.
 *
 * - The span (shipper side): every segment the shipper ships is also fed
 *   here (wal_apply.h, so the WAL's checksum chain is checked once more),
 *   and each page image is written at its place in a sparse file beside
 *   the spool, with a bitmap of the pages written. A page rewritten a
 *   thousand times costs the page cache, not the disk. A span is valid
 *   only while it saw every byte of every generation since it began: a
 *   segment that does not follow, a generation that does not continue the
 *   last one (a new base), or any error drops it, and the next generation
 *   starts a new one.
 *
 * - The builder: a closed span written out as a plain delta (read back in
 *   page order from the sparse file), for the shipper's thread to compress
 *   and seal as it does a base.
 *
 * - The apply (restore side): a plain delta streamed in, checked record by
 *   record, each page written at its place.
 *
 * Memory: the bitmap (1 bit a page: 32 KiB for 1 GiB of 4 KiB pages) and
 * one frame. Disk: the sparse file, at most the database's size.
 */
#ifndef SQLPRODD_REPLICATE_DELTA_H
#define SQLPRODD_REPLICATE_DELTA_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "replicate/wal_apply.h"

#define DELTA_MAGIC       "SQLPDLT1"
#define DELTA_HEADER_SIZE 32
#define DELTA_RECORD_HEAD 4 /* the page number before each page */

struct delta_header {
    uint32_t page_size, db_pages;
    uint64_t pages;
    uint32_t first_generation, last_generation;
};

void delta_header_encode(const struct delta_header *h, uint8_t out[DELTA_HEADER_SIZE]);
/* 0, or -EBADMSG naming `object` and the field. */
int delta_header_parse(const uint8_t in[DELTA_HEADER_SIZE], struct delta_header *h,
                       const char *object, struct error *err);

/* ---- the span (shipper) ---- */

struct delta_span {
    int fd; /* the sparse file of page images; -1: no span */
    uint32_t chain; /* the generation of the base this span's chain starts from */
    char path[PATH_MAX];
    uint8_t *touched; /* bit p-1: page p was written */
    size_t touched_bytes;
    uint64_t pages; /* bits set */
    uint32_t page_size, db_pages;
    uint32_t first_generation, generation;
    uint64_t next_offset; /* in `generation`'s WAL, where the next segment must start */
    uint64_t wal_bytes;   /* fed since the span began */
    int64_t started_ms;
    struct wal_apply apply;
    bool apply_open;
};

void delta_span_init(struct delta_span *s);
bool delta_span_active(const struct delta_span *s);
/* A new span at the start of `generation` (its WAL from the header on),
 * its images in `path` (created, or emptied). Drops the one before. */
int delta_span_start(struct delta_span *s, const char *path, uint32_t generation, uint32_t chain,
                     int64_t now_ms, struct error *err);
/* `generation` continues the span's last one (the WAL restarted at the end
 * of what was shipped): true, and the span goes on; false when the span
 * cannot take it (it did not end on a commit it saw whole). */
bool delta_span_continue(struct delta_span *s, uint32_t generation, struct error *err);
/* Whether a segment of `generation` starting at `start` is the next one. */
bool delta_span_follows(const struct delta_span *s, uint32_t generation, uint64_t start);
/* The segment's bytes, in order; then delta_span_segment_done. 0, or an
 * error after which the caller drops the span. */
int delta_span_feed(struct delta_span *s, const uint8_t *bytes, size_t size, struct error *err);
/* The segment ended at `end` (just after a commit frame): 0, or -EBADMSG
 * when the bytes fed did not end there on a commit. */
int delta_span_segment_done(struct delta_span *s, uint64_t end, struct error *err);
/* Removes the span's file and forgets it. */
void delta_span_drop(struct delta_span *s);

/* A closed span, or spans merged (a level): what the builder reads, owned
 * by whoever holds it. fd -1: none. */
struct delta_pages {
    int fd;
    char path[PATH_MAX];
    uint8_t *touched;
    size_t touched_bytes;
    uint64_t pages, wal_bytes;
    uint32_t page_size, db_pages, first_generation, last_generation;
    uint32_t chain;
    int64_t started_ms;
};

/*
 * Levels: a restore applies every delta from its base on, so deltas of
 * one span each would be many objects by the end of a long chain. Closed
 * spans are also merged into a level that reaches DELTA_LEVEL_FACTOR times
 * as long, and those into the next: a restore then reads at most about
 * FACTOR - 1 deltas of each level.
 */
#define DELTA_LEVELS       3  /* spans, and two levels of merged spans */
#define DELTA_LEVEL_FACTOR 12 /* each reaches this many times as long */

/* `from`'s pages written over `into`'s, which then ends where `from` ends.
 * `into` starts anew at `path` (from's first generation) when it has none,
 * or when from does not continue it (another chain, a generation missed,
 * another page size). 0, or -errno (`into` is then freed). */
int delta_pages_merge(struct delta_pages *into, const struct delta_pages *from, const char *path,
                      struct error *err);
/* Worth a delta: the WAL it stands for is at least twice its distinct
 * pages (a closed span, or spans merged). */
bool delta_pages_worth(const struct delta_pages *p);

/* Moves the span's images to `closed_path` and hands them over; the span
 * is then empty. 0, or -errno (the span is dropped). */
int delta_span_close(struct delta_span *s, const char *closed_path, struct delta_pages *out,
                     struct error *err);
void delta_pages_free(struct delta_pages *p);

/* ---- the builder ---- */

/* The plain delta of `p` into `path` (created 0600, not fsynced: it is
 * compressed at once and removed): the pages up
 * to db_pages, in order. *pages: how many it holds. -ECANCELED once *stop. */
int delta_write_plain(const struct delta_pages *p, const char *path,
                      const volatile sig_atomic_t *stop, uint64_t *pages, struct error *err);

/* ---- the apply (restore) ---- */

struct delta_apply {
    int out; /* the database file; the caller's */
    const char *object;
    struct delta_header header;
    bool have_header;
    uint64_t records;
    uint32_t last_page;
    uint8_t *record; /* header bytes, then one record being assembled */
    size_t fill;
    uint64_t fed;
    /* Consecutive pages written with one pwrite: a delta of a growing file
     * is mostly runs. */
    uint8_t *run;
    uint32_t run_first;
    size_t run_pages, run_max;
};

int delta_apply_begin(struct delta_apply *a, int out, const char *object, struct error *err);
/* The next bytes of the plain delta. 0, -EBADMSG (a header or record that
 * is not valid, or bytes past the last record), -errno writing. */
int delta_apply_feed(struct delta_apply *a, const uint8_t *bytes, size_t size, struct error *err);
/* Once every byte is fed: 0 when the header and every record it announces
 * arrived, whole; then the caller cuts the file to header.db_pages pages. */
int delta_apply_finish(struct delta_apply *a, struct error *err);
void delta_apply_end(struct delta_apply *a);

#endif
