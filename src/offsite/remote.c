/*
 * remote.c: listing a database's backups on its target (see remote.h).
 * Not the transport: target_*.c.
 */
#include "offsite/remote.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive/catalog.h"
#include "archive/chain.h"
#include "archive/manifest.h"
#include "core/fsutil.h"
#include "offsite/target.h"

void remote_key_for(const char *database, const char *file_name, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s/%s", database, file_name);
}

static int compare_newest_first(const void *a, const void *b)
{
    const struct remote_backup *x = a, *y = b;
    return strcmp(y->id, x->id);
}

static int compare_objects_by_key(const void *a, const void *b)
{
    const struct target_object *const *x = a, *const *y = b;
    return strcmp((*x)->key, (*y)->key);
}

static int compare_key_with_object(const void *key, const void *element)
{
    const struct target_object *const *object = element;
    return strcmp(key, (*object)->key);
}

/* The object listed as `key` among `sorted` (by key), or NULL: a target may
 * hold thousands of backups, so manifests are matched by binary search, not
 * by a scan per archive. */
static const struct target_object *listed_object(const struct target_object *const *sorted,
                                                 size_t count, const char *key)
{
    const struct target_object *const *found =
        bsearch(key, sorted, count, sizeof *sorted, compare_key_with_object);
    return found ? *found : NULL;
}

int remote_list_backups(struct target *target, const char *name, struct remote_list *out,
                        struct error *err)
{
    struct target_listing listing = {0};
    const struct target_object **sorted = NULL;
    char prefix[300];
    out->items = NULL;
    out->count = 0;
    snprintf(prefix, sizeof prefix, "%s/", name);
    int rc = target_list(target, prefix, &listing, err);
    if (rc != 0)
        goto out;
    out->items = calloc(listing.count + 1, sizeof *out->items);
    sorted = calloc(listing.count + 1, sizeof *sorted);
    if (!out->items || !sorted) {
        rc = error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < listing.count; i++)
        sorted[i] = &listing.objects[i];
    if (listing.count > 1)
        qsort(sorted, listing.count, sizeof *sorted, compare_objects_by_key);
    for (size_t i = 0; i < listing.count; i++) {
        const char *key = listing.objects[i].key;
        const char *file = key + strlen(prefix);
        size_t length = strlen(key);
        struct remote_backup item = {0};
        if (length < 5 || strcmp(key + length - 5, ".json") == 0 ||
            catalog_parse_archive_name(name, file, item.id, &item.created) != 0)
            continue;
        snprintf(item.archive_key, sizeof item.archive_key, "%s", key);
        snprintf(item.manifest_key, sizeof item.manifest_key, "%s.json", key);
        item.archive_bytes = listing.objects[i].size;
        const struct target_object *manifest =
            listed_object(sorted, listing.count, item.manifest_key);
        item.has_manifest = manifest != NULL;
        item.modified = listing.objects[i].modified;
        if (manifest && manifest->modified > item.modified)
            item.modified = manifest->modified;
        out->items[out->count++] = item;
    }
    if (out->count > 1)
        qsort(out->items, out->count, sizeof *out->items, compare_newest_first);
out:
    free(sorted);
    target_listing_free(&listing);
    if (rc != 0)
        remote_list_free(out);
    return rc;
}

void remote_list_free(struct remote_list *list)
{
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

int remote_read_manifest(struct target *target, const struct remote_backup *backup,
                         const char *temp_directory, struct manifest *manifest, struct error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/sqlprodd-manifest-%ld.json", temp_directory, (long)getpid());
    unlink(path);
    int rc = target_get_file(target, backup->manifest_key, path, NULL, err);
    if (rc == 0)
        rc = manifest_read(path, manifest, err);
    unlink(path);
    return rc;
}

static void remote_record_key(const struct chain_record *record, char *out, size_t size)
{
    char name[256];
    chain_record_name(record->database, record->backup, name, sizeof name);
    remote_key_for(record->database, name, out, size);
}

int remote_put_record(struct target *target, const char *temp_directory,
                      const struct chain_record *record, struct error *err)
{
    char key[1024], path[4400], *json = NULL;
    remote_record_key(record, key, sizeof key);
    snprintf(path, sizeof path, "%s/.sqlprodd-record-%s-%ld%s", temp_directory, record->backup,
             (long)getpid(), FS_TEMP_SUFFIX);
    int rc = chain_record_to_json(record, &json, err);
    if (rc == 0)
        rc = fs_write_file_atomically(path, json, strlen(json), 0600, err);
    if (rc == 0)
        rc = target_put_file(target, key, path, NULL, NULL, err);
    unlink(path);
    free(json);
    return rc;
}

int remote_delete_record(struct target *target, const struct chain_record *record,
                         struct error *err)
{
    char key[1024];
    remote_record_key(record, key, sizeof key);
    return target_delete(target, key, err);
}

int remote_read_records(struct target *target, const char *name, const char *temp_directory,
                        const char *const *ids, size_t id_count, struct chain_record **records,
                        size_t *count, struct error *err)
{
    struct target_listing listing = {0};
    char prefix[300];
    *records = NULL;
    *count = 0;
    snprintf(prefix, sizeof prefix, "%s/%s/", name, CHAIN_RECORD_DIRECTORY);
    int rc = id_count ? target_list(target, prefix, &listing, err) : 0;
    if (rc == 0 && !(*records = calloc(id_count + 1, sizeof **records)))
        rc = error_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < id_count; i++) {
        char file[256], key[1024], path[4400], *text = NULL;
        size_t size = 0;
        bool listed = false;
        chain_record_name(name, ids[i], file, sizeof file);
        remote_key_for(name, file, key, sizeof key);
        for (size_t k = 0; k < listing.count && !listed; k++)
            listed = strcmp(listing.objects[k].key, key) == 0;
        if (!listed)
            continue;
        snprintf(path, sizeof path, "%s/.sqlprodd-record-%s-%ld%s", temp_directory, ids[i],
                 (long)getpid(), FS_TEMP_SUFFIX);
        unlink(path);
        rc = target_get_file(target, key, path, NULL, err);
        if (rc == 0)
            rc = fs_read_file(path, &text, &size, err);
        unlink(path);
        /* An unreadable record is left out: a link to it is then reported
         * as missing, which it may well be. */
        struct error ignored = {0};
        if (rc == 0 && chain_record_from_json(text, size, &(*records)[*count], &ignored) == 0)
            (*count)++;
        free(text);
    }
    target_listing_free(&listing);
    if (rc != 0) {
        free(*records);
        *records = NULL;
        *count = 0;
    }
    return rc;
}
