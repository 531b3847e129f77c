/*
 * wal_apply.c: a generation's WAL applied as it streams in (wal_apply.h).
 */
#include "replicate/wal_apply.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/io.h"

int wal_apply_begin(struct wal_apply *a, int out, uint64_t target_frame, uint32_t target_pages,
                    struct error *err)
{
    *a = (struct wal_apply){.out = out, .target_frame = target_frame, .target_pages = target_pages};
    /* The header first; the buffer grows to a frame once the page size is known. */
    if (!(a->frame = malloc(WAL_HEADER_SIZE)))
        return error_set(err, -ENOMEM, "out of memory");
    return 0;
}

static int wal_apply_header(struct wal_apply *a, struct error *err)
{
    int rc = wal_header_parse(a->frame, &a->header, err);
    if (rc < 0)
        return rc;
    uint8_t *frame = realloc(a->frame, WAL_FRAME_HEADER_SIZE + (size_t)a->header.page_size);
    if (!frame)
        return error_set(err, -ENOMEM, "out of memory for one WAL frame of %u bytes",
                         a->header.page_size);
    a->frame = frame;
    a->have_header = true;
    wal_position_start(&a->header, &a->next);
    a->committed = a->next;
    a->fill = 0;
    return 0;
}

/* One whole frame in a->frame: accepted, written, or the chain's end. */
static int wal_apply_frame(struct wal_apply *a, struct error *err)
{
    struct wal_frame frame;
    a->stop = wal_frame_accept(&a->next, a->frame, &frame);
    if (a->stop != WAL_STOP_NONE)
        return 0;
    if (frame.index == a->target_frame && frame.commit_size != a->target_pages) {
        a->bad_frame = frame.index;
        a->bad_pages = frame.commit_size;
        return error_set(err, -EBADMSG, "the commit frame %llu says %u pages, %u expected",
                         (unsigned long long)frame.index, frame.commit_size, a->target_pages);
    }
    /* Beyond the target's size: cut off at the end, as SQLite does. */
    if (frame.page_number <= a->target_pages) {
        int rc = io_pwrite_full(a->out, frame.page, a->header.page_size,
                                (int64_t)(frame.page_number - 1) * a->header.page_size);
        if (rc != 0)
            return error_set(err, rc, "writing page %u: %s", frame.page_number, strerror(-rc));
        a->pages_written++;
        if (a->on_page)
            a->on_page(a->on_page_context, frame.page_number);
    }
    if (frame.commit_size != 0) {
        a->committed = a->next;
        a->committed_pages = frame.commit_size;
    }
    if (frame.index == a->target_frame)
        a->reached = true;
    return 0;
}

int wal_apply_feed(struct wal_apply *a, const uint8_t *bytes, size_t size, struct error *err)
{
    a->fed += size;
    while (size > 0 && !a->reached && a->stop == WAL_STOP_NONE) {
        size_t want =
            a->have_header ? WAL_FRAME_HEADER_SIZE + (size_t)a->header.page_size : WAL_HEADER_SIZE;
        size_t take = want - a->fill < size ? want - a->fill : size;
        memcpy(a->frame + a->fill, bytes, take);
        a->fill += take;
        bytes += take;
        size -= take;
        if (a->fill < want)
            break;
        int rc = a->have_header ? wal_apply_frame(a, err) : wal_apply_header(a, err);
        a->fill = 0;
        if (rc < 0)
            return rc;
    }
    return 0;
}

void wal_apply_finish(struct wal_apply *a)
{
    if (!a->reached && a->stop == WAL_STOP_NONE)
        a->stop = a->fill == 0 ? WAL_STOP_END : WAL_STOP_SHORT;
}

void wal_apply_end(struct wal_apply *a)
{
    free(a->frame);
    a->frame = NULL;
}
