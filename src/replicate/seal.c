/*
 * seal.c: the replica's data objects encrypted in the spool (seal.h).
 */
#include "replicate/seal.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "crypto/age.h"

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
