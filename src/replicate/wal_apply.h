/*
 * wal_apply.h: one generation's WAL, fed as a stream of bytes (inflated
 * from the replica's segments), checked frame by frame and written into
 * the database file being restored, page by page. The shipper uses it too:
 * fed the segments it ships, it keeps the last image of each page for a
 * page delta (delta.h).
 *
 * What SQLite's checkpoint does, without a WAL file or SQLite's WAL index:
 * every frame the checksum chain accepts up to the target commit is
 * written at its page's place (a later frame of the same page overwrites
 * an earlier one, as the last version wins in a checkpoint), frames naming
 * a page beyond the target's database size are skipped, and the caller
 * cuts the file to that size at the end. Nothing after the target commit
 * is written. A chain that stops before the target is the caller's error
 * to report (wal_apply.stop says why and where); the bytes written up to
 * then are in a file the caller removes.
 *
 * Memory: one frame. Disk: none besides the output; the generation's WAL
 * is never written out, and each byte of it is read once.
 */
#ifndef SQLPRODD_REPLICATE_WAL_APPLY_H
#define SQLPRODD_REPLICATE_WAL_APPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "replicate/wal.h"

struct wal_apply {
    int out;               /* the database file, open for writing; the caller's */
    uint64_t target_frame; /* the commit frame to stop at (1-based) */
    uint32_t target_pages; /* the database size that commit must state */
    uint64_t fed;          /* bytes of WAL fed so far */
    bool have_header;
    struct wal_header header;
    struct wal_position next;      /* after the last accepted frame */
    struct wal_position committed; /* after the last accepted commit frame */
    uint32_t committed_pages;      /* the database size that commit states */
    /* Optional: told each page written, after it is written. */
    void (*on_page)(void *context, uint32_t page_number);
    void *on_page_context;
    enum wal_stop stop; /* why the chain stopped, if it did */
    bool reached;       /* the target commit was accepted and applied */
    uint64_t pages_written;
    uint64_t bad_frame; /* the target frame, when it stated another size */
    uint32_t bad_pages; /* ... that size */
    uint8_t *frame;     /* header bytes, then one frame being assembled */
    size_t fill;
};

/* 0, or -ENOMEM. */
int wal_apply_begin(struct wal_apply *a, int out, uint64_t target_frame, uint32_t target_pages,
                    struct error *err);

/*
 * Feeds the next `size` bytes of the generation's WAL (from its header on).
 * 0; -EINVAL (err says which field) for a header that is not a WAL's;
 * -EBADMSG when the target frame is not a commit of `target_pages` pages
 * (err says both); -errno when writing the output fails. A chain that
 * stops returns 0 with a->stop set: later bytes are ignored.
 */
int wal_apply_feed(struct wal_apply *a, const uint8_t *bytes, size_t size, struct error *err);

/* Once every byte is fed: when the chain neither stopped nor reached the
 * target, the stream ended; a->stop then says END (at a frame boundary)
 * or SHORT (inside a frame). */
void wal_apply_finish(struct wal_apply *a);

void wal_apply_end(struct wal_apply *a);

#endif
