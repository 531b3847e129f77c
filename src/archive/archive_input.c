/*
 * archive_input.c: the bytes decompression reads, decrypted on the way when
 * the archive is an age file (archive_internal.h).
 *
 * The stored file is read in 64 KiB pieces and hashed as stored; for an age
 * file each piece goes through the decryptor, whose verified chunks queue
 * here until the decoder takes them. Memory: one piece and about two
 * chunks of plaintext, whatever the file size.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive/archive_internal.h"
#include "archive/sealed.h"

#define INPUT_PIECE_BYTES (64 * 1024)

static int input_take_plain(void *context, const unsigned char *data, size_t size,
                            struct error *err)
{
    struct archive_input *input = context;
    if (input->plain_start == input->plain_end)
        input->plain_start = input->plain_end = 0;
    if (input->plain_capacity - input->plain_end < size) {
        /* Move what is left to the front before growing. */
        size_t left = input->plain_end - input->plain_start;
        if (left)
            memmove(input->plain, input->plain + input->plain_start, left);
        input->plain_start = 0;
        input->plain_end = left;
        if (input->plain_capacity - left < size) {
            size_t capacity = left + size + AGE_CHUNK_SIZE;
            unsigned char *grown = realloc(input->plain, capacity);
            if (!grown)
                return error_set(err, -ENOMEM, "%s: out of memory", input->name);
            input->plain = grown;
            input->plain_capacity = capacity;
        }
    }
    memcpy(input->plain + input->plain_end, data, size);
    input->plain_end += size;
    return 0;
}

int archive_input_open(struct archive_input *input, int fd, const char *name,
                       struct io_sha256 *digest, const struct archive_keys *keys,
                       struct error *err)
{
    *input = (struct archive_input){.fd = fd, .name = name, .digest = digest};
    unsigned char head[SEALED_MAGIC_PEEK];
    ssize_t got = pread(fd, head, sizeof head, 0);
    if (got < 0)
        return error_set(err, -errno, "cannot read %s: %s", name, strerror(errno));
    if (!sealed_is_age(head, (size_t)got))
        return 0;
    if (!keys || keys->count == 0)
        return error_set(err, -ENOKEY,
                         "%s is encrypted (age-encryption.org/v1): give the identity that opens "
                         "it with --identity FILE, or encrypt.identity in the configuration",
                         keys && keys->object ? keys->object : name);
    input->raw = malloc(INPUT_PIECE_BYTES);
    if (!input->raw)
        return error_set(err, -ENOMEM, "%s: out of memory", name);
    return age_decryptor_new(keys->identities, keys->count, keys->object ? keys->object : name,
                             input_take_plain, input, &input->decryptor, err);
}

bool archive_input_sealed(const struct archive_input *input)
{
    return input->decryptor != NULL;
}

/* Reads one piece of the stored file: through the decryptor when sealed. */
static ssize_t input_read_stored(struct archive_input *input, void *buffer, size_t size,
                                 struct error *err)
{
    ssize_t got = io_read_full(input->fd, buffer, size);
    if (got < 0)
        return error_set(err, (int)got, "cannot read %s: %s", input->name, strerror((int)-got));
    if (got > 0 && input->digest)
        io_sha256_update(input->digest, buffer, (size_t)got);
    input->stored_bytes += got;
    return got;
}

/* Until plaintext is queued or the end is reached and checked. */
static int input_fill(struct archive_input *input, size_t want, struct error *err)
{
    while (input->plain_end - input->plain_start < want && !input->at_end) {
        ssize_t got = input_read_stored(input, input->raw, INPUT_PIECE_BYTES, err);
        if (got < 0)
            return (int)got;
        int rc = got > 0 ? age_decrypt_update(input->decryptor, input->raw, (size_t)got, err)
                         : age_decrypt_finish(input->decryptor, err);
        if (rc != 0)
            return rc;
        input->at_end = got == 0;
    }
    return 0;
}

ssize_t archive_input_read(struct archive_input *input, void *buffer, size_t size,
                           struct error *err)
{
    if (!input->decryptor) {
        ssize_t got = input_read_stored(input, buffer, size, err);
        input->at_end = got == 0;
        return got;
    }
    int rc = input_fill(input, 1, err);
    if (rc != 0)
        return rc;
    size_t available = input->plain_end - input->plain_start;
    size_t take = available < size ? available : size;
    memcpy(buffer, input->plain + input->plain_start, take);
    input->plain_start += take;
    return (ssize_t)take;
}

int archive_input_peek(struct archive_input *input, void *buffer, size_t size, bool *have,
                       struct error *err)
{
    *have = false;
    if (!input->decryptor) {
        *have = pread(input->fd, buffer, size, 0) == (ssize_t)size;
        return 0;
    }
    int rc = input_fill(input, size, err);
    if (rc == 0 && input->plain_end - input->plain_start >= size) {
        memcpy(buffer, input->plain + input->plain_start, size);
        *have = true;
    }
    return rc;
}

void archive_input_close(struct archive_input *input)
{
    age_decryptor_free(input->decryptor);
    free(input->raw);
    free(input->plain);
    input->decryptor = NULL;
    input->raw = input->plain = NULL;
}
