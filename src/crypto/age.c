/*
 * age.c: writing the age v1 file format: the header (X25519 recipient
 * stanzas and its MAC) and the STREAM payload (ChaCha20-Poly1305 in 64 KiB
 * chunks, the last one flagged), streamed with bounded memory or chunk by
 * chunk; and the derivations both directions share.
 *
 * Not for reading files (age_decrypt.c), keys as text or identity files
 * (age_keys.c), nor the EVP calls themselves (age_primitives.c). Section
 * names in comments refer to c2sp.org/age.
 */
#include "crypto/age.h"

#include <assert.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/age_internal.h"

/* ---- shared between the directions --------------------------------------- */

/* Section "Payload": 11-byte big-endian counter, then 0x01 on the final chunk. */
void age_chunk_nonce(uint64_t index, bool last, unsigned char nonce[12])
{
    memset(nonce, 0, 12);
    for (int i = 0; i < 8; i++)
        nonce[10 - i] = (unsigned char)(index >> (8 * i));
    nonce[11] = last ? 1 : 0;
}

int age_header_mac(const unsigned char file_key[AGE_FILE_KEY_SIZE], const unsigned char *header,
                   size_t size, unsigned char mac[AGE_MAC_SIZE], struct error *err)
{
    unsigned char key[32];
    size_t mac_size = 0;
    int rc = age_hkdf(file_key, AGE_FILE_KEY_SIZE, NULL, 0, "header", key, err);
    if (rc == 0 && (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, sizeof key, header, size,
                               mac, AGE_MAC_SIZE, &mac_size) ||
                    mac_size != AGE_MAC_SIZE))
        rc = error_set(err, -EIO, "HMAC-SHA-256 failed in OpenSSL");
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}

int age_payload_key(const unsigned char file_key[AGE_FILE_KEY_SIZE],
                    const unsigned char nonce[AGE_NONCE_SIZE], unsigned char key[32],
                    struct error *err)
{
    return age_hkdf(file_key, AGE_FILE_KEY_SIZE, nonce, AGE_NONCE_SIZE, "payload", key, err);
}

/* ---- encryption ---------------------------------------------------------- */

struct age_encryptor {
    unsigned char payload_key[32];
    unsigned char *prefix; /* header and payload nonce */
    size_t prefix_size;
    age_sink_fn sink;
    void *context;
    EVP_CIPHER_CTX *cipher;
    uint64_t index;  /* of the chunk being filled */
    size_t buffered; /* plaintext bytes in `plain` */
    bool prefix_sent, finished, failed;
    unsigned char plain[AGE_CHUNK_SIZE];
    unsigned char sealed[AGE_SEALED_CHUNK];
};

/* Section "X25519 recipient stanza": a fresh ephemeral key per stanza. */
static int age_write_x25519_stanza(const struct age_recipient *recipient,
                                   const unsigned char file_key[AGE_FILE_KEY_SIZE], char *out,
                                   size_t out_size, size_t *length, struct error *err)
{
    unsigned char ephemeral[32], share[32], shared[32], salt[64], wrap_key[32];
    unsigned char body[AGE_FILE_KEY_SIZE + AGE_TAG_SIZE], nonce[12] = {0};
    char share_text[48], body_text[48];
    int rc = error_set(err, -EIO,
                       "cannot generate an ephemeral key: OpenSSL's random "
                       "generator failed");
    if (RAND_bytes(ephemeral, sizeof ephemeral) != 1)
        goto out;
    if ((rc = age_x25519_public(ephemeral, share, err)) != 0)
        goto out;
    if ((rc = age_x25519(ephemeral, recipient->public_key, shared, err)) != 0) {
        char text[AGE_RECIPIENT_TEXT];
        age_recipient_format(recipient, text);
        rc = error_set(err, -EINVAL, "recipient %s is not a usable X25519 public key (%s)", text,
                       err ? err->message : "low-order point");
        goto out;
    }
    memcpy(salt, share, 32);
    memcpy(salt + 32, recipient->public_key, 32);
    if ((rc = age_hkdf(shared, 32, salt, sizeof salt, AGE_X25519_INFO, wrap_key, err)) != 0)
        goto out;
    if ((rc = age_aead_seal(NULL, wrap_key, nonce, file_key, AGE_FILE_KEY_SIZE, body, err)) != 0)
        goto out;
    age_base64_encode(share, sizeof share, share_text);
    age_base64_encode(body, sizeof body, body_text);
    /* Both encodings are 43 characters, under the 64-column wrap: the body
     * is its own final (short) line. */
    int written = snprintf(out, out_size, "-> X25519 %s\n%s\n", share_text, body_text);
    assert(written > 0 && (size_t)written < out_size);
    *length = (size_t)written;
    rc = 0;
out:
    OPENSSL_cleanse(ephemeral, sizeof ephemeral);
    OPENSSL_cleanse(shared, sizeof shared);
    OPENSSL_cleanse(wrap_key, sizeof wrap_key);
    return rc;
}

int age_encryptor_new(const struct age_recipient *recipients, size_t count, age_sink_fn sink,
                      void *context, struct age_encryptor **encryptor, struct error *err)
{
    unsigned char file_key[AGE_FILE_KEY_SIZE], mac[AGE_MAC_SIZE];
    char mac_text[48];
    int rc = 0;
    if (count == 0)
        return error_set(err, -EINVAL, "age: encrypting needs at least one recipient");
    struct age_encryptor *e = calloc(1, sizeof *e);
    /* version line, 100 bytes a stanza, the MAC line, the nonce */
    size_t capacity = sizeof AGE_VERSION_LINE + 100 * count + 64 + AGE_NONCE_SIZE;
    if (!e || !(e->prefix = malloc(capacity)) || !(e->cipher = EVP_CIPHER_CTX_new())) {
        rc = error_set(err, -ENOMEM, "age: out of memory");
        goto out;
    }
    e->sink = sink;
    e->context = context;
    if (RAND_bytes(file_key, sizeof file_key) != 1) {
        rc = error_set(err, -EIO, "cannot generate a file key: OpenSSL's random generator failed");
        goto out;
    }
    size_t at = (size_t)snprintf((char *)e->prefix, capacity, "%s\n", AGE_VERSION_LINE);
    for (size_t i = 0; i < count; i++) {
        size_t length = 0;
        rc = age_write_x25519_stanza(&recipients[i], file_key, (char *)e->prefix + at,
                                     capacity - at, &length, err);
        if (rc != 0)
            goto out;
        at += length;
    }
    /* Section "Header MAC": over everything up to and including "---". */
    memcpy(e->prefix + at, "---", 3);
    at += 3;
    if ((rc = age_header_mac(file_key, e->prefix, at, mac, err)) != 0)
        goto out;
    age_base64_encode(mac, sizeof mac, mac_text);
    at += (size_t)snprintf((char *)e->prefix + at, capacity - at, " %s\n", mac_text);
    unsigned char *nonce = e->prefix + at;
    if (RAND_bytes(nonce, AGE_NONCE_SIZE) != 1) {
        rc = error_set(err, -EIO, "cannot generate a nonce: OpenSSL's random generator failed");
        goto out;
    }
    at += AGE_NONCE_SIZE;
    assert(at <= capacity);
    e->prefix_size = at;
    rc = age_payload_key(file_key, nonce, e->payload_key, err);
out:
    OPENSSL_cleanse(file_key, sizeof file_key);
    if (rc != 0) {
        age_encryptor_free(e);
        return rc;
    }
    *encryptor = e;
    return 0;
}

const unsigned char *age_encryptor_prefix(const struct age_encryptor *encryptor, size_t *size)
{
    *size = encryptor->prefix_size;
    return encryptor->prefix;
}

static int age_seal_chunk(EVP_CIPHER_CTX *cipher, const unsigned char key[32], uint64_t index,
                          bool last, const unsigned char *plaintext, size_t size,
                          unsigned char *out, struct error *err)
{
    unsigned char nonce[12];
    /* Section "Payload": only the final chunk may be short, and it may be
     * empty only when it is the whole payload. */
    if (size > AGE_CHUNK_SIZE || (!last && size != AGE_CHUNK_SIZE) ||
        (last && size == 0 && index != 0))
        return error_set(err, -EINVAL,
                         "age: chunk %llu of %zu bytes%s: chunks are %d bytes, the last one "
                         "shorter but not empty",
                         (unsigned long long)index, size, last ? " (last)" : "", AGE_CHUNK_SIZE);
    age_chunk_nonce(index, last, nonce);
    return age_aead_seal(cipher, key, nonce, plaintext, size, out, err);
}

int age_encrypt_chunk(const struct age_encryptor *encryptor, uint64_t index, bool last,
                      const unsigned char *plaintext, size_t size, unsigned char *out,
                      struct error *err)
{
    /* A context of its own: callers run this from several threads. */
    return age_seal_chunk(NULL, encryptor->payload_key, index, last, plaintext, size, out, err);
}

static int age_encryptor_emit(struct age_encryptor *e, bool last, struct error *err)
{
    int rc = 0;
    if (!e->prefix_sent) {
        if ((rc = e->sink(e->context, e->prefix, e->prefix_size, err)) != 0)
            return rc;
        e->prefix_sent = true;
    }
    rc = age_seal_chunk(e->cipher, e->payload_key, e->index, last, e->plain, e->buffered, e->sealed,
                        err);
    if (rc == 0)
        rc = e->sink(e->context, e->sealed, e->buffered + AGE_TAG_SIZE, err);
    e->index++;
    e->buffered = 0;
    return rc;
}

int age_encrypt_update(struct age_encryptor *e, const void *data, size_t size, struct error *err)
{
    const unsigned char *bytes = data;
    assert(e->sink != NULL);
    if (e->failed || e->finished)
        return error_set(err, -EINVAL, "age: the encryption %s",
                         e->failed ? "failed before" : "is already finished");
    while (size > 0) {
        /* A full chunk is sealed only once more data shows it is not the
         * last: the final chunk is flagged, and may be a full one. */
        if (e->buffered == AGE_CHUNK_SIZE) {
            int rc = age_encryptor_emit(e, false, err);
            if (rc != 0) {
                e->failed = true;
                return rc;
            }
        }
        size_t take = AGE_CHUNK_SIZE - e->buffered;
        if (take > size)
            take = size;
        memcpy(e->plain + e->buffered, bytes, take);
        e->buffered += take;
        bytes += take;
        size -= take;
    }
    return 0;
}

int age_encrypt_finish(struct age_encryptor *e, struct error *err)
{
    if (e->failed || e->finished)
        return error_set(err, -EINVAL, "age: the encryption %s",
                         e->failed ? "failed before" : "is already finished");
    assert(e->sink != NULL);
    int rc = age_encryptor_emit(e, true, err);
    e->failed = rc != 0;
    e->finished = true;
    OPENSSL_cleanse(e->plain, sizeof e->plain);
    return rc;
}

void age_encryptor_free(struct age_encryptor *e)
{
    if (!e)
        return;
    EVP_CIPHER_CTX_free(e->cipher);
    free(e->prefix);
    OPENSSL_cleanse(e, sizeof *e);
    free(e);
}
