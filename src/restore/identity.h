/*
 * identity.h: the secret keys that open encrypted backups and replicas.
 *
 * Where they come from, first found wins: `--identity FILE` on the command
 * line, the database's `encrypt.identity` file, its
 * `encrypt.identity_credential` (a systemd credential, LoadCredential=).
 * A file must be a regular file shared with nobody but sqlprodd, as a
 * credentials file must (credentials.h); it is in the format age-keygen
 * writes. None of them: no keys, which is fine until an encrypted object
 * is met (its message then says how to give one).
 */
#ifndef SQLPRODD_IDENTITY_H
#define SQLPRODD_IDENTITY_H

#include <stddef.h>

#include "archive/archive.h"
#include "config/config.h"
#include "core/error.h"

struct identity_keys {
    struct age_identity *identities; /* wiped and freed by identity_keys_free */
    size_t count;
    char source[512]; /* where they were read, for messages; "" when none */
};

/* `option` is --identity's value or NULL. */
int identity_keys_load(const struct database_config *db, const char *option,
                       struct identity_keys *keys, struct error *err);
/* The keys as archive_decompress and the replica take them. */
struct archive_keys identity_keys_view(const struct identity_keys *keys);
void identity_keys_free(struct identity_keys *keys);

#endif
