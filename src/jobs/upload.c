/*
 * upload.c: ships queued archives to the database's target, then applies
 * the target's retention.
 *
 * The queue lives in the state database (state.c), so it survives restarts
 * and outages: an entry leaves it only once the target confirmed both the
 * archive and its manifest, and until then local retention keeps the file.
 * The manifest goes up last, so a remote archive without a manifest is an
 * unfinished upload, never taken for a backup. A failed upload is retried
 * with exponential back-off (1 min doubling to 1 h, with jitter) on top of
 * the target's own per-request retries; once one upload of a run succeeds
 * the target is evidently back, and the rest of the backlog goes too.
 *
 * Remote retention works from a listing of the target: the keep rules see
 * complete backups only (archive and manifest), so the newest complete one
 * is never deleted; an archive without a manifest is left alone while its
 * upload is queued or recent, and removed once it is a stale leftover.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive/catalog.h"
#include "jobs/job.h"
#include "core/io.h"
#include "core/log.h"
#include "archive/manifest.h"
#include "offsite/remote.h"
#include "policy/retention.h"
#include "offsite/target.h"

#define UPLOAD_BATCH 16
/* An archive without a manifest younger than this may be an upload under way
 * (or one an operator is copying by hand): remote retention leaves it. */
#define UPLOAD_ORPHAN_GRACE_SECONDS 86400

static time_t upload_next_attempt(int attempts, time_t now)
{
    return now + (time_t)io_backoff(60, 3600, attempts, IO_JITTER_EQUAL);
}

static int upload_one(struct job_context *context, struct target *target,
                      const struct upload_entry *entry, int64_t *bytes, struct error *err)
{
    const char *file_name = strrchr(entry->archive_path, '/');
    char manifest_path[4200], archive_key[1024], manifest_key[1100];
    struct manifest manifest;
    struct io_context io = {.stop = context->stop};

    file_name = file_name ? file_name + 1 : entry->archive_path;
    snprintf(manifest_path, sizeof manifest_path, "%s.json", entry->archive_path);
    int rc = manifest_read(manifest_path, &manifest, err);
    if (rc != 0)
        return rc;
    remote_key_for(context->database->name, file_name, archive_key, sizeof archive_key);
    snprintf(manifest_key, sizeof manifest_key, "%s.json", archive_key);
    rc = target_put_file(target, archive_key, entry->archive_path, manifest.archive_sha256, &io, err);
    if (rc == 0)
        rc = target_put_file(target, manifest_key, manifest_path, NULL, &io, err);
    if (rc == 0)
        *bytes += manifest.archive_bytes;
    return rc;
}

int job_upload(struct job_context *context, struct job_result *result)
{
    const struct database_config *db = context->database;
    struct upload_entry entries[UPLOAD_BATCH];
    struct target *target = NULL;
    struct error err = {0};
    time_t now = time(NULL);
    int uploaded = 0, failed = 0, dropped = 0, rc = 0;
    int64_t bytes = 0;
    char first_error[600] = "";

    if (!db->upload.target) {
        job_result_set(result, JOB_OUTCOME_OK, "no upload target configured");
        return 0;
    }
    if (!context->state) {
        job_result_set(result, JOB_OUTCOME_FAILED, "no state database: cannot read the upload queue");
        return -EINVAL;
    }
    /* A one-off `sqlprodd upload` means now, whatever the back-off says; so
     * does a first success, below. */
    time_t everything = now + 3650 * 86400;
    time_t horizon = context->one_off ? everything : now;
    for (;;) {
        int count = state_due_uploads(context->state, db->name, horizon, entries, UPLOAD_BATCH, &err);
        if (count < 0) {
            job_result_set(result, JOB_OUTCOME_FAILED, "%s", err.message);
            rc = count;
            goto out;
        }
        if (count == 0)
            break;
        int progressed = 0;
        for (int i = 0; i < count; i++) {
            const struct upload_entry *entry = &entries[i];
            if (context->stop && *context->stop) {
                rc = -ECANCELED;
                goto out;
            }
            if (access(entry->archive_path, F_OK) != 0) {
                /* Deleted by hand: nothing left to send. */
                log_event(LOG_WARNING, db->name, "upload", "%s is gone; dropped from the queue",
                          entry->archive_path);
                if ((rc = state_complete_upload(context->state, entry->id, &err)) != 0)
                    goto attempt_failed;
                dropped++;
                progressed++;
                continue;
            }
            if (!target && (rc = target_open(db->upload.target, &target, &err)) != 0)
                goto attempt_failed;
            target_set_stop(target, context->stop);
            rc = upload_one(context, target, entry, &bytes, &err);
            /* Sent but not marked done would be sent again at every round. */
            if (rc == 0 && (rc = state_complete_upload(context->state, entry->id, &err)) != 0)
                goto attempt_failed;
            if (rc == 0) {
                uploaded++;
                progressed++;
                horizon = everything; /* the target works again: no reason to wait */
                log_event(LOG_INFO, db->name, "upload", "%s sent to %s", entry->archive_path,
                          target_describe(target));
                continue;
            }
        attempt_failed:
            if (rc == -ECANCELED)
                goto out;
            failed++;
            if (!first_error[0])
                snprintf(first_error, sizeof first_error, "%s", err.message);
            state_defer_upload(context->state, entry->id, upload_next_attempt(entry->attempts, now),
                               err.message, NULL);
            log_event(LOG_WARNING, db->name, "upload", "%s: %s (attempt %d, will retry)",
                      entry->archive_path, err.message, entry->attempts + 1);
        }
        if (failed || progressed == 0)
            break; /* the target is in trouble: leave the rest for the next attempt */
    }
    rc = 0;
    int64_t pending = 0;
    state_pending_upload_count(context->state, db->name, &pending, NULL);
    if (failed) {
        job_result_set(result, JOB_OUTCOME_FAILED, "%d upload%s failed, %lld pending: %s", failed,
                       failed == 1 ? "" : "s", (long long)pending, first_error);
        rc = -EIO;
        goto out;
    }
    if (uploaded) {
        /* What `status` shows as LAST UPLOAD: the last run that sent
         * something, not the last retry tick that found nothing to send. */
        char value[64];
        snprintf(value, sizeof value, "%lld %d %lld", (long long)time(NULL), uploaded,
                 (long long)bytes);
        state_set_value(context->state, db->name, "upload_last_sent", value, NULL);
    }
    if (uploaded || dropped) {
        /* Uploaded archives are no longer pinned locally: local retention
         * frees their space now, then remote retention runs (job_prune). */
        struct job_result pruned = {0};
        job_prune(context, &pruned);
        /* The archives are safe off-site; a retention problem is a caveat. */
        job_result_set(result,
                       pruned.outcome == JOB_OUTCOME_OK ? JOB_OUTCOME_OK : JOB_OUTCOME_WARNING,
                       "uploaded %d archive%s (%lld bytes) to %s; %s",
                       uploaded, uploaded == 1 ? "" : "s", (long long)bytes, db->upload.target->name,
                       pruned.message);
    } else {
        job_result_set(result, JOB_OUTCOME_OK, "nothing to upload, %lld pending", (long long)pending);
        result->quiet = pending == 0; /* the retry tick with an empty queue is no news */
    }
out:
    target_close(target);
    if (rc == -ECANCELED)
        job_result_set(result, JOB_OUTCOME_FAILED, "aborted: stop requested");
    return rc;
}

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
    snprintf(local, sizeof local, "%s/%s/%s", db->backup.dir, db->name, file_name);
    if (context->state && state_upload_is_pending(context->state, local, &pending, NULL) != 0)
        return true;
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

int job_prune_remote(struct job_context *context, struct job_result *result)
{
    const struct database_config *db = context->database;
    struct remote_list list = {0};
    struct target *target = NULL;
    struct retention_item *items = NULL;
    struct error err = {0};
    size_t deleted = 0, kept = 0, orphans_deleted = 0, complete_count = 0;
    time_t now = time(NULL);
    int rc = target_open(db->upload.target, &target, &err);
    target_set_stop(target, context->stop);
    if (rc == 0)
        rc = remote_list_backups(target, db->name, &list, &err);
    if (rc != 0) {
        job_result_set(result, JOB_OUTCOME_FAILED, "remote retention: %s", err.message);
        goto out;
    }
    items = calloc(list.count + 1, sizeof *items);
    if (!items) {
        rc = -ENOMEM;
        job_result_set(result, JOB_OUTCOME_FAILED, "remote retention: out of memory");
        goto out;
    }
    /* The rules count complete backups only (an orphan archive is not a
     * backup one could restore); each has passed verification before it was
     * queued, so retention's "newest verified" is the newest complete one. */
    for (size_t i = 0; i < list.count; i++) {
        if (!list.items[i].has_manifest)
            continue;
        items[complete_count].created = list.items[i].created;
        items[complete_count++].verified = true;
    }
    retention_apply(&db->upload.keep, items, complete_count);
    for (size_t n = 0, i = 0; i < list.count; i++) {
        const struct remote_backup *backup = &list.items[i];
        bool keep;
        if (backup->has_manifest) {
            keep = items[n].keep; /* items[] holds the complete ones in list order */
            n++;
        } else {
            keep = upload_orphan_is_live(context, backup, now);
        }
        if (keep) {
            kept++;
            continue;
        }
        if (context->stop && *context->stop) {
            rc = -ECANCELED;
            job_result_set(result, JOB_OUTCOME_FAILED, "remote retention: stopped after deleting %zu",
                           deleted + orphans_deleted);
            goto out;
        }
        rc = upload_delete_remote(target, backup, &err);
        if (rc != 0) {
            job_result_set(result, JOB_OUTCOME_FAILED,
                           "remote retention: deleted %zu, then: %s", deleted + orphans_deleted,
                           err.message);
            goto out;
        }
        if (backup->has_manifest) {
            deleted++;
            log_event(LOG_DEBUG, db->name, "prune", "deleted remote backup %s", backup->id);
        } else {
            orphans_deleted++;
            log_event(LOG_INFO, db->name, "prune",
                      "deleted %s: an archive without a manifest, left by an unfinished upload",
                      backup->archive_key);
        }
    }
    if (deleted)
        log_event(LOG_INFO, db->name, "prune", "deleted %zu remote backup%s from %s", deleted,
                  deleted == 1 ? "" : "s", db->upload.target->name);
    job_result_set(result, JOB_OUTCOME_OK, "kept %zu remote backup%s, deleted %zu%s", kept,
                   kept == 1 ? "" : "s", deleted, orphans_deleted ? " (and unfinished uploads)" : "");
out:
    free(items);
    target_close(target);
    remote_list_free(&list);
    return rc;
}
