/*
 * catalog.c: reading the local backup directory (see catalog.h). Not for
 * writing archives (jobs/backup.c) or deciding what to keep (retention.c).
 */
#include "archive/catalog.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "core/log.h"

int catalog_directory(const struct database_config *db, char *out, size_t out_size)
{
    return fs_join(out, out_size, db->backup.dir, db->name);
}

int catalog_archive_path(const struct database_config *db, const char *file_name, char *out,
                         size_t out_size)
{
    char directory[4096];
    if (catalog_directory(db, directory, sizeof directory) != 0)
        return -ENAMETOOLONG;
    return fs_join(out, out_size, directory, file_name);
}

void catalog_archive_name(const char *database, time_t created, char *out, size_t out_size)
{
    catalog_archive_name_with(database, created, ".db.gz", out, out_size);
}

void catalog_archive_name_with(const char *database, time_t created, const char *suffix, char *out,
                               size_t out_size)
{
    char stamp[17];
    manifest_format_stamp(created, stamp);
    snprintf(out, out_size, "%s-%s%s", database, stamp, suffix);
}

int catalog_parse_archive_name(const char *database, const char *file_name, char id[32],
                               time_t *created)
{
    size_t name_length = strlen(database);
    if (strncmp(file_name, database, name_length) != 0 || file_name[name_length] != '-')
        return -EINVAL;
    const char *stamp = file_name + name_length + 1;
    const char *rest = stamp + 16;
    static const char *const suffixes[] = {".db.gz",         ".db.gz.json",     ".db.zst",
                                           ".db.zst.json",   ".db.gz.age",      ".db.gz.age.json",
                                           ".db.zst.age",    ".db.zst.age.json"};
    bool known = false;
    for (size_t i = 0; strlen(stamp) >= 16 && i < sizeof suffixes / sizeof suffixes[0]; i++)
        known = known || strcmp(rest, suffixes[i]) == 0;
    if (!known)
        return -EINVAL;
    char text[17];
    memcpy(text, stamp, 16);
    text[16] = '\0';
    if (manifest_parse_stamp(text, created) != 0)
        return -EINVAL;
    snprintf(id, 32, "%s", text);
    return 0;
}

static int compare_newest_first(const void *a, const void *b)
{
    const struct backup_entry *x = a, *y = b;
    return strcmp(y->id, x->id); /* stamps sort as text */
}

int catalog_list_local(const struct database_config *db, struct backup_list *out,
                       struct error *err)
{
    char directory[4096];
    out->items = NULL;
    out->count = 0;
    if (catalog_directory(db, directory, sizeof directory) != 0)
        return error_set(err, -ENAMETOOLONG, "backup directory for %s: path too long", db->name);
    DIR *dir = opendir(directory);
    if (!dir) {
        if (errno == ENOENT)
            return 0;
        return error_set(err, -errno, "cannot read backup directory %s: %s", directory,
                         strerror(errno));
    }
    size_t capacity = 0;
    int rc = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        char id[32];
        time_t created;
        size_t length = strlen(entry->d_name);
        if (length < 5 || strcmp(entry->d_name + length - 5, ".json") != 0 ||
            catalog_parse_archive_name(db->name, entry->d_name, id, &created) != 0)
            continue;
        if (out->count == capacity) {
            capacity = capacity ? capacity * 2 : 32;
            struct backup_entry *grown = realloc(out->items, capacity * sizeof *grown);
            if (!grown) {
                rc = error_set(err, -ENOMEM, "out of memory");
                break;
            }
            out->items = grown;
        }
        struct backup_entry *item = &out->items[out->count];
        memset(item, 0, sizeof *item);
        snprintf(item->id, sizeof item->id, "%s", id);
        fs_join(item->manifest_path, sizeof item->manifest_path, directory, entry->d_name);
        snprintf(item->archive_path, sizeof item->archive_path, "%.*s", (int)(strlen(item->manifest_path) - 5),
                 item->manifest_path);
        struct error manifest_error = {0};
        if (manifest_read(item->manifest_path, &item->manifest, &manifest_error) != 0) {
            log_event(LOG_WARNING, db->name, NULL, "ignoring backup %s: %s", id,
                      manifest_error.message);
            continue;
        }
        if (access(item->archive_path, F_OK) != 0) {
            log_event(LOG_WARNING, db->name, NULL, "ignoring backup %s: manifest without archive %s",
                      id, item->archive_path);
            continue;
        }
        out->count++;
    }
    closedir(dir);
    if (rc != 0) {
        catalog_free(out);
        return rc;
    }
    if (out->count > 1)
        qsort(out->items, out->count, sizeof *out->items, compare_newest_first);
    return 0;
}

void catalog_free(struct backup_list *list)
{
    free(list->items);
    list->items = NULL;
    list->count = 0;
}
