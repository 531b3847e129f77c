/*
 * sealed.c: encrypting archives and replica objects to their recipients
 * (sealed.h), on OpenSSL through crypto/age.h.
 *
 * A file is sealed in one streaming pass: read 1 MiB, encrypt it, write the
 * chunks out, hash them as written. The output is a new file that is
 * removed on any failure, so a half-sealed object never survives a call.
 */
#include "archive/sealed.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fsutil.h"

#define SEALED_PIECE_BYTES (1024 * 1024)

static const char age_magic[] = "age-encryption.org/v1\n";
static const char armor_magic[] = "-----BEGIN AGE ENCRYPTED FILE-----";

bool sealed_is_age(const unsigned char *head, size_t size)
{
    size_t binary = sizeof age_magic - 1, armored = sizeof armor_magic - 1;
    if (size >= binary && memcmp(head, age_magic, binary) == 0)
        return true;
    size_t start = 0;
    while (start < size && (head[start] == ' ' || head[start] == '\t' || head[start] == '\r' ||
                            head[start] == '\n'))
        start++;
    return size - start >= armored && memcmp(head + start, armor_magic, armored) == 0;
}

/* The sealed file as it is written: hashed and counted on the way. */
struct seal_output {
    int fd;
    const char *path;
    struct io_sha256 digest;
    int64_t bytes;
};

static int seal_write(void *context, const unsigned char *data, size_t size, struct error *err)
{
    struct seal_output *output = context;
    int rc = io_write_full(output->fd, data, size);
    if (rc < 0)
        return error_set(err, rc, "cannot write %s: %s", output->path, strerror(-rc));
    io_sha256_update(&output->digest, data, size);
    output->bytes += (int64_t)size;
    return 0;
}

static int seal_stream(int in, const char *source, struct seal_output *output,
                       const struct sealed_recipients *recipients, const struct io_context *io,
                       int64_t *input_bytes, struct error *err)
{
    struct age_encryptor *encryptor = NULL;
    unsigned char *piece = malloc(SEALED_PIECE_BYTES);
    int rc = piece ? 0 : error_set(err, -ENOMEM, "cannot encrypt %s: out of memory", source);
    if (rc == 0)
        rc = age_encryptor_new(recipients->items, recipients->count, seal_write, output,
                               &encryptor, err);
    while (rc == 0) {
        if (io_stopped(io)) {
            rc = error_set(err, -ECANCELED, "encrypting %s was cancelled", source);
            break;
        }
        ssize_t got = io_read_full(in, piece, SEALED_PIECE_BYTES);
        if (got < 0) {
            rc = error_set(err, (int)got, "cannot read %s: %s", source, strerror((int)-got));
            break;
        }
        if (got == 0) {
            rc = age_encrypt_finish(encryptor, err);
            break;
        }
        *input_bytes += got;
        rc = age_encrypt_update(encryptor, piece, (size_t)got, err);
    }
    age_encryptor_free(encryptor);
    free(piece);
    return rc;
}

int sealed_seal_file(const char *source, const char *destination,
                     const struct sealed_recipients *recipients, bool durable,
                     const struct io_context *io, struct archive_result *result,
                     struct error *err)
{
    struct archive_result local = {0};
    struct seal_output output = {.fd = -1, .path = destination};
    if (!recipients || recipients->count == 0)
        return error_set(err, -EINVAL, "cannot encrypt %s: no recipients", source);
    int in = fs_open_regular(source, "a regular file", err);
    if (in < 0)
        return in;
    int rc = io_sha256_begin(&output.digest) == 0
                 ? 0
                 : error_set(err, -ENOMEM, "cannot hash %s: out of memory", destination);
    if (rc == 0) {
        output.fd = open(destination, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (output.fd < 0)
            rc = error_set(err, -errno, "cannot create %s: %s", destination, strerror(errno));
    }
    bool created = rc == 0;
    if (rc == 0)
        rc = seal_stream(in, source, &output, recipients, io, &local.input_bytes, err);
    if (rc == 0 && durable && fsync(output.fd) != 0)
        rc = error_set(err, -errno, "cannot sync %s: %s", destination, strerror(errno));
    if (output.fd >= 0 && close(output.fd) != 0 && rc == 0)
        rc = error_set(err, -errno, "cannot write %s: %s", destination, strerror(errno));
    close(in);
    if (rc == 0) {
        io_sha256_end(&output.digest, local.sha256);
        local.output_bytes = output.bytes;
        if (result)
            *result = local;
    } else {
        io_sha256_discard(&output.digest);
        if (created)
            unlink(destination);
    }
    return rc;
}

/* A growing buffer as an age sink. */
struct memory_sink {
    unsigned char *data;
    size_t size, capacity;
};

static int memory_take(void *context, const unsigned char *data, size_t size, struct error *err)
{
    struct memory_sink *sink = context;
    if (sink->capacity - sink->size < size) {
        size_t capacity = (sink->size + size) * 2;
        unsigned char *grown = realloc(sink->data, capacity);
        if (!grown)
            return error_set(err, -ENOMEM, "out of memory");
        sink->data = grown;
        sink->capacity = capacity;
    }
    memcpy(sink->data + sink->size, data, size);
    sink->size += size;
    return 0;
}

int sealed_seal_buffer(const void *data, size_t size, const struct sealed_recipients *recipients,
                       unsigned char **out, size_t *out_size, struct error *err)
{
    struct age_encryptor *encryptor = NULL;
    struct memory_sink sink = {0};
    *out = NULL;
    *out_size = 0;
    if (!recipients || recipients->count == 0)
        return error_set(err, -EINVAL, "cannot encrypt: no recipients");
    /* The header is a few hundred bytes; each chunk adds its tag. */
    sink.capacity = size + (size / AGE_CHUNK_SIZE + 1) * AGE_TAG_SIZE + 1024;
    sink.data = malloc(sink.capacity);
    int rc = sink.data ? 0 : error_set(err, -ENOMEM, "cannot encrypt: out of memory");
    if (rc == 0)
        rc = age_encryptor_new(recipients->items, recipients->count, memory_take, &sink,
                               &encryptor, err);
    if (rc == 0)
        rc = age_encrypt_update(encryptor, data, size, err);
    if (rc == 0)
        rc = age_encrypt_finish(encryptor, err);
    age_encryptor_free(encryptor);
    if (rc != 0) {
        free(sink.data);
        return rc;
    }
    *out = sink.data;
    *out_size = sink.size;
    return 0;
}

int sealed_open_buffer(const void *data, size_t size, const struct archive_keys *keys,
                       const char *object, unsigned char **out, size_t *out_size,
                       struct error *err)
{
    struct age_decryptor *decryptor = NULL;
    struct memory_sink sink = {0};
    *out = NULL;
    *out_size = 0;
    if (!keys || keys->count == 0)
        return error_set(err, -ENOKEY,
                         "%s is encrypted (age-encryption.org/v1): give the identity that opens "
                         "it with --identity FILE, or encrypt.identity in the configuration",
                         object);
    int rc = age_decryptor_new(keys->identities, keys->count, object, memory_take, &sink,
                               &decryptor, err);
    if (rc == 0)
        rc = age_decrypt_update(decryptor, data, size, err);
    if (rc == 0)
        rc = age_decrypt_finish(decryptor, err);
    age_decryptor_free(decryptor);
    if (rc != 0) {
        if (sink.data)
            memset(sink.data, 0, sink.size);
        free(sink.data);
        return rc;
    }
    if (!sink.data)
        sink.data = malloc(1); /* the empty plaintext is still an answer */
    if (!sink.data)
        return error_set(err, -ENOMEM, "%s: out of memory", object);
    *out = sink.data;
    *out_size = sink.size;
    return 0;
}

void sealed_describe_recipients(const struct sealed_recipients *recipients, char *out,
                                size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < recipients->count; i++) {
        char text[AGE_RECIPIENT_TEXT];
        age_recipient_format(&recipients->items[i], text);
        int written = snprintf(out + used, size - used, "%s%s", i ? ", " : "", text);
        if (written < 0 || (size_t)written >= size - used) {
            if (size > 4)
                snprintf(out + (used < size - 4 ? used : size - 4), 4, "...");
            return;
        }
        used += (size_t)written;
    }
}
