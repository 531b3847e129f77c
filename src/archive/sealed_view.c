/*
 * sealed_view.c: a plain file read as its age encryption (sealed.h), for
 * uploads that seal on the way instead of into a temp copy.
 *
 * The age format makes this possible: after the header, chunk i of the
 * payload is the encryption of plaintext bytes [i * 64 KiB, (i + 1) * 64
 * KiB) under a nonce made of i and a last-chunk flag, followed by its
 * 16-byte tag. So sealed byte n maps to one chunk, which is encrypted from
 * the plain file on demand, independently of every other chunk. A reader
 * keeps the last chunk it encrypted, because callers (curl, hashing) read
 * in pieces that do not fall on chunk boundaries.
 */
#include "archive/sealed.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "core/io.h"

#define SEALED_CHUNK_BYTES (AGE_CHUNK_SIZE + AGE_TAG_SIZE)

struct sealed_view {
    int fd;
    char *path;
    int64_t plain_size;
    uint64_t chunks; /* at least 1: the empty file has one empty chunk */
    struct age_encryptor *encryptor;
    const unsigned char *prefix; /* header and payload nonce */
    size_t prefix_size;
    char expected_plain[IO_SHA256_HEX]; /* "" when nothing is checked */
};

struct sealed_view_reader {
    struct sealed_view *view;
    uint64_t cached; /* the chunk in `sealed`, UINT64_MAX for none */
    size_t cached_size;
    /* The plaintext's SHA-256 over chunks 0 .. plain_chunks - 1, read in
     * order (with an expected hash only). */
    struct io_sha256 plain_hash;
    uint64_t plain_chunks;
    bool out_of_order;
    unsigned char plain[AGE_CHUNK_SIZE];
    unsigned char sealed[SEALED_CHUNK_BYTES];
};

int sealed_view_open(const char *path, const struct sealed_recipients *recipients,
                     struct sealed_view **view, struct error *err)
{
    struct stat st;
    *view = NULL;
    if (!recipients || recipients->count == 0)
        return error_set(err, -EINVAL, "cannot encrypt %s: no recipients", path);
    struct sealed_view *v = calloc(1, sizeof *v);
    if (!v || !(v->path = strdup(path))) {
        free(v);
        return error_set(err, -ENOMEM, "cannot encrypt %s: out of memory", path);
    }
    v->fd = fs_open_regular(path, "a regular file", err);
    int rc = v->fd < 0 ? v->fd : 0;
    if (rc == 0 && fstat(v->fd, &st) != 0)
        rc = error_set(err, -errno, "cannot read %s: %s", path, strerror(errno));
    if (rc == 0)
        rc =
            age_encryptor_new(recipients->items, recipients->count, NULL, NULL, &v->encryptor, err);
    if (rc != 0) {
        sealed_view_close(v);
        return rc;
    }
    v->plain_size = (int64_t)st.st_size;
    v->chunks = st.st_size == 0 ? 1 : ((uint64_t)st.st_size + AGE_CHUNK_SIZE - 1) / AGE_CHUNK_SIZE;
    v->prefix = age_encryptor_prefix(v->encryptor, &v->prefix_size);
    *view = v;
    return 0;
}

int64_t sealed_view_size(const struct sealed_view *view)
{
    return (int64_t)view->prefix_size + view->plain_size + (int64_t)(view->chunks * AGE_TAG_SIZE);
}

void sealed_view_expect_plain(struct sealed_view *view, const char *plain_sha256)
{
    snprintf(view->expected_plain, sizeof view->expected_plain, "%s", plain_sha256);
}

void sealed_view_close(struct sealed_view *view)
{
    if (!view)
        return;
    if (view->fd >= 0)
        close(view->fd);
    age_encryptor_free(view->encryptor);
    free(view->path);
    free(view);
}

int sealed_view_reader_open(struct sealed_view *view, struct sealed_view_reader **reader,
                            struct error *err)
{
    *reader = calloc(1, sizeof **reader);
    if (!*reader || (view->expected_plain[0] && io_sha256_begin(&(*reader)->plain_hash) != 0)) {
        free(*reader);
        *reader = NULL;
        return error_set(err, -ENOMEM, "cannot encrypt %s: out of memory", view->path);
    }
    (*reader)->view = view;
    (*reader)->cached = UINT64_MAX;
    return 0;
}

void sealed_view_reader_close(struct sealed_view_reader *reader)
{
    if (!reader)
        return;
    /* The plaintext of the last chunk read is the archive's. */
    memset(reader->plain, 0, sizeof reader->plain);
    io_sha256_discard(&reader->plain_hash);
    free(reader);
}

int sealed_view_reader_check(struct sealed_view_reader *reader, struct error *err)
{
    const struct sealed_view *view = reader->view;
    char found[IO_SHA256_HEX];
    if (!view->expected_plain[0])
        return 0;
    if (reader->out_of_order || reader->plain_chunks != view->chunks)
        return error_set(err, -EINVAL, "%s: its encryption was not read whole and in order",
                         view->path);
    io_sha256_end(&reader->plain_hash, found);
    if (strcmp(found, view->expected_plain) != 0)
        return error_set(err, -EBADMSG,
                         "%s changed or is corrupt (sha256 %s, the manifest says %s); upload "
                         "abandoned",
                         view->path, found, view->expected_plain);
    return 0;
}

/* Plaintext bytes in chunk `index`: 64 KiB but for the last one. */
static size_t chunk_plain_size(const struct sealed_view *view, uint64_t index)
{
    int64_t left = view->plain_size - (int64_t)(index * AGE_CHUNK_SIZE);
    return left < AGE_CHUNK_SIZE ? (size_t)left : AGE_CHUNK_SIZE;
}

/* Encrypts chunk `index` into `out` (its size + AGE_TAG_SIZE bytes). */
static int seal_chunk(struct sealed_view_reader *reader, uint64_t index, unsigned char *out,
                      size_t *sealed_size, struct error *err)
{
    const struct sealed_view *view = reader->view;
    size_t size = chunk_plain_size(view, index);
    int rc = io_pread_full(view->fd, reader->plain, size, (int64_t)(index * AGE_CHUNK_SIZE));
    if (rc != 0)
        return error_set(err, rc, "cannot read %s: %s", view->path,
                         rc == -ENODATA ? "it shrank while it was being encrypted" : strerror(-rc));
    if (view->expected_plain[0]) {
        if (index == reader->plain_chunks) {
            io_sha256_update(&reader->plain_hash, reader->plain, size);
            reader->plain_chunks++;
        } else if (index > reader->plain_chunks) {
            reader->out_of_order = true;
        }
    }
    rc = age_encrypt_chunk(view->encryptor, index, index + 1 == view->chunks, reader->plain, size,
                           out, err);
    *sealed_size = size + AGE_TAG_SIZE;
    return rc;
}

int sealed_view_read(struct sealed_view_reader *reader, unsigned char *buffer, size_t length,
                     int64_t offset, struct error *err)
{
    const struct sealed_view *view = reader->view;
    if (offset < 0 || length > (uint64_t)(sealed_view_size(view) - offset))
        return error_set(err, -EINVAL, "%s: read of %zu bytes at %lld is past the end", view->path,
                         length, (long long)offset);
    while (length > 0) {
        size_t take;
        if ((uint64_t)offset < view->prefix_size) {
            take = view->prefix_size - (size_t)offset;
            take = take < length ? take : length;
            memcpy(buffer, view->prefix + offset, take);
        } else {
            uint64_t payload = (uint64_t)offset - view->prefix_size;
            uint64_t index = payload / SEALED_CHUNK_BYTES;
            size_t within = (size_t)(payload % SEALED_CHUNK_BYTES), sealed_size;
            if (within == 0 && length >= chunk_plain_size(view, index) + AGE_TAG_SIZE &&
                index != reader->cached) {
                /* A whole chunk wanted: straight into the caller's buffer. */
                int rc = seal_chunk(reader, index, buffer, &sealed_size, err);
                if (rc != 0)
                    return rc;
                take = sealed_size;
            } else {
                if (index != reader->cached) {
                    reader->cached = UINT64_MAX;
                    int rc = seal_chunk(reader, index, reader->sealed, &reader->cached_size, err);
                    if (rc != 0)
                        return rc;
                    reader->cached = index;
                }
                take = reader->cached_size - within;
                take = take < length ? take : length;
                memcpy(buffer, reader->sealed + within, take);
            }
        }
        buffer += take;
        offset += (int64_t)take;
        length -= take;
    }
    return 0;
}
