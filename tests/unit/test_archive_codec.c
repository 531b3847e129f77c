/*
 * test_archive_codec.c: which blocks an archive stores rather than compresses.
 *
 * A block of already-compressed data (a BLOB column of images or zip files)
 * costs libdeflate's full search and shrinks by nothing; archive_codec.c
 * stores such a block (deflate's stored blocks, still a gzip member) at the
 * speed of a copy. The decision must never take a block that would shrink:
 * that would break the promise that `level = N` gives about gzip -N's size.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

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
    assert_true(archive_codec_stores(&codec, block, BLOCK));
    size_t stored = compress_block(&codec, block, BLOCK);
    assert_true(stored >= BLOCK && stored < BLOCK + 200);

    /* Text: compressed. */
    fill_text(block, BLOCK, 2);
    assert_false(archive_codec_stores(&codec, block, BLOCK));
    assert_true(compress_block(&codec, block, BLOCK) < BLOCK / 3);

    /* Three quarters noise, a quarter text: gzip would save about a fifth,
     * and the sample sees it. */
    fill_random(block, BLOCK, 3);
    fill_text(block + 3 * BLOCK / 4, BLOCK / 4, 4);
    assert_false(archive_codec_stores(&codec, block, BLOCK));

    /* Noise with 3 % of each page left zero (a page's unused tail): shrinks
     * by more than the 1 % the rule allows to lose, so it is compressed. */
    fill_random(block, BLOCK, 5);
    for (size_t page = 0; page < BLOCK; page += 4096)
        memset(block + page + 4096 - 123, 0, 123);
    assert_false(archive_codec_stores(&codec, block, BLOCK));

    /* A short last block is always compressed: its sample would be most of it. */
    fill_random(block, BLOCK, 6);
    assert_false(archive_codec_stores(&codec, block, 100 * 1024));
    archive_codec_free(&codec);

    /* zstd is fast on such data by itself: never stored. */
    assert_int_equal(archive_codec_init(&codec, ARCHIVE_ZSTD, 3), 0);
    assert_false(archive_codec_stores(&codec, block, BLOCK));
    archive_codec_free(&codec);
    free(block);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(incompressible_blocks_are_stored_and_others_compressed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
