/*
 * age_keys.c: age's X25519 keys as text (Bech32: "age1...",
 * "AGE-SECRET-KEY-1..."), key generation, and identity files in the format
 * age-keygen writes and `age -d -i` reads. Not for recipients files of
 * the configuration: the config layer reads those and calls
 * age_recipient_parse for each key.
 */
#include "crypto/age.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "core/io.h"
#include "crypto/age_internal.h"
#include "crypto/bech32.h"

#define AGE_RECIPIENT_HRP "age"
#define AGE_IDENTITY_HRP  "age-secret-key-"

/* Kinds of keys age knows that we do not, so that the message names what
 * the operator has rather than calling it garbage. */
static const char *age_unsupported_recipient(const char *text)
{
    if (strncmp(text, "age1pq1", 7) == 0)
        return "a post-quantum (mlkem768x25519) age recipient";
    if (strncmp(text, "age1tag1", 8) == 0 || strncmp(text, "age1tagpq1", 10) == 0)
        return "a hardware-key (tag) age recipient";
    if (strncmp(text, "ssh-ed25519 ", 12) == 0 || strncmp(text, "ssh-rsa ", 8) == 0)
        return "an SSH public key";
    if (strncmp(text, "age1", 4) == 0 && strchr(text + 4, '1') != NULL)
        return "an age plugin recipient";
    return NULL;
}

int age_recipient_parse(const char *text, struct age_recipient *recipient, struct error *err)
{
    const char *kind = age_unsupported_recipient(text);
    if (kind)
        return error_set(err, -ENOTSUP,
                         "recipient \"%.40s...\" is %s, which sqlprodd does not support: "
                         "use an X25519 key (age1..., from age-keygen without -pq)",
                         text, kind);
    char hrp[32];
    unsigned char data[64];
    size_t size = 0;
    struct error why = {0};
    int rc = bech32_decode(text, hrp, sizeof hrp, data, sizeof data, &size, &why);
    if (rc == 0 && (strcmp(hrp, AGE_RECIPIENT_HRP) != 0 || size != AGE_KEY_SIZE)) {
        rc = -EINVAL;
        snprintf(why.message, sizeof why.message, "is not an age X25519 public key");
    } else if (rc == -ENOSPC) {
        snprintf(why.message, sizeof why.message, "is too long for an age X25519 public key");
    }
    if (rc != 0)
        return error_set(err, -EINVAL,
                         "recipient \"%.80s\" %s: expected age1 and 58 characters, as "
                         "age-keygen prints after \"public key:\"",
                         text, why.message);
    memcpy(recipient->public_key, data, AGE_KEY_SIZE);
    return 0;
}

void age_recipient_format(const struct age_recipient *recipient, char out[AGE_RECIPIENT_TEXT])
{
    int rc = bech32_encode(out, AGE_RECIPIENT_TEXT, AGE_RECIPIENT_HRP, recipient->public_key,
                           AGE_KEY_SIZE, false);
    (void)rc;
}

int age_identity_parse(const char *text, struct age_identity *identity, struct error *err)
{
    /* Messages quote at most the prefix: the rest is a secret. */
    if (strncmp(text, "AGE-SECRET-KEY-PQ-1", 19) == 0)
        return error_set(err, -ENOTSUP,
                         "the identity is a post-quantum (mlkem768x25519) key, which sqlprodd "
                         "does not support: use an X25519 key (AGE-SECRET-KEY-1...)");
    if (strncmp(text, "AGE-PLUGIN-", 11) == 0)
        return error_set(err, -ENOTSUP,
                         "the identity is an age plugin key, which sqlprodd does not support: "
                         "use an X25519 key (AGE-SECRET-KEY-1...)");
    if (strncmp(text, "-----BEGIN", 10) == 0 || strncmp(text, "ssh-", 4) == 0)
        return error_set(err, -ENOTSUP,
                         "the identity is an SSH key, which sqlprodd does not support: use an "
                         "X25519 key (AGE-SECRET-KEY-1...)");
    char hrp[32];
    unsigned char data[64];
    size_t size = 0;
    struct error why = {0};
    int rc = bech32_decode(text, hrp, sizeof hrp, data, sizeof data, &size, &why);
    if (rc == 0 && (strcmp(hrp, AGE_IDENTITY_HRP) != 0 || size != AGE_KEY_SIZE)) {
        rc = -EINVAL;
        snprintf(why.message, sizeof why.message, "is not an age X25519 secret key");
    } else if (rc == -ENOSPC) {
        snprintf(why.message, sizeof why.message, "is too long for an age X25519 secret key");
    }
    if (rc == 0)
        rc = age_x25519_public(data, identity->public_key, &why);
    if (rc == 0)
        memcpy(identity->secret_key, data, AGE_KEY_SIZE);
    OPENSSL_cleanse(data, sizeof data);
    if (rc != 0)
        return error_set(err, -EINVAL,
                         "the identity (%.15s...) %s: expected AGE-SECRET-KEY-1 and 58 "
                         "characters, as age-keygen writes",
                         text, why.message);
    return 0;
}

void age_identity_format(const struct age_identity *identity, char out[AGE_IDENTITY_TEXT])
{
    int rc = bech32_encode(out, AGE_IDENTITY_TEXT, AGE_IDENTITY_HRP, identity->secret_key,
                           AGE_KEY_SIZE, true);
    (void)rc;
}

void age_identity_recipient(const struct age_identity *identity, struct age_recipient *recipient)
{
    memcpy(recipient->public_key, identity->public_key, AGE_KEY_SIZE);
}

int age_identity_generate(struct age_identity *identity, struct error *err)
{
    if (RAND_bytes(identity->secret_key, AGE_KEY_SIZE) != 1)
        return error_set(err, -EIO, "cannot generate a key: OpenSSL's random generator failed");
    return age_x25519_public(identity->secret_key, identity->public_key, err);
}

void age_identity_wipe(struct age_identity *identity)
{
    OPENSSL_cleanse(identity, sizeof *identity);
}

void age_identities_free(struct age_identity *identities, size_t count)
{
    if (identities)
        OPENSSL_cleanse(identities, count * sizeof *identities);
    free(identities);
}

int age_identities_parse(const char *text, size_t size, const char *name,
                         struct age_identity **identities, size_t *count, struct error *err)
{
    struct age_identity *list = NULL;
    size_t used = 0, allocated = 0, line_number = 0;
    char line[256];
    int rc = 0;
    for (size_t at = 0; at < size;) {
        const char *end = memchr(text + at, '\n', size - at);
        size_t length = end ? (size_t)(end - (text + at)) : size - at;
        line_number++;
        const char *start = text + at;
        at += length + (end ? 1 : 0);
        while (length > 0 &&
               (start[length - 1] == '\r' || start[length - 1] == ' ' || start[length - 1] == '\t'))
            length--;
        if (length == 0 || start[0] == '#')
            continue;
        if (length >= sizeof line || memchr(start, '\0', length)) {
            rc = error_set(err, -EINVAL,
                           "%s:%zu: not an age identity (a line of %zu characters): expected "
                           "AGE-SECRET-KEY-1..., as age-keygen writes",
                           name, line_number, length);
            goto out;
        }
        memcpy(line, start, length);
        line[length] = '\0';
        if (used == allocated) {
            size_t more = allocated ? allocated * 2 : 4;
            struct age_identity *grown = calloc(more, sizeof *grown);
            if (!grown) {
                rc = error_set(err, -ENOMEM, "%s: out of memory", name);
                goto out;
            }
            if (list)
                memcpy(grown, list, used * sizeof *list);
            age_identities_free(list, allocated);
            list = grown;
            allocated = more;
        }
        rc = age_identity_parse(line, &list[used], err);
        if (rc != 0) {
            error_prefix(err, "%s:%zu: ", name, line_number);
            goto out;
        }
        used++;
    }
    if (used == 0)
        rc = error_set(err, -EINVAL,
                       "%s: holds no identity: expected a line AGE-SECRET-KEY-1..., as "
                       "age-keygen writes",
                       name);
out:
    OPENSSL_cleanse(line, sizeof line);
    if (rc != 0) {
        age_identities_free(list, allocated);
        return rc;
    }
    *identities = list;
    *count = used;
    return 0;
}

int age_identities_read(const char *path, struct age_identity **identities, size_t *count,
                        struct error *err)
{
    char *text = NULL;
    size_t size = 0;
    int rc = fs_read_file(path, &text, &size, err);
    if (rc != 0)
        return rc;
    rc = age_identities_parse(text, size, path, identities, count, err);
    OPENSSL_cleanse(text, size);
    free(text);
    return rc;
}

int age_identity_file_text(const struct age_identity *identity, time_t created, char *out,
                           size_t out_size)
{
    struct age_recipient recipient;
    char public_text[AGE_RECIPIENT_TEXT], secret_text[AGE_IDENTITY_TEXT], stamp[32];
    struct tm tm;
    age_identity_recipient(identity, &recipient);
    age_recipient_format(&recipient, public_text);
    age_identity_format(identity, secret_text);
    gmtime_r(&created, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int length = snprintf(out, out_size, "# created: %s\n# public key: %s\n%s\n", stamp,
                          public_text, secret_text);
    OPENSSL_cleanse(secret_text, sizeof secret_text);
    return length < 0 || (size_t)length >= out_size ? -ENOSPC : length;
}

int age_identity_file_write(const char *path, const struct age_identity *identity, time_t created,
                            struct error *err)
{
    char text[256];
    int length = age_identity_file_text(identity, created, text, sizeof text);
    int fd = -1, rc = 0;
    if (length < 0) {
        rc = error_set(err, -ENOSPC, "%s: identity text does not fit", path);
        goto out;
    }
    /* O_EXCL: an existing key file may be the only copy of a key that old
     * backups need; it is never replaced. */
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = error_set(err, -errno, "cannot create %s: %s%s", path, strerror(errno),
                       errno == EEXIST ? ": it may hold a key that backups need; choose "
                                         "another path or move it away first"
                                       : "");
        goto out;
    }
    if (io_pwrite_full(fd, text, (size_t)length, 0) != 0 || fsync(fd) != 0) {
        rc = error_set(err, -EIO, "cannot write %s: %s", path, strerror(errno));
        goto out;
    }
out:
    if (fd >= 0 && close(fd) != 0 && rc == 0)
        rc = error_set(err, -EIO, "cannot write %s: %s", path, strerror(errno));
    if (rc != 0 && fd >= 0)
        unlink(path);
    OPENSSL_cleanse(text, sizeof text);
    return rc;
}
