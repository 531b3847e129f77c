/*
 * archive_inflate.c: every gzip member of an archive into a sink. A member
 * that fits the buffers (each of sqlprodd's own is one 1 MiB block) is
 * decompressed whole by libdeflate, which also checks its CRC-32 and
 * length, about three times as fast as zlib's stream; a member that does
 * not (a file gzip(1) compressed as one member) or that libdeflate refuses
 * goes through zlib's stream from where it starts, so a damaged archive
 * gets zlib's precise words ("invalid block type", "unexpected end of
 * file"). Not for zstd (archive.c) or for reading the file (archive_input.c,
 * which hashes and decrypts).
 */
#include <errno.h>
#include <libdeflate.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "archive/archive_internal.h"

/* Refilled below 1.5 MiB, the input always holds a whole member of
 * sqlprodd's (a 1 MiB block compressed, a little more if it did not shrink)
 * unless the file ends first; the output holds one block. */
#define INFLATE_INPUT_BYTES  (3 * ARCHIVE_BLOCK_BYTES)
#define INFLATE_REFILL_BELOW (3 * ARCHIVE_BLOCK_BYTES / 2)
#define INFLATE_OUTPUT_BYTES ARCHIVE_BLOCK_BYTES
#define INFLATE_PROGRESS_BYTES ((int64_t)8 * 1024 * 1024)

struct inflate_run {
    struct archive_input *in;
    const struct archive_sink *sink;
    const char *source;
    const struct io_context *io;
    int64_t total, reported;
    struct archive_result *result;
    unsigned char *input, *output;
    size_t start, end; /* unread input: input[start, end) */
    bool input_ended;
    z_stream zlib;
    bool zlib_ready;
};

/* Moves the unread input to the front and reads until the buffer is full
 * or the file ends. */
static int inflate_refill(struct inflate_run *run, struct error *err)
{
    memmove(run->input, run->input + run->start, run->end - run->start);
    run->end -= run->start;
    run->start = 0;
    while (!run->input_ended && run->end < INFLATE_INPUT_BYTES) {
        ssize_t got = archive_input_read(run->in, run->input + run->end,
                                         INFLATE_INPUT_BYTES - run->end, err);
        if (got < 0)
            return (int)got;
        if (got == 0)
            run->input_ended = true;
        run->end += (size_t)got;
    }
    return 0;
}

static int inflate_write(struct inflate_run *run, size_t size, struct error *err)
{
    int rc = archive_sink_write(run->sink, run->output, size, err);
    if (rc < 0)
        return rc;
    run->result->output_bytes += (int64_t)size;
    run->result->input_bytes = run->in->stored_bytes;
    if (run->result->input_bytes - run->reported >= INFLATE_PROGRESS_BYTES) {
        run->reported = run->result->input_bytes;
        io_report_progress(run->io, run->reported, run->total);
    }
    return 0;
}

/* The member at input[start] through zlib's stream, to its end. */
static int inflate_member_by_zlib(struct inflate_run *run, struct error *err)
{
    z_stream *stream = &run->zlib;
    if (!run->zlib_ready) {
        /* 15 + 32: the largest window, and zlib detects the gzip header. */
        if (inflateInit2(stream, 15 + 32) != Z_OK)
            return error_set(err, -ENOMEM, "cannot decompress %s: zlib could not start",
                             run->source);
        run->zlib_ready = true;
    } else {
        inflateReset(stream);
    }
    for (;;) {
        if (io_stopped(run->io))
            return error_set(err, -ECANCELED, "decompressing %s was cancelled", run->source);
        if (run->start == run->end) {
            int rc = inflate_refill(run, err);
            if (rc < 0)
                return rc;
            if (run->start == run->end)
                return error_set(err, -EBADMSG,
                                 "archive %s is truncated or corrupt: unexpected end of file",
                                 run->source);
        }
        stream->next_in = run->input + run->start;
        stream->avail_in = (uInt)(run->end - run->start);
        stream->next_out = run->output;
        stream->avail_out = (uInt)INFLATE_OUTPUT_BYTES;
        int z = inflate(stream, Z_NO_FLUSH);
        size_t produced = INFLATE_OUTPUT_BYTES - stream->avail_out;
        if (z == Z_MEM_ERROR)
            return error_set(err, -ENOMEM, "cannot decompress %s: out of memory", run->source);
        if (z != Z_OK && z != Z_STREAM_END && !(z == Z_BUF_ERROR && produced > 0))
            return error_set(err, -EBADMSG, "archive %s is truncated or corrupt: %s",
                             run->source, stream->msg ? stream->msg : zError(z));
        run->start = run->end - stream->avail_in;
        int rc = inflate_write(run, produced, err);
        if (rc < 0)
            return rc;
        if (z == Z_STREAM_END)
            return 0;
    }
}

int archive_inflate_members(struct archive_input *in, const struct archive_sink *sink,
                            const char *source, const struct io_context *io, int64_t total,
                            struct archive_result *result, struct error *err)
{
    struct inflate_run run = {
        .in = in, .sink = sink, .source = source, .io = io, .total = total, .result = result};
    struct libdeflate_decompressor *decompressor = libdeflate_alloc_decompressor();
    bool saw_member = false;
    int rc = 0;

    run.input = malloc(INFLATE_INPUT_BYTES);
    run.output = malloc(INFLATE_OUTPUT_BYTES);
    if (!decompressor || !run.input || !run.output) {
        rc = error_set(err, -ENOMEM, "cannot decompress %s: out of memory", source);
        goto out;
    }
    for (;;) {
        if (io_stopped(io)) {
            rc = error_set(err, -ECANCELED, "decompressing %s was cancelled", source);
            goto out;
        }
        if (run.end - run.start < INFLATE_REFILL_BELOW && !run.input_ended &&
            (rc = inflate_refill(&run, err)) < 0)
            goto out;
        if (run.start == run.end)
            break;
        size_t used = 0, made = 0;
        enum libdeflate_result fast = libdeflate_gzip_decompress_ex(
            decompressor, run.input + run.start, run.end - run.start, run.output,
            INFLATE_OUTPUT_BYTES, &used, &made);
        if (fast == LIBDEFLATE_SUCCESS) {
            run.start += used;
            rc = inflate_write(&run, made, err);
        } else {
            rc = inflate_member_by_zlib(&run, err);
        }
        if (rc < 0)
            goto out;
        saw_member = true;
    }
    if (!saw_member)
        rc = error_set(err, -EBADMSG, "archive %s is truncated or corrupt: it is empty", source);
    else
        io_report_progress(io, result->input_bytes, total);

out:
    if (run.zlib_ready)
        inflateEnd(&run.zlib);
    if (decompressor)
        libdeflate_free_decompressor(decompressor);
    free(run.input);
    free(run.output);
    return rc;
}
