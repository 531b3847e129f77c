/*
 * test_pack_stream.c: a pack read from its members on a real directory
 * target (replicate/pack_stream.h): the bytes are the members', in order,
 * whatever the reads' sizes and the 8 MiB windows; a reader that reads in
 * order checks every member against its recorded SHA-256, including empty
 * ones; a member changed, cut short or gone is named by its index and
 * refused; a reader that skipped about, or did not read it all, refuses to
 * vouch for the pack; the
 * stage directory holds one window per reader and nothing once closed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "core/io.h"
#include "files_in.h"
#include "offsite/target.h"
#include "replicate/pack_stream.h"

struct fixture {
    char root[64];  /* the target's path */
    char stage[96]; /* the stream's stage directory */
    struct target *target;
};

static unsigned char member_byte(int member, int64_t n)
{
    return (unsigned char)((n * 131 + member * 7 + (n >> 13)) & 0xff);
}

/* Writes member `member` of `size` bytes at KEY under the target's root;
 * its SHA-256 into `hex`. */
static void put_member(struct fixture *f, const char *key, int member, int64_t size,
                       char hex[IO_SHA256_HEX])
{
    char path[256], directory[256];
    struct error err = {0};
    snprintf(path, sizeof path, "%s/%s", f->root, key);
    snprintf(directory, sizeof directory, "%s", path);
    *strrchr(directory, '/') = '\0';
    assert_int_equal(fs_make_directories(directory, 0700, &err), 0);
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    unsigned char *bytes = malloc(size > 0 ? (size_t)size : 1);
    assert_non_null(bytes);
    for (int64_t i = 0; i < size; i++)
        bytes[i] = member_byte(member, i);
    assert_int_equal(fwrite(bytes, 1, (size_t)size, file), (size_t)size);
    fclose(file);
    io_sha256_buffer(bytes, (size_t)size, hex);
    free(bytes);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct error err = {0};
    strcpy(f->root, "/tmp/test_pack_stream.XXXXXX");
    if (!mkdtemp(f->root))
        return -1;
    snprintf(f->stage, sizeof f->stage, "%s-stage", f->root);
    mkdir(f->stage, 0700);
    const struct target_config config = {.name = "nas", .type = TARGET_DIR, .path = f->root};
    if (target_open(&config, &f->target, &err) != 0) {
        fprintf(stderr, "%s\n", err.message);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char command[256];
    target_close(f->target);
    snprintf(command, sizeof command, "rm -rf '%s' '%s'", f->root, f->stage);
    int rc = system(command);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* Sizes that cross a window (8 MiB + 3), an empty member in the middle and
 * one at the end, and small ones. */
static const int64_t SIZES[] = {1000, PACK_STREAM_WINDOW_BYTES + 3, 0, 77, 4096, 0};
#define MEMBERS (sizeof SIZES / sizeof SIZES[0])

static struct pack_stream *open_stream(struct fixture *f, char hex[][IO_SHA256_HEX], int64_t *total)
{
    struct pack_stream *stream = NULL;
    struct error err = {0};
    assert_int_equal(pack_stream_open(f->target, f->stage, NULL, &stream, &err), 0);
    *total = 0;
    for (size_t i = 0; i < MEMBERS; i++) {
        char key[64];
        snprintf(key, sizeof key, "app/replica/g%08zu/wal/member", i + 1);
        if (hex[i][0] == '\0')
            put_member(f, key, (int)i, SIZES[i], hex[i]);
        assert_int_equal(pack_stream_add(stream, key, SIZES[i], hex[i], &err), 0);
        *total += SIZES[i];
    }
    return stream;
}

/* Reads the whole source in order in pieces of `piece` bytes; returns the
 * first error (0 when all was read and the check passed). */
static int read_all(const struct target_source *source, size_t piece, bool *matches,
                    struct error *err)
{
    void *reader = NULL;
    unsigned char *buffer = malloc(piece);
    int rc = source->open_reader(source->context, &reader, err);
    int64_t at = 0;
    size_t member = 0;
    int64_t member_start = 0;
    *matches = true;
    while (rc == 0 && at < source->size) {
        size_t length = source->size - at < (int64_t)piece ? (size_t)(source->size - at) : piece;
        rc = source->read(reader, buffer, length, at, err);
        for (size_t i = 0; rc == 0 && i < length; i++) {
            while (at + (int64_t)i >= member_start + SIZES[member]) {
                member_start += SIZES[member];
                member++;
            }
            *matches &= buffer[i] == member_byte((int)member, at + (int64_t)i - member_start);
        }
        at += (int64_t)length;
    }
    if (rc == 0)
        rc = source->check(reader, err);
    if (reader)
        source->close_reader(reader);
    free(buffer);
    return rc;
}

static void the_pack_is_its_members_in_order_and_checked(void **state)
{
    struct fixture *f = *state;
    char hex[MEMBERS][IO_SHA256_HEX] = {{0}};
    int64_t total;
    struct pack_stream *stream = open_stream(f, hex, &total);
    struct target_source source;
    pack_stream_source(stream, "g1-g6.pack", &source);
    assert_int_equal(source.size, total);
    assert_string_equal(source.stage_directory, f->stage);
    struct error err = {0};
    bool matches;
    /* Pieces that do not divide the members or the window. */
    int rc = read_all(&source, 1000003, &matches, &err);
    if (rc != 0)
        fail_msg("%s", err.message);
    assert_true(matches);
    int code = 0;
    assert_int_equal(pack_stream_failed_member(stream, &code), -1);
    assert_int_equal(files_in(f->stage), 0);

    /* A pack put from it on the target is the members concatenated. */
    char stored[IO_SHA256_HEX];
    assert_int_equal(
        target_put_source(f->target, "app/replica/packs/p.pack", &source, NULL, stored, NULL, &err),
        0);
    struct io_sha256 hash;
    assert_int_equal(io_sha256_begin(&hash), 0);
    for (size_t i = 0; i < MEMBERS; i++)
        for (int64_t n = 0; n < SIZES[i]; n++) {
            unsigned char byte = member_byte((int)i, n);
            io_sha256_update(&hash, &byte, 1);
        }
    char expected[IO_SHA256_HEX];
    io_sha256_end(&hash, expected);
    assert_string_equal(stored, expected);
    assert_int_equal(files_in(f->stage), 0);
    pack_stream_close(stream);
}

/* Overwrites byte `at` of member `member` on the target. */
static void damage(struct fixture *f, size_t member, int64_t at)
{
    char path[256];
    snprintf(path, sizeof path, "%s/app/replica/g%08zu/wal/member", f->root, member + 1);
    FILE *file = fopen(path, "r+b");
    assert_non_null(file);
    fseek(file, at, SEEK_SET);
    fputc(~member_byte((int)member, at) & 0xff, file);
    fclose(file);
}

static void a_changed_member_is_named_and_refused(void **state)
{
    struct fixture *f = *state;
    char hex[MEMBERS][IO_SHA256_HEX] = {{0}};
    int64_t total;
    pack_stream_close(open_stream(f, hex, &total)); /* writes the members */
    damage(f, 1, PACK_STREAM_WINDOW_BYTES + 1);     /* in its second window */
    struct pack_stream *stream = open_stream(f, hex, &total);
    struct target_source source;
    pack_stream_source(stream, "p", &source);
    struct error err = {0};
    bool matches;
    assert_int_equal(read_all(&source, 1 << 20, &matches, &err), -EBADMSG);
    if (!strstr(err.message, "g00000002/wal/member") ||
        !strstr(err.message, "changed on the target"))
        fail_msg("%s", err.message);
    int code = 0;
    assert_int_equal(pack_stream_failed_member(stream, &code), 1);
    assert_int_equal(code, -EBADMSG);
    /* Nothing of it reaches the target. */
    assert_int_not_equal(
        target_put_source(f->target, "app/replica/packs/bad.pack", &source, NULL, NULL, NULL, &err),
        0);
    struct target_listing listing = {0};
    assert_int_equal(target_list(f->target, "app/replica/packs/", &listing, &err), 0);
    assert_int_equal(listing.count, 0);
    target_listing_free(&listing);
    pack_stream_close(stream);
    assert_int_equal(files_in(f->stage), 0);
}

static void a_member_cut_short_or_gone_is_named(void **state)
{
    struct fixture *f = *state;
    char hex[MEMBERS][IO_SHA256_HEX] = {{0}};
    int64_t total;
    pack_stream_close(open_stream(f, hex, &total));
    char path[256];
    snprintf(path, sizeof path, "%s/app/replica/g%08d/wal/member", f->root, 4);
    assert_int_equal(truncate(path, 70), 0); /* 77 bytes were put */
    struct pack_stream *stream = open_stream(f, hex, &total);
    struct target_source source;
    pack_stream_source(stream, "p", &source);
    struct error err = {0};
    bool matches;
    assert_int_equal(read_all(&source, 1 << 20, &matches, &err), -EBADMSG);
    int code = 0;
    assert_int_equal(pack_stream_failed_member(stream, &code), 3);
    assert_int_equal(code, -EBADMSG);
    pack_stream_close(stream);

    assert_int_equal(unlink(path), 0);
    stream = open_stream(f, hex, &total);
    pack_stream_source(stream, "p", &source);
    assert_int_equal(read_all(&source, 1 << 20, &matches, &err), -ENOENT);
    assert_int_equal(pack_stream_failed_member(stream, &code), 3);
    assert_int_equal(code, -ENOENT);
    pack_stream_close(stream);
}

/* Reads out of order are served (a multipart worker sends its part from
 * where it starts), but such a reader checked nothing and says so. */
static void a_reader_that_skipped_does_not_vouch_for_the_pack(void **state)
{
    struct fixture *f = *state;
    char hex[MEMBERS][IO_SHA256_HEX] = {{0}};
    int64_t total;
    struct pack_stream *stream = open_stream(f, hex, &total);
    struct target_source source;
    pack_stream_source(stream, "p", &source);
    struct error err = {0};
    void *reader = NULL;
    unsigned char byte;
    assert_int_equal(source.open_reader(source.context, &reader, &err), 0);
    /* Nor does one that read nothing, or stopped halfway. */
    assert_int_equal(source.check(reader, &err), -EIO);
    assert_int_equal(source.read(reader, &byte, 1, 0, &err), 0);
    assert_int_equal(source.check(reader, &err), -EIO);
    source.close_reader(reader);
    assert_int_equal(source.open_reader(source.context, &reader, &err), 0);
    assert_int_equal(source.read(reader, &byte, 1, 1000 + 5, &err), 0);
    assert_int_equal(byte, member_byte(1, 5));
    assert_int_equal(files_in(f->stage), 1); /* its window */
    assert_int_equal(source.read(reader, &byte, 1, 0, &err), 0);
    assert_int_equal(byte, member_byte(0, 0));
    assert_int_equal(source.check(reader, &err), -EIO);
    assert_non_null(strstr(err.message, "not all read in order"));
    assert_int_not_equal(source.read(reader, &byte, 1, total, &err), 0); /* past the end */
    source.close_reader(reader);
    assert_int_equal(files_in(f->stage), 0);
    pack_stream_close(stream);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(the_pack_is_its_members_in_order_and_checked, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_changed_member_is_named_and_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(a_member_cut_short_or_gone_is_named, setup, teardown),
        cmocka_unit_test_setup_teardown(a_reader_that_skipped_does_not_vouch_for_the_pack, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
