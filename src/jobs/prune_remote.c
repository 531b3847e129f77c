/*
 * prune_remote.c: remote retention, the target's own keep rules.
 *
 * Works from a listing of the target: the keep rules see complete backups
 * only (archive and manifest), so the newest complete one is never deleted;
 * an archive without a manifest is left alone while its upload is queued or
 * recent, and removed once it is a stale leftover. Runs after an upload that
 * sent something and after local retention (jobs/plan.c); never uploads.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive/catalog.h"
#include "archive/sealed.h"
#include "core/log.h"
#include "jobs/job.h"
#include "offsite/remote.h"
#include "offsite/target.h"
#include "policy/retention.h"

/* An archive without a manifest younger than this may be an upload under way
 * (or one an operator is copying by hand): remote retention leaves it. */
#define UPLOAD_ORPHAN_GRACE_SECONDS 86400

/* An archive without a manifest is kept while its upload may still come:
 * queued here, or recent enough to be under way elsewhere. */
static bool upload_orphan_is_live(struct job_context *context, const struct remote_backup *backup,
                                  time_t now)
{
    const struct database_config *db = context->database;
    const char *file_name = strrchr(backup->archive_key, '/');
    char local[4200];
    bool pending = true; /* when in doubt, keep */
    if (now - backup->created < UPLOAD_ORPHAN_GRACE_SECONDS)
        return true;
    file_name = file_name ? file_name + 1 : backup->archive_key;
    if (catalog_archive_path(db, file_name, local, sizeof local) != 0)
        return true;
    if (context->state && state_upload_is_pending(context->state, local, &pending, NULL) != 0)
        return true;
    /* X.db.gz.age on the target may be the sealed copy of X.db.gz here. */
    size_t length = strlen(local), suffix = strlen(SEALED_SUFFIX);
    if (!pending && length > suffix && strcmp(local + length - suffix, SEALED_SUFFIX) == 0) {
        local[length - suffix] = '\0';
        if (context->state && state_upload_is_pending(context->state, local, &pending, NULL) != 0)
            return true;
    }
    return pending;
}

/* Deletes one remote backup, manifest first: a half-deleted backup is then
 * an orphan archive, never listed as complete. */
static int upload_delete_remote(struct target *target, const struct remote_backup *backup,
                                struct error *err)
{
    int rc = 0;
    if (backup->has_manifest)
        rc = target_delete(target, backup->manifest_key, err);
    if (rc == 0)
        rc = target_delete(target, backup->archive_key, err);
    return rc;
}

/* Which listed backups to keep: keep[i] for list->items[i]. The rules count
 * complete backups only (an orphan archive is not a backup one could
 * restore); each has passed verification before it was queued, so
 * retention's "newest verified" is the newest complete one. */
static int prune_remote_decide(struct job_context *context, const struct remote_list *list,
                               bool *keep)
{
    size_t complete = 0;
    time_t now = time(NULL);
    struct retention_item *items = calloc(list->count + 1, sizeof *items);
    if (!items)
        return -ENOMEM;
    for (size_t i = 0; i < list->count; i++) {
        if (!list->items[i].has_manifest)
            continue;
        items[complete].created = list->items[i].created;
        items[complete++].verified = true;
    }
    retention_apply(&context->database->upload.keep, items, complete);
    for (size_t n = 0, i = 0; i < list->count; i++) {
        if (list->items[i].has_manifest) /* items[] holds the complete ones in list order */
            keep[i] = items[n++].keep;
        else
            keep[i] = upload_orphan_is_live(context, &list->items[i], now);
    }
    free(items);
    return 0;
}

/* What one run deleted. */
struct prune_remote_tally {
    size_t kept, deleted, orphans_deleted;
};

static int prune_remote_delete(struct job_context *context, struct target *target,
                               const struct remote_list *list, const bool *keep,
                               struct prune_remote_tally *tally, struct job_result *result)
{
    const struct database_config *db = context->database;
    struct error err = {0};
    for (size_t i = 0; i < list->count; i++) {
        const struct remote_backup *backup = &list->items[i];
        if (keep[i]) {
            tally->kept++;
            continue;
        }
        if (context->stop && *context->stop) {
            job_result_set(result, JOB_OUTCOME_FAILED,
                           "remote retention: stopped after deleting %zu",
                           tally->deleted + tally->orphans_deleted);
            return -ECANCELED;
        }
        int rc = upload_delete_remote(target, backup, &err);
        if (rc != 0) {
            job_result_set(result, JOB_OUTCOME_FAILED, "remote retention: deleted %zu, then: %s",
                           tally->deleted + tally->orphans_deleted, err.message);
            return rc;
        }
        if (backup->has_manifest) {
            tally->deleted++;
            log_event(LOG_DEBUG, db->name, "prune", "deleted remote backup %s", backup->id);
        } else {
            tally->orphans_deleted++;
            log_event(LOG_INFO, db->name, "prune",
                      "deleted %s: an archive without a manifest, left by an unfinished upload",
                      backup->archive_key);
        }
    }
    return 0;
}

int job_prune_remote(struct job_context *context, struct job_result *result)
{
    const struct database_config *db = context->database;
    struct remote_list list = {0};
    struct target *target = NULL;
    struct prune_remote_tally tally = {0};
    struct error err = {0};
    bool *keep = NULL;
    int rc = target_open(db->upload.target, &target, &err);
    target_set_stop(target, context->stop);
    if (rc == 0)
        rc = remote_list_backups(target, db->name, &list, &err);
    if (rc != 0) {
        job_result_set(result, JOB_OUTCOME_FAILED, "remote retention: %s", err.message);
        goto out;
    }
    keep = calloc(list.count + 1, sizeof *keep);
    if (!keep || (rc = prune_remote_decide(context, &list, keep)) != 0) {
        rc = -ENOMEM;
        job_result_set(result, JOB_OUTCOME_FAILED, "remote retention: out of memory");
        goto out;
    }
    rc = prune_remote_delete(context, target, &list, keep, &tally, result);
    if (rc != 0)
        goto out;
    if (tally.deleted)
        log_event(LOG_INFO, db->name, "prune", "deleted %zu remote backup%s from %s", tally.deleted,
                  tally.deleted == 1 ? "" : "s", db->upload.target->name);
    job_result_set(result, JOB_OUTCOME_OK, "kept %zu remote backup%s, deleted %zu%s", tally.kept,
                   tally.kept == 1 ? "" : "s", tally.deleted,
                   tally.orphans_deleted ? " (and unfinished uploads)" : "");
out:
    free(keep);
    target_close(target);
    remote_list_free(&list);
    return rc;
}
