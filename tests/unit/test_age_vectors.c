/*
 * test_age_vectors.c: the published age test vectors (C2SP CCTV, age/testdata,
 * copied into tests/unit/data/age/) against src/crypto/age.c.
 *
 * The vectors are github.com/C2SP/CCTV age/testdata as of commit e9274a7
 * (2025-12-08), unchanged, under the 0BSD/CC0/Unlicense terms of that
 * folder. To update: copy the folder again and run this test.
 *
 * Every file in the folder is one cmocka test, named after the file; none is
 * left out. Each vector says what decrypting it must give ("expect:"), and
 * the SHA-256 of all plaintext an implementation may have released, also
 * when it then fails ("payload:"). We compare both.
 *
 * Vectors of what sqlprodd does not implement run too, with the outcome we
 * promise instead: passphrase (scrypt) and post-quantum (mlkem768x25519)
 * files give AGE_FAULT_UNSUPPORTED naming the type, and ASCII-armored files
 * AGE_FAULT_ARMORED, unless the header is already malformed in a way every
 * implementation must see (then AGE_FAULT_HEADER, as the vector expects).
 * Each such case is in the table below with its reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "crypto/age.h"

#define VECTOR_COUNT_AT_LEAST 143
#define ARMOR_BEGIN           "-----BEGIN AGE ENCRYPTED FILE-----"
#define EMPTY_SHA256          "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct vector {
    char name[128];
    char path[4096];
};

struct outcome_override {
    const char *name;
    enum age_fault fault;
    const char *why; /* must appear in the message, or NULL */
};

/* Where our outcome is not the one the expect: line names, and why. */
static const struct outcome_override overrides[] = {
    /* STREAM files that end exactly after a chunk that verifies as a middle
     * chunk: we prove truncation and say so, a kind of payload failure. */
    {"stream_no_chunks", AGE_FAULT_TRUNCATED, "is truncated"},
    {"stream_no_final_full", AGE_FAULT_TRUNCATED, "is truncated: it ends after chunk 0"},
    {"stream_no_final_two_chunks_full", AGE_FAULT_TRUNCATED, "is truncated: it ends after chunk 1"},
    /* X25519 and mlkem768x25519 stanzas; the identity is post-quantum, which
     * we do not read, so no identity matches, and the message names the
     * unsupported type. */
    {"hybrid_and_x25519", AGE_FAULT_NO_MATCH, "mlkem768x25519, which sqlprodd does not support"},
    /* Malformed in the generic grammar (every stanza's body must be
     * canonical base64), found before any recipient type is looked at. */
    {"hybrid_not_canonical_body", AGE_FAULT_HEADER, "not canonical base64"},
    {"scrypt_not_canonical_body", AGE_FAULT_HEADER, "not canonical base64"},
    /* scrypt must be alone in a header: a rule of the format we enforce. */
    {"scrypt_and_x25519", AGE_FAULT_HEADER, "scrypt stanza is not alone"},
    {"scrypt_double", AGE_FAULT_HEADER, "scrypt stanza is not alone"},
    /* An X25519 stanza with a hybrid-sized share: malformed X25519. */
    {"hybrid_x25519_arg", AGE_FAULT_HEADER, "share is not 32 bytes"},
    /* A stanza type we do not know (age's is "X25519"): named. */
    {"x25519_lowercase", AGE_FAULT_UNSUPPORTED, "does not support: x25519 "},
};

static struct vector *vectors;
static size_t vector_count;

static int compare_names(const void *a, const void *b)
{
    return strcmp(((const struct vector *)a)->name, ((const struct vector *)b)->name);
}

static const char *data_directory(void)
{
    static char directory[4096];
    const char *file = __FILE__, *slash = strrchr(file, '/');
    snprintf(directory, sizeof directory, "%.*s/data/age", (int)(slash - file), file);
    return directory;
}

static void load_vector_list(void)
{
    DIR *dir = opendir(data_directory());
    if (!dir) {
        fprintf(stderr, "cannot open %s\n", data_directory());
        exit(1);
    }
    struct dirent *entry;
    size_t capacity = 0;
    while ((entry = readdir(dir))) {
        if (entry->d_name[0] == '.')
            continue;
        if (vector_count == capacity) {
            capacity = capacity ? capacity * 2 : 256;
            vectors = realloc(vectors, capacity * sizeof *vectors);
        }
        struct vector *v = &vectors[vector_count++];
        snprintf(v->name, sizeof v->name, "%s", entry->d_name);
        snprintf(v->path, sizeof v->path, "%s/%s", data_directory(), entry->d_name);
    }
    closedir(dir);
    qsort(vectors, vector_count, sizeof *vectors, compare_names);
}

/* ---- one vector ---------------------------------------------------------- */

struct parsed {
    char expect[64];
    char payload_hex[65];
    char identities[8][256];
    size_t identity_count;
    bool passphrase, armored, compressed;
    unsigned char *body;
    size_t body_size;
};

static unsigned char *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long length = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc((size_t)length + 1);
    assert_int_equal(fread(data, 1, (size_t)length, f), (size_t)length);
    fclose(f);
    *size = (size_t)length;
    return data;
}

static unsigned char *inflate_all(const unsigned char *in, size_t size, size_t *out_size)
{
    z_stream z = {0};
    size_t capacity = 1 << 20, used = 0;
    unsigned char *out = malloc(capacity);
    assert_int_equal(inflateInit(&z), Z_OK);
    z.next_in = (unsigned char *)in;
    z.avail_in = (uInt)size;
    int rc;
    do {
        if (used == capacity)
            out = realloc(out, capacity *= 2);
        z.next_out = out + used;
        z.avail_out = (uInt)(capacity - used);
        rc = inflate(&z, Z_NO_FLUSH);
        used = capacity - z.avail_out;
        assert_true(rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR);
    } while (rc != Z_STREAM_END);
    inflateEnd(&z);
    *out_size = used;
    return out;
}

static void parse_vector(const struct vector *v, struct parsed *p)
{
    size_t size = 0;
    unsigned char *file = read_all(v->path, &size);
    memset(p, 0, sizeof *p);
    size_t at = 0;
    for (;;) {
        unsigned char *end = memchr(file + at, '\n', size - at);
        assert_non_null(end);
        size_t length = (size_t)(end - (file + at));
        char line[512];
        assert_true(length < sizeof line);
        memcpy(line, file + at, length);
        line[length] = '\0';
        at += length + 1;
        if (length == 0)
            break; /* the empty line before the age file */
        char *value = strstr(line, ": ");
        assert_non_null(value);
        *value = '\0';
        value += 2;
        if (strcmp(line, "expect") == 0)
            snprintf(p->expect, sizeof p->expect, "%s", value);
        else if (strcmp(line, "payload") == 0)
            snprintf(p->payload_hex, sizeof p->payload_hex, "%s", value);
        else if (strcmp(line, "identity") == 0 && p->identity_count < 8)
            snprintf(p->identities[p->identity_count++], 256, "%s", value);
        else if (strcmp(line, "passphrase") == 0)
            p->passphrase = true;
        else if (strcmp(line, "armored") == 0)
            p->armored = strcmp(value, "yes") == 0;
        else if (strcmp(line, "compressed") == 0)
            p->compressed = strcmp(value, "zlib") == 0;
    }
    if (p->compressed) {
        p->body = inflate_all(file + at, size - at, &p->body_size);
        free(file);
    } else {
        p->body_size = size - at;
        p->body = malloc(p->body_size + 1);
        memcpy(p->body, file + at, p->body_size);
        free(file);
    }
}

struct released {
    EVP_MD_CTX *sha256;
    size_t bytes;
};

static int hash_sink(void *context, const unsigned char *data, size_t size, struct error *err)
{
    (void)err;
    struct released *r = context;
    EVP_DigestUpdate(r->sha256, data, size);
    r->bytes += size;
    return 0;
}

/* Decrypts in pieces of `piece` bytes; returns the fault, fills message and
 * the hex SHA-256 of everything the sink received. */
static enum age_fault decrypt_vector(const struct parsed *p, const struct age_identity *ids,
                                     size_t id_count, size_t piece, char message[1024],
                                     char hex[65])
{
    struct released r = {EVP_MD_CTX_new(), 0};
    struct age_decryptor *d = NULL;
    struct error err = {0};
    EVP_DigestInit_ex(r.sha256, EVP_sha256(), NULL);
    assert_int_equal(age_decryptor_new(ids, id_count, "vector", hash_sink, &r, &d, &err), 0);
    int rc = 0;
    for (size_t at = 0; at < p->body_size && rc == 0; at += piece) {
        size_t n = p->body_size - at < piece ? p->body_size - at : piece;
        rc = age_decrypt_update(d, p->body + at, n, &err);
    }
    if (rc == 0)
        rc = age_decrypt_finish(d, &err);
    enum age_fault fault = age_decryptor_fault(d);
    assert_true((rc == 0) == (fault == AGE_FAULT_NONE));
    snprintf(message, 1024, "%s", rc ? err.message : "");
    unsigned char digest[32];
    unsigned int length = 0;
    EVP_DigestFinal_ex(r.sha256, digest, &length);
    for (int i = 0; i < 32; i++)
        sprintf(hex + 2 * i, "%02x", digest[i]);
    EVP_MD_CTX_free(r.sha256);
    age_decryptor_free(d);
    return fault;
}

static const char *fault_name(enum age_fault fault)
{
    static const char *names[] = {"success",  "header failure", "armored",         "unsupported",
                                  "no match", "HMAC failure",   "payload failure", "truncated"};
    return names[fault];
}

static void test_vector(void **state)
{
    const struct vector *v = *state;
    struct parsed p;
    parse_vector(v, &p);

    /* Identities: X25519 ones are ours; post-quantum ones must be refused
     * by name when read. */
    struct age_identity ids[8];
    size_t id_count = 0;
    bool unsupported_identity = false;
    for (size_t i = 0; i < p.identity_count; i++) {
        struct error err = {0};
        int rc = age_identity_parse(p.identities[i], &ids[id_count], &err);
        if (strncmp(p.identities[i], "AGE-SECRET-KEY-PQ-1", 19) == 0) {
            assert_int_equal(rc, -ENOTSUP);
            assert_non_null(strstr(err.message, "post-quantum (mlkem768x25519)"));
            unsupported_identity = true;
        } else {
            assert_int_equal(rc, 0);
            id_count++;
        }
    }

    /* What we promise for this vector. */
    enum age_fault expected = AGE_FAULT_NONE;
    const char *why = NULL;
    if (strcmp(p.expect, "success") == 0)
        expected = AGE_FAULT_NONE;
    else if (strcmp(p.expect, "no match") == 0)
        expected = AGE_FAULT_NO_MATCH;
    else if (strcmp(p.expect, "HMAC failure") == 0)
        expected = AGE_FAULT_HEADER_MAC;
    else if (strcmp(p.expect, "header failure") == 0)
        expected = AGE_FAULT_HEADER;
    else if (strcmp(p.expect, "payload failure") == 0)
        expected = AGE_FAULT_PAYLOAD;
    else if (strcmp(p.expect, "armor failure") == 0)
        expected = AGE_FAULT_ARMORED;
    else
        fail_msg("%s: unknown expect: %s", v->name, p.expect);
    if (p.armored) {
        /* Armor is recognised by its BEGIN line (after any whitespace);
         * anything else is simply not an age file. */
        size_t start = 0;
        while (start < p.body_size && strchr(" \t\r\n", p.body[start]))
            start++;
        bool begins = p.body_size - start >= strlen(ARMOR_BEGIN) &&
                      memcmp(p.body + start, ARMOR_BEGIN, strlen(ARMOR_BEGIN)) == 0;
        expected = begins ? AGE_FAULT_ARMORED : AGE_FAULT_HEADER;
        why = begins ? "is ASCII-armored (made with age -a)" : "does not start with";
    } else if ((p.passphrase && id_count == 0) || unsupported_identity) {
        expected = AGE_FAULT_UNSUPPORTED;
        why = p.passphrase ? "scrypt" : "mlkem768x25519";
        if (strcmp(v->name, "scrypt_uppercase") == 0)
            why = "Scrypt";
        if (strcmp(v->name, "hybrid_uppercase") == 0)
            why = "MLKEM768X25519";
    }
    for (size_t i = 0; i < sizeof overrides / sizeof overrides[0]; i++)
        if (strcmp(overrides[i].name, v->name) == 0) {
            expected = overrides[i].fault;
            why = overrides[i].why;
        }

    /* Whole, and in small pieces: the header and chunk boundaries must not
     * depend on how the bytes arrive. */
    size_t pieces[] = {p.body_size ? p.body_size : 1, p.body_size < 300000 ? 1 : 4099};
    for (size_t k = 0; k < 2; k++) {
        char message[1024], hex[65];
        enum age_fault got = decrypt_vector(&p, ids, id_count, pieces[k], message, hex);
        if (got != expected)
            fail_msg("%s (expect: %s, pieces of %zu): got %s, want %s: %s", v->name, p.expect,
                     pieces[k], fault_name(got), fault_name(expected), message);
        if (got == AGE_FAULT_UNSUPPORTED &&
            !strstr(message, "is encrypted to recipient types sqlprodd does not support: "))
            fail_msg("%s: message \"%s\" does not say the type is unsupported", v->name, message);
        if (why && !strstr(message, why))
            fail_msg("%s: message \"%s\" lacks \"%s\"", v->name, message, why);
        if (got != AGE_FAULT_NONE && !strstr(message, "vector"))
            fail_msg("%s: message \"%s\" does not name the object", v->name, message);
        /* What was released must be exactly what the vector allows: its
         * payload when the STREAM was reached, else nothing at all. */
        bool stream = expected == AGE_FAULT_NONE || expected == AGE_FAULT_PAYLOAD ||
                      expected == AGE_FAULT_TRUNCATED;
        const char *allowed = stream ? p.payload_hex : EMPTY_SHA256;
        if (stream && !p.payload_hex[0])
            fail_msg("%s: the vector has no payload hash", v->name);
        if (strcmp(hex, allowed) != 0)
            fail_msg("%s: released plaintext has sha256 %s, allowed is %s", v->name, hex, allowed);
    }
    for (size_t i = 0; i < id_count; i++)
        age_identity_wipe(&ids[i]);
    free(p.body);
}

int main(void)
{
    load_vector_list();
    if (vector_count < VECTOR_COUNT_AT_LEAST) {
        fprintf(stderr, "only %zu vectors in %s, expected %d\n", vector_count, data_directory(),
                VECTOR_COUNT_AT_LEAST);
        return 1;
    }
    struct CMUnitTest *tests = calloc(vector_count, sizeof *tests);
    for (size_t i = 0; i < vector_count; i++) {
        tests[i].name = vectors[i].name;
        tests[i].test_func = test_vector;
        tests[i].initial_state = &vectors[i];
    }
    int failed = _cmocka_run_group_tests("age_vectors", tests, vector_count, NULL, NULL);
    printf("age vectors: %zu run, %zu failed\n", vector_count, (size_t)failed);
    free(tests);
    free(vectors);
    return failed;
}
