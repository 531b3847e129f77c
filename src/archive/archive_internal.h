/*
 * archive_internal.h: what archive.c and archive_early.c share: the block
 * size and the compression of one block into one gzip member or zstd frame
 * (archive_codec.c, below both), and archive_early.c's answer to archive.c.
 * Calls point one way: archive.c -> archive_early.c -> archive_codec.c.
 * Not for other modules: they use archive.h and archive_early.h.
 */
#ifndef SQLPRODD_ARCHIVE_INTERNAL_H
#define SQLPRODD_ARCHIVE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "archive/archive.h"
#include "core/io.h"
#include "crypto/age.h"

/* 1 MiB blocks cost about 0.1% in size against one long stream (measured
 * on a 200 MB database) and keep progress and cancellation responsive at
 * every level. */
#define ARCHIVE_BLOCK_BYTES (1024 * 1024)

/* One thread's compressor: libdeflate's and zstd's are not thread-safe. */
struct archive_codec {
    enum archive_format format;
    int level;
    struct libdeflate_compressor *deflate;
    /* gzip only: a sample of each block is tried at libdeflate level 1
     * first; a block whose sample does not shrink is stored (level 0), at
     * the speed of a copy, instead of searched for matches it does not
     * have, and one whose sample is as small at level 1 as at `level` is
     * compressed at level 1 (archive_codec.c). */
    struct libdeflate_compressor *probe, *store;
    unsigned char *sample, *sample_out;
    size_t sample_out_capacity;
    struct ZSTD_CCtx_s *zstd;
    size_t output_capacity; /* enough for any block */
};

/* 0, or -ENOMEM. archive_codec_free is safe after a failure. */
int archive_codec_init(struct archive_codec *codec, enum archive_format format, int level);
void archive_codec_free(struct archive_codec *codec);

/* One block into one self-contained member or frame; its size, or 0 when
 * the codec failed. `capacity` must be at least codec->output_capacity. */
size_t archive_codec_compress(struct archive_codec *codec, const unsigned char *input, size_t size,
                              unsigned char *output, size_t capacity);

/* How archive_codec_compress compresses a block. gzip only (zstd always
 * takes its level), and only a block of at least 128 KiB, judged by a
 * sample of 4 pieces of 8 KiB across it: STORED when the sample shrinks by
 * less than 1 % at libdeflate level 1; FAST (level 1) when it shrinks to
 * more than 40 % at level 1 and level 1 makes no more bytes of it than
 * the codec's level; AT_LEVEL otherwise. */
enum archive_block_choice { ARCHIVE_BLOCK_AT_LEVEL, ARCHIVE_BLOCK_FAST, ARCHIVE_BLOCK_STORED };
enum archive_block_choice archive_codec_choose(struct archive_codec *codec,
                                               const unsigned char *input, size_t size);

/* CRC-32 of a block, to recognize it again (libdeflate's, as gzip's). */
uint32_t archive_block_crc(const unsigned char *input, size_t size);

struct archive_early;

/* archive.c's side of early compression (archive_early.h): copies the member
 * compressed early for `block` into `output` and returns its size, if there
 * is one and `input` (the block as the finished file holds it) is what was
 * compressed; 0 otherwise, and the caller compresses the block itself. */
size_t archive_early_take(struct archive_early *early, enum archive_format format, int level,
                          uint64_t block, const unsigned char *input, size_t size,
                          unsigned char *output, size_t capacity);

/* What decompression reads (archive_input.c): the file's bytes, or, for an
 * age file, its plaintext, each chunk handed out only once its tag was
 * checked. The digest is always of the stored bytes (what a manifest
 * lists). A file cut short or altered fails in archive_input_read, at the
 * latest when the end is reached, so the caller's output is then thrown
 * away like that of a corrupt archive. */
struct archive_input {
    int fd;
    const char *name;
    struct io_sha256 *digest;        /* NULL: not hashed */
    struct age_decryptor *decryptor; /* NULL: read as stored */
    unsigned char *raw;              /* the decryptor's read buffer */
    unsigned char *plain;            /* plaintext not yet handed out */
    size_t plain_start, plain_end, plain_capacity;
    int64_t stored_bytes; /* read from the file so far */
    bool at_end;          /* the file is read to its end and, if sealed, finished */
};

/* Looks at the file's first bytes: an age file needs one of `keys`
 * (-ENOKEY when there is none, naming how to give one). */
int archive_input_open(struct archive_input *input, int fd, const char *name,
                       struct io_sha256 *digest, const struct archive_keys *keys,
                       struct error *err);
/* Up to `size` bytes; 0 at the end; -errno (with err) on failure. */
ssize_t archive_input_read(struct archive_input *input, void *buffer, size_t size,
                           struct error *err);
/* The first `size` bytes without consuming them (*have false when there
 * are fewer); an age file that fails to open fails here. */
int archive_input_peek(struct archive_input *input, void *buffer, size_t size, bool *have,
                       struct error *err);
bool archive_input_sealed(const struct archive_input *input);
void archive_input_close(struct archive_input *input);

/* Where decompressed bytes go: handed to `consume` (archive_decompress_into),
 * or else written to `fd`, named `name` in errors. */
struct archive_sink {
    int fd;
    const char *name;
    archive_consumer consume;
    void *context;
};

/* The next `size` bytes of output into `sink` (inline: both decoders,
 * archive.c's and archive_inflate.c's, write through it). */
static inline int archive_sink_write(const struct archive_sink *sink, const void *data, size_t size,
                                     struct error *err)
{
    if (sink->consume)
        return sink->consume(sink->context, data, size, err);
    int rc = io_write_full(sink->fd, data, size);
    if (rc < 0)
        return error_set(err, rc, "cannot write %s: %s", sink->name, strerror(-rc));
    return 0;
}

/* Every gzip member of `in` into `sink` (archive_inflate.c); `total` is the
 * input's size for progress. The input may only end where a member ends. */
int archive_inflate_members(struct archive_input *in, const struct archive_sink *sink,
                            const char *source, const struct io_context *io, int64_t total,
                            struct archive_result *result, struct error *err);

#endif
