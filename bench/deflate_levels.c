/*
 * bench/deflate_levels.c: what each libdeflate (or zstd) level makes of a
 * file cut into 1 MiB blocks, each block one gzip member (zstd frame), as
 * src/archive/archive_codec.c makes them. For bench/compression.py, which
 * compiles it into BENCH_DIR at run time (never built by CMake):
 *
 *   cc -O2 -Wall -Wextra -Werror -o deflate_levels deflate_levels.c -ldeflate -lzstd
 *
 * usage: deflate_levels FILE gzip|zstd REPEAT LEVEL...
 *
 * Prints one line per level: "FORMAT LEVEL BYTES SECONDS", BYTES the sum of
 * the compressed blocks and SECONDS the least CPU time of this one thread
 * over REPEAT passes (CPU time, not wall time: a busy neighbour shows less).
 */
#include <libdeflate.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

#define BLOCK_BYTES (1024 * 1024)

static double cpu_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static unsigned char *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t capacity = 64 * BLOCK_BYTES, used = 0;
    unsigned char *data = malloc(capacity);
    while (data) {
        if (used == capacity) {
            unsigned char *bigger = realloc(data, capacity *= 2);
            if (!bigger) {
                free(data);
                data = NULL;
                break;
            }
            data = bigger;
        }
        size_t got = fread(data + used, 1, capacity - used, f);
        used += got;
        if (got == 0)
            break;
    }
    fclose(f);
    *size = used;
    return data;
}

/* One pass over every block at one level; returns the compressed bytes, 0 on failure. */
static size_t compress_all(int zstd, int level, const unsigned char *data, size_t size,
                           unsigned char *out, size_t capacity)
{
    size_t total = 0;
    struct libdeflate_compressor *deflate = zstd ? NULL : libdeflate_alloc_compressor(level);
    ZSTD_CCtx *context = zstd ? ZSTD_createCCtx() : NULL;
    if (!deflate && !context)
        return 0;
    for (size_t at = 0; at < size; at += BLOCK_BYTES) {
        size_t length = size - at < BLOCK_BYTES ? size - at : BLOCK_BYTES;
        size_t made;
        if (zstd) {
            made = ZSTD_compressCCtx(context, out, capacity, data + at, length, level);
            if (ZSTD_isError(made))
                made = 0;
        } else {
            made = libdeflate_gzip_compress(deflate, data + at, length, out, capacity);
        }
        if (made == 0) {
            total = 0;
            break;
        }
        total += made;
    }
    if (deflate)
        libdeflate_free_compressor(deflate);
    ZSTD_freeCCtx(context);
    return total;
}

int main(int argc, char **argv)
{
    if (argc < 5 || (strcmp(argv[2], "gzip") != 0 && strcmp(argv[2], "zstd") != 0)) {
        fprintf(stderr, "usage: %s FILE gzip|zstd REPEAT LEVEL...\n", argv[0]);
        return 2;
    }
    int zstd = strcmp(argv[2], "zstd") == 0;
    int repeat = atoi(argv[3]);
    size_t size;
    unsigned char *data = read_all(argv[1], &size);
    if (!data || size == 0) {
        fprintf(stderr, "%s: cannot read %s\n", argv[0], argv[1]);
        return 1;
    }
    size_t capacity = ZSTD_compressBound(BLOCK_BYTES) + 65536; /* above libdeflate's bound too */
    unsigned char *out = malloc(capacity);
    if (!out)
        return 1;
    for (int i = 4; i < argc; i++) {
        int level = atoi(argv[i]);
        size_t bytes = 0;
        double best = 0;
        for (int pass = 0; pass < (repeat > 0 ? repeat : 1); pass++) {
            double started = cpu_seconds();
            bytes = compress_all(zstd, level, data, size, out, capacity);
            double spent = cpu_seconds() - started;
            if (bytes == 0) {
                fprintf(stderr, "%s: %s level %d failed\n", argv[0], argv[2], level);
                return 1;
            }
            if (pass == 0 || spent < best)
                best = spent;
        }
        printf("%s %d %zu %.4f\n", argv[2], level, bytes, best);
        fflush(stdout);
    }
    free(out);
    free(data);
    return 0;
}
