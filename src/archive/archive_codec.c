/*
 * archive_codec.c: one block into one gzip member (libdeflate) or zstd frame
 * (libzstd), the unit that archive.c's worker threads and archive_early.c's
 * early compression both make (archive_internal.h). Its own file so that
 * both call down into it: archive.c -> archive_early.c -> archive_codec.c.
 * Not for streams, files or threads.
 */
#include <errno.h>
#include <libdeflate.h>
#include <zstd.h>

#include "archive/archive_internal.h"

int archive_codec_init(struct archive_codec *codec, enum archive_format format, int level)
{
    *codec = (struct archive_codec){.format = format, .level = level};
    if (format == ARCHIVE_ZSTD) {
        codec->zstd = ZSTD_createCCtx();
        codec->output_capacity = ZSTD_compressBound(ARCHIVE_BLOCK_BYTES);
        return codec->zstd ? 0 : -ENOMEM;
    }
    codec->deflate = libdeflate_alloc_compressor(level);
    if (!codec->deflate)
        return -ENOMEM;
    codec->output_capacity = libdeflate_gzip_compress_bound(codec->deflate, ARCHIVE_BLOCK_BYTES);
    return 0;
}

void archive_codec_free(struct archive_codec *codec)
{
    if (codec->deflate)
        libdeflate_free_compressor(codec->deflate);
    ZSTD_freeCCtx(codec->zstd);
    codec->deflate = NULL;
    codec->zstd = NULL;
}

size_t archive_codec_compress(struct archive_codec *codec, const unsigned char *input, size_t size,
                              unsigned char *output, size_t capacity)
{
    if (codec->format == ARCHIVE_ZSTD) {
        size_t produced =
            ZSTD_compressCCtx(codec->zstd, output, capacity, input, size, codec->level);
        return ZSTD_isError(produced) ? 0 : produced;
    }
    return libdeflate_gzip_compress(codec->deflate, input, size, output, capacity);
}

uint32_t archive_block_crc(const unsigned char *input, size_t size)
{
    return libdeflate_crc32(0, input, size);
}
