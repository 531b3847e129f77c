/*
 * upload.c: ships queued archives to the database's target.
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
 * With encrypt recipients, what goes out is encrypted (archive/sealed.h):
 * an archive kept unencrypted here (encrypt.local off) is sealed as it is
 * sent (a sealed view: no sealed copy is written), as NAME-STAMP.db.gz.age
 * with a manifest that describes the sealed object; an archive sealed
 * already is sent as it is.
 *
 * Remote retention, which follows a run that sent something (jobs/plan.c),
 * is prune_remote.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive/catalog.h"
#include "archive/chain.h"
#include "archive/manifest.h"
#include "archive/sealed.h"
#include "config/advice.h"
#include "core/fsutil.h"
#include "core/io.h"
#include "core/log.h"
#include "jobs/job.h"
#include "offsite/remote.h"
#include "offsite/target.h"

#define UPLOAD_BATCH 16

static time_t upload_next_attempt(int attempts, time_t now)
{
    return now + (time_t)io_backoff(60, 3600, attempts, IO_JITTER_EQUAL);
}

/* A sealed view (archive/sealed.h) as what a target uploads. */
static int view_open_reader(void *context, void **reader, struct error *err)
{
    return sealed_view_reader_open(context, (struct sealed_view_reader **)reader, err);
}

static int view_read(void *reader, unsigned char *buffer, size_t length, int64_t offset,
                     struct error *err)
{
    return sealed_view_read(reader, buffer, length, offset, err);
}

static void view_close_reader(void *reader)
{
    sealed_view_reader_close(reader);
}

static int view_check(void *reader, struct error *err)
{
    return sealed_view_reader_check(reader, err);
}

/* Sends an unencrypted local archive sealed, under KEY.age, and a manifest
 * describing the sealed object (written to a temp file beside the local
 * one, sent, removed). */
static int upload_sealed(struct job_context *context, struct target *target,
                         const struct upload_entry *entry, struct manifest *manifest,
                         const char *archive_key, struct error *err)
{
    struct sealed_recipients recipients = sealed_recipients_of(context->database);
    struct io_context io = {.stop = context->stop};
    struct sealed_view *view = NULL;
    char key[1100], manifest_key[1200], manifest_path[4500], stored[IO_SHA256_HEX];
    int rc = sealed_view_open(entry->archive_path, &recipients, &view, err);
    if (rc != 0)
        return rc;
    /* The plaintext sealed must be the archive its manifest describes: the
     * sealed object's own hash is known only once it is sent. */
    sealed_view_expect_plain(view, manifest->archive_sha256);
    struct target_source source = {.name = entry->archive_path,
                                   .size = sealed_view_size(view),
                                   .context = view,
                                   .open_reader = view_open_reader,
                                   .read = view_read,
                                   .close_reader = view_close_reader,
                                   .check = view_check};
    snprintf(key, sizeof key, "%s%s", archive_key, SEALED_SUFFIX);
    rc = target_put_source(target, key, &source, NULL, stored, &io, err);
    sealed_view_close(view);
    if (rc != 0)
        return rc;
    const char *name = strrchr(key, '/');
    /* The chain hash (manifest_chain_hash) stays that of the plain archive. */
    snprintf(manifest->plain_sha256, sizeof manifest->plain_sha256, "%s", manifest->archive_sha256);
    snprintf(manifest->archive, sizeof manifest->archive, "%s", name ? name + 1 : key);
    snprintf(manifest->archive_sha256, sizeof manifest->archive_sha256, "%s", stored);
    manifest->archive_bytes = source.size;
    manifest->encrypted = true;
    sealed_describe_recipients(&recipients, manifest->recipients, sizeof manifest->recipients);
    /* Not fsync'd: a temp file that a crash leaves is removed, never used. */
    snprintf(manifest_path, sizeof manifest_path, "%s%s.json.upload%s", entry->archive_path,
             SEALED_SUFFIX, FS_TEMP_SUFFIX);
    snprintf(manifest_key, sizeof manifest_key, "%s.json", key);
    rc = manifest_write(manifest_path, manifest, err);
    if (rc == 0)
        rc = target_put_file(target, manifest_key, manifest_path, NULL, &io, err);
    unlink(manifest_path);
    return rc;
}

/* Whether the target lists anything whose key starts with `prefix`. */
static int upload_target_has(struct target *target, const char *prefix, bool *has,
                             struct error *err)
{
    struct target_listing listing = {0};
    int rc = target_list(target, prefix, &listing, err);
    *has = rc == 0 && listing.count > 0;
    target_listing_free(&listing);
    return rc;
}

/* The chain on a target starts with the first backup sent there: when the
 * backup it follows was never sent (taken before the target was
 * configured), a record says so (archive/chain.h), so that verify does not
 * report it missing. Only then: a backup missing from a target that holds
 * older ones is reported by verify, not explained away here. */
static int upload_mark_chain_start(struct job_context *context, struct target *target,
                                   const struct manifest *manifest, struct error *err)
{
    const char *name = context->database->name;
    char prefix[1200], directory[4096];
    bool has = false;
    if (!manifest->previous_backup[0])
        return 0;
    snprintf(prefix, sizeof prefix, "%s/%s-%s.", name, name, manifest->previous_backup);
    int rc = upload_target_has(target, prefix, &has, err);
    if (rc != 0 || has)
        return rc;
    snprintf(prefix, sizeof prefix, "%s/%s/%s-%s.json", name, CHAIN_RECORD_DIRECTORY, name,
             manifest->previous_backup);
    if ((rc = upload_target_has(target, prefix, &has, err)) != 0 || has)
        return rc;
    struct remote_list list = {0};
    if ((rc = remote_list_backups(target, name, &list, err)) != 0)
        return rc;
    for (size_t i = 0; i < list.count && !has; i++)
        has = list.items[i].has_manifest && list.items[i].created < manifest->created;
    remote_list_free(&list);
    if (has)
        return 0;
    struct chain_record record = {0};
    snprintf(record.database, sizeof record.database, "%s", name);
    snprintf(record.backup, sizeof record.backup, "%s", manifest->previous_backup);
    snprintf(record.chain_sha256, sizeof record.chain_sha256, "%s", manifest->previous_sha256);
    snprintf(record.reason, sizeof record.reason, "%s", CHAIN_REASON_NOT_UPLOADED);
    record.at = time(NULL);
    if (catalog_directory(context->database, directory, sizeof directory) != 0)
        return error_set(err, -ENAMETOOLONG, "backup directory for %s: path too long", name);
    return remote_put_record(target, directory, &record, err);
}

static int upload_one(struct job_context *context, struct target *target,
                      const struct upload_entry *entry, int64_t *bytes, struct error *err)
{
    const char *file_name = strrchr(entry->archive_path, '/');
    char archive_key[1024], manifest_key[1100], manifest_path[4400];
    struct manifest manifest;
    struct io_context io = {.stop = context->stop};

    remote_key_for(context->database->name, file_name ? file_name + 1 : entry->archive_path,
                   archive_key, sizeof archive_key);
    snprintf(manifest_key, sizeof manifest_key, "%s.json", archive_key);
    snprintf(manifest_path, sizeof manifest_path, "%s.json", entry->archive_path);
    int rc = manifest_read(manifest_path, &manifest, err);
    if (rc != 0)
        return rc;
    if (context->database->encrypt.recipient_count > 0 && !manifest.encrypted) {
        rc = upload_sealed(context, target, entry, &manifest, archive_key, err);
    } else {
        rc = target_put_file(target, archive_key, entry->archive_path, manifest.archive_sha256, &io,
                             err);
        if (rc == 0)
            rc = target_put_file(target, manifest_key, manifest_path, NULL, &io, err);
    }
    if (rc == 0) {
        /* Sent: that the chain starts here is bookkeeping for verify, and a
         * target that fails it now fails remote retention next (which says
         * so), not this upload. */
        struct error why = {0};
        if (upload_mark_chain_start(context, target, &manifest, &why) != 0)
            log_event(LOG_WARNING, context->database->name, "upload",
                      "%s: cannot record where the chain of backups on the target starts: %s",
                      entry->archive_path, why.message);
        *bytes += manifest.archive_bytes;
    }
    return rc;
}

/* One run over the queue: what it did, and the target once opened. */
struct upload_run {
    struct target *target;
    time_t now;
    int uploaded, failed, dropped;
    int64_t bytes;
    char first_error[600];
};

/* An attempt that failed: the entry waits for its back-off. An archive that
 * did not match its manifest (-EBADMSG) is retried like any other failure,
 * as a failing read may pass, but a damaged file stays damaged: the message
 * names the command that finds which archives are. */
static void upload_defer(struct job_context *context, struct upload_run *run,
                         const struct upload_entry *entry, const struct error *err)
{
    char fix[ADVICE_MAX], message[sizeof err->message + ADVICE_MAX + 32];
    if (err->code == -EBADMSG)
        snprintf(message, sizeof message, "%s; find the damaged archives with `%s`", err->message,
                 advice_sqlprodd(fix, sizeof fix, context->config, "verify",
                                 context->database->name, "--local", "--data", NULL));
    else
        snprintf(message, sizeof message, "%s", err->message);
    run->failed++;
    if (!run->first_error[0])
        snprintf(run->first_error, sizeof run->first_error, "%s", message);
    state_defer_upload(context->state, entry->id, upload_next_attempt(entry->attempts, run->now),
                       message, NULL);
    log_event(LOG_WARNING, context->database->name, "upload", "%s: %s (attempt %d, will retry)",
              entry->archive_path, message, entry->attempts + 1);
}

/* Sends one queued archive, or drops it when its file is gone. Returns 0
 * when the entry left the queue, -ECANCELED on stop, another code when the
 * attempt failed (and was deferred). */
static int upload_entry(struct job_context *context, struct upload_run *run,
                        const struct upload_entry *entry)
{
    const struct database_config *db = context->database;
    struct error err = {0};
    int rc;
    if (context->stop && *context->stop)
        return -ECANCELED;
    if (access(entry->archive_path, F_OK) != 0) {
        /* Deleted by hand: nothing left to send. */
        log_event(LOG_WARNING, db->name, "upload", "%s is gone; dropped from the queue",
                  entry->archive_path);
        rc = state_complete_upload(context->state, entry->id, &err);
        if (rc == 0)
            run->dropped++;
    } else {
        rc = run->target ? 0 : target_open(db->upload.target, &run->target, &err);
        if (rc == 0) {
            target_set_stop(run->target, context->stop);
            rc = upload_one(context, run->target, entry, &run->bytes, &err);
        }
        /* Sent but not marked done would be sent again at every round. */
        if (rc == 0)
            rc = state_complete_upload(context->state, entry->id, &err);
        if (rc == 0) {
            run->uploaded++;
            log_event(LOG_INFO, db->name, "upload", "%s sent to %s", entry->archive_path,
                      target_describe(run->target));
        }
    }
    if (rc != 0 && rc != -ECANCELED)
        upload_defer(context, run, entry, &err);
    return rc;
}

/* Works through the queue in batches until it is empty, an attempt fails
 * (the target is in trouble: the rest waits for the next attempt) or a
 * batch makes no progress. */
static int upload_drain(struct job_context *context, struct upload_run *run, struct error *err)
{
    struct upload_entry entries[UPLOAD_BATCH];
    /* A one-off `sqlprodd upload` means now, whatever the back-off says; so
     * does a first success. */
    time_t everything = run->now + 3650 * 86400;
    time_t horizon = context->one_off ? everything : run->now;
    for (;;) {
        int count = state_due_uploads(context->state, context->database->name, horizon, entries,
                                      UPLOAD_BATCH, err);
        if (count <= 0)
            return count;
        int progressed = 0;
        for (int i = 0; i < count; i++) {
            int rc = upload_entry(context, run, &entries[i]);
            if (rc == -ECANCELED)
                return rc;
            if (rc == 0) {
                progressed++;
                horizon = everything; /* the target works again: no reason to wait */
            }
        }
        if (run->failed || progressed == 0)
            return 0;
    }
}

int job_upload(struct job_context *context, struct job_result *result)
{
    const struct database_config *db = context->database;
    struct upload_run run = {.now = time(NULL)};
    struct error err = {0};

    if (!db->upload.target) {
        job_result_set(result, JOB_OUTCOME_OK, "no upload target configured");
        return 0;
    }
    if (!context->state) {
        job_result_set(result, JOB_OUTCOME_FAILED, "no state database: cannot read the upload queue");
        return -EINVAL;
    }
    int rc = upload_drain(context, &run, &err);
    target_close(run.target);
    if (rc == -ECANCELED) {
        job_result_set(result, JOB_OUTCOME_FAILED, "aborted: stop requested");
        return rc;
    }
    if (rc < 0) {
        job_result_set(result, JOB_OUTCOME_FAILED, "%s", err.message);
        return rc;
    }
    int64_t pending = 0;
    state_pending_upload_count(context->state, db->name, &pending, NULL);
    if (run.failed) {
        job_result_set(result, JOB_OUTCOME_FAILED, "%d upload%s failed, %lld pending: %s",
                       run.failed, run.failed == 1 ? "" : "s", (long long)pending, run.first_error);
        return -EIO;
    }
    if (run.uploaded) {
        /* What `status` shows as LAST UPLOAD: the last run that sent
         * something, not the last retry tick that found nothing to send. */
        struct db_facts facts = {.upload_last_sent = {time(NULL), run.uploaded, run.bytes}};
        state_set_facts(context->state, db->name, &facts, FACT_UPLOAD_LAST_SENT, NULL);
    }
    if (run.uploaded || run.dropped) {
        /* Uploaded archives are no longer pinned locally: retention follows
         * (jobs/plan.c). */
        result->changed_backups = true;
        job_result_set(result, JOB_OUTCOME_OK, "uploaded %d archive%s (%lld bytes) to %s",
                       run.uploaded, run.uploaded == 1 ? "" : "s", (long long)run.bytes,
                       db->upload.target->name);
    } else {
        job_result_set(result, JOB_OUTCOME_OK, "nothing to upload, %lld pending", (long long)pending);
        result->quiet = pending == 0; /* the retry tick with an empty queue is no news */
    }
    return 0;
}
