/*
 * manifest.h: the JSON file beside each archive (NAME-STAMP.db.gz.json).
 *
 * The manifest is what makes an archive a backup: it is written (atomically)
 * only after the archive is verified, compressed, fsynced and renamed, so an
 * archive without a manifest is an unfinished one. Format version 1:
 * {"format":1,"database":"app","created":"2026-11-25T08:00:00Z",
 *  "archive":"app-20261125T080000Z.db.gz","archive_sha256":"...",
 *  "archive_bytes":N,"database_bytes":N,"page_size":4096,"page_count":N,
 *  "sqlite_version":"3.40.1","source_path":"/var/lib/app/app.db",
 *  "compression":"gzip","level":6,"journal_mode":"wal",
 *  "verification":{"method":"integrity_check","result":"ok","verified":true},
 *  "schema_sha256":"...","host":"...","sqlprodd_version":"0.1.0"}
 * database_bytes is the size of the copy in the archive (page_count *
 * page_size), which is the size of the restored file. journal_mode is the
 * source's, which restore gives back to the restored file (VACUUM INTO
 * always writes a rollback-journal file); a manifest without it (sqlprodd
 * before 0.2) restores in the mode the archive holds: delete.
 *
 * An encrypted archive (NAME-STAMP.db.gz.age, sealed.h) has in addition
 *   "encryption":{"format":"age-encryption.org/v1","recipients":["age1..."]}
 * and its archive_sha256 and archive_bytes are those of the stored,
 * encrypted file. The manifest itself stays readable and holds no data.
 */
#ifndef SQLPRODD_MANIFEST_H
#define SQLPRODD_MANIFEST_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "archive/archive.h"
#include "core/error.h"

struct manifest {
    char database[128];
    time_t created;    /* UTC */
    char archive[256]; /* file name only */
    char archive_sha256[ARCHIVE_SHA256_HEX];
    int64_t archive_bytes;
    int64_t database_bytes;
    int page_size;
    int64_t page_count;
    char sqlite_version[32];
    char source_path[4096];
    char compression[16]; /* "gzip" */
    int level;
    char journal_mode[16];   /* "wal", "delete", ...; "" when not recorded */
    char verify_method[32];  /* "integrity_check" | "quick_check" */
    char verify_result[256]; /* "ok" or the first problem */
    bool verified;
    char schema_sha256[ARCHIVE_SHA256_HEX];
    char host[256];
    char sqlprodd_version[32];
    bool encrypted;          /* the archive is an age file */
    char recipients[2400];   /* its recipients, "age1..., age1...", when encrypted */
    char plain_sha256[ARCHIVE_SHA256_HEX]; /* sealed on upload: the plain archive's; else "" */
    /* The fingerprint; rows_sha256 "" when not recorded (older manifests). */
    int64_t table_count, row_count;
    char rows_sha256[ARCHIVE_SHA256_HEX];
    /* The chain; chain_sha256 "" when not recorded, previous_* "" for the
     * first backup of a chain. */
    char chain_sha256[ARCHIVE_SHA256_HEX];
    char previous_backup[32]; /* its id (stamp) */
    char previous_sha256[ARCHIVE_SHA256_HEX];
};

/* Serialises to a malloc'd NUL-terminated JSON text (pretty, trailing newline). */
int manifest_to_json(const struct manifest *manifest, char **json, struct error *err);

/* Parses JSON text; unknown fields are ignored, missing required ones
 * (database, created, archive, archive_sha256) are an error. */
int manifest_from_json(const char *json, size_t size, struct manifest *manifest, struct error *err);

/* Reads and parses a manifest file. */
int manifest_read(const char *path, struct manifest *manifest, struct error *err);

/* Writes atomically (temp, fsync, rename, fsync dir), mode 0600. */
int manifest_write(const char *path, const struct manifest *manifest, struct error *err);

/* The backup's link hash: SHA-256 over the fields that say what the backup
 * holds and are the same in the local manifest and in the one on a target
 * (also when the target's copy was sealed on the way): database, created,
 * the plain archive's SHA-256 (plain_sha256, else archive_sha256), sizes,
 * schema and fingerprint, verification, and previous_sha256. Changing any
 * of them, or the link, changes it. */
void manifest_chain_hash(const struct manifest *manifest, char hex[ARCHIVE_SHA256_HEX]);

/* "2026-11-25T08:00:00Z" <-> time_t (UTC), as "created" is written; parsing
 * is strict (every digit, no out-of-range field). */
void manifest_format_time(time_t t, char out[21]);
int manifest_parse_time(const char *text, time_t *t);

/* "20261125T080000Z" <-> time_t (UTC). */
void manifest_format_stamp(time_t t, char out[17]);
int manifest_parse_stamp(const char *text, time_t *t);

#endif
