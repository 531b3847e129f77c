/*
 * test_archive_codec.c: how an archive compresses each block.
 *
 * A block of already-compressed data (a BLOB column of images or zip files)
 * costs libdeflate's full search and shrinks by nothing; archive_codec.c
 * stores such a block (deflate's stored blocks, still a gzip member) at the
 * speed of a copy. A block of random tokens (hex digests, UUIDs) is mostly
 * literals, which libdeflate's level 1 codes as small as its higher levels
 * in half the time; it is compressed at level 1. Neither choice may take a
 * block that the configured level would make smaller: that would break the
 * promise that `level = N` gives about gzip -N's size.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <libdeflate.h>
#include <sqlite3.h>
#include <stdio.h>
#include <unistd.h>

#include "archive/archive_internal.h"

#define BLOCK (1024 * 1024)

static uint32_t next_random(uint32_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    return *state;
}

static void fill_random(unsigned char *data, size_t size, uint32_t seed)
{
    for (size_t i = 0; i < size; i++)
        data[i] = (unsigned char)next_random(&seed);
}

/* Rows of words, about what a table's pages hold. */
static void fill_text(unsigned char *data, size_t size, uint32_t seed)
{
    static const char *const words[] = {"order",   "customer", "shipped", "paid ",
                                        "pending", "street",   "berlin",  "2026-12-03 "};
    size_t at = 0;
    while (at < size) {
        const char *word = words[next_random(&seed) % 8];
        size_t length = strlen(word);
        if (length > size - at)
            length = size - at;
        memcpy(data + at, word, length);
        at += length;
    }
}

/* One MiB from the middle of a real SQLite database whose one table gets
 * `rows` rows from `insert_row`: page headers, record headers and cells as
 * a VACUUM INTO copy holds them. */
static void fill_table(unsigned char *data, const char *schema, const char *insert, int rows,
                       void (*bind_row)(sqlite3_stmt *, int, uint32_t *))
{
    char directory[] = "/tmp/test_archive_codec.XXXXXX";
    assert_non_null(mkdtemp(directory));
    char path[64];
    snprintf(path, sizeof(path), "%s/table.db", directory);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, schema, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_stmt *statement;
    assert_int_equal(sqlite3_prepare_v2(db, insert, -1, &statement, NULL), SQLITE_OK);
    uint32_t seed = 11;
    for (int row = 0; row < rows; row++) {
        bind_row(statement, row, &seed);
        assert_int_equal(sqlite3_step(statement), SQLITE_DONE);
        sqlite3_reset(statement);
    }
    sqlite3_finalize(statement);
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    FILE *file = fopen(path, "rb");
    assert_non_null(file);
    assert_int_equal(fseek(file, BLOCK, SEEK_SET), 0);
    assert_int_equal(fread(data, 1, BLOCK, file), BLOCK);
    fclose(file);
    unlink(path);
    rmdir(directory);
}

static void random_hex(char *text, size_t length, uint32_t *seed)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < length; i++)
        text[i] = digits[next_random(seed) % 16];
    text[length] = '\0';
}

/* Sessions keyed by a UUID with a SHA-256 digest: random tokens. */
static void bind_session(sqlite3_stmt *statement, int row, uint32_t *seed)
{
    char uuid[37], digest[65];
    random_hex(uuid, 36, seed);
    uuid[8] = uuid[13] = uuid[18] = uuid[23] = '-';
    random_hex(digest, 64, seed);
    sqlite3_bind_text(statement, 1, uuid, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(statement, 2, digest, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(statement, 3, 1764800000 + 3 * (int64_t)row);
}

/* A time series: a sensor of twenty, a time that rises, a value that drifts. */
static void bind_reading(sqlite3_stmt *statement, int row, uint32_t *seed)
{
    static double value;
    if (row == 0)
        value = 20.0;
    uint32_t random = next_random(seed);
    value += (double)(random % 101) / 100.0 - 0.5;
    sqlite3_bind_int(statement, 1, (int)(random >> 8) % 20);
    sqlite3_bind_int64(statement, 2, 1764800000 + 3 * (int64_t)row + (random >> 16) % 3);
    sqlite3_bind_double(statement, 3, (double)(int64_t)(value * 100) / 100.0);
}

static void fill_sessions(unsigned char *data)
{
    fill_table(
        data,
        "CREATE TABLE sessions (id INTEGER PRIMARY KEY, token TEXT, digest TEXT, created INTEGER)",
        "INSERT INTO sessions (token, digest, created) VALUES (?, ?, ?)", 20000, bind_session);
}

static void fill_readings(unsigned char *data)
{
    fill_table(
        data,
        "CREATE TABLE readings (id INTEGER PRIMARY KEY, sensor INTEGER, at INTEGER, value REAL)",
        "INSERT INTO readings (sensor, at, value) VALUES (?, ?, ?)", 100000, bind_reading);
}

static size_t compress_block(struct archive_codec *codec, const unsigned char *input, size_t size)
{
    unsigned char *output = malloc(codec->output_capacity);
    assert_non_null(output);
    size_t produced = archive_codec_compress(codec, input, size, output, codec->output_capacity);
    assert_true(produced > 0);
    /* Still one gzip member. */
    assert_int_equal(output[0], 0x1f);
    assert_int_equal(output[1], 0x8b);
    free(output);
    return produced;
}

static void incompressible_blocks_are_stored_and_others_compressed(void **state)
{
    (void)state;
    struct archive_codec codec;
    assert_int_equal(archive_codec_init(&codec, ARCHIVE_GZIP, 5), 0);
    unsigned char *block = malloc(BLOCK);
    assert_non_null(block);

    /* Random bytes (a compressed stream): stored, a few bytes over its size. */
    fill_random(block, BLOCK, 1);
    assert_int_equal(archive_codec_choose(&codec, block, BLOCK), ARCHIVE_BLOCK_STORED);
    size_t stored = compress_block(&codec, block, BLOCK);
    assert_true(stored >= BLOCK && stored < BLOCK + 200);

    /* Text: compressed. */
    fill_text(block, BLOCK, 2);
    assert_int_equal(archive_codec_choose(&codec, block, BLOCK), ARCHIVE_BLOCK_AT_LEVEL);
    assert_true(compress_block(&codec, block, BLOCK) < BLOCK / 3);

    /* Three quarters noise, a quarter text: gzip would save about a fifth,
     * and the sample sees it. */
    fill_random(block, BLOCK, 3);
    fill_text(block + 3 * BLOCK / 4, BLOCK / 4, 4);
    assert_int_not_equal(archive_codec_choose(&codec, block, BLOCK), ARCHIVE_BLOCK_STORED);

    /* Noise with 3 % of each page left zero (a page's unused tail): shrinks
     * by more than the 1 % the rule allows to lose, so it is compressed. */
    fill_random(block, BLOCK, 5);
    for (size_t page = 0; page < BLOCK; page += 4096)
        memset(block + page + 4096 - 123, 0, 123);
    assert_int_not_equal(archive_codec_choose(&codec, block, BLOCK), ARCHIVE_BLOCK_STORED);

    /* A short last block is always compressed: its sample would be most of it. */
    fill_random(block, BLOCK, 6);
    assert_int_equal(archive_codec_choose(&codec, block, 100 * 1024), ARCHIVE_BLOCK_AT_LEVEL);
    archive_codec_free(&codec);

    /* zstd is fast on such data by itself: never stored. */
    assert_int_equal(archive_codec_init(&codec, ARCHIVE_ZSTD, 3), 0);
    assert_int_equal(archive_codec_choose(&codec, block, BLOCK), ARCHIVE_BLOCK_AT_LEVEL);
    archive_codec_free(&codec);
    free(block);
}

/* What libdeflate makes of the whole block at `level`, as one gzip member. */
static size_t gzip_at(int level, const unsigned char *input, size_t size)
{
    struct libdeflate_compressor *compressor = libdeflate_alloc_compressor(level);
    assert_non_null(compressor);
    size_t capacity = libdeflate_gzip_compress_bound(compressor, size);
    unsigned char *output = malloc(capacity);
    assert_non_null(output);
    size_t produced = libdeflate_gzip_compress(compressor, input, size, output, capacity);
    assert_true(produced > 0);
    free(output);
    libdeflate_free_compressor(compressor);
    return produced;
}

static void token_blocks_take_level_1_where_it_is_as_small(void **state)
{
    (void)state;
    unsigned char *block = malloc(BLOCK);
    assert_non_null(block);
    for (int level = 2; level <= 6; level++) {
        struct archive_codec codec;
        assert_int_equal(archive_codec_init(&codec, ARCHIVE_GZIP, level), 0);

        /* UUIDs and hex digests: level 1, and no larger than the level
         * would make. */
        fill_sessions(block);
        assert_int_equal(archive_codec_choose(&codec, block, BLOCK), ARCHIVE_BLOCK_FAST);
        size_t tokens = compress_block(&codec, block, BLOCK);
        assert_true(tokens == gzip_at(1, block, BLOCK));
        assert_true(tokens <= gzip_at(level, block, BLOCK));

        /* A time series also shrinks little at level 1, but the level's
         * search finds more: the sample tells them apart. */
        fill_readings(block);
        assert_int_equal(archive_codec_choose(&codec, block, BLOCK), ARCHIVE_BLOCK_AT_LEVEL);
        assert_true(compress_block(&codec, block, BLOCK) == gzip_at(level, block, BLOCK));

        /* Text shrinks far below what could tempt level 1. */
        fill_text(block, BLOCK, 9);
        assert_int_equal(archive_codec_choose(&codec, block, BLOCK), ARCHIVE_BLOCK_AT_LEVEL);
        archive_codec_free(&codec);
    }

    /* At level 1 there is nothing faster to choose. */
    struct archive_codec codec;
    assert_int_equal(archive_codec_init(&codec, ARCHIVE_GZIP, 1), 0);
    fill_sessions(block);
    assert_int_equal(archive_codec_choose(&codec, block, BLOCK), ARCHIVE_BLOCK_AT_LEVEL);
    archive_codec_free(&codec);
    free(block);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(incompressible_blocks_are_stored_and_others_compressed),
        cmocka_unit_test(token_blocks_take_level_1_where_it_is_as_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
