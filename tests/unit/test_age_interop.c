/*
 * test_age_interop.c: src/crypto/age.c against the real age tool (Debian's
 * `age` 1.1.1, installed by scripts/install-deps), both ways: files age
 * made (`age -r age1... -o f.age f`) decrypt with our code, files we made
 * decrypt with `age -d -i key.txt`; keys age-keygen made are read by us, and
 * identity files we wrote are read by age and age-keygen.
 *
 * The operator's bad day in miniature: whatever sqlprodd wrote, the standard
 * tool reads. A missing `age` is a failure, not a skip: CI installs it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "crypto/age.h"

extern char **environ;

static char directory[] = "/tmp/test_age_interop.XXXXXX";

/* Sizes round the 64 KiB chunk and a few MiB. */
static const size_t sizes[] = {0, 1, 65536, 65537, 3 * 1024 * 1024 + 7};

#define assert_contains(text, part)                                                                \
    do {                                                                                           \
        if (!strstr((text), (part)))                                                               \
            fail_msg("\"%s\" lacks \"%s\"", (text), (part));                                       \
    } while (0)

/* ---- helpers ------------------------------------------------------------- */

/* A path in the test's directory. The answer lives until 64 more calls:
 * keep a copy of what a test holds longer (keys). */
static char *path_of(const char *name)
{
    static char paths[64][4096];
    static int next;
    char *path = paths[next++ % 64];
    snprintf(path, 4096, "%s/%s", directory, name);
    return path;
}

/* Runs argv; stdout to `output` (or /dev/null), stderr to DIR/stderr.
 * Returns the exit status. */
static int run(const char *const argv[], const char *output)
{
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, output ? output : "/dev/null",
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&actions, 2, path_of("stderr"), O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &actions, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0)
        fail_msg("cannot run %s: %s (scripts/install-deps installs age)", argv[0], strerror(rc));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static unsigned char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long length = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc((size_t)length + 1);
    assert_int_equal(fread(data, 1, (size_t)length, f), (size_t)length);
    data[length] = '\0';
    fclose(f);
    *size = (size_t)length;
    return data;
}

static void write_file(const char *path, const unsigned char *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
}

static char *stderr_text(void)
{
    size_t size;
    return (char *)read_file(path_of("stderr"), &size);
}

static unsigned char *pattern(size_t size, unsigned seed)
{
    unsigned char *data = malloc(size + 1);
    uint32_t x = seed * 2654435761u + 7;
    for (size_t i = 0; i < size; i++) {
        x = x * 1103515245u + 12345u;
        data[i] = (unsigned char)(x >> 16);
    }
    return data;
}

static int file_sink(void *context, const unsigned char *data, size_t size, struct error *err)
{
    if (fwrite(data, 1, size, context) != size)
        return error_set(err, -EIO, "write failed");
    return 0;
}

/* Our decryption of file `in` into `out`; the fault, and the message. */
static enum age_fault our_decrypt(const struct age_identity *identities, size_t count,
                                  const char *in, const char *out, char message[1024])
{
    FILE *source = fopen(in, "rb"), *target = fopen(out, "wb");
    assert_non_null(source);
    assert_non_null(target);
    struct age_decryptor *d = NULL;
    struct error err = {0};
    assert_int_equal(age_decryptor_new(identities, count, in, file_sink, target, &d, &err), 0);
    unsigned char piece[50000]; /* not a multiple of anything in the format */
    size_t n;
    int rc = 0;
    while (rc == 0 && (n = fread(piece, 1, sizeof piece, source)) > 0)
        rc = age_decrypt_update(d, piece, n, &err);
    if (rc == 0)
        rc = age_decrypt_finish(d, &err);
    enum age_fault fault = age_decryptor_fault(d);
    snprintf(message, 1024, "%s", rc ? err.message : "");
    assert_true((rc == 0) == (fault == AGE_FAULT_NONE));
    age_decryptor_free(d);
    fclose(source);
    fclose(target);
    return fault;
}

static void our_encrypt(const struct age_recipient *recipients, size_t count, const char *in,
                        const char *out)
{
    FILE *source = fopen(in, "rb"), *target = fopen(out, "wb");
    assert_non_null(source);
    assert_non_null(target);
    struct age_encryptor *e = NULL;
    struct error err = {0};
    assert_int_equal(age_encryptor_new(recipients, count, file_sink, target, &e, &err), 0);
    unsigned char piece[50000];
    size_t n;
    while ((n = fread(piece, 1, sizeof piece, source)) > 0)
        assert_int_equal(age_encrypt_update(e, piece, n, &err), 0);
    assert_int_equal(age_encrypt_finish(e, &err), 0);
    age_encryptor_free(e);
    fclose(source);
    assert_int_equal(fclose(target), 0);
}

static void assert_same_files(const char *a, const char *b)
{
    size_t size_a, size_b;
    unsigned char *data_a = read_file(a, &size_a), *data_b = read_file(b, &size_b);
    if (size_a != size_b || memcmp(data_a, data_b, size_a) != 0)
        fail_msg("%s (%zu bytes) and %s (%zu bytes) differ", a, size_a, b, size_b);
    free(data_a);
    free(data_b);
}

/* The "# public key: age1..." line of an identity file. */
static void public_key_line(const char *path, char out[AGE_RECIPIENT_TEXT])
{
    size_t size;
    char *text = (char *)read_file(path, &size), *line = strstr(text, "# public key: ");
    assert_non_null(line);
    memcpy(out, line + 14, AGE_RECIPIENT_TEXT - 1);
    out[AGE_RECIPIENT_TEXT - 1] = '\0';
    free(text);
}

static void make_plain_files(void)
{
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "plain-%zu", sizes[i]);
        unsigned char *data = pattern(sizes[i], (unsigned)i);
        write_file(path_of(name), data, sizes[i]);
        free(data);
    }
}

/* ---- age made it, we read it --------------------------------------------- */

static void age_keygen_key_and_age_files_are_read_by_us(void **state)
{
    (void)state;
    char key[4096];
    snprintf(key, sizeof key, "%s", path_of("age-keygen.key"));
    unlink(key);
    assert_int_equal(run((const char *const[]){"age-keygen", "-o", key, NULL}, NULL), 0);
    char recipient_text[AGE_RECIPIENT_TEXT];
    public_key_line(key, recipient_text);

    struct age_identity *identities = NULL;
    size_t count = 0;
    struct error err = {0};
    assert_int_equal(age_identities_read(key, &identities, &count, &err), 0);
    assert_int_equal(count, 1);
    struct age_recipient ours;
    char our_text[AGE_RECIPIENT_TEXT];
    age_identity_recipient(&identities[0], &ours);
    age_recipient_format(&ours, our_text);
    assert_string_equal(our_text, recipient_text);

    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char plain[64], sealed[64], opened[64], message[1024];
        snprintf(plain, sizeof plain, "plain-%zu", sizes[i]);
        snprintf(sealed, sizeof sealed, "by-age-%zu.age", sizes[i]);
        snprintf(opened, sizeof opened, "by-age-%zu.out", sizes[i]);
        const char *argv[] = {"age",          "-r", recipient_text, "-o", path_of(sealed),
                              path_of(plain), NULL};
        assert_int_equal(run(argv, NULL), 0);
        enum age_fault fault =
            our_decrypt(identities, count, path_of(sealed), path_of(opened), message);
        if (fault != AGE_FAULT_NONE)
            fail_msg("%s: %s", sealed, message);
        assert_same_files(path_of(plain), path_of(opened));
    }
    age_identities_free(identities, count);
}

static void age_file_to_several_recipients_opens_with_each_identity(void **state)
{
    (void)state;
    struct age_identity identities[3];
    struct age_recipient recipients[3];
    char texts[3][AGE_RECIPIENT_TEXT];
    struct error err = {0};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(age_identity_generate(&identities[i], &err), 0);
        age_identity_recipient(&identities[i], &recipients[i]);
        age_recipient_format(&recipients[i], texts[i]);
    }
    const char *plain = path_of("plain-65537");
    const char *sealed = path_of("by-age-three.age");
    const char *argv[] = {"age",    "-r", texts[0], "-r",  texts[1], "-r",
                          texts[2], "-o", sealed,   plain, NULL};
    assert_int_equal(run(argv, NULL), 0);
    for (int i = 0; i < 3; i++) {
        char message[1024];
        assert_int_equal(our_decrypt(&identities[i], 1, sealed, path_of("three.out"), message),
                         AGE_FAULT_NONE);
        assert_same_files(plain, path_of("three.out"));
    }
}

/* ---- we made it, age reads it -------------------------------------------- */

static void our_key_and_files_are_read_by_age(void **state)
{
    (void)state;
    struct age_identity identity, others[2];
    struct age_recipient recipients[3];
    struct error err = {0};
    assert_int_equal(age_identity_generate(&identity, &err), 0);
    age_identity_recipient(&identity, &recipients[0]);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(age_identity_generate(&others[i], &err), 0);
        age_identity_recipient(&others[i], &recipients[1 + i]);
    }
    char key[4096];
    snprintf(key, sizeof key, "%s", path_of("ours.key"));
    unlink(key);
    assert_int_equal(age_identity_file_write(key, &identity, time(NULL), &err), 0);

    /* age-keygen -y prints the recipient of an identity file. */
    char our_text[AGE_RECIPIENT_TEXT];
    age_recipient_format(&recipients[0], our_text);
    const char *printed = path_of("ours.pub");
    assert_int_equal(run((const char *const[]){"age-keygen", "-y", key, NULL}, printed), 0);
    size_t size;
    char *text = (char *)read_file(printed, &size);
    assert_int_equal(strncmp(text, our_text, strlen(our_text)), 0);
    free(text);

    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char plain[64], sealed[64], opened[64];
        snprintf(plain, sizeof plain, "plain-%zu", sizes[i]);
        snprintf(sealed, sizeof sealed, "by-us-%zu.age", sizes[i]);
        snprintf(opened, sizeof opened, "by-us-%zu.out", sizes[i]);
        our_encrypt(recipients, 3, path_of(plain), path_of(sealed));
        /* To stdout: age 1.1.1 creates an -o file only when it has a
         * byte to write, so an empty file would leave none. */
        const char *argv[] = {"age", "-d", "-i", key, path_of(sealed), NULL};
        int status = run(argv, path_of(opened));
        if (status != 0) {
            char *why = stderr_text();
            fail_msg("age -d %s: exit %d: %s", sealed, status, why);
        }
        assert_same_files(path_of(plain), path_of(opened));
    }

    /* Each of the other recipients too, with identity files age-keygen's
     * format holds. */
    for (int i = 0; i < 2; i++) {
        char name[32], other_key[64];
        snprintf(name, sizeof name, "other-%d.key", i);
        snprintf(other_key, sizeof other_key, "%s", path_of(name));
        unlink(other_key);
        assert_int_equal(age_identity_file_write(other_key, &others[i], time(NULL), &err), 0);
        const char *argv[] = {
            "age", "-d", "-i", other_key, "-o", path_of("other.out"), path_of("by-us-65536.age"),
            NULL};
        assert_int_equal(run(argv, NULL), 0);
        assert_same_files(path_of("plain-65536"), path_of("other.out"));
    }
}

static void age_refuses_what_we_refuse(void **state)
{
    (void)state;
    /* Our truncated and flipped files are refused by age as well: the last
     * chunk flag and the tags mean the same to both. */
    struct age_identity identity;
    struct age_recipient recipient;
    struct error err = {0};
    assert_int_equal(age_identity_generate(&identity, &err), 0);
    age_identity_recipient(&identity, &recipient);
    char key[4096];
    snprintf(key, sizeof key, "%s", path_of("refuse.key"));
    unlink(key);
    assert_int_equal(age_identity_file_write(key, &identity, time(NULL), &err), 0);
    our_encrypt(&recipient, 1, path_of("plain-65537"), path_of("refuse.age"));
    size_t size;
    unsigned char *data = read_file(path_of("refuse.age"), &size);
    /* drop the final chunk (1 byte + tag): ends after a middle chunk */
    write_file(path_of("cut.age"), data, size - 17);
    const char *argv[] = {"age", "-d", "-i", key, "-o", path_of("cut.out"), path_of("cut.age"),
                          NULL};
    assert_int_not_equal(run(argv, NULL), 0);
    char message[1024];
    assert_int_equal(our_decrypt(&identity, 1, path_of("cut.age"), path_of("cut.out"), message),
                     AGE_FAULT_TRUNCATED);
    data[size - 40] ^= 1;
    write_file(path_of("flip.age"), data, size);
    const char *flip[] = {"age", "-d", "-i", key, "-o", path_of("flip.out"), path_of("flip.age"),
                          NULL};
    assert_int_not_equal(run(flip, NULL), 0);
    assert_int_equal(our_decrypt(&identity, 1, path_of("flip.age"), path_of("flip.out"), message),
                     AGE_FAULT_PAYLOAD);
    free(data);
}

/* ---- what age makes that we refuse, by name ------------------------------ */

static void age_files_we_cannot_read_say_why(void **state)
{
    (void)state;
    struct age_identity identity, stranger;
    struct age_recipient recipient;
    char text[AGE_RECIPIENT_TEXT], message[1024];
    struct error err = {0};
    assert_int_equal(age_identity_generate(&identity, &err), 0);
    assert_int_equal(age_identity_generate(&stranger, &err), 0);
    age_identity_recipient(&identity, &recipient);
    age_recipient_format(&recipient, text);
    const char *plain = path_of("plain-65537");

    /* wrong identity */
    const char *sealed = path_of("for-someone.age");
    assert_int_equal(run((const char *const[]){"age", "-r", text, "-o", sealed, plain, NULL}, NULL),
                     0);
    assert_int_equal(our_decrypt(&stranger, 1, sealed, path_of("x.out"), message),
                     AGE_FAULT_NO_MATCH);
    assert_contains(message, "no identity matches any recipient of ");
    assert_contains(message, sealed);

    /* cut after its first chunk, and a flipped byte in its last chunk */
    size_t size;
    unsigned char *data = read_file(sealed, &size);
    write_file(path_of("cut-by-age.age"), data, size - 17);
    assert_int_equal(
        our_decrypt(&identity, 1, path_of("cut-by-age.age"), path_of("x.out"), message),
        AGE_FAULT_TRUNCATED);
    assert_contains(message, "cut-by-age.age is truncated: it ends after chunk 0");
    assert_contains(message, "nothing decrypted from it may be used");
    data[size - 5] ^= 0x20;
    write_file(path_of("flip-by-age.age"), data, size);
    assert_int_equal(
        our_decrypt(&identity, 1, path_of("flip-by-age.age"), path_of("x.out"), message),
        AGE_FAULT_PAYLOAD);
    assert_contains(message, "flip-by-age.age: its last chunk (chunk 1, 17 bytes) fails "
                             "authentication");
    free(data);

    /* ASCII armor */
    const char *armored = path_of("armored.age");
    assert_int_equal(
        run((const char *const[]){"age", "-a", "-r", text, "-o", armored, plain, NULL}, NULL), 0);
    assert_int_equal(our_decrypt(&identity, 1, armored, path_of("x.out"), message),
                     AGE_FAULT_ARMORED);
    assert_contains(message, "is ASCII-armored (made with age -a)");

    /* an SSH recipient: an Ed25519 key in OpenSSH's wire format */
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    unsigned char raw[32], wire[64];
    size_t raw_size = sizeof raw;
    assert_non_null(ed);
    assert_int_equal(EVP_PKEY_get_raw_public_key(ed, raw, &raw_size), 1);
    EVP_PKEY_free(ed);
    size_t at = 0;
    wire[at++] = 0, wire[at++] = 0, wire[at++] = 0, wire[at++] = 11;
    memcpy(wire + at, "ssh-ed25519", 11), at += 11;
    wire[at++] = 0, wire[at++] = 0, wire[at++] = 0, wire[at++] = 32;
    memcpy(wire + at, raw, 32), at += 32;
    char ssh[160] = "ssh-ed25519 ";
    EVP_EncodeBlock((unsigned char *)ssh + 12, wire, (int)at);
    const char *to_ssh = path_of("ssh.age");
    assert_int_equal(run((const char *const[]){"age", "-r", ssh, "-o", to_ssh, plain, NULL}, NULL),
                     0);
    assert_int_equal(our_decrypt(&identity, 1, to_ssh, path_of("x.out"), message),
                     AGE_FAULT_UNSUPPORTED);
    assert_contains(message, "is encrypted to recipient types sqlprodd does not support: "
                             "ssh-ed25519");
    /* and as a recipient we are asked to encrypt to */
    struct age_recipient parsed;
    assert_int_equal(age_recipient_parse(ssh, &parsed, &err), -ENOTSUP);
    assert_contains(err.message, "an SSH public key");
}

static int set_up(void **state)
{
    (void)state;
    if (!mkdtemp(directory))
        return -1;
    make_plain_files();
    return 0;
}

static int tear_down(void **state)
{
    (void)state;
    const char *argv[] = {"rm", "-rf", directory, NULL};
    return run(argv, NULL) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(age_keygen_key_and_age_files_are_read_by_us),
        cmocka_unit_test(age_file_to_several_recipients_opens_with_each_identity),
        cmocka_unit_test(our_key_and_files_are_read_by_age),
        cmocka_unit_test(age_refuses_what_we_refuse),
        cmocka_unit_test(age_files_we_cannot_read_say_why),
    };
    return cmocka_run_group_tests(tests, set_up, tear_down);
}
