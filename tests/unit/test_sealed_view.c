/*
 * test_sealed_view.c: src/archive/sealed_view.c, a plain file read as its
 * age encryption, as an upload reads it: in pieces of any size, from
 * several readers at any offset, each reading the same bytes, which decrypt
 * to the file (here with our decryptor; with the age tool in
 * tests/integration/test_encrypt.py). Files round the 64 KiB chunk, the
 * empty file, a file that shrinks under the view, and what is no file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive/sealed.h"
#include "core/io.h"

struct fixture {
    char root[64];
    char path[128];
    struct age_identity identity;
    struct age_recipient recipient;
    struct sealed_recipients recipients;
};

static int set_up(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    struct error err = {0};
    snprintf(f->root, sizeof f->root, "/tmp/test_sealed_view.XXXXXX");
    if (!mkdtemp(f->root))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/app.db.gz", f->root);
    if (age_identity_generate(&f->identity, &err) != 0)
        return -1;
    age_identity_recipient(&f->identity, &f->recipient);
    f->recipients = (struct sealed_recipients){&f->recipient, 1};
    *state = f;
    return 0;
}

static int tear_down(void **state)
{
    struct fixture *f = *state;
    unlink(f->path);
    rmdir(f->root);
    free(f);
    return 0;
}

static unsigned char *write_file(const char *path, size_t size, unsigned seed)
{
    unsigned char *data = malloc(size ? size : 1);
    srand(seed);
    for (size_t i = 0; i < size; i++)
        data[i] = (unsigned char)rand();
    FILE *file = fopen(path, "wb");
    assert_non_null(file);
    assert_int_equal(fwrite(data, 1, size, file), size);
    fclose(file);
    return data;
}

/* The whole view, read front to back in pieces of random sizes (1 byte to
 * 300 KiB: within a chunk, across several, and every boundary between). */
static unsigned char *read_in_pieces(struct sealed_view *view, unsigned seed)
{
    size_t size = (size_t)sealed_view_size(view);
    unsigned char *out = malloc(size);
    struct sealed_view_reader *reader = NULL;
    struct error err = {0};
    assert_int_equal(sealed_view_reader_open(view, &reader, &err), 0);
    srand(seed);
    for (size_t at = 0; at < size;) {
        size_t piece = 1 + (size_t)rand() % (rand() % 2 ? 300 * 1024 : 100);
        if (piece > size - at)
            piece = size - at;
        assert_int_equal(sealed_view_read(reader, out + at, piece, (int64_t)at, &err), 0);
        at += piece;
    }
    sealed_view_reader_close(reader);
    return out;
}

struct plain {
    unsigned char *data;
    size_t size;
};

static int collect(void *context, const unsigned char *data, size_t size, struct error *err)
{
    (void)err;
    struct plain *p = context;
    p->data = realloc(p->data, p->size + size + 1);
    memcpy(p->data + p->size, data, size);
    p->size += size;
    return 0;
}

static void the_view_decrypts_to_the_file_at_every_size(void **state)
{
    struct fixture *f = *state;
    const size_t sizes[] = {0, 1, 100, 65535, 65536, 65537, 131072, 3 * 65536 + 17, 1000000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        struct sealed_view *view = NULL;
        struct error err = {0};
        unsigned char *data = write_file(f->path, sizes[i], (unsigned)i);
        assert_int_equal(sealed_view_open(f->path, &f->recipients, &view, &err), 0);
        size_t chunks = sizes[i] == 0 ? 1 : (sizes[i] + 65535) / 65536;
        size_t size = (size_t)sealed_view_size(view);
        unsigned char *first = read_in_pieces(view, 1);
        /* Header, then every chunk and its tag: what age itself writes. */
        assert_memory_equal(first, "age-encryption.org/v1\n-> X25519 ", 32);
        const unsigned char *mac = memmem(first, size, "\n--- ", 5);
        assert_non_null(mac);
        size_t header = (size_t)(mac - first) + 5 + 43 + 1 + 16; /* MAC, LF, nonce */
        assert_int_equal(size, header + sizes[i] + chunks * 16);

        /* Another reader, other pieces: the same bytes. */
        unsigned char *second = read_in_pieces(view, 2);
        assert_memory_equal(first, second, size);

        /* Random ranges, each through a fresh reader. */
        srand(7);
        for (int n = 0; n < 50; n++) {
            struct sealed_view_reader *reader = NULL;
            size_t at = (size_t)rand() % size, length = (size_t)rand() % (size - at + 1);
            unsigned char *piece = malloc(length + 1);
            assert_int_equal(sealed_view_reader_open(view, &reader, &err), 0);
            assert_int_equal(sealed_view_read(reader, piece, length, (int64_t)at, &err), 0);
            assert_memory_equal(piece, first + at, length);
            sealed_view_reader_close(reader);
            free(piece);
        }

        struct plain plain = {0};
        struct age_decryptor *decryptor = NULL;
        assert_int_equal(
            age_decryptor_new(&f->identity, 1, "view", collect, &plain, &decryptor, &err), 0);
        assert_int_equal(age_decrypt_update(decryptor, first, size, &err), 0);
        assert_int_equal(age_decrypt_finish(decryptor, &err), 0);
        age_decryptor_free(decryptor);
        assert_int_equal(plain.size, sizes[i]);
        if (sizes[i])
            assert_memory_equal(plain.data, data, sizes[i]);
        free(plain.data);
        free(first);
        free(second);
        free(data);
        sealed_view_close(view);
    }
}

static void two_views_of_one_file_differ(void **state)
{
    struct fixture *f = *state;
    struct sealed_view *a = NULL, *b = NULL;
    struct error err = {0};
    free(write_file(f->path, 70000, 3));
    assert_int_equal(sealed_view_open(f->path, &f->recipients, &a, &err), 0);
    assert_int_equal(sealed_view_open(f->path, &f->recipients, &b, &err), 0);
    unsigned char *x = read_in_pieces(a, 1), *y = read_in_pieces(b, 1);
    /* A fresh file key each time: never the same ciphertext twice. */
    assert_int_equal(sealed_view_size(a), sealed_view_size(b));
    assert_memory_not_equal(x, y, (size_t)sealed_view_size(a));
    free(x);
    free(y);
    sealed_view_close(a);
    sealed_view_close(b);
}

static void a_file_that_shrinks_fails_the_read(void **state)
{
    struct fixture *f = *state;
    struct sealed_view *view = NULL;
    struct sealed_view_reader *reader = NULL;
    struct error err = {0};
    unsigned char buffer[4096];
    free(write_file(f->path, 200000, 4));
    assert_int_equal(sealed_view_open(f->path, &f->recipients, &view, &err), 0);
    assert_int_equal(truncate(f->path, 100000), 0);
    assert_int_equal(sealed_view_reader_open(view, &reader, &err), 0);
    int64_t end = sealed_view_size(view);
    assert_int_equal(sealed_view_read(reader, buffer, sizeof buffer, end - 4096, &err), -ENODATA);
    assert_non_null(strstr(err.message, f->path));
    assert_non_null(strstr(err.message, "shrank"));
    /* Past the end is the caller's mistake, named as such. */
    assert_int_equal(sealed_view_read(reader, buffer, 2, end - 1, &err), -EINVAL);
    sealed_view_reader_close(reader);
    sealed_view_close(view);
}

/* Reads the whole view in order through one reader and returns its check. */
static int read_and_check(struct sealed_view *view, const char *change_path, struct error *err)
{
    size_t size = (size_t)sealed_view_size(view);
    unsigned char *out = malloc(size);
    struct sealed_view_reader *reader = NULL;
    assert_int_equal(sealed_view_reader_open(view, &reader, err), 0);
    for (size_t at = 0; at < size;) {
        size_t piece = size - at < 100000 ? size - at : 100000;
        if (change_path && at >= size / 2) {
            /* Same size, other bytes: what a damaged or overwritten file is. */
            free(write_file(change_path, 300000, 99));
            change_path = NULL;
        }
        assert_int_equal(sealed_view_read(reader, out + at, piece, (int64_t)at, err), 0);
        at += piece;
    }
    int rc = sealed_view_reader_check(reader, err);
    sealed_view_reader_close(reader);
    free(out);
    return rc;
}

static char *sha256_hex_of(const unsigned char *data, size_t size)
{
    static char hex[IO_SHA256_HEX];
    io_sha256_buffer(data, size, hex);
    return hex;
}

/* The plaintext an upload sealed is checked against the archive's
 * manifest: the sealed object's own hash cannot tell a changed file. */
static void the_plaintext_read_is_checked_against_its_manifest(void **state)
{
    struct fixture *f = *state;
    struct sealed_view *view = NULL;
    struct error err = {0};
    unsigned char *data = write_file(f->path, 300000, 5);
    char expected[IO_SHA256_HEX];
    snprintf(expected, sizeof expected, "%s", sha256_hex_of(data, 300000));
    free(data);

    assert_int_equal(sealed_view_open(f->path, &f->recipients, &view, &err), 0);
    sealed_view_expect_plain(view, expected);
    assert_int_equal(read_and_check(view, NULL, &err), 0);
    /* The file changes halfway through the read: refused, both hashes named. */
    assert_int_equal(read_and_check(view, f->path, &err), -EBADMSG);
    assert_non_null(strstr(err.message, f->path));
    assert_non_null(strstr(err.message, expected));
    assert_non_null(strstr(err.message, "changed or is corrupt"));
    sealed_view_close(view);

    /* Read out of order (a part's reader): it cannot vouch for the whole. */
    assert_int_equal(sealed_view_open(f->path, &f->recipients, &view, &err), 0);
    sealed_view_expect_plain(view, expected);
    struct sealed_view_reader *reader = NULL;
    unsigned char buffer[4096];
    assert_int_equal(sealed_view_reader_open(view, &reader, &err), 0);
    assert_int_equal(sealed_view_read(reader, buffer, sizeof buffer, 200000, &err), 0);
    assert_int_equal(sealed_view_reader_check(reader, &err), -EINVAL);
    sealed_view_reader_close(reader);
    sealed_view_close(view);
}

static void what_is_not_a_regular_file_is_refused(void **state)
{
    struct fixture *f = *state;
    struct sealed_view *view = NULL;
    struct error err = {0};
    char fifo[160];
    snprintf(fifo, sizeof fifo, "%s/fifo", f->root);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    /* Refused at once, without waiting for a writer. */
    assert_true(sealed_view_open(fifo, &f->recipients, &view, &err) < 0);
    assert_null(view);
    assert_non_null(strstr(err.message, fifo));
    unlink(fifo);
    assert_true(sealed_view_open(f->root, &f->recipients, &view, &err) < 0);
    assert_true(sealed_view_open("/nonexistent/app.db.gz", &f->recipients, &view, &err) < 0);
    assert_non_null(strstr(err.message, "/nonexistent/app.db.gz"));
    struct sealed_recipients none = {NULL, 0};
    assert_int_equal(sealed_view_open(f->path, &none, &view, &err), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(the_view_decrypts_to_the_file_at_every_size, set_up,
                                        tear_down),
        cmocka_unit_test_setup_teardown(two_views_of_one_file_differ, set_up, tear_down),
        cmocka_unit_test_setup_teardown(a_file_that_shrinks_fails_the_read, set_up, tear_down),
        cmocka_unit_test_setup_teardown(what_is_not_a_regular_file_is_refused, set_up, tear_down),
        cmocka_unit_test_setup_teardown(the_plaintext_read_is_checked_against_its_manifest, set_up,
                                        tear_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
