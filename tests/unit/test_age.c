/*
 * test_age.c: src/crypto/age.c as its callers use it: keys as operators paste
 * them, identity files as age-keygen writes them, files of every size round
 * the chunk boundaries, the chunk-by-index encryptor, and every failure an
 * operator can meet (wrong key, unknown recipient type, flipped byte,
 * truncated file, bad header), each with the message it must show.
 *
 * The published vectors are in test_age_vectors.c, and the age tool itself
 * in test_age_interop.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/age.h"

#define OBJECT "s3://bucket/app/app-20261202T101500Z.db.gz.age"

/* The example of c2sp.org/age, section "The X25519 recipient type". */
#define SPEC_IDENTITY  "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
#define SPEC_RECIPIENT "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj"

/* ---- helpers ------------------------------------------------------------- */

struct buffer {
    unsigned char *data;
    size_t size, capacity;
    size_t calls;
    int fail_at_call; /* > 0: the sink fails on that call */
};

static int buffer_sink(void *context, const unsigned char *data, size_t size, struct error *err)
{
    struct buffer *b = context;
    b->calls++;
    if (b->fail_at_call > 0 && (int)b->calls == b->fail_at_call)
        return error_set(err, -ENOSPC, "disk full writing the restored file");
    if (b->size + size > b->capacity) {
        b->capacity = (b->size + size) * 2 + 1024;
        b->data = realloc(b->data, b->capacity);
    }
    memcpy(b->data + b->size, data, size);
    b->size += size;
    return 0;
}

static void buffer_free(struct buffer *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

static unsigned char *pattern(size_t size, unsigned seed)
{
    unsigned char *data = malloc(size + 1);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < size; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (unsigned char)(x >> 16);
    }
    return data;
}

static void make_identity(struct age_identity *identity, struct age_recipient *recipient)
{
    struct error err = {0};
    assert_int_equal(age_identity_generate(identity, &err), 0);
    age_identity_recipient(identity, recipient);
}

/* Encrypts `size` bytes to the recipients, feeding in pieces of `piece`. */
static void encrypt_to(const struct age_recipient *recipients, size_t count,
                       const unsigned char *plain, size_t size, size_t piece, struct buffer *out)
{
    struct age_encryptor *e = NULL;
    struct error err = {0};
    assert_int_equal(age_encryptor_new(recipients, count, buffer_sink, out, &e, &err), 0);
    for (size_t at = 0; at < size; at += piece) {
        size_t n = size - at < piece ? size - at : piece;
        assert_int_equal(age_encrypt_update(e, plain + at, n, &err), 0);
    }
    assert_int_equal(age_encrypt_finish(e, &err), 0);
    age_encryptor_free(e);
}

/* Decrypts; returns the return code and fills fault, message, plaintext. */
static int decrypt_with(const struct age_identity *identities, size_t count,
                        const unsigned char *data, size_t size, size_t piece, struct buffer *out,
                        enum age_fault *fault, char message[1024])
{
    struct age_decryptor *d = NULL;
    struct error err = {0};
    assert_int_equal(age_decryptor_new(identities, count, OBJECT, buffer_sink, out, &d, &err), 0);
    int rc = 0;
    for (size_t at = 0; at < size && rc == 0; at += piece) {
        size_t n = size - at < piece ? size - at : piece;
        rc = age_decrypt_update(d, data + at, n, &err);
    }
    if (rc == 0)
        rc = age_decrypt_finish(d, &err);
    *fault = age_decryptor_fault(d);
    snprintf(message, 1024, "%s", rc ? err.message : "");
    if (rc != 0) {
        /* A failure is sticky: the next call says the same. */
        struct error again = {0};
        assert_int_equal(age_decrypt_finish(d, &again), rc);
        assert_string_equal(again.message, message);
    }
    age_decryptor_free(d);
    return rc;
}

static size_t encrypted_size(size_t prefix, size_t size)
{
    size_t chunks = size == 0 ? 1 : (size + AGE_CHUNK_SIZE - 1) / AGE_CHUNK_SIZE;
    return prefix + size + chunks * AGE_TAG_SIZE;
}

#define assert_contains(text, part)                                                                \
    do {                                                                                           \
        if (!strstr((text), (part)))                                                               \
            fail_msg("\"%s\" lacks \"%s\"", (text), (part));                                       \
    } while (0)

/* ---- keys ---------------------------------------------------------------- */

static void spec_example_identity_gives_its_recipient(void **state)
{
    (void)state;
    struct age_identity identity;
    struct age_recipient recipient, parsed;
    struct error err = {0};
    char text[AGE_RECIPIENT_TEXT], secret[AGE_IDENTITY_TEXT];
    assert_int_equal(age_identity_parse(SPEC_IDENTITY, &identity, &err), 0);
    age_identity_recipient(&identity, &recipient);
    age_recipient_format(&recipient, text);
    assert_string_equal(text, SPEC_RECIPIENT);
    age_identity_format(&identity, secret);
    assert_string_equal(secret, SPEC_IDENTITY);
    assert_int_equal(age_recipient_parse(SPEC_RECIPIENT, &parsed, &err), 0);
    assert_memory_equal(parsed.public_key, recipient.public_key, AGE_KEY_SIZE);
    /* Bech32 is all upper or all lower case; both spell the same key. */
    char lower[AGE_IDENTITY_TEXT];
    for (size_t i = 0; i <= strlen(SPEC_IDENTITY); i++)
        lower[i] =
            (char)((SPEC_IDENTITY[i] >= 'A' && SPEC_IDENTITY[i] <= 'Z') ? SPEC_IDENTITY[i] + 32
                                                                        : SPEC_IDENTITY[i]);
    struct age_identity again;
    assert_int_equal(age_identity_parse(lower, &again, &err), 0);
    assert_memory_equal(again.secret_key, identity.secret_key, AGE_KEY_SIZE);
}

static void generated_keys_round_trip_as_text(void **state)
{
    (void)state;
    for (int i = 0; i < 50; i++) {
        struct age_identity identity, parsed;
        struct age_recipient recipient, parsed_recipient;
        char secret[AGE_IDENTITY_TEXT], public_text[AGE_RECIPIENT_TEXT];
        struct error err = {0};
        make_identity(&identity, &recipient);
        age_identity_format(&identity, secret);
        age_recipient_format(&recipient, public_text);
        assert_int_equal(strlen(secret), AGE_IDENTITY_TEXT - 1);
        assert_int_equal(strlen(public_text), AGE_RECIPIENT_TEXT - 1);
        assert_int_equal(strncmp(secret, "AGE-SECRET-KEY-1", 16), 0);
        assert_int_equal(strncmp(public_text, "age1", 4), 0);
        assert_int_equal(age_identity_parse(secret, &parsed, &err), 0);
        assert_memory_equal(&parsed, &identity, sizeof parsed);
        assert_int_equal(age_recipient_parse(public_text, &parsed_recipient, &err), 0);
        assert_memory_equal(&parsed_recipient, &recipient, sizeof recipient);
    }
}

static void mistyped_keys_are_refused_with_the_reason(void **state)
{
    (void)state;
    struct age_recipient recipient;
    struct age_identity identity;
    struct error err = {0};
    char typo[] = SPEC_RECIPIENT;
    typo[20] = typo[20] == 'q' ? 'p' : 'q';
    assert_int_equal(age_recipient_parse(typo, &recipient, &err), -EINVAL);
    assert_contains(err.message, "wrong checksum");
    assert_contains(err.message, "expected age1 and 58 characters");

    char cut[] = SPEC_RECIPIENT;
    cut[40] = '\0';
    assert_int_equal(age_recipient_parse(cut, &recipient, &err), -EINVAL);

    assert_int_equal(
        age_recipient_parse("age1ZVKYG2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj",
                            &recipient, &err),
        -EINVAL);
    assert_contains(err.message, "mixes upper and lower case");

    /* A secret key where a public key belongs, and the other way round. */
    assert_int_equal(age_recipient_parse(SPEC_IDENTITY, &recipient, &err), -EINVAL);
    assert_contains(err.message, "not an age X25519 public key");
    assert_int_equal(age_identity_parse(SPEC_RECIPIENT, &identity, &err), -EINVAL);
    assert_contains(err.message, "not an age X25519 secret key");

    /* A damaged secret key: the message must not repeat the secret. */
    char damaged[] = SPEC_IDENTITY;
    damaged[30] = damaged[30] == 'Q' ? 'P' : 'Q';
    assert_int_equal(age_identity_parse(damaged, &identity, &err), -EINVAL);
    assert_contains(err.message, "wrong checksum");
    assert_null(strstr(err.message, damaged + 16));
    assert_null(strstr(err.message, "GFPYYSJZ"));
}

static void other_kinds_of_keys_are_named(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        const char *kind;
    } recipients[] = {
        {"age1pq1x34nzsvr0rxjsgdn8zgyhfe8j7ceq5r9rdelkjuh3y235jzxshfg87pzf5zrqtzdxz95paef6",
         "post-quantum (mlkem768x25519)"},
        {"age1tag1qt8lw0ual6avlwmwatk888yqnmdamm7xfd0wak53ut6elz5c4swx2yqdj4e", "hardware-key"},
        {"age1yubikey1q2w7u3vpya839jxxuq8g0sedh3d740d4xvn639sqhr95ejj8vu3hyfumptt",
         "age plugin recipient"},
        {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBjlqmZ6lL3x6Lv1ho2mB6SshVJV0uR0m2L5tHzxbP6l",
         "an SSH public key"},
        {"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7", "an SSH public key"},
    };
    for (size_t i = 0; i < sizeof recipients / sizeof recipients[0]; i++) {
        struct age_recipient recipient;
        struct error err = {0};
        assert_int_equal(age_recipient_parse(recipients[i].text, &recipient, &err), -ENOTSUP);
        assert_contains(err.message, recipients[i].kind);
        assert_contains(err.message, "sqlprodd does not support");
    }
    static const struct {
        const char *text;
        const char *kind;
    } identities[] = {
        {"AGE-SECRET-KEY-PQ-1XX76JRALNLXDMEW0CRK45QMCCH4X06SE84UN3VPM33W6HWDX0H3SK3ZQFR",
         "post-quantum"},
        {"AGE-PLUGIN-YUBIKEY-1QQQQQQQQQQQQQQQQ", "age plugin key"},
        {"-----BEGIN OPENSSH PRIVATE KEY-----", "SSH key"},
    };
    for (size_t i = 0; i < sizeof identities / sizeof identities[0]; i++) {
        struct age_identity identity;
        struct error err = {0};
        assert_int_equal(age_identity_parse(identities[i].text, &identity, &err), -ENOTSUP);
        assert_contains(err.message, identities[i].kind);
    }
}

static void identity_file_with_comments_and_crlf_is_read(void **state)
{
    (void)state;
    struct age_identity first, second;
    struct age_recipient unused;
    char a[AGE_IDENTITY_TEXT], b[AGE_IDENTITY_TEXT], text[1024];
    make_identity(&first, &unused);
    make_identity(&second, &unused);
    age_identity_format(&first, a);
    age_identity_format(&second, b);
    snprintf(text, sizeof text,
             "# created: 2026-12-02T10:00:00Z\r\n# public key: age1...\r\n%s\r\n\n   \n# old "
             "key, kept for old backups\n%s",
             a, b);
    struct age_identity *list = NULL;
    size_t count = 0;
    struct error err = {0};
    assert_int_equal(age_identities_parse(text, strlen(text), "key.txt", &list, &count, &err), 0);
    assert_int_equal(count, 2);
    assert_memory_equal(&list[0], &first, sizeof first);
    assert_memory_equal(&list[1], &second, sizeof second);
    age_identities_free(list, count);
}

static void identity_file_errors_name_the_line(void **state)
{
    (void)state;
    struct age_identity *list = NULL;
    size_t count = 0;
    struct error err = {0};
    const char *bad = "# created: now\n" SPEC_IDENTITY "\nAGE-SECRET-KEY-1NOTAKEY\n";
    assert_int_equal(
        age_identities_parse(bad, strlen(bad), "/etc/sqlprodd/age.key", &list, &count, &err),
        -EINVAL);
    assert_contains(err.message, "/etc/sqlprodd/age.key:3: the identity (AGE-SECRET-KEY-...)");
    const char *empty = "# only comments\n\n";
    assert_int_equal(
        age_identities_parse(empty, strlen(empty), "/etc/sqlprodd/age.key", &list, &count, &err),
        -EINVAL);
    assert_contains(err.message, "/etc/sqlprodd/age.key: holds no identity");
    const char *pq =
        "AGE-SECRET-KEY-PQ-1XX76JRALNLXDMEW0CRK45QMCCH4X06SE84UN3VPM33W6HWDX0H3SK3ZQFR\n";
    assert_int_equal(age_identities_parse(pq, strlen(pq), "k", &list, &count, &err), -ENOTSUP);
    assert_contains(err.message, "k:1: the identity is a post-quantum");
}

static void identity_file_is_written_like_age_keygen_and_never_replaced(void **state)
{
    (void)state;
    char directory[] = "/tmp/test_age.XXXXXX", path[256], text[512];
    assert_non_null(mkdtemp(directory));
    snprintf(path, sizeof path, "%s/age.key", directory);
    struct age_identity identity;
    struct age_recipient recipient;
    char public_text[AGE_RECIPIENT_TEXT], line[128];
    make_identity(&identity, &recipient);
    age_recipient_format(&recipient, public_text);
    struct error err = {0};

    assert_int_equal(age_identity_file_text(&identity, 1796206500, text, sizeof text) > 0, 1);
    snprintf(line, sizeof line, "# created: 2026-12-02T10:15:00Z\n# public key: %s\n", public_text);
    assert_int_equal(strncmp(text, line, strlen(line)), 0);

    assert_int_equal(age_identity_file_write(path, &identity, 1796206500, &err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    struct age_identity *list = NULL;
    size_t count = 0;
    assert_int_equal(age_identities_read(path, &list, &count, &err), 0);
    assert_int_equal(count, 1);
    assert_memory_equal(&list[0], &identity, sizeof identity);
    age_identities_free(list, count);

    /* The file may hold the only copy of a key old backups need. */
    struct age_identity other;
    make_identity(&other, &recipient);
    assert_int_equal(age_identity_file_write(path, &other, 1796206500, &err), -EEXIST);
    assert_contains(err.message, "it may hold a key that backups need");
    assert_int_equal(age_identities_read(path, &list, &count, &err), 0);
    assert_memory_equal(&list[0], &identity, sizeof identity);
    age_identities_free(list, count);
    unlink(path);
    rmdir(directory);
}

/* ---- round trips --------------------------------------------------------- */

static void files_of_every_size_round_trip_to_several_recipients(void **state)
{
    (void)state;
    static const size_t sizes[] = {0,
                                   1,
                                   AGE_CHUNK_SIZE - 1,
                                   AGE_CHUNK_SIZE,
                                   AGE_CHUNK_SIZE + 1,
                                   2 * AGE_CHUNK_SIZE,
                                   3 * 1024 * 1024 + 5};
    static const size_t pieces[] = {1, 4093, AGE_CHUNK_SIZE, 1 << 20};
    struct age_identity identities[3];
    struct age_recipient recipients[3];
    for (int i = 0; i < 3; i++)
        make_identity(&identities[i], &recipients[i]);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        unsigned char *plain = pattern(sizes[s], (unsigned)s);
        for (size_t p = 0; p < sizeof pieces / sizeof pieces[0]; p++) {
            if (pieces[p] == 1 && sizes[s] > 3 * AGE_CHUNK_SIZE)
                continue; /* byte by byte is covered by the smaller sizes */
            struct buffer sealed = {0};
            encrypt_to(recipients, 3, plain, sizes[s], pieces[p], &sealed);
            /* version 22, 98 a stanza, MAC line 48, nonce 16 */
            assert_int_equal(sealed.size, encrypted_size(22 + 3 * 98 + 48 + 16, sizes[s]));
            for (int i = 0; i < 3; i++) {
                struct buffer opened = {0};
                enum age_fault fault;
                char message[1024];
                assert_int_equal(decrypt_with(&identities[i], 1, sealed.data, sealed.size,
                                              pieces[(p + 1) % 4], &opened, &fault, message),
                                 0);
                assert_int_equal(fault, AGE_FAULT_NONE);
                assert_int_equal(opened.size, sizes[s]);
                if (sizes[s])
                    assert_memory_equal(opened.data, plain, sizes[s]);
                buffer_free(&opened);
            }
            buffer_free(&sealed);
        }
        free(plain);
    }
}

static void two_encryptions_of_one_file_share_nothing(void **state)
{
    (void)state;
    struct age_identity identity;
    struct age_recipient recipient;
    make_identity(&identity, &recipient);
    unsigned char plain[1000] = {0};
    struct buffer a = {0}, b = {0};
    encrypt_to(&recipient, 1, plain, sizeof plain, sizeof plain, &a);
    encrypt_to(&recipient, 1, plain, sizeof plain, sizeof plain, &b);
    assert_int_equal(a.size, b.size);
    /* Fresh ephemeral share, file key and nonce: not one 16-byte run of the
     * stanza, MAC or payload repeats. */
    size_t header = 22 + 10;
    assert_memory_not_equal(a.data + header, b.data + header, 16);
    assert_memory_not_equal(a.data + a.size - 16, b.data + b.size - 16, 16);
    buffer_free(&a);
    buffer_free(&b);
}

struct chunk_job {
    const struct age_encryptor *encryptor;
    const unsigned char *plain;
    size_t size;
    uint64_t first, step, count;
    unsigned char *out; /* the payload part of the file */
    int rc;
};

static void *seal_chunks(void *argument)
{
    struct chunk_job *job = argument;
    for (uint64_t i = job->first; i < job->count; i += job->step) {
        bool last = i == job->count - 1;
        size_t size = last ? job->size - i * AGE_CHUNK_SIZE : AGE_CHUNK_SIZE;
        struct error err = {0};
        job->rc |= age_encrypt_chunk(job->encryptor, i, last, job->plain + i * AGE_CHUNK_SIZE, size,
                                     job->out + i * (AGE_CHUNK_SIZE + AGE_TAG_SIZE), &err);
    }
    return NULL;
}

static void chunks_sealed_in_parallel_equal_the_stream(void **state)
{
    (void)state;
    struct age_identity identity;
    struct age_recipient recipient;
    make_identity(&identity, &recipient);
    size_t size = 7 * AGE_CHUNK_SIZE + 123;
    uint64_t chunks = 8;
    unsigned char *plain = pattern(size, 7);
    struct buffer streamed = {0};
    struct age_encryptor *e = NULL;
    struct error err = {0};
    assert_int_equal(age_encryptor_new(&recipient, 1, buffer_sink, &streamed, &e, &err), 0);
    assert_int_equal(age_encrypt_update(e, plain, size, &err), 0);
    assert_int_equal(age_encrypt_finish(e, &err), 0);

    size_t prefix_size = 0;
    const unsigned char *prefix = age_encryptor_prefix(e, &prefix_size);
    unsigned char *payload = calloc(1, size + chunks * AGE_TAG_SIZE);
    struct chunk_job jobs[3];
    pthread_t threads[3];
    for (int t = 0; t < 3; t++) {
        jobs[t] = (struct chunk_job){e, plain, size, (uint64_t)t, 3, chunks, payload, 0};
        assert_int_equal(pthread_create(&threads[t], NULL, seal_chunks, &jobs[t]), 0);
    }
    for (int t = 0; t < 3; t++) {
        pthread_join(threads[t], NULL);
        assert_int_equal(jobs[t].rc, 0);
    }
    assert_int_equal(streamed.size, prefix_size + size + chunks * AGE_TAG_SIZE);
    assert_memory_equal(streamed.data, prefix, prefix_size);
    assert_memory_equal(streamed.data + prefix_size, payload, size + chunks * AGE_TAG_SIZE);

    /* Only the last chunk may be short, and only the empty file's is empty. */
    unsigned char out[AGE_CHUNK_SIZE + AGE_TAG_SIZE];
    assert_int_equal(age_encrypt_chunk(e, 0, false, plain, 100, out, &err), -EINVAL);
    assert_int_equal(age_encrypt_chunk(e, 3, true, plain, 0, out, &err), -EINVAL);
    assert_int_equal(age_encrypt_chunk(e, 0, true, plain, 0, out, &err), 0);
    age_encryptor_free(e);
    free(payload);
    free(plain);
    buffer_free(&streamed);
}

/* ---- failures ------------------------------------------------------------ */

struct sealed_file {
    struct age_identity identity;
    struct age_recipient recipient;
    unsigned char *plain;
    size_t size;
    struct buffer file;
    size_t header; /* bytes before the payload nonce */
};

/* 3 full chunks and 1000 bytes: chunks 0..3. */
static void seal_sample(struct sealed_file *s)
{
    make_identity(&s->identity, &s->recipient);
    s->size = 3 * AGE_CHUNK_SIZE + 1000;
    s->plain = pattern(s->size, 3);
    memset(&s->file, 0, sizeof s->file);
    encrypt_to(&s->recipient, 1, s->plain, s->size, 65000, &s->file);
    s->header = 22 + 98 + 48;
}

static void sample_free(struct sealed_file *s)
{
    free(s->plain);
    buffer_free(&s->file);
}

static size_t chunk_offset(const struct sealed_file *s, size_t chunk)
{
    return s->header + 16 + chunk * (AGE_CHUNK_SIZE + AGE_TAG_SIZE);
}

static void wrong_identity_names_the_object(void **state)
{
    (void)state;
    struct sealed_file s;
    seal_sample(&s);
    struct age_identity other;
    struct age_recipient other_recipient;
    char other_text[AGE_RECIPIENT_TEXT];
    make_identity(&other, &other_recipient);
    age_recipient_format(&other_recipient, other_text);
    struct buffer out = {0};
    enum age_fault fault;
    char message[1024];
    assert_int_equal(
        decrypt_with(&other, 1, s.file.data, s.file.size, 1 << 20, &out, &fault, message), -EACCES);
    assert_int_equal(fault, AGE_FAULT_NO_MATCH);
    assert_contains(message, "no identity matches any recipient of " OBJECT);
    assert_contains(message, "1 X25519 recipient,");
    assert_contains(message, other_text);
    assert_int_equal(out.size, 0);
    /* No identity at all is the same failure, not a crash. */
    assert_int_equal(
        decrypt_with(NULL, 0, s.file.data, s.file.size, 1 << 20, &out, &fault, message), -EACCES);
    assert_contains(message, "no identity matches any recipient of " OBJECT);
    buffer_free(&out);
    sample_free(&s);
}

static void flipped_byte_in_a_chunk_names_the_chunk_and_releases_nothing_of_it(void **state)
{
    (void)state;
    struct sealed_file s;
    seal_sample(&s);
    for (size_t chunk = 0; chunk < 4; chunk++) {
        /* In the ciphertext, and in the tag. */
        size_t offsets[] = {chunk_offset(&s, chunk) + 5,
                            chunk < 3 ? chunk_offset(&s, chunk + 1) - 1 : s.file.size - 1};
        for (int k = 0; k < 2; k++) {
            s.file.data[offsets[k]] ^= 0x01;
            struct buffer out = {0};
            enum age_fault fault;
            char message[1024], want[128];
            int rc = decrypt_with(&s.identity, 1, s.file.data, s.file.size, 10000, &out, &fault,
                                  message);
            s.file.data[offsets[k]] ^= 0x01;
            assert_int_equal(rc, -EBADMSG);
            assert_int_equal(fault, AGE_FAULT_PAYLOAD);
            snprintf(want, sizeof want, "chunk %zu", chunk);
            assert_contains(message, OBJECT);
            assert_contains(message, want);
            assert_contains(message, "nothing decrypted from it may be used");
            /* Exactly the chunks before it were released, intact. */
            assert_int_equal(out.size, chunk * AGE_CHUNK_SIZE);
            if (out.size)
                assert_memory_equal(out.data, s.plain, out.size);
            buffer_free(&out);
        }
    }
    sample_free(&s);
}

static void flipped_byte_in_the_header_is_caught(void **state)
{
    (void)state;
    struct sealed_file s;
    seal_sample(&s);
    static const struct {
        size_t offset;
        enum age_fault fault;
        const char *says;
    } cases[] = {
        {3, AGE_FAULT_HEADER, "does not start with"},               /* version line */
        {22 + 15, AGE_FAULT_NO_MATCH, "no identity matches"},       /* the ephemeral share */
        {22 + 60, AGE_FAULT_NO_MATCH, "no identity matches"},       /* the wrapped file key */
        {22 + 98 + 10, AGE_FAULT_HEADER_MAC, "MAC does not match"}, /* the MAC */
        {22 + 98 + 48 + 3, AGE_FAULT_PAYLOAD, "chunk 0"},           /* the payload nonce */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned char saved = s.file.data[cases[i].offset];
        /* A change that stays inside base64's alphabet where it is text. */
        s.file.data[cases[i].offset] = saved == 'A' ? 'B' : (saved == 'a' ? 'b' : 'A');
        if (cases[i].offset >= s.header)
            s.file.data[cases[i].offset] = saved ^ 0x80;
        struct buffer out = {0};
        enum age_fault fault;
        char message[1024];
        int rc =
            decrypt_with(&s.identity, 1, s.file.data, s.file.size, 1 << 20, &out, &fault, message);
        s.file.data[cases[i].offset] = saved;
        assert_true(rc < 0);
        if (fault != cases[i].fault)
            fail_msg("offset %zu: fault %d, want %d: %s", cases[i].offset, fault, cases[i].fault,
                     message);
        assert_contains(message, cases[i].says);
        assert_contains(message, OBJECT);
        assert_int_equal(out.size, 0);
        buffer_free(&out);
    }
    sample_free(&s);
}

static void truncated_file_is_an_error_at_the_end(void **state)
{
    (void)state;
    struct sealed_file s;
    seal_sample(&s);
    struct {
        size_t size;
        enum age_fault fault;
        const char *says;
        size_t released;
    } cases[] = {
        /* cut where a chunk ends: proven truncated */
        {chunk_offset(&s, 3), AGE_FAULT_TRUNCATED, "is truncated: it ends after chunk 2",
         3 * AGE_CHUNK_SIZE},
        {chunk_offset(&s, 1), AGE_FAULT_TRUNCATED, "is truncated: it ends after chunk 0",
         AGE_CHUNK_SIZE},
        /* cut anywhere else */
        {s.file.size - 1, AGE_FAULT_PAYLOAD, "the file is truncated or damaged",
         3 * AGE_CHUNK_SIZE},
        {chunk_offset(&s, 2) + 7, AGE_FAULT_PAYLOAD, "its last chunk (chunk 2", 2 * AGE_CHUNK_SIZE},
        {s.header + 16, AGE_FAULT_TRUNCATED, "without any data chunk", 0},
        {s.header + 5, AGE_FAULT_HEADER, "before the end of its payload nonce", 0},
        {s.header - 10, AGE_FAULT_HEADER, "ends inside its header", 0},
        {10, AGE_FAULT_HEADER, "ends inside its header", 0},
        {0, AGE_FAULT_HEADER, "is empty: not an age file", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct buffer out = {0};
        enum age_fault fault;
        char message[1024];
        int rc =
            decrypt_with(&s.identity, 1, s.file.data, cases[i].size, 30000, &out, &fault, message);
        assert_int_equal(rc, -EBADMSG);
        if (fault != cases[i].fault)
            fail_msg("cut at %zu: fault %d, want %d: %s", cases[i].size, fault, cases[i].fault,
                     message);
        assert_contains(message, OBJECT);
        assert_contains(message, cases[i].says);
        assert_int_equal(out.size, cases[i].released);
        if (cases[i].fault != AGE_FAULT_HEADER)
            assert_contains(message, "nothing decrypted from it may be used");
        buffer_free(&out);
    }
    sample_free(&s);
}

static void data_after_the_final_chunk_is_refused(void **state)
{
    (void)state;
    struct sealed_file s;
    seal_sample(&s);
    struct buffer longer = {0};
    buffer_sink(&longer, s.file.data, s.file.size, NULL);
    buffer_sink(&longer, (const unsigned char *)"x", 1, NULL);
    struct buffer out = {0};
    enum age_fault fault;
    char message[1024];
    assert_int_equal(
        decrypt_with(&s.identity, 1, longer.data, longer.size, 4096, &out, &fault, message),
        -EBADMSG);
    assert_int_equal(fault, AGE_FAULT_PAYLOAD);
    assert_contains(message, OBJECT ": its last chunk (chunk 3, 1017 bytes) fails authentication");
    buffer_free(&out);
    buffer_free(&longer);

    /* A full final chunk, then more: the final flag proves the extra. */
    unsigned char *plain = pattern(2 * AGE_CHUNK_SIZE, 9);
    struct buffer sealed = {0};
    encrypt_to(&s.recipient, 1, plain, 2 * AGE_CHUNK_SIZE, AGE_CHUNK_SIZE, &sealed);
    buffer_sink(&sealed, (const unsigned char *)"joined", 6, NULL);
    assert_int_equal(
        decrypt_with(&s.identity, 1, sealed.data, sealed.size, 4096, &out, &fault, message),
        -EBADMSG);
    assert_int_equal(fault, AGE_FAULT_PAYLOAD);
    assert_contains(message, OBJECT ": data follows the final chunk (chunk 1)");
    assert_contains(message, "nothing decrypted from it may be used");
    buffer_free(&out);
    buffer_free(&sealed);
    free(plain);
    sample_free(&s);
}

/* A header written by hand: `stanzas` between the version and MAC lines. */
static void decrypt_header_text(const char *stanzas, enum age_fault want, const char *says)
{
    char text[2048];
    snprintf(text, sizeof text,
             "age-encryption.org/v1\n%s--- QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVpbXF1eX2A\n"
             "0123456789abcdef-payload",
             stanzas);
    struct age_identity identity;
    struct age_recipient recipient;
    make_identity(&identity, &recipient);
    struct buffer out = {0};
    enum age_fault fault;
    char message[1024];
    int rc = decrypt_with(&identity, 1, (const unsigned char *)text, strlen(text), 7, &out, &fault,
                          message);
    assert_true(rc < 0);
    if (fault != want)
        fail_msg("%s: fault %d, want %d: %s", stanzas, fault, want, message);
    assert_contains(message, OBJECT);
    assert_contains(message, says);
    assert_int_equal(out.size, 0);
    buffer_free(&out);
}

static void unknown_recipient_types_are_named(void **state)
{
    (void)state;
    decrypt_header_text("-> ssh-ed25519 Zm9v MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI\n"
                        "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI\n",
                        AGE_FAULT_UNSUPPORTED,
                        OBJECT " is encrypted to recipient types sqlprodd does not support: "
                               "ssh-ed25519 (sqlprodd reads X25519 recipients");
    decrypt_header_text("-> scrypt c2FsdHNhbHRzYWx0c2FsdA 18\n"
                        "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI\n",
                        AGE_FAULT_UNSUPPORTED, "does not support: scrypt (");
    decrypt_header_text("-> ssh-rsa Zm9v\nYmFy\n-> piv-p256 Zm9v Zm9v\nYmFy\n"
                        "-> ssh-rsa YmF6\nYmFy\n",
                        AGE_FAULT_UNSUPPORTED, "does not support: ssh-rsa, piv-p256 (");
    /* With an X25519 stanza too, it is "no match", and still says what else
     * the file is encrypted to. */
    decrypt_header_text("-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc\n"
                        "hjabGXwSLQ9c3S6Lw2i+S2Tu2fiwQHHslbBN6B41FLE\n"
                        "-> ssh-ed25519 Zm9v YmFy\nYmFy\n",
                        AGE_FAULT_NO_MATCH,
                        "no identity matches any recipient of " OBJECT ": it is encrypted to 1 "
                        "X25519 recipient (and to ssh-ed25519, which sqlprodd does not support)");
}

static void bad_headers_say_what_is_wrong(void **state)
{
    (void)state;
    decrypt_header_text("", AGE_FAULT_HEADER, "the header has no recipient stanza");
    decrypt_header_text("-> X25519\nAAAA\n", AGE_FAULT_HEADER,
                        "an X25519 stanza does not have exactly 2 arguments");
    decrypt_header_text("-> X25519 AAAA\nAAAA\n", AGE_FAULT_HEADER,
                        "share is not 32 bytes of canonical base64");
    decrypt_header_text("-> X25519 TEiF0ypqr+bpvcqXNyCVJpL7OuwPdVwPL7KQEbFDOCc\nAAAA\n",
                        AGE_FAULT_HEADER, "an X25519 stanza's body is not 32 bytes");
    /* 0 is a low-order point: any shared secret with it is all zeros. */
    decrypt_header_text("-> X25519 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
                        "hjabGXwSLQ9c3S6Lw2i+S2Tu2fiwQHHslbBN6B41FLE\n",
                        AGE_FAULT_HEADER, "share is a low-order point");
    decrypt_header_text("-> foo  bar\nAAAA\n", AGE_FAULT_HEADER, "an empty argument");
    decrypt_header_text("-> foo\nAAA=\n", AGE_FAULT_HEADER, "not base64");
    decrypt_header_text("-> foo\nAAB\n", AGE_FAULT_HEADER, "not canonical base64");
    decrypt_header_text("hello\n", AGE_FAULT_HEADER, "neither a recipient stanza");
    decrypt_header_text("-> foo\n"
                        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
                        AGE_FAULT_HEADER, "longer than 64 columns");
    decrypt_header_text("-> scrypt c2FsdHNhbHRzYWx0c2FsdA 18\nAAAA\n-> X25519 abc\nAAAA\n",
                        AGE_FAULT_HEADER, "an scrypt stanza is not alone");
}

static void files_that_are_not_age_files_fail_at_once(void **state)
{
    (void)state;
    struct age_identity identity;
    struct age_recipient recipient;
    make_identity(&identity, &recipient);
    static const struct {
        const char *text;
        enum age_fault fault;
        const char *says;
    } cases[] = {
        {"\x1f\x8b\x08\x00gzip data", AGE_FAULT_HEADER,
         "does not start with \"age-encryption.org/\""},
        {"age-encryption.org/v2\n-> X25519 a\n", AGE_FAULT_HEADER, "the version line is not"},
        {"age-encryption.org/v1\r\n", AGE_FAULT_HEADER, "line ends other than LF"},
        {"\n-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n",
         AGE_FAULT_ARMORED, OBJECT " is ASCII-armored (made with age -a)"},
        {"-----BEGIN AGE ENC", AGE_FAULT_HEADER, "does not start with"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct buffer out = {0};
        enum age_fault fault;
        char message[1024];
        assert_true(decrypt_with(&identity, 1, (const unsigned char *)cases[i].text,
                                 strlen(cases[i].text), 1, &out, &fault, message) < 0);
        if (fault != cases[i].fault)
            fail_msg("%s: fault %d, want %d: %s", cases[i].text, fault, cases[i].fault, message);
        assert_contains(message, cases[i].says);
        buffer_free(&out);
    }
}

static void endless_header_line_stops_at_one_mebibyte(void **state)
{
    (void)state;
    /* A start that could be an age file, then no line end: memory stays
     * bounded and the answer comes without reading the rest. */
    size_t size = 4 * 1024 * 1024;
    unsigned char *data = malloc(size);
    alarm(20); /* a decoder that never stops taking bytes hangs: fail instead */
    memset(data, 'A', size);
    memcpy(data, "age-encryption.org/v1\n-> ", 25);
    struct age_identity identity;
    struct age_recipient recipient;
    make_identity(&identity, &recipient);
    struct age_decryptor *d = NULL;
    struct buffer out = {0};
    struct error err = {0};
    assert_int_equal(age_decryptor_new(&identity, 1, OBJECT, buffer_sink, &out, &d, &err), 0);
    int rc = 0;
    size_t fed = 0;
    for (; fed + 100000 <= size && rc == 0; fed += 100000)
        rc = age_decrypt_update(d, data + fed, 100000, &err);
    assert_int_equal(rc, -EBADMSG);
    assert_true(fed <= 1200000);
    assert_int_equal(age_decryptor_fault(d), AGE_FAULT_HEADER);
    assert_contains(err.message, "the header is longer than 1 MiB");
    age_decryptor_free(d);
    free(data);
    alarm(0);
}

static void a_failing_sink_stops_both_directions(void **state)
{
    (void)state;
    struct sealed_file s;
    seal_sample(&s);
    struct buffer out = {.fail_at_call = 2};
    enum age_fault fault;
    char message[1024];
    assert_int_equal(
        decrypt_with(&s.identity, 1, s.file.data, s.file.size, 1 << 20, &out, &fault, message),
        -ENOSPC);
    assert_int_equal(fault, AGE_FAULT_NONE);
    assert_string_equal(message, "disk full writing the restored file");
    buffer_free(&out);

    struct buffer sealed = {.fail_at_call = 2};
    struct age_encryptor *e = NULL;
    struct error err = {0};
    assert_int_equal(age_encryptor_new(&s.recipient, 1, buffer_sink, &sealed, &e, &err), 0);
    assert_int_equal(age_encrypt_update(e, s.plain, s.size, &err), -ENOSPC);
    assert_int_equal(age_encrypt_finish(e, &err), -EINVAL);
    assert_contains(err.message, "failed before");
    age_encryptor_free(e);
    buffer_free(&sealed);
    sample_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(spec_example_identity_gives_its_recipient),
        cmocka_unit_test(generated_keys_round_trip_as_text),
        cmocka_unit_test(mistyped_keys_are_refused_with_the_reason),
        cmocka_unit_test(other_kinds_of_keys_are_named),
        cmocka_unit_test(identity_file_with_comments_and_crlf_is_read),
        cmocka_unit_test(identity_file_errors_name_the_line),
        cmocka_unit_test(identity_file_is_written_like_age_keygen_and_never_replaced),
        cmocka_unit_test(files_of_every_size_round_trip_to_several_recipients),
        cmocka_unit_test(two_encryptions_of_one_file_share_nothing),
        cmocka_unit_test(chunks_sealed_in_parallel_equal_the_stream),
        cmocka_unit_test(wrong_identity_names_the_object),
        cmocka_unit_test(flipped_byte_in_a_chunk_names_the_chunk_and_releases_nothing_of_it),
        cmocka_unit_test(flipped_byte_in_the_header_is_caught),
        cmocka_unit_test(truncated_file_is_an_error_at_the_end),
        cmocka_unit_test(data_after_the_final_chunk_is_refused),
        cmocka_unit_test(unknown_recipient_types_are_named),
        cmocka_unit_test(bad_headers_say_what_is_wrong),
        cmocka_unit_test(files_that_are_not_age_files_fail_at_once),
        cmocka_unit_test(endless_header_line_stops_at_one_mebibyte),
        cmocka_unit_test(a_failing_sink_stops_both_directions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
