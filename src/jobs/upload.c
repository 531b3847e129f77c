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
 * the target's own per-request retries.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "job.h"
#include "log.h"
#include "manifest.h"
#include "remote.h"
#include "retention.h"
#include "target.h"

#define UPLOAD_BATCH 16

static time_t upload_next_attempt(int attempts, time_t now)
{
    int64_t delay = 60LL << (attempts < 6 ? attempts : 6);
    if (delay > 3600)
        delay = 3600;
    return now + (time_t)(delay / 2 + rand() % (delay / 2 + 1));
}

static int upload_one(struct job_context *context, struct target *target,
                      const struct upload_entry *entry, int64_t *bytes, struct error *err)
{
    const char *file_name = strrchr(entry->archive_path, '/');
    char manifest_path[4200], archive_key[1024], manifest_key[1100];
    struct manifest manifest;
    struct archive_io io = {.stop = context->stop};

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
    /* A one-off `sqlprodd upload` means now, whatever the back-off says. */
    time_t horizon = context->one_off ? now + 365 * 86400 : now;
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
                state_complete_upload(context->state, entry->id, NULL);
                dropped++;
                progressed++;
                continue;
            }
            if (!target && (rc = target_open(db->upload.target, &target, &err)) != 0)
                goto attempt_failed;
            rc = upload_one(context, target, entry, &bytes, &err);
            if (rc == 0) {
                state_complete_upload(context->state, entry->id, NULL);
                uploaded++;
                progressed++;
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
    if (uploaded || dropped) {
        struct job_result pruned = {0};
        job_prune_remote(context, &pruned);
        job_result_set(result, pruned.outcome, "uploaded %d archive%s (%lld bytes) to %s; %s",
                       uploaded, uploaded == 1 ? "" : "s", (long long)bytes, db->upload.target->name,
                       pruned.message);
    } else {
        job_result_set(result, JOB_OUTCOME_OK, "nothing to upload, %lld pending", (long long)pending);
    }
out:
    target_close(target);
    if (rc == -ECANCELED)
        job_result_set(result, JOB_OUTCOME_FAILED, "aborted: stop requested");
    return rc;
}

int job_prune_remote(struct job_context *context, struct job_result *result)
{
    const struct database_config *db = context->database;
    struct remote_list list = {0};
    struct target *target = NULL;
    struct error err = {0};
    size_t deleted = 0, kept = 0;
    int rc = remote_list_backups(db, &list, &err);
    if (rc == 0)
        rc = target_open(db->upload.target, &target, &err);
    if (rc != 0) {
        job_result_set(result, JOB_OUTCOME_FAILED, "remote retention: %s", err.message);
        goto out;
    }
    struct retention_item *items = calloc(list.count + 1, sizeof *items);
    if (!items) {
        rc = -ENOMEM;
        job_result_set(result, JOB_OUTCOME_FAILED, "remote retention: out of memory");
        goto out;
    }
    for (size_t i = 0; i < list.count; i++) {
        items[i].created = list.items[i].created;
        /* Only a complete upload (manifest present) counts as a verified copy;
         * an unfinished one is kept too: its upload may still be under way. */
        items[i].verified = list.items[i].has_manifest;
        items[i].pinned = !list.items[i].has_manifest;
    }
    retention_apply(&db->upload.keep, items, list.count);
    for (size_t i = 0; i < list.count; i++) {
        if (items[i].keep) {
            kept++;
            continue;
        }
        /* Manifest first: a half-deleted backup is never listed as complete. */
        rc = target_delete(target, list.items[i].manifest_key, &err);
        if (rc == 0)
            rc = target_delete(target, list.items[i].archive_key, &err);
        if (rc != 0) {
            job_result_set(result, JOB_OUTCOME_FAILED, "remote retention: %s", err.message);
            free(items);
            goto out;
        }
        deleted++;
        log_event(LOG_INFO, db->name, "prune", "deleted remote backup %s", list.items[i].id);
    }
    free(items);
    job_result_set(result, JOB_OUTCOME_OK, "kept %zu remote backups, deleted %zu", kept, deleted);
out:
    target_close(target);
    remote_list_free(&list);
    return rc;
}
