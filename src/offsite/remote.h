/*
 * remote.h: a database's backups on its upload target, in the same layout
 * as locally: KEY = NAME/NAME-STAMP.db.gz plus KEY.json. Shared by the
 * upload job (remote retention), `backups --remote` and `restore`.
 */
#ifndef SQLPRODD_REMOTE_H
#define SQLPRODD_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config/config.h"
#include "core/error.h"

struct target;

struct remote_backup {
    char id[32];
    time_t created;
    char archive_key[1024];
    char manifest_key[1100];
    int64_t archive_bytes;
    bool has_manifest;
    time_t modified; /* the later LastModified of archive and manifest */
};

struct remote_list {
    struct remote_backup *items; /* newest first */
    size_t count;
};

/* The key of a local archive on the target: "NAME/FILE". */
void remote_key_for(const char *database, const char *file_name, char *out, size_t out_size);

/* Lists the backups of database `name` on an open target (the caller's
 * target serves the listing and whatever it then fetches or deletes). */
int remote_list_backups(struct target *target, const char *name, struct remote_list *out,
                        struct error *err);
void remote_list_free(struct remote_list *list);

struct manifest;
/* Reads a backup's manifest from the target through a temp file in
 * `temp_directory` (removed again). */
int remote_read_manifest(struct target *target, const struct remote_backup *backup,
                         const char *temp_directory, struct manifest *manifest, struct error *err);

struct chain_record;
/* The records of deleted backups (archive/chain.h) on the target, under
 * NAME/pruned/. Put and get go through a temp file in `temp_directory`. */
int remote_put_record(struct target *target, const char *temp_directory,
                      const struct chain_record *record, struct error *err);
/* Reads the records of the backups `ids` (count of them) that the target
 * lists: one listing, then one small read per record found. Records that
 * are not listed, or unreadable, are left out (a link to them is then
 * reported missing). */
int remote_read_records(struct target *target, const char *name, const char *temp_directory,
                        const char *const *ids, size_t id_count, struct chain_record **records,
                        size_t *count, struct error *err);
int remote_delete_record(struct target *target, const struct chain_record *record,
                         struct error *err);

#endif
