/*
 * identity.c: reading the identities that restore needs (identity.h).
 *
 * The file is opened once, checked on its descriptor (a regular file, the
 * credentials' ownership and mode rule) and read from that descriptor, so
 * the file checked is the file read. Its text is wiped once parsed.
 */
#include "restore/identity.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "core/io.h"
#include "offsite/credentials.h"

/* An identity file is a few lines; anything larger is not one. */
#define IDENTITY_FILE_MAXIMUM (64 * 1024)

static int identity_read(const char *path, bool check_access, const char *named,
                         struct identity_keys *keys, struct error *err)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return error_set(err, -errno, "identity file %s%s: %s", path, named, strerror(errno));
    int rc = 0;
    char *text = NULL;
    size_t length = 0;
    if (fstat(fd, &st) != 0)
        rc = error_set(err, -errno, "identity file %s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rc = error_set(err, -EINVAL, "identity file %s%s is not a regular file", path, named);
    else if (st.st_size > IDENTITY_FILE_MAXIMUM)
        rc = error_set(err, -EFBIG,
                       "identity file %s%s is larger than %d bytes: it is not an age identity file",
                       path, named, IDENTITY_FILE_MAXIMUM);
    else if (check_access)
        rc = credentials_check_access(path, &st, "identity file", err);
    if (rc == 0) {
        length = (size_t)st.st_size + 1;
        text = malloc(length);
        if (!text)
            rc = error_set(err, -ENOMEM, "identity file %s: out of memory", path);
    }
    if (rc == 0) {
        ssize_t got = io_read_full(fd, text, length - 1);
        if (got < 0)
            rc = error_set(err, (int)got, "identity file %s: %s", path, strerror((int)-got));
        else
            rc = age_identities_parse(text, (size_t)got, path, &keys->identities, &keys->count,
                                      err);
    }
    if (text) {
        OPENSSL_cleanse(text, length);
        free(text);
    }
    close(fd);
    if (rc == 0)
        snprintf(keys->source, sizeof keys->source, "%s%s", path, named);
    return rc;
}

int identity_keys_load(const struct database_config *db, const char *option,
                       struct identity_keys *keys, struct error *err)
{
    *keys = (struct identity_keys){0};
    if (option)
        return identity_read(option, true, " (--identity)", keys, err);
    if (db->encrypt.identity)
        return identity_read(db->encrypt.identity, true, " (encrypt.identity)", keys, err);
    if (db->encrypt.identity_credential) {
        const char *directory = getenv("CREDENTIALS_DIRECTORY");
        char path[4096], named[256];
        if (!directory || !*directory)
            return error_set(err, -ENOENT,
                             "credential %s (encrypt.identity_credential): $CREDENTIALS_DIRECTORY "
                             "is not set: only a unit with LoadCredential=%s:PATH receives it; "
                             "from a shell give --identity FILE",
                             db->encrypt.identity_credential, db->encrypt.identity_credential);
        snprintf(path, sizeof path, "%s/%s", directory, db->encrypt.identity_credential);
        snprintf(named, sizeof named, " (credential %s)", db->encrypt.identity_credential);
        /* systemd's directory, private to the unit: its modes are systemd's. */
        return identity_read(path, false, named, keys, err);
    }
    return 0;
}

struct archive_keys identity_keys_view(const struct identity_keys *keys)
{
    return (struct archive_keys){keys->identities, keys->count, NULL};
}

void identity_keys_free(struct identity_keys *keys)
{
    age_identities_free(keys->identities, keys->count);
    keys->identities = NULL;
    keys->count = 0;
}
