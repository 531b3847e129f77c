/*
 * seal.h: the replica's data objects encrypted in the spool, before the
 * uploader sees them (encrypt.recipients; sqlprodd-format(5), ENCRYPTION).
 *
 * A sealed object is an age file whose plaintext is exactly the object an
 * unencrypted replica ships (a gzip member of WAL bytes, the gzip'd base),
 * so `age -d -i key.txt X.age | gunzip` gives what `gunzip < X` gave. Its
 * sha256 and size, in the manifests and state.db, are of the sealed bytes:
 * what is stored is what restore checks before it decrypts anything.
 *
 * Segments are sealed in memory (sealed_seal_buffer), the base as it is
 * compressed (archive_compress_format with recipients). What it is not: no
 * decision about when to seal (the shipper seals whenever the database has
 * recipients), no decryption (restore/replica.c).
 */
#ifndef SQLPRODD_REPLICATE_SEAL_H
#define SQLPRODD_REPLICATE_SEAL_H

#include <stdbool.h>
#include <stddef.h>

#include "archive/sealed.h"
#include "config/config.h"
#include "core/error.h"
#include "replicate/format.h"

/* The manifest's "encryption" record for the recipients an object was
 * sealed to (sealed_recipients_of(db), read at each object so that a
 * reloaded configuration applies to the next one); empty when none. */
void replica_seal_describe(const struct sealed_recipients *recipients,
                           struct format_encryption *out);

#endif
