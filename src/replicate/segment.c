/*
 * segment.c: the next range of whole commits to ship, and its bytes
 * re-checked on the way out (see segment.h).
 */
#include "replicate/segment.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int segment_plan_next(struct wal_reader *reader, const struct segment_limits *limits,
                      struct segment_commit *commits, struct segment_plan *plan, struct error *err)
{
    struct wal_frame frame;
    uint64_t start;
    int rc;

    assert(limits->max_commits >= 1);
    /* A plan starts at a commit: frames past it may still be rewritten. */
    assert(reader->next.offset == reader->committed.offset);
    memset(plan, 0, sizeof *plan);
    plan->commits = commits;
    plan->from = reader->committed;
    start = plan->from.frame_index == 0 ? 0 : plan->from.offset;

    while ((rc = wal_reader_next(reader, &frame, err)) > 0) {
        uint64_t end = frame.offset + wal_reader_frame_size(reader);
        if (frame.commit_size == 0)
            continue;
        /* Over the byte limit: end at the previous commit, unless there is
         * none yet (one transaction larger than the limit). */
        if (limits->max_bytes != 0 && plan->commit_count > 0 && end - start > limits->max_bytes) {
            plan->full = true;
            break;
        }
        commits[plan->commit_count].frame_index = frame.index;
        commits[plan->commit_count].end_offset = end;
        commits[plan->commit_count].db_pages = frame.commit_size;
        plan->commit_count++;
        plan->to = reader->committed;
        if (plan->commit_count == limits->max_commits) {
            plan->full = true;
            break;
        }
    }
    if (rc < 0)
        return rc;
    /* Whatever was read past the plan's last commit is read again next time. */
    if (plan->commit_count == 0) {
        wal_reader_rewind_to_commit(reader);
        return 0;
    }
    reader->next = plan->to;
    reader->committed = plan->to;
    reader->stop = WAL_STOP_NONE;
    plan->start = start;
    plan->end = plan->to.offset;
    assert(plan->end == plan->commits[plan->commit_count - 1].end_offset);
    assert(plan->end > plan->start);
    return 1;
}

static int segment_copy_header(int fd, const char *path, const struct segment_plan *plan,
                               segment_sink sink, void *context, struct error *err)
{
    uint8_t bytes[WAL_HEADER_SIZE];
    struct wal_header header;
    ssize_t got;
    int rc;

    got = pread(fd, bytes, sizeof bytes, 0);
    if (got < 0)
        return error_set(err, -errno, "%s: cannot read the WAL header: %s", path, strerror(errno));
    if (got != (ssize_t)sizeof bytes || wal_header_parse(bytes, &header, err) < 0 ||
        header.salt[0] != plan->from.salt[0] || header.salt[1] != plan->from.salt[1] ||
        header.checksum[0] != plan->from.checksum[0] ||
        header.checksum[1] != plan->from.checksum[1])
        return error_set(err, -ESTALE,
                         "%s: the WAL header is not the one the segment was planned from "
                         "(the WAL was reset): the segment is not shipped",
                         path);
    rc = sink(context, bytes, sizeof bytes);
    return rc;
}

int segment_copy(int fd, const char *path, const struct segment_plan *plan, segment_sink sink,
                 void *context, struct error *err)
{
    struct wal_reader reader;
    struct wal_frame frame;
    enum wal_resume resumed;
    int rc;

    assert(plan->commit_count > 0);
    rc = wal_reader_resume(&reader, fd, path, &plan->from, &resumed, err);
    if (rc < 0)
        goto out;
    if (resumed != WAL_RESUME_CONTINUES) {
        rc = error_set(err, -ESTALE,
                       "%s: the WAL no longer continues from frame %" PRIu64
                       " (it was reset or rewritten): the segment is not shipped",
                       path, plan->from.frame_index);
        goto out;
    }
    if (plan->start == 0) {
        rc = segment_copy_header(fd, path, plan, sink, context, err);
        if (rc != 0)
            goto out;
    }
    while (reader.next.frame_index < plan->to.frame_index) {
        rc = wal_reader_next(&reader, &frame, err);
        if (rc < 0)
            goto out;
        if (rc == 0) {
            rc = error_set(err, -ESTALE,
                           "%s: frame %" PRIu64 " changed since the segment was planned (%s): "
                           "the segment is not shipped",
                           path, reader.next.frame_index + 1, wal_stop_name(reader.stop));
            goto out;
        }
        /* The frame header sits just before the page in the reader's buffer. */
        rc = sink(context, frame.page - WAL_FRAME_HEADER_SIZE,
                  WAL_FRAME_HEADER_SIZE + (size_t)reader.header.page_size);
        if (rc != 0)
            goto out;
    }
    if (reader.next.checksum[0] != plan->to.checksum[0] ||
        reader.next.checksum[1] != plan->to.checksum[1] || reader.next.offset != plan->end) {
        rc = error_set(err, -ESTALE,
                       "%s: the frames up to offset %" PRIu64
                       " are not the planned ones: the segment is not shipped",
                       path, plan->end);
        goto out;
    }
    rc = 0;
out:
    wal_reader_close(&reader);
    return rc;
}

void segment_name(const struct segment_plan *plan, char name[32])
{
    snprintf(name, 32, "%012" PRIu64 "-%012" PRIu64, plan->start, plan->end);
}
