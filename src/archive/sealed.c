/*
 * sealed.c: encrypting archives and replica objects to their recipients
 * (sealed.h), on OpenSSL through crypto/age.h.
 *
 * Buffers are sealed and opened in one go; files are sealed as they are
 * read (sealed_view.c) and opened by archive_decompress.
 */
#include "archive/sealed.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
