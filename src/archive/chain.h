/*
 * chain.h: tamper evidence for a database's backups.
 *
 * Each manifest names the backup before it and that backup's chain hash
 * (manifest_chain_hash), so the backups of a database form a chain in which
 * a backup deleted from the middle leaves a link that leads nowhere, and an
 * altered manifest no longer hashes to what its successor recorded. What
 * sqlprodd itself deletes, retention, leaves a record in its place, on the
 * side it deleted from (the backup directory or the target):
 *   NAME/pruned/NAME-STAMP.json
 *   {"format":1,"database":"app","backup":"20261125T080000Z",
 *    "chain_sha256":"...","at":"2026-11-26T08:00:00Z","reason":"retention"}
 * so that verify tells those from deletions behind its back. The upload job
 * writes one with reason "not uploaded" for a backup that a target's first
 * uploaded backup follows but that was never sent there (taken before the
 * target was configured): the chain on that target starts after it.
 *
 * A record is kept while the backup that links to it is kept: deleting a
 * backup writes its record and removes the record of the backup it
 * followed (one backup links to each), so a side holds about one record
 * per run of deleted backups between kept ones. What it is not: proof
 * against someone who can rewrite every manifest of a side (chain hashes
 * are not signatures); the newest backup's deletion shows only against the
 * agent's own state (verify compares with it when it can).
 */
#ifndef SQLPRODD_CHAIN_H
#define SQLPRODD_CHAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "archive/manifest.h"
#include "config/config.h"
#include "core/error.h"

#define CHAIN_RECORD_DIRECTORY "pruned"
#define CHAIN_REASON_RETENTION "retention"
#define CHAIN_REASON_NOT_UPLOADED "not uploaded"

/* What was deleted (or never sent), in place of its manifest. */
struct chain_record {
    char database[128];
    char backup[32]; /* its id, the stamp */
    char chain_sha256[ARCHIVE_SHA256_HEX];
    time_t at;
    char reason[32];
};

/* A record for the backup `id` whose manifest is `manifest`. */
void chain_record_for(const struct manifest *manifest, const char *id, const char *reason,
                      time_t at, struct chain_record *out);

int chain_record_to_json(const struct chain_record *record, char **json, struct error *err);
int chain_record_from_json(const char *json, size_t size, struct chain_record *record,
                           struct error *err);

/* "pruned/NAME-STAMP.json": the record's name below the database's
 * directory (locally) or NAME/ (on a target). */
void chain_record_name(const char *database, const char *backup, char *out, size_t out_size);

/* Local records: DIR/NAME/pruned/. Written atomically (0600); listing a
 * missing directory is an empty list; unreadable records are logged and
 * skipped. */
int chain_write_local(const struct database_config *db, const struct chain_record *record,
                      struct error *err);
int chain_list_local(const struct database_config *db, struct chain_record **records,
                     size_t *count, struct error *err);
int chain_delete_local(const struct database_config *db, const struct chain_record *record,
                       struct error *err);

/* One backup of a side, for chain_check. */
struct chain_member {
    const char *id;
    const struct manifest *manifest;
    const char *object; /* how messages name its manifest: a path or a key */
};

typedef void (*chain_problem_fn)(void *context, const char *object, const char *message);

/* Checks the links of `members` (any order) against each other and the
 * records: a manifest whose recorded chain hash is not its own (altered), a
 * link to a backup that is neither kept nor recorded (deleted behind our
 * back), a link whose hash is not that of the backup it names (replaced).
 * Calls `problem` once per problem; returns how many. */
size_t chain_check(const struct chain_member *members, size_t count,
                   const struct chain_record *records, size_t record_count,
                   chain_problem_fn problem, void *context);

#endif
