/*
 * backup_restore.h: one backup archive, local or on the upload target, made
 * into a checked database file. Shared by `sqlprodd restore` (cli_restore.c,
 * which then swaps the file into place) and the restore drill
 * (jobs/drill.c, which checks it in a scratch directory and removes it).
 *
 * The steps: find the backup (by id, else the newest; locally first unless
 * told the side), download its manifest and archive when remote, read the
 * manifest, decrypt (given an identity) and decompress to `output` while
 * its SHA-256 is compared with the manifest's, run quick_check (or
 * integrity_check) on the result, give it the source's journal mode, fsync.
 *
 * Not for where the file goes next, the checks of a destination, the
 * database lock or the replica (--at): those are the callers'. A file that
 * failed a step is left at `output` for the caller to remove
 * (backup_restore_remove_file), as is every download
 * (backup_restore_finish).
 */
#ifndef SQLPRODD_BACKUP_RESTORE_H
#define SQLPRODD_BACKUP_RESTORE_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "archive/manifest.h"
#include "config/config.h"
#include "core/error.h"
#include "core/io.h"

/* How far the long steps got, shown by the caller (a terminal bar for the
 * command line; none for the agent). Every member may be NULL. */
struct backup_restore_progress {
    void (*begin)(void *self, const char *label);
    io_progress_fn update;
    void (*end)(void *self);
    void *self;
};

struct backup_restore_request {
    const struct database_config *db;
    const char *backup_id;       /* NULL: the newest */
    const char *from;            /* "local", "remote", or NULL: local if there, else remote */
    const char *identity;        /* --identity FILE, or NULL: the configured one if any */
    const char *output;          /* the file to write */
    const char *download_prefix; /* remote: PREFIX.archive.tmp and PREFIX.manifest.tmp */
    bool full_check;             /* integrity_check, else quick_check */
    bool background;             /* helper threads at the lowest priority (priority.h) */
    const volatile sig_atomic_t *stop;
    const struct backup_restore_progress *progress; /* NULL: none */
    /* Called once the manifest is read, before the archive is downloaded
     * and unpacked: a non-zero return (with err filled) stops there. NULL:
     * none. */
    int (*prepare)(void *context, const struct manifest *manifest, bool remote, struct error *err);
    void *prepare_context;
};

struct backup_restore_result {
    char id[32];                       /* the backup's id (stamp) */
    bool remote;                       /* it came from the upload target */
    char source[PATH_MAX + 1200];      /* the archive as messages name it: a path, or
                                          "KEY on target NAME" */
    struct manifest manifest;          /* as read */
    char check[300];                   /* "quick_check ok" */
    char journal_mode[16];             /* given to the file: "wal" or "delete" */
    char note[512];                    /* a warning for the operator, or "" */
    int64_t bytes;                     /* the database's size */
    char downloaded_archive[PATH_MAX]; /* temp copies when remote, "" otherwise */
    char downloaded_manifest[PATH_MAX];
};

/* Fills *result (which it zeroes first) and writes request->output. */
int backup_restore_unpack(const struct backup_restore_request *request,
                          struct backup_restore_result *result, struct error *err);

/* Removes the downloads of an unpack, whatever its outcome. */
void backup_restore_finish(struct backup_restore_result *result);

/* The check a restored file gets: quick_check, or integrity_check with
 * `full`; `result` reads "quick_check ok". -EBADMSG when it fails. */
int backup_restore_check_file(const char *path, bool full, const volatile sig_atomic_t *stop,
                              char *result, size_t result_size, struct error *err);

/* Gives the file the journal mode the source had (`recorded`, from the
 * manifest): only WAL is kept by the file itself. `applied` gets "wal" or
 * "delete"; `note` a warning for a mode this sqlprodd does not know, or "". */
int backup_restore_apply_journal_mode(const char *path, const char *recorded,
                                      const volatile sig_atomic_t *stop, char *applied,
                                      size_t applied_size, char *note, size_t note_size,
                                      struct error *err);

/* Removes a database file and whatever SQLite made beside it (-wal, -shm,
 * -journal). */
void backup_restore_remove_file(const char *path);

#endif
