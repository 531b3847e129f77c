/*
 * test_archive_bytes.c: the same input makes the same archive, byte for byte.
 *
 * An archive's SHA-256 is written in its manifest and checked on restore and
 * after upload; operators also compare archives across versions. So a change
 * to the I/O code under archive.c must not change a single output byte. The
 * digests below were recorded from main before the I/O layer (core/io.c)
 * replaced archive.c's own read, write, hash and hex code (issue 15); the
 * input is generated, so the test needs no fixture file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive/archive.h"

/* Three 1 MiB blocks and a short fourth: several gzip members / zstd frames. */
#define INPUT_BYTES (3 * 1024 * 1024 + 12345)

/* Recorded from main (6cf5690) with Debian 12's libdeflate 1.14 and libzstd
 * 1.5.4; another codec version may compress differently and needs new values
 * recorded from an unchanged archive.c, not from the code under test. */
#define INPUT_SHA256 "8eaf7a1f0ec3abd2014dfe3731a14a087b60a789d47c24975b7d9e7ea8d75eea"
#define GZIP5_SHA256 "be5c7dbd1ac42e5c961b4651df4c108978fd095e69dca2227cfd547c09b4ae46"
#define GZIP5_BYTES  2448125
#define GZIP1_SHA256 "40f16fbd9c415f764cd2913feb6b988ac64af0a0cada3a892879288c67bb8369"
#define GZIP1_BYTES  2459481
#define GZIP9_SHA256 "cce645a0e74afac5923325ab3c3793aa05d76e556bb80bd68d0713d8786748d5"
#define GZIP9_BYTES  2439692
#define ZSTD3_SHA256 "118040380d2ae6f963c915acf024ebe43109d574fc1e4b5b6b40d93e048b170b"
#define ZSTD3_BYTES  2359222

static char root[256];
static char input_path[PATH_MAX];

/* Text rows (compressible, like table pages) with a stretch of noise
 * (incompressible, like a blob column), from a fixed xorshift seed. */
static void write_fixed_input(const char *path)
{
    unsigned char *data = malloc(INPUT_BYTES);
    assert_non_null(data);
    uint32_t state = 2463534242u;
    size_t done = 0;
    for (int row = 0; done < INPUT_BYTES; row++) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        if (row % 50 == 49) {
            for (int i = 0; i < 4096 && done < INPUT_BYTES; i++) {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                data[done++] = (unsigned char)state;
            }
            continue;
        }
        char line[96];
        int length = snprintf(line, sizeof line, "row %d|customer-%u|amount %u.%02u|ok\n", row,
                              state % 1000, state % 100000, state % 100);
        for (int i = 0; i < length && done < INPUT_BYTES; i++)
            data[done++] = (unsigned char)line[i];
    }
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    assert_int_equal(fwrite(data, 1, INPUT_BYTES, file), INPUT_BYTES);
    assert_int_equal(fclose(file), 0);
    free(data);
}

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/sqlprodd-archive-bytes-XXXXXX");
    if (!mkdtemp(root))
        return -1;
    snprintf(input_path, sizeof input_path, "%s/input.db", root);
    write_fixed_input(input_path);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char command[PATH_MAX + 16];
    snprintf(command, sizeof command, "rm -rf %s", root);
    return system(command) == 0 ? 0 : -1;
}

static void compress_and_expect(enum archive_format format, int level, int threads,
                                const char *sha256, int64_t size)
{
    char output[PATH_MAX];
    struct archive_result result;
    struct error err = {0};
    struct archive_options options = {.threads = threads};
    snprintf(output, sizeof output, "%s/out-%d-%d-%d", root, (int)format, level, threads);

    assert_int_equal(
        archive_compress_format(input_path, output, format, level, NULL, &options, &result, &err),
        0);
    assert_int_equal(result.input_bytes, INPUT_BYTES);
    assert_string_equal(result.sha256, sha256);
    assert_int_equal(result.output_bytes, size);

    /* The digest reported is that of the file on disk. */
    char on_disk[ARCHIVE_SHA256_HEX];
    assert_int_equal(archive_sha256_file(output, on_disk, &err), 0);
    assert_string_equal(on_disk, sha256);
    unlink(output);
}

/* backup.level 6, the default: libdeflate level 5 (archive_deflate_level). */
static void gzip_archive_of_fixed_input_is_unchanged(void **state)
{
    (void)state;
    /* The input itself is what the digests were recorded from. */
    char input_sha256[ARCHIVE_SHA256_HEX];
    struct error err = {0};
    assert_int_equal(archive_sha256_file(input_path, input_sha256, &err), 0);
    assert_string_equal(input_sha256, INPUT_SHA256);

    assert_int_equal(archive_deflate_level(6), 5);
    compress_and_expect(ARCHIVE_GZIP, 5, 2, GZIP5_SHA256, GZIP5_BYTES);
    compress_and_expect(ARCHIVE_GZIP, 1, 2, GZIP1_SHA256, GZIP1_BYTES);
    compress_and_expect(ARCHIVE_GZIP, 9, 2, GZIP9_SHA256, GZIP9_BYTES);
}

static void zstd_archive_of_fixed_input_is_unchanged(void **state)
{
    (void)state;
    assert_int_equal(archive_zstd_level(6), 3);
    compress_and_expect(ARCHIVE_ZSTD, 3, 2, ZSTD3_SHA256, ZSTD3_BYTES);
}

/* Blocks are independent members, so how many threads made them must not show. */
static void thread_count_does_not_change_the_bytes(void **state)
{
    (void)state;
    compress_and_expect(ARCHIVE_GZIP, 5, 1, GZIP5_SHA256, GZIP5_BYTES);
    compress_and_expect(ARCHIVE_GZIP, 5, 7, GZIP5_SHA256, GZIP5_BYTES);
    compress_and_expect(ARCHIVE_ZSTD, 3, 5, ZSTD3_SHA256, ZSTD3_BYTES);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gzip_archive_of_fixed_input_is_unchanged),
        cmocka_unit_test(zstd_archive_of_fixed_input_is_unchanged),
        cmocka_unit_test(thread_count_does_not_change_the_bytes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
