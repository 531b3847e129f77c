/*
 * fingerprint.h: what a database holds, in a few numbers, recorded in each
 * backup's manifest and compared by a restore drill (jobs/drill.c) with the
 * file it restored: the schema's digest and each table's row count (as a
 * digest, with the totals beside it for messages).
 *
 * What it is not: a content checksum. Two databases with the same schema and
 * row counts fingerprint alike; the archive's SHA-256 and integrity_check
 * cover the bytes. The fingerprint proves that what came back is the
 * database that went in, counted by SQLite itself after the restore.
 */
#ifndef SQLPRODD_FINGERPRINT_H
#define SQLPRODD_FINGERPRINT_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/io.h"

struct fingerprint {
    char schema_sha256[IO_SHA256_HEX]; /* type, name, tbl_name, sql of each schema row */
    int64_t objects;                   /* rows of sqlite_schema */
    int64_t tables;                    /* ordinary tables counted (virtual ones are not) */
    int64_t rows;                      /* over all of them */
    char rows_sha256[IO_SHA256_HEX];   /* of each table's name and count, by name */
};

/* Reads the fingerprint of an open database (a backup copy or a restored
 * file; it reads every row of each table's smallest b-tree). */
int fingerprint_take(sqlite3 *connection, struct fingerprint *out, struct error *err);

/* The schema digest alone: cheap, for when the row counts are not wanted. */
int fingerprint_schema(sqlite3 *connection, char hex[IO_SHA256_HEX], int64_t *objects,
                       struct error *err);

/* Compares a restored database's fingerprint with the one recorded at backup
 * time (fields recorded empty are not compared: manifests from before they
 * existed). True when they agree; otherwise `why` says what differs. */
bool fingerprint_matches(const struct fingerprint *recorded, const struct fingerprint *restored,
                         char *why, size_t why_size);

#endif
