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
#include <time.h>

#include "archive/catalog.h"
#include "archive/chain.h"
#include "archive/sealed.h"
#include "core/fsutil.h"
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

/* Backups the rules would delete that S3 Object Lock still holds are kept,
 * and counted: on a bucket with Object Lock (always versioned) a delete only
 * hides the locked version behind a delete marker, so the backup would
 * vanish from every listing while it is still stored and paid for.
 * *until: when the last of them is free. */
static size_t prune_remote_hold_locked(const struct target_config *target,
                                       const struct remote_list *list, bool *keep, time_t now,
                                       time_t *until)
{
    size_t held = 0;
    *until = 0;
    for (size_t i = 0; i < list->count; i++) {
        time_t modified = list->items[i].modified;
        if (keep[i] || !retention_object_is_locked(modified, target->object_lock_days, now))
            continue;
        keep[i] = true;
        held++;
        time_t end = retention_lock_until(modified, target->object_lock_days);
        *until = end > *until ? end : *until;
    }
    return held;
}

/* "; 3 of them locked (object_lock) until DATE at the latest", or "". */
static void prune_remote_describe_held(size_t held, time_t until, char *out, size_t size)
{
    struct tm date;
    char text[32] = "?";
    out[0] = '\0';
    if (held == 0)
        return;
    if (gmtime_r(&until, &date))
        strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &date);
    snprintf(out, size, "; %zu of them locked (object_lock) until %s at the latest", held, text);
}

/* Leaves the record of a deletion (archive/chain.h) before the backup goes,
 * so that verify does not take the deletion for one behind our back. */
static int prune_remote_record(struct job_context *context, struct target *target,
                               const struct remote_backup *backup, struct chain_record *previous,
                               struct error *err)
{
    char directory[4096];
    struct manifest manifest;
    struct chain_record record;
    if (catalog_directory(context->database, directory, sizeof directory) != 0 ||
        fs_make_directories(directory, 0700, err) != 0)
        return error_set(err, -ENAMETOOLONG, "backup directory for %s: unusable",
                         context->database->name);
    int rc = remote_read_manifest(target, backup, directory, &manifest, err);
    if (rc != 0)
        return rc;
    chain_record_for(&manifest, backup->id, CHAIN_REASON_RETENTION, time(NULL), &record);
    /* Keys are built from the configured name, never from what a manifest says. */
    snprintf(record.database, sizeof record.database, "%s", context->database->name);
    /* The record of the backup this one follows, which only this one
     * linked to: it goes once this one is gone (chain.h). */
    memset(previous, 0, sizeof *previous);
    snprintf(previous->database, sizeof previous->database, "%s", context->database->name);
    snprintf(previous->backup, sizeof previous->backup, "%s", manifest.previous_backup);
    return remote_put_record(target, directory, &record, err);
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
    /* Oldest first: each deletion removes the record of the one before. */
    for (size_t i = list->count; i-- > 0;) {
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
        struct chain_record previous = {0};
        int rc = backup->has_manifest
                     ? prune_remote_record(context, target, backup, &previous, &err)
                     : 0;
        if (rc == 0)
            rc = upload_delete_remote(target, backup, &err);
        /* Under Object Lock the record is locked too, and a delete would
         * only hide it: left, it costs a line of a listing. */
        if (rc == 0 && previous.backup[0] && db->upload.target->object_lock_days == 0 &&
            remote_delete_record(target, &previous, &err) != 0)
            log_event(LOG_WARNING, db->name, "prune", "%s", err.message);
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
    time_t locked_until;
    char held[128];
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
    size_t locked =
        prune_remote_hold_locked(db->upload.target, &list, keep, time(NULL), &locked_until);
    prune_remote_describe_held(locked, locked_until, held, sizeof held);
    rc = prune_remote_delete(context, target, &list, keep, &tally, result);
    if (rc != 0)
        goto out;
    if (tally.deleted)
        log_event(LOG_INFO, db->name, "prune", "deleted %zu remote backup%s from %s", tally.deleted,
                  tally.deleted == 1 ? "" : "s", db->upload.target->name);
    job_result_set(result, JOB_OUTCOME_OK, "kept %zu remote backup%s, deleted %zu%s%s", tally.kept,
                   tally.kept == 1 ? "" : "s", tally.deleted,
                   tally.orphans_deleted ? " (and unfinished uploads)" : "", held);
out:
    free(keep);
    target_close(target);
    remote_list_free(&list);
    return rc;
}
