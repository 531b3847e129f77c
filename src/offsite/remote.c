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
#include "archive/manifest.h"
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

static int compare_key_pointers(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* True when `key` is among the sorted `keys`: a target may hold thousands of
 * backups, so manifests are matched by binary search, not by a scan per
 * archive. */
static bool key_listed(const char *const *keys, size_t count, const char *key)
{
    return bsearch(&key, keys, count, sizeof *keys, compare_key_pointers) != NULL;
}

int remote_list_backups(struct target *target, const char *name, struct remote_list *out,
                        struct error *err)
{
    struct target_listing listing = {0};
    const char **keys = NULL;
    char prefix[300];
    out->items = NULL;
    out->count = 0;
    snprintf(prefix, sizeof prefix, "%s/", name);
    int rc = target_list(target, prefix, &listing, err);
    if (rc != 0)
        goto out;
    out->items = calloc(listing.count + 1, sizeof *out->items);
    keys = calloc(listing.count + 1, sizeof *keys);
    if (!out->items || !keys) {
        rc = error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < listing.count; i++)
        keys[i] = listing.objects[i].key;
    if (listing.count > 1)
        qsort(keys, listing.count, sizeof *keys, compare_key_pointers);
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
        item.has_manifest = key_listed(keys, listing.count, item.manifest_key);
        out->items[out->count++] = item;
    }
    if (out->count > 1)
        qsort(out->items, out->count, sizeof *out->items, compare_newest_first);
out:
    free(keys);
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
