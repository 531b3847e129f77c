/*
 * seal.c: the replica's data objects encrypted in the spool (seal.h).
 */
#include "replicate/seal.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "crypto/age.h"

struct sealed_recipients replica_seal_recipients(const struct database_config *db)
{
    return (struct sealed_recipients){.items = db->encrypt.recipients,
                                      .count = db->encrypt.recipient_count};
}

void replica_seal_describe(const struct sealed_recipients *recipients,
                           struct format_encryption *out)
{
    memset(out, 0, sizeof *out);
    /* The configuration allows no more (ENCRYPT_RECIPIENTS_MAXIMUM). */
    assert(recipients->count <= FORMAT_RECIPIENTS_MAX);
    for (size_t i = 0; i < recipients->count && i < FORMAT_RECIPIENTS_MAX; i++) {
        char text[AGE_RECIPIENT_TEXT];
        age_recipient_format(&recipients->items[i], text);
        snprintf(out->recipients[i], FORMAT_RECIPIENT_SIZE, "%s", text);
        out->recipient_count = i + 1;
    }
}

int replica_seal_file(const char *plain, const struct sealed_recipients *recipients, char *sealed,
                      size_t sealed_size, struct archive_result *result, struct error *err)
{
    int n = snprintf(sealed, sealed_size, "%s" SEALED_SUFFIX, plain);
    int rc = n < 0 || (size_t)n >= sealed_size
                 ? error_set(err, -ENAMETOOLONG, "%s" SEALED_SUFFIX ": path too long", plain)
                 : 0;
    if (rc == 0) {
        /* A kill between sealing and recording left one behind: made again. */
        unlink(sealed);
        rc = sealed_seal_file(plain, sealed, recipients, NULL, result, err);
    }
    /* The plaintext never waits in the spool for an upload it will not get. */
    unlink(plain);
    return rc;
}
