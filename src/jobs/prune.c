/*
 * prune.c: local retention, and the start-up clean-up of what a crash left.
 * Remote retention is prune_remote.c; what runs it is jobs/plan.c.
 *
 * Which archives to keep is retention.c's decision; this file only lists,
 * asks and deletes. Archives still waiting for upload are pinned, and the
 * newest verified backup is always kept. The manifest is deleted before its
 * archive, so a crash midway leaves an unfinished archive (cleaned up
 * later), never a manifest that points at nothing. Each deletion first
 * leaves a record (archive/chain.h) so that verify does not take it for one
 * behind our back, and removes the record of the backup it followed, which
 * nothing links to any more.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive/catalog.h"
#include "archive/chain.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "jobs/job.h"
#include "offsite/target.h"
#include "policy/retention.h"

int job_clean_backup_directory(const struct database_config *db, struct error *err)
{
    char directory[4096], path[4400];
    if (catalog_directory(db, directory, sizeof directory) != 0)
        return error_set(err, -ENAMETOOLONG, "backup directory for %s: path too long", db->name);
    DIR *dir = opendir(directory);
    if (!dir)
        return errno == ENOENT ? 0 : error_set(err, -errno, "cannot read %s: %s", directory, strerror(errno));
    int removed = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        const char *name = entry->d_name;
        char id[32];
        time_t created;
        bool temp = strstr(name, FS_TEMP_SUFFIX) != NULL;
        bool orphan = false;
        if (!temp && catalog_parse_archive_name(db->name, name, id, &created) == 0 &&
            strcmp(name + strlen(name) - 5, ".json") != 0) {
            char manifest[4500];
            snprintf(manifest, sizeof manifest, "%s/%s.json", directory, name);
            orphan = access(manifest, F_OK) != 0;
        }
        if (!temp && !orphan)
            continue;
        snprintf(path, sizeof path, "%s/%s", directory, name);
        if (unlink(path) == 0) {
            removed++;
            log_event(LOG_NOTICE, db->name, NULL, "removed %s left by an interrupted backup",
                      path);
        }
    }
    closedir(dir);
    return removed;
}

int job_clean_target(const struct database_config *db, struct error *err)
{
    const struct target_config *config = db->upload.target;
    struct target *target = NULL;
    /* Opening an S3 target reads its credentials, for nothing: it leaves
     * no temp files (target.h). */
    if (!config || config->type != TARGET_DIR)
        return 0;
    int rc = target_open(config, &target, err);
    if (rc == 0)
        rc = target_remove_temp_files(target, db->name, err);
    if (rc > 0)
        log_event(LOG_NOTICE, db->name, NULL,
                  "removed %d temp file%s left by an interrupted upload from %s", rc,
                  rc == 1 ? "" : "s", target_describe(target));
    target_close(target);
    return rc;
}

int job_prune_local(struct job_context *context, struct job_result *result)
{
    const struct database_config *db = context->database;
    struct error err = {0};
    struct backup_list list;
    int rc = catalog_list_local(db, &list, &err);
    if (rc != 0) {
        job_result_set(result, JOB_OUTCOME_FAILED, "%s", err.message);
        return rc;
    }
    struct retention_item *items = calloc(list.count ? list.count : 1, sizeof *items);
    if (!items) {
        catalog_free(&list);
        job_result_set(result, JOB_OUTCOME_FAILED, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < list.count; i++) {
        bool pending = false;
        items[i].created = list.items[i].manifest.created;
        items[i].verified = list.items[i].manifest.verified;
        if (context->state && state_upload_is_pending(context->state, list.items[i].archive_path,
                                                      &pending, &err) != 0) {
            /* When in doubt, keep: an unreadable queue must not cost a backup. */
            pending = true;
        }
        items[i].pinned = pending;
    }
    retention_apply(&db->backup.keep, items, list.count);

    size_t deleted = 0, failed = 0;
    /* Oldest first: each deletion removes the record of the one before. */
    for (size_t i = list.count; i-- > 0;) {
        if (items[i].keep)
            continue;
        struct chain_record record;
        chain_record_for(&list.items[i].manifest, list.items[i].id, CHAIN_REASON_RETENTION,
                         time(NULL), &record);
        if (chain_write_local(db, &record, &err) != 0) {
            /* Without its record the deletion would look like tampering. */
            log_event(LOG_ERR, db->name, "prune", "not deleting backup %s: %s", list.items[i].id,
                      err.message);
            items[i].keep = true;
            failed++;
            continue;
        }
        if (unlink(list.items[i].manifest_path) != 0 && errno != ENOENT) {
            log_event(LOG_ERR, db->name, "prune", "cannot delete %s: %s",
                      list.items[i].manifest_path, strerror(errno));
            items[i].keep = true;
            failed++;
            continue;
        }
        unlink(list.items[i].archive_path);
        /* The record of the backup this one followed: only this one linked
         * to it, and it is gone (archive/chain.h). */
        if (list.items[i].manifest.previous_backup[0]) {
            struct chain_record previous = {0};
            snprintf(previous.backup, sizeof previous.backup, "%s",
                     list.items[i].manifest.previous_backup);
            if (chain_delete_local(db, &previous, &err) != 0)
                log_event(LOG_WARNING, db->name, "prune", "%s", err.message);
        }
        deleted++;
        log_event(LOG_INFO, db->name, "prune", "deleted backup %s", list.items[i].id);
    }
    char directory[4096];
    if (deleted && catalog_directory(db, directory, sizeof directory) == 0)
        fs_sync_directory(directory, NULL);
    if (failed)
        job_result_set(result, JOB_OUTCOME_FAILED, "kept %zu, deleted %zu, could not delete %zu",
                       list.count - deleted - failed, deleted, failed);
    else
        job_result_set(result, JOB_OUTCOME_OK, "kept %zu local backup%s, deleted %zu",
                       list.count - deleted, list.count - deleted == 1 ? "" : "s", deleted);
    free(items);
    catalog_free(&list);
    return failed ? -EIO : 0;
}
