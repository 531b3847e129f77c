/*
 * verify.h: re-reads a database's backups and replica and says what is
 * wrong with them, object by object (`sqlprodd verify`, sqlprodd(8)).
 *
 * Backups, on either side (the backup directory or the upload target):
 * each manifest is read and must be for this database and name its
 * archive; the archive must be there with the size the manifest gives; an
 * archive without a manifest is an unfinished backup (a note, not a
 * problem); the chain of backups (archive/chain.h) must have no link to a
 * backup that is neither kept nor recorded as deleted, and no manifest that
 * hashes to other than what it, or its successor, recorded. With `data`,
 * each archive is read back in full: its SHA-256 against the manifest, and
 * decompressed (decrypted first, given keys; without them a sealed archive
 * is checked as stored, and a note says so) to the size the manifest gives.
 *
 * The replica: each restorable window (a chain of generations from a base
 * file) is planned as `restore --at` its last commit would be: index.json,
 * base.json, every sidecar, the WAL ranges contiguous, every object listed
 * with its size; with `data`, that restore is run into a scratch file in
 * `temp_directory` (removed), which fetches every object, checks its
 * SHA-256 and the WAL's checksum chain.
 *
 * Reads go a few at a time (`parallel`), each streamed to a temp file and
 * removed once checked, so memory stays bounded whatever the sizes. It never
 * writes to a target or the backup directory and never opens the live
 * database.
 */
#ifndef SQLPRODD_VERIFY_H
#define SQLPRODD_VERIFY_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "archive/archive.h"
#include "config/config.h"
#include "core/error.h"

struct verify_options {
    bool data;
    struct archive_keys keys; /* count 0: sealed objects are checked as stored only */
    const volatile sig_atomic_t *stop;
    const char *temp_directory; /* downloads and the replica's scratch file */
    int parallel;               /* reads in flight; 0: 4 */
};

/* What one side of a database holds, as counted by verify. */
struct verify_tally {
    size_t backups;     /* manifests read */
    size_t records;     /* records of deleted backups */
    size_t windows;     /* replica windows checked */
    size_t segments;    /* replica segments checked */
    size_t objects;     /* objects checked on the side */
    int64_t bytes_read; /* with data: bytes read back */
    size_t problems;
    size_t notes;
};

/* Called for each finding, one at a time: a problem (exit status 1) or a
 * note; `object` is the path or the key it is about. */
struct verify_sink {
    void (*report)(void *context, bool problem, const char *object, const char *message);
    void *context;
};

/* The backups of `db` in its backup directory, or (remote) on its upload
 * target. Returns 0 when the check ran (its findings went to the sink and
 * the tally), or an error that kept it from running (a target that does
 * not answer), which the caller reports as a problem. */
int verify_backups(const struct database_config *db, bool remote,
                   const struct verify_options *options, const struct verify_sink *sink,
                   struct verify_tally *tally, struct error *err);

/* The replica of `db` on its replicate target; -ENOENT when none was shipped. */
int verify_replica(const struct database_config *db, const struct verify_options *options,
                   const struct verify_sink *sink, struct verify_tally *tally, struct error *err);

#endif
