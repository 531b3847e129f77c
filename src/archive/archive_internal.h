/*
 * archive_internal.h: what archive.c and archive_early.c share: the block
 * size and the compression of one block into one gzip member or zstd frame
 * (archive_codec.c, below both), and archive_early.c's answer to archive.c.
 * Calls point one way: archive.c -> archive_early.c -> archive_codec.c.
 * Not for other modules: they use archive.h and archive_early.h.
 */
#ifndef SQLPRODD_ARCHIVE_INTERNAL_H
#define SQLPRODD_ARCHIVE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "archive/archive.h"

/* 1 MiB blocks cost about 0.1% in size against one long stream (measured
 * on a 200 MB database) and keep progress and cancellation responsive at
 * every level. */
#define ARCHIVE_BLOCK_BYTES (1024 * 1024)

/* One thread's compressor: libdeflate's and zstd's are not thread-safe. */
struct archive_codec {
    enum archive_format format;
    int level;
    struct libdeflate_compressor *deflate;
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

#endif
