/*
 * age_decrypt.c: reading the age v1 file format: the header parsed line by
 * line as bytes arrive (the generic grammar, then X25519 stanzas, then the
 * MAC), and the STREAM payload, each chunk released only once its tag
 * verified, truncation proven by the final-chunk flag at the end.
 *
 * Not for writing files (age.c) or keys (age_keys.c). Section names in
 * comments refer to c2sp.org/age.
 */
#include "crypto/age.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/age_internal.h"

#define AGE_ARMOR_BEGIN "-----BEGIN AGE ENCRYPTED FILE-----"
/* A header is a few hundred bytes per recipient; the cap keeps memory
 * bounded when the input is not an age file at all. */
#define AGE_HEADER_MAX      (1024 * 1024)
#define AGE_STANZA_BODY_MAX (64 * 1024)
#define AGE_COLUMNS         64

/* ---- decryption: the header ---------------------------------------------- */

struct age_stanza {
    char *line; /* the argument line, split in place at spaces */
    char **args;
    size_t arg_count;
    unsigned char *body;
    size_t body_size;
};

enum age_stage {
    AGE_STAGE_VERSION,
    AGE_STAGE_STANZA_OR_MAC,
    AGE_STAGE_BODY,
    AGE_STAGE_NONCE,
    AGE_STAGE_PAYLOAD,
    AGE_STAGE_DONE,
    AGE_STAGE_FAILED,
};

struct age_decryptor {
    struct age_identity *identities;
    size_t identity_count;
    char *object;
    age_sink_fn sink;
    void *context;
    enum age_stage stage;
    enum age_fault fault;
    struct error failure; /* repeated by every later call */
    /* header */
    unsigned char *header;
    size_t header_size, header_capacity, scanned, lines;
    struct age_stanza *stanzas;
    size_t stanza_count, stanza_capacity;
    unsigned char mac[AGE_MAC_SIZE];
    size_t mac_offset;
    unsigned char file_key[AGE_FILE_KEY_SIZE];
    /* payload */
    unsigned char nonce[AGE_NONCE_SIZE];
    size_t nonce_size;
    unsigned char payload_key[32];
    EVP_CIPHER_CTX *cipher;
    uint64_t index; /* of the chunk being filled */
    size_t buffered;
    unsigned char sealed[AGE_SEALED_CHUNK];
    unsigned char plain[AGE_CHUNK_SIZE];
};

/* Records the failure once; every later call returns it again. */
static int age_fail(struct age_decryptor *d, enum age_fault fault, int code, struct error *err,
                    const char *format, ...) __attribute__((format(printf, 5, 6)));

static int age_fail(struct age_decryptor *d, enum age_fault fault, int code, struct error *err,
                    const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(d->failure.message, sizeof d->failure.message, format, args);
    va_end(args);
    d->failure.code = code;
    d->fault = fault;
    d->stage = AGE_STAGE_FAILED;
    OPENSSL_cleanse(d->plain, sizeof d->plain);
    if (err)
        *err = d->failure;
    return code;
}

#define AGE_DISCARD "; nothing decrypted from it may be used"

static int age_header_fail(struct age_decryptor *d, struct error *err, const char *why)
{
    return age_fail(d, AGE_FAULT_HEADER, -EBADMSG, err,
                    "%s: bad age header (line %zu): %s: the file is damaged or not an age file",
                    d->object, d->lines, why);
}

int age_decryptor_new(const struct age_identity *identities, size_t count, const char *object,
                      age_sink_fn sink, void *context, struct age_decryptor **decryptor,
                      struct error *err)
{
    struct age_decryptor *d = calloc(1, sizeof *d);
    if (!d || !(d->object = strdup(object)) || !(d->cipher = EVP_CIPHER_CTX_new()) ||
        (count > 0 && !(d->identities = malloc(count * sizeof *identities)))) {
        age_decryptor_free(d);
        return error_set(err, -ENOMEM, "%s: out of memory", object);
    }
    if (count > 0)
        memcpy(d->identities, identities, count * sizeof *identities);
    d->identity_count = count;
    d->sink = sink;
    d->context = context;
    *decryptor = d;
    return 0;
}

static bool age_is_base64_char(unsigned char c)
{
    return isalnum(c) || c == '+' || c == '/';
}

/* Section "Recipient stanza": "-> " then arguments of VCHARs, single spaces. */
static int age_parse_arguments(struct age_decryptor *d, const char *line, size_t length,
                               struct error *err)
{
    if (d->stanza_count == d->stanza_capacity) {
        size_t more = d->stanza_capacity ? d->stanza_capacity * 2 : 4;
        struct age_stanza *grown = realloc(d->stanzas, more * sizeof *grown);
        if (!grown)
            return age_fail(d, AGE_FAULT_NONE, -ENOMEM, err, "%s: out of memory", d->object);
        d->stanzas = grown;
        d->stanza_capacity = more;
    }
    struct age_stanza *stanza = &d->stanzas[d->stanza_count];
    memset(stanza, 0, sizeof *stanza);
    size_t text = length - 3;
    if (!(stanza->line = malloc(text + 1)) ||
        !(stanza->args = calloc(text / 2 + 1, sizeof(char *))))
        goto no_memory;
    d->stanza_count++;
    memcpy(stanza->line, line + 3, text);
    stanza->line[text] = '\0';
    if (text == 0)
        return age_header_fail(d, err, "a recipient stanza has no arguments");
    char *start = stanza->line;
    for (size_t i = 0; i <= text; i++) {
        unsigned char c = (unsigned char)stanza->line[i];
        if (c == ' ' || c == '\0') {
            if (&stanza->line[i] == start)
                return age_header_fail(d, err, "a recipient stanza has an empty argument");
            stanza->line[i] = '\0';
            stanza->args[stanza->arg_count++] = start;
            start = &stanza->line[i + 1];
        } else if (c < 0x21 || c > 0x7e) {
            return age_header_fail(d, err,
                                   "a recipient stanza's argument has a character that is not "
                                   "printable ASCII");
        }
    }
    return 0;
no_memory:
    free(stanza->line);
    return age_fail(d, AGE_FAULT_NONE, -ENOMEM, err, "%s: out of memory", d->object);
}

/* Body lines: 64 base64 columns, ended by the first shorter line. Every
 * line is a whole number of base64 quanta but the last, so decoding line
 * by line checks the whole body's canonical form. */
static int age_parse_body_line(struct age_decryptor *d, const char *line, size_t length,
                               struct error *err)
{
    struct age_stanza *stanza = &d->stanzas[d->stanza_count - 1];
    if (length > AGE_COLUMNS)
        return age_header_fail(d, err, "a stanza body line is longer than 64 columns");
    for (size_t i = 0; i < length; i++)
        if (!age_is_base64_char((unsigned char)line[i]))
            return age_header_fail(d, err, "a stanza body holds a character that is not base64");
    unsigned char bytes[48];
    size_t size = 0;
    if (!age_base64_decode(line, length, bytes, sizeof bytes, &size))
        return age_header_fail(d, err, "a stanza body is not canonical base64");
    if (stanza->body_size + size > AGE_STANZA_BODY_MAX)
        return age_header_fail(d, err, "a stanza body is longer than 64 KiB");
    unsigned char *grown = realloc(stanza->body, stanza->body_size + size + 1);
    if (!grown)
        return age_fail(d, AGE_FAULT_NONE, -ENOMEM, err, "%s: out of memory", d->object);
    stanza->body = grown;
    memcpy(stanza->body + stanza->body_size, bytes, size);
    stanza->body_size += size;
    if (length < AGE_COLUMNS)
        d->stage = AGE_STAGE_STANZA_OR_MAC;
    return 0;
}

static int age_parse_line(struct age_decryptor *d, const char *line, size_t length, size_t offset,
                          struct error *err)
{
    d->lines++;
    switch (d->stage) {
    case AGE_STAGE_VERSION:
        if (length == strlen(AGE_VERSION_LINE) && memcmp(line, AGE_VERSION_LINE, length) == 0) {
            d->stage = AGE_STAGE_STANZA_OR_MAC;
            return 0;
        }
        return age_header_fail(d, err,
                               "the version line is not \"" AGE_VERSION_LINE
                               "\" (a later age version, or line ends other than LF)");
    case AGE_STAGE_STANZA_OR_MAC:
        if (length >= 3 && memcmp(line, "-> ", 3) == 0) {
            int rc = age_parse_arguments(d, line, length, err);
            if (rc == 0)
                d->stage = AGE_STAGE_BODY;
            return rc;
        }
        if (length >= 3 && memcmp(line, "---", 3) == 0) {
            /* Section "Header MAC": "--- " and 43 base64 characters. */
            size_t size = 0;
            if (d->stanza_count == 0)
                return age_header_fail(d, err, "the header has no recipient stanza");
            if (length != 4 + 43 || line[3] != ' ' ||
                !age_base64_decode(line + 4, 43, d->mac, sizeof d->mac, &size) ||
                size != AGE_MAC_SIZE)
                return age_header_fail(d, err,
                                       "the MAC line is not \"--- \" and 43 characters of "
                                       "canonical base64");
            d->mac_offset = offset + 3;
            d->stage = AGE_STAGE_NONCE;
            return 0;
        }
        return age_header_fail(d, err,
                               "a line is neither a recipient stanza (\"-> \") nor the "
                               "header MAC (\"--- \")");
    case AGE_STAGE_BODY: return age_parse_body_line(d, line, length, err);
    default: assert(!"a header line after the header"); return -EINVAL;
    }
}

/* Before the first line is parsed: fail at once when the bytes cannot start
 * an age file, rather than buffering a whole database looking for a line
 * end. 0: an age file so far; 1: maybe armor, wait for more; or an error. */
static int age_check_start(struct age_decryptor *d, bool at_end, struct error *err)
{
    const char *bytes = (const char *)d->header;
    size_t prefix = strlen(AGE_VERSION_PREFIX), size = d->header_size;
    if (memcmp(bytes, AGE_VERSION_PREFIX, size < prefix ? size : prefix) == 0)
        return 0;
    size_t start = 0;
    while (start < size && isspace((unsigned char)bytes[start]))
        start++;
    size_t armor = strlen(AGE_ARMOR_BEGIN), seen = size - start;
    if (memcmp(bytes + start, AGE_ARMOR_BEGIN, seen < armor ? seen : armor) == 0) {
        if (seen < armor && !at_end)
            return 1;
        if (seen >= armor)
            return age_fail(d, AGE_FAULT_ARMORED, -ENOTSUP, err,
                            "%s is ASCII-armored (made with age -a), which sqlprodd does not "
                            "read: convert it with `age -d` and re-encrypt without -a",
                            d->object);
    }
    d->lines = 1;
    return age_header_fail(d, err, "it does not start with \"" AGE_VERSION_PREFIX "\"");
}

static int age_open_payload(struct age_decryptor *d, struct error *err);

/* Takes header bytes; *used says how many belonged to the header. */
static int age_take_header(struct age_decryptor *d, const unsigned char *data, size_t size,
                           size_t *used, struct error *err)
{
    size_t room = AGE_HEADER_MAX - d->header_size, take = size < room ? size : room;
    if (d->header_size + take > d->header_capacity) {
        size_t capacity = d->header_capacity ? d->header_capacity : 4096;
        while (capacity < d->header_size + take)
            capacity *= 2;
        unsigned char *grown = realloc(d->header, capacity);
        if (!grown)
            return age_fail(d, AGE_FAULT_NONE, -ENOMEM, err, "%s: out of memory", d->object);
        d->header = grown;
        d->header_capacity = capacity;
    }
    memcpy(d->header + d->header_size, data, take);
    size_t before = d->header_size;
    d->header_size += take;
    int rc;
    if (d->lines == 0 && (rc = age_check_start(d, false, err)) != 0) {
        if (rc < 0)
            return rc;
        if (d->header_size == AGE_HEADER_MAX)
            return age_header_fail(d, err, "the header is longer than 1 MiB");
        *used = take;
        return 0;
    }
    while (d->stage <= AGE_STAGE_BODY) {
        const unsigned char *end =
            memchr(d->header + d->scanned, '\n', d->header_size - d->scanned);
        if (!end)
            break;
        size_t length = (size_t)(end - (d->header + d->scanned));
        rc = age_parse_line(d, (const char *)d->header + d->scanned, length, d->scanned, err);
        if (rc != 0)
            return rc;
        d->scanned += length + 1;
    }
    if (d->stage <= AGE_STAGE_BODY) {
        if (d->header_size == AGE_HEADER_MAX)
            return age_header_fail(d, err, "the header is longer than 1 MiB");
        *used = take;
        return 0;
    }
    /* The header ended inside this piece: the rest is payload. */
    *used = d->scanned - before;
    d->header_size = d->scanned;
    return age_open_payload(d, err);
}

/* Distinct stanza types other than X25519, printable, for the message. */
static void age_other_types(const struct age_decryptor *d, char *out, size_t out_size)
{
    size_t at = 0;
    out[0] = '\0';
    for (size_t i = 0; i < d->stanza_count; i++) {
        const char *type = d->stanzas[i].args[0];
        if (strcmp(type, "X25519") == 0)
            continue;
        bool seen = false;
        for (size_t j = 0; j < i; j++)
            seen |= strcmp(d->stanzas[j].args[0], type) == 0;
        if (seen)
            continue;
        int n = snprintf(out + at, out_size - at, "%s%.40s", at ? ", " : "", type);
        if (n < 0 || (size_t)n >= out_size - at)
            break;
        at += (size_t)n;
    }
}

/* Section "X25519 recipient stanza", identity side. 1: unwrapped; 0: not
 * for these identities; negative: the stanza is malformed. */
static int age_unwrap_x25519(struct age_decryptor *d, const struct age_stanza *stanza,
                             struct error *err)
{
    unsigned char share[32], shared[32], salt[64], wrap_key[32], nonce[12] = {0};
    size_t size = 0;
    int found = 0;
    if (stanza->arg_count != 2)
        return age_header_fail(d, err, "an X25519 stanza does not have exactly 2 arguments");
    if (!age_base64_decode(stanza->args[1], strlen(stanza->args[1]), share, sizeof share, &size) ||
        size != 32)
        return age_header_fail(d, err,
                               "an X25519 stanza's share is not 32 bytes of canonical base64");
    /* The length check comes before any decryption (the specification asks
     * it, against partitioning oracles). */
    if (stanza->body_size != AGE_FILE_KEY_SIZE + AGE_TAG_SIZE)
        return age_header_fail(d, err, "an X25519 stanza's body is not 32 bytes");
    for (size_t i = 0; i < d->identity_count && !found; i++) {
        struct error why;
        if (age_x25519(d->identities[i].secret_key, share, shared, &why) != 0) {
            found = age_header_fail(d, err, "an X25519 stanza's share is a low-order point");
            break;
        }
        memcpy(salt, share, 32);
        memcpy(salt + 32, d->identities[i].public_key, 32);
        if (age_hkdf(shared, 32, salt, sizeof salt, AGE_X25519_INFO, wrap_key, &why) != 0) {
            found = age_fail(d, AGE_FAULT_NONE, why.code, err, "%s: %s", d->object, why.message);
            break;
        }
        if (age_aead_open(NULL, wrap_key, nonce, stanza->body, stanza->body_size, d->file_key,
                          &why) == 0)
            found = 1;
    }
    OPENSSL_cleanse(shared, sizeof shared);
    OPENSSL_cleanse(wrap_key, sizeof wrap_key);
    return found;
}

static int age_unwrap_file_key(struct age_decryptor *d, struct error *err)
{
    size_t x25519 = 0;
    for (size_t i = 0; i < d->stanza_count; i++) {
        /* Section "scrypt recipient stanza": a passphrase file has one
         * stanza only, or it would not be authenticated by the passphrase. */
        if (strcmp(d->stanzas[i].args[0], "scrypt") == 0 && d->stanza_count > 1)
            return age_header_fail(d, err, "an scrypt stanza is not alone in the header");
    }
    for (size_t i = 0; i < d->stanza_count; i++) {
        if (strcmp(d->stanzas[i].args[0], "X25519") != 0)
            continue; /* other types are ignored, as the specification asks */
        x25519++;
        int rc = age_unwrap_x25519(d, &d->stanzas[i], err);
        if (rc != 0)
            return rc < 0 ? rc : 0;
    }
    char others[256];
    age_other_types(d, others, sizeof others);
    if (x25519 == 0)
        return age_fail(d, AGE_FAULT_UNSUPPORTED, -ENOTSUP, err,
                        "%s is encrypted to recipient types sqlprodd does not support: %s "
                        "(sqlprodd reads X25519 recipients, age1..., only): decrypt it with "
                        "the age tool (age -d)",
                        d->object, others);
    char first[AGE_RECIPIENT_TEXT] = "none";
    if (d->identity_count > 0) {
        struct age_recipient recipient;
        age_identity_recipient(&d->identities[0], &recipient);
        age_recipient_format(&recipient, first);
    }
    return age_fail(d, AGE_FAULT_NO_MATCH, -EACCES, err,
                    "no identity matches any recipient of %s: it is encrypted to %zu X25519 "
                    "recipient%s%s%s%s, and the %zu identit%s given (public key %s%s) %s none "
                    "of them: use the identity file of a key this file was encrypted to",
                    d->object, x25519, x25519 == 1 ? "" : "s", *others ? " (and to " : "", others,
                    *others ? ", which sqlprodd does not support)" : "", d->identity_count,
                    d->identity_count == 1 ? "y" : "ies", first,
                    d->identity_count > 1 ? ", ..." : "", d->identity_count == 1 ? "is" : "are");
}

static int age_open_payload(struct age_decryptor *d, struct error *err)
{
    unsigned char mac[AGE_MAC_SIZE];
    int rc = age_unwrap_file_key(d, err);
    if (rc != 0)
        return rc;
    /* Only now: a MAC checked before the file key is known would prove
     * nothing, and the unwrap errors say more. */
    struct error why;
    if ((rc = age_header_mac(d->file_key, d->header, d->mac_offset, mac, &why)) != 0)
        return age_fail(d, AGE_FAULT_NONE, rc, err, "%s: %s", d->object, why.message);
    if (CRYPTO_memcmp(mac, d->mac, sizeof mac) != 0)
        return age_fail(d, AGE_FAULT_HEADER_MAC, -EBADMSG, err,
                        "%s: the age header's MAC does not match: the header was altered or "
                        "damaged after it was written" AGE_DISCARD,
                        d->object);
    free(d->header);
    d->header = NULL;
    d->header_capacity = 0;
    return 0;
}

/* ---- decryption: the payload --------------------------------------------- */

static int age_open_chunk(struct age_decryptor *d, bool last, struct error *err)
{
    unsigned char nonce[12];
    age_chunk_nonce(d->index, last, nonce);
    return age_aead_open(d->cipher, d->payload_key, nonce, d->sealed, d->buffered, d->plain, err);
}

static int age_release_chunk(struct age_decryptor *d, struct error *err)
{
    size_t size = d->buffered - AGE_TAG_SIZE;
    d->index++;
    d->buffered = 0;
    if (size == 0)
        return 0;
    int rc = d->sink(d->context, d->plain, size, err);
    if (rc != 0) {
        d->failure = err ? *err : (struct error){.code = rc};
        d->stage = AGE_STAGE_FAILED;
    }
    return rc;
}

/* A full chunk with more data after it: it must verify as a middle chunk.
 * A full final chunk with data after it is released, then refused: as the
 * age tool does (and the test vectors expect), and harmless, since the caller
 * discards everything on error. */
static int age_decrypt_middle_chunk(struct age_decryptor *d, struct error *err)
{
    struct error why;
    if (age_open_chunk(d, false, &why) == 0)
        return age_release_chunk(d, err);
    if (age_open_chunk(d, true, &why) == 0) {
        uint64_t final = d->index;
        int rc = age_release_chunk(d, err);
        if (rc != 0)
            return rc;
        return age_fail(d, AGE_FAULT_PAYLOAD, -EBADMSG, err,
                        "%s: data follows the final chunk (chunk %llu): the file was altered "
                        "or two files were joined" AGE_DISCARD,
                        d->object, (unsigned long long) final);
    }
    return age_fail(d, AGE_FAULT_PAYLOAD, -EBADMSG, err,
                    "%s: chunk %llu (plaintext bytes %llu to %llu) fails authentication: the "
                    "file was altered or damaged" AGE_DISCARD,
                    d->object, (unsigned long long)d->index,
                    (unsigned long long)(d->index * AGE_CHUNK_SIZE),
                    (unsigned long long)((d->index + 1) * AGE_CHUNK_SIZE - 1));
}

static int age_take_payload(struct age_decryptor *d, const unsigned char *data, size_t size,
                            struct error *err)
{
    while (size > 0) {
        if (d->stage == AGE_STAGE_NONCE) {
            size_t take = AGE_NONCE_SIZE - d->nonce_size;
            take = take < size ? take : size;
            memcpy(d->nonce + d->nonce_size, data, take);
            d->nonce_size += take;
            data += take;
            size -= take;
            if (d->nonce_size == AGE_NONCE_SIZE) {
                struct error why;
                int rc = age_payload_key(d->file_key, d->nonce, d->payload_key, &why);
                if (rc != 0)
                    return age_fail(d, AGE_FAULT_NONE, rc, err, "%s: %s", d->object, why.message);
                d->stage = AGE_STAGE_PAYLOAD;
            }
            continue;
        }
        if (d->buffered == AGE_SEALED_CHUNK) {
            int rc = age_decrypt_middle_chunk(d, err);
            if (rc != 0)
                return rc;
        }
        size_t take = AGE_SEALED_CHUNK - d->buffered;
        take = take < size ? take : size;
        memcpy(d->sealed + d->buffered, data, take);
        d->buffered += take;
        data += take;
        size -= take;
    }
    return 0;
}

int age_decrypt_update(struct age_decryptor *d, const void *data, size_t size, struct error *err)
{
    const unsigned char *bytes = data;
    if (d->stage == AGE_STAGE_FAILED) {
        if (err)
            *err = d->failure;
        return d->failure.code;
    }
    if (d->stage == AGE_STAGE_DONE)
        return error_set(err, -EINVAL, "%s: decryption is already finished", d->object);
    while (size > 0 && d->stage <= AGE_STAGE_BODY) {
        size_t used = 0;
        int rc = age_take_header(d, bytes, size, &used, err);
        if (rc != 0)
            return rc;
        assert(used > 0); /* or this loop would never end */
        bytes += used;
        size -= used;
    }
    return age_take_payload(d, bytes, size, err);
}

int age_decrypt_finish(struct age_decryptor *d, struct error *err)
{
    struct error why;
    if (d->stage == AGE_STAGE_FAILED) {
        if (err)
            *err = d->failure;
        return d->failure.code;
    }
    if (d->stage == AGE_STAGE_DONE)
        return error_set(err, -EINVAL, "%s: decryption is already finished", d->object);
    if (d->stage <= AGE_STAGE_BODY) {
        if (d->header_size == 0)
            return age_fail(
                d, AGE_FAULT_HEADER, -EBADMSG, err,
                "%s is empty: not an age file (it should start with \"" AGE_VERSION_PREFIX "\")",
                d->object);
        if (d->lines == 0 && age_check_start(d, true, err) < 0)
            return d->failure.code;
        d->lines++;
        return age_header_fail(d, err,
                               "the file ends inside its header: it is truncated or not an age "
                               "file");
    }
    if (d->stage == AGE_STAGE_NONCE)
        return age_fail(d, AGE_FAULT_HEADER, -EBADMSG, err,
                        "%s ends before the end of its payload nonce (%zu of 16 bytes after the "
                        "header): the file is truncated",
                        d->object, d->nonce_size);
    /* The buffered bytes are the last chunk: it must verify as final. */
    if (d->buffered == 0)
        return age_fail(d, AGE_FAULT_TRUNCATED, -EBADMSG, err,
                        "%s is truncated: it ends right after its header, without any data "
                        "chunk" AGE_DISCARD,
                        d->object);
    if (d->buffered >= AGE_TAG_SIZE && age_open_chunk(d, true, &why) == 0) {
        if (d->buffered == AGE_TAG_SIZE && d->index > 0)
            return age_fail(d, AGE_FAULT_PAYLOAD, -EBADMSG, err,
                            "%s: the final chunk (chunk %llu) is empty, which age forbids: the "
                            "file was altered" AGE_DISCARD,
                            d->object, (unsigned long long)d->index);
        int rc = age_release_chunk(d, err);
        if (rc == 0)
            d->stage = AGE_STAGE_DONE;
        return rc;
    }
    if (d->buffered == AGE_SEALED_CHUNK && age_open_chunk(d, false, &why) == 0) {
        uint64_t last = d->index;
        int rc = age_release_chunk(d, err);
        if (rc != 0)
            return rc;
        return age_fail(d, AGE_FAULT_TRUNCATED, -EBADMSG, err,
                        "%s is truncated: it ends after chunk %llu (%llu bytes of plaintext), "
                        "which is not the final chunk: the rest of the file is missing" AGE_DISCARD,
                        d->object, (unsigned long long)last,
                        (unsigned long long)((last + 1) * AGE_CHUNK_SIZE));
    }
    return age_fail(d, AGE_FAULT_PAYLOAD, -EBADMSG, err,
                    "%s: its last chunk (chunk %llu, %zu bytes) fails authentication: the file "
                    "is truncated or damaged" AGE_DISCARD,
                    d->object, (unsigned long long)d->index, d->buffered);
}

enum age_fault age_decryptor_fault(const struct age_decryptor *d)
{
    return d->fault;
}

void age_decryptor_free(struct age_decryptor *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->stanza_count; i++) {
        free(d->stanzas[i].line);
        free(d->stanzas[i].args);
        free(d->stanzas[i].body);
    }
    free(d->stanzas);
    free(d->header);
    free(d->object);
    if (d->identities)
        OPENSSL_cleanse(d->identities, d->identity_count * sizeof *d->identities);
    free(d->identities);
    EVP_CIPHER_CTX_free(d->cipher);
    OPENSSL_cleanse(d, sizeof *d);
    free(d);
}
