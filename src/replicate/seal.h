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
 * What it is not: no decision about when to seal (the shipper seals
 * whenever the database has recipients), no decryption (restore/replica.c).
 */
#ifndef SQLPRODD_REPLICATE_SEAL_H
#define SQLPRODD_REPLICATE_SEAL_H

#include <stdbool.h>
#include <stddef.h>

#include "archive/sealed.h"
#include "config/config.h"
#include "core/error.h"
#include "replicate/format.h"

/* The recipients `db` ships to now (count 0: nothing is sealed). Read at
 * each object, so a reloaded configuration applies to the next one. */
struct sealed_recipients replica_seal_recipients(const struct database_config *db);

/* The manifest's "encryption" record for those recipients (empty when
 * none). */
void replica_seal_describe(const struct sealed_recipients *recipients,
                           struct format_encryption *out);

/* Seals the spool file `plain` into `plain` + ".age" and removes `plain`,
 * whatever the outcome; `sealed` receives the new path. result: sha256 and
 * output_bytes of the sealed file. */
int replica_seal_file(const char *plain, const struct sealed_recipients *recipients, char *sealed,
                      size_t sealed_size, struct archive_result *result, struct error *err);

#endif
