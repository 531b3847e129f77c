/*
 * catalog.h: the backups kept locally for a database, as found on disk.
 *
 * A backup is an archive DIR/NAME/NAME-STAMP.db.gz (or .db.zst) together
 * with its manifest NAME-STAMP.db.gz.json; the manifest is written last, so an
 * archive without one is unfinished and never listed. The file system is the
 * truth: no index to drift from it.
 */
#ifndef SQLPRODD_CATALOG_H
#define SQLPRODD_CATALOG_H

#include <stddef.h>

#include "config/config.h"
#include "core/error.h"
#include "archive/manifest.h"

struct backup_entry {
    char id[32]; /* the stamp, "20261125T080000Z": what --backup takes */
    char archive_path[4096];
    char manifest_path[4200];
    struct manifest manifest;
};

struct backup_list {
    struct backup_entry *items; /* newest first */
    size_t count;
};

/* DIR/NAME for a database. */
int catalog_directory(const struct database_config *db, char *out, size_t out_size);

/* DIR/NAME/FILE_NAME: the one spelling of a local archive's path, which the
 * upload queue stores and remote retention looks up, whatever slashes
 * backup.dir ends with. */
int catalog_archive_path(const struct database_config *db, const char *file_name, char *out,
                         size_t out_size);

/* Lists complete local backups, newest first. A missing directory is an
 * empty list. Manifests that cannot be read are logged and skipped. */
int catalog_list_local(const struct database_config *db, struct backup_list *out,
                       struct error *err);
void catalog_free(struct backup_list *list);

/* "NAME-STAMP.db.gz" for a database and time. */
void catalog_archive_name(const char *database, time_t created, char *out, size_t out_size);

/* "NAME-STAMP" + suffix (archive_format_suffix: ".db.gz" or ".db.zst"). */
void catalog_archive_name_with(const char *database, time_t created, const char *suffix, char *out,
                               size_t out_size);

/* Parses "NAME-STAMP.db.gz" or "NAME-STAMP.db.zst", either with ".age" when
 * encrypted (sealed.h), and any of these with ".json";
 * fills the stamp id. */
int catalog_parse_archive_name(const char *database, const char *file_name, char id[32],
                               time_t *created);

#endif
