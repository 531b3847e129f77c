/*
 * archive_codec.c: one block into one gzip member (libdeflate) or zstd frame
 * (libzstd), the unit that archive.c's worker threads and archive_early.c's
 * early compression both make (archive_internal.h). Its own file so that
 * both call down into it: archive.c -> archive_early.c -> archive_codec.c.
 * Not for streams, files or threads.
 */
#include <errno.h>
#include <libdeflate.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "archive/archive_internal.h"

/* The sample of a block: ARCHIVE_SAMPLES pieces taken evenly across it, so
 * that a block of pages of several kinds is judged by all of them. */
#define ARCHIVE_SAMPLES      4
#define ARCHIVE_SAMPLE_BYTES (8 * 1024)
/* Stored when the sample shrinks by less than 1 % at level 1. Measured on
 * bench/corpus.py's blobs (compressed streams in BLOBs): such blocks shrink
 * by about 1.5 % under gzip -6, so storing them costs 1.2 % of the archive's
 * size and a third of the backup's time; on every other kind no block's
 * sample comes near (hex tokens, the least compressible, shrink 40 %). */
#define ARCHIVE_STORE_RATIO 0.99
/* A block whose sample shrinks to more than 40 % of its size at level 1 is
 * mostly literals (random tokens, numbers): the sample is tried at the
 * codec's level too, and where level 1 made no more bytes, the block is
 * compressed at level 1, which runs about twice as fast. Measured on
 * bench/corpus.py (libdeflate 1.14, level 5): hex and UUID tokens take
 * level 1 for about 60 % of their blocks, 1.8 % smaller and 22 % faster;
 * numbers and order rows try and keep level 5 (level 1 is 6-8 % larger
 * there) at a cost of 2-3 %; text and JSON shrink under 40 % and pay
 * nothing, as level 1 would make them 6-9 % larger. */
#define ARCHIVE_FAST_TRY_RATIO 0.40

static size_t larger(size_t a, size_t b)
{
    return a > b ? a : b;
}

int archive_codec_init(struct archive_codec *codec, enum archive_format format, int level)
{
    *codec = (struct archive_codec){.format = format, .level = level};
    if (format == ARCHIVE_ZSTD) {
        codec->zstd = ZSTD_createCCtx();
        codec->output_capacity = ZSTD_compressBound(ARCHIVE_BLOCK_BYTES);
        return codec->zstd ? 0 : -ENOMEM;
    }
    codec->deflate = libdeflate_alloc_compressor(level);
    codec->probe = libdeflate_alloc_compressor(1);
    codec->store = libdeflate_alloc_compressor(0);
    if (!codec->deflate || !codec->probe || !codec->store)
        return -ENOMEM;
    size_t sample_fast =
        libdeflate_deflate_compress_bound(codec->probe, ARCHIVE_SAMPLES * ARCHIVE_SAMPLE_BYTES);
    size_t sample_at_level =
        libdeflate_deflate_compress_bound(codec->deflate, ARCHIVE_SAMPLES * ARCHIVE_SAMPLE_BYTES);
    codec->sample_out_capacity = larger(sample_fast, sample_at_level);
    codec->sample = malloc(ARCHIVE_SAMPLES * ARCHIVE_SAMPLE_BYTES);
    codec->sample_out = malloc(codec->sample_out_capacity);
    if (!codec->sample || !codec->sample_out)
        return -ENOMEM;
    /* A block may leave in any of the three forms. */
    codec->output_capacity =
        larger(larger(libdeflate_gzip_compress_bound(codec->deflate, ARCHIVE_BLOCK_BYTES),
                      libdeflate_gzip_compress_bound(codec->probe, ARCHIVE_BLOCK_BYTES)),
               libdeflate_gzip_compress_bound(codec->store, ARCHIVE_BLOCK_BYTES));
    return 0;
}

void archive_codec_free(struct archive_codec *codec)
{
    if (codec->deflate)
        libdeflate_free_compressor(codec->deflate);
    if (codec->probe)
        libdeflate_free_compressor(codec->probe);
    if (codec->store)
        libdeflate_free_compressor(codec->store);
    free(codec->sample);
    free(codec->sample_out);
    ZSTD_freeCCtx(codec->zstd);
    codec->deflate = codec->probe = codec->store = NULL;
    codec->sample = codec->sample_out = NULL;
    codec->zstd = NULL;
}

enum archive_block_choice archive_codec_choose(struct archive_codec *codec,
                                               const unsigned char *input, size_t size)
{
    if (codec->format != ARCHIVE_GZIP || size < 4 * ARCHIVE_SAMPLES * ARCHIVE_SAMPLE_BYTES)
        return ARCHIVE_BLOCK_AT_LEVEL;
    size_t stride = size / ARCHIVE_SAMPLES;
    for (size_t i = 0; i < ARCHIVE_SAMPLES; i++)
        memcpy(codec->sample + i * ARCHIVE_SAMPLE_BYTES, input + i * stride, ARCHIVE_SAMPLE_BYTES);
    size_t sample = ARCHIVE_SAMPLES * ARCHIVE_SAMPLE_BYTES;
    size_t fast = libdeflate_deflate_compress(codec->probe, codec->sample, sample,
                                              codec->sample_out, codec->sample_out_capacity);
    if (fast == 0 || (double)fast > ARCHIVE_STORE_RATIO * (double)sample)
        return ARCHIVE_BLOCK_STORED;
    if (codec->level <= 1 || (double)fast <= ARCHIVE_FAST_TRY_RATIO * (double)sample)
        return ARCHIVE_BLOCK_AT_LEVEL;
    size_t at_level = libdeflate_deflate_compress(codec->deflate, codec->sample, sample,
                                                  codec->sample_out, codec->sample_out_capacity);
    return at_level != 0 && fast <= at_level ? ARCHIVE_BLOCK_FAST : ARCHIVE_BLOCK_AT_LEVEL;
}

size_t archive_codec_compress(struct archive_codec *codec, const unsigned char *input, size_t size,
                              unsigned char *output, size_t capacity)
{
    if (codec->format == ARCHIVE_ZSTD) {
        size_t produced =
            ZSTD_compressCCtx(codec->zstd, output, capacity, input, size, codec->level);
        return ZSTD_isError(produced) ? 0 : produced;
    }
    struct libdeflate_compressor *compressors[] = {
        [ARCHIVE_BLOCK_AT_LEVEL] = codec->deflate,
        [ARCHIVE_BLOCK_FAST] = codec->probe,
        [ARCHIVE_BLOCK_STORED] = codec->store,
    };
    return libdeflate_gzip_compress(compressors[archive_codec_choose(codec, input, size)], input,
                                    size, output, capacity);
}

uint32_t archive_block_crc(const unsigned char *input, size_t size)
{
    return libdeflate_crc32(0, input, size);
}
