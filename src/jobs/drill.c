/*
 * drill.c: the restore drill. An operator trusts a backup once it has been
 * restored; this job restores them on a schedule, as `sqlprodd restore`
 * would, where nothing depends on the result.
 *
 * Each run takes the newest backup kept on the side drill.from names (the
 * local backup directory or the upload target) and, when there is one, the
 * oldest kept backup that has not yet passed a drill (state.h remembers
 * which have), so that over time every kept backup is covered while the
 * newest is proven every time. For each:
 *   1. its manifest is read first, and the drill refuses to start when the
 *      scratch directory's disk lacks room for the restored database (plus
 *      the archive, downloaded) or when the backup is encrypted and no
 *      identity is configured (encrypt.identity, identity_credential);
 *   2. restore/backup_restore.c makes the database file in the scratch
 *      directory STATE_DIR/drill/NAME/: download, SHA-256 against the
 *      manifest, decryption, decompression, a full integrity_check, the
 *      source's journal mode, fsync; the time this takes is the restore
 *      time reported (what `sqlprodd restore --check integrity` takes);
 *   3. the restored file's fingerprint (db/fingerprint.h) is compared with
 *      the one the manifest recorded at backup time;
 *   4. the scratch files are removed, whatever happened (a run stopped by
 *      SIGTERM too; the agent removes what a crash left, at start).
 * The live database is never opened. Scheduled drills run on a helper
 * thread at the lowest CPU priority (core/priority.h), as a backup's
 * compression and check do; a drill asked for on the command line runs at
 * full speed. It holds the database lock, as every job does: retention
 * cannot delete the backup being drilled.
 *
 * Not for choosing what to restore in place of a database (restore) nor
 * for re-reading every object of a repository (verify).
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "archive/catalog.h"
#include "core/fsutil.h"
#include "core/io.h"
#include "core/log.h"
#include "core/priority.h"
#include "core/units.h"
#include "db/database.h"
#include "db/fingerprint.h"
#include "jobs/job.h"
#include "offsite/remote.h"
#include "offsite/target.h"
#include "restore/backup_restore.h"
#include "restore/verify.h"

/* The kept backups of the side drilled: their ids, newest first. */
struct drill_kept {
    char (*ids)[32];
    size_t count;
    bool *drilled; /* per id: has passed a drill */
};

/* One backup's drill, run on a helper thread when scheduled. */
struct drill_one {
    struct job_context *context;
    const char *side;      /* "local" or "remote" */
    const char *directory; /* the scratch directory */
    const char *id;        /* the backup */
    char output[PATH_MAX]; /* the restored file */
    char prefix[PATH_MAX]; /* where downloads go */
    bool background;
    /* Out: */
    struct backup_restore_result restored;
    struct fingerprint found;
    double restore_seconds;
    char message[1400];
    int rc;
};

static const char *drill_side_name(const struct database_config *db)
{
    return db->drill.from == DRILL_FROM_REMOTE ? "remote" : "local";
}

/* STATE_DIR/drill/NAME. */
static int drill_directory(const struct config *config, const struct database_config *db, char *out,
                           size_t out_size, struct error *err)
{
    char parent[PATH_MAX];
    if (fs_join(parent, sizeof parent, config->state_dir, "drill") != 0 ||
        fs_join(out, out_size, parent, db->name) != 0)
        return error_set(err, -ENAMETOOLONG, "drill directory for %s: path too long", db->name);
    return 0;
}

int job_clean_drill_directory(const struct config *config, const struct database_config *db,
                              struct error *err)
{
    char directory[PATH_MAX], path[PATH_MAX + 300];
    int rc = drill_directory(config, db, directory, sizeof directory, err);
    if (rc != 0)
        return rc;
    DIR *dir = opendir(directory);
    if (!dir)
        return errno == ENOENT
                   ? 0
                   : error_set(err, -errno, "cannot read %s: %s", directory, strerror(errno));
    /* Everything in it is a drill's: a restored file, its -wal and -shm,
     * the downloads. */
    int removed = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", directory, entry->d_name);
        if (unlink(path) == 0)
            removed++;
    }
    closedir(dir);
    rmdir(directory);
    return removed;
}

/* Step 1: room for what the drill writes, and a key for what is sealed. */
static int drill_prepare(void *context, const struct manifest *manifest, bool remote,
                         struct error *err)
{
    struct drill_one *one = context;
    const struct database_config *db = one->context->database;
    if (manifest->encrypted && !db->encrypt.identity && !db->encrypt.identity_credential)
        return error_set(err, -ENOKEY,
                         "the backup is encrypted and %s has no identity to open it: a drill "
                         "cannot prove an encrypted backup restores without one; set "
                         "encrypt.identity (a file readable by sqlprodd only) or "
                         "encrypt.identity_credential in %s",
                         db->name, one->context->config->file);
    struct statvfs fs;
    if (statvfs(one->directory, &fs) != 0)
        return error_set(err, -errno, "%s: %s", one->directory, strerror(errno));
    int64_t available = (int64_t)fs.f_bavail * (int64_t)fs.f_frsize;
    int64_t database = manifest->database_bytes > 0 ? manifest->database_bytes : 0;
    int64_t archive = remote && manifest->archive_bytes > 0 ? manifest->archive_bytes : 0;
    if (database + archive <= available)
        return 0;
    char need[32], restored[32], downloaded[32], free_text[32];
    units_format_size(database + archive, need, sizeof need);
    units_format_size(database, restored, sizeof restored);
    units_format_size(archive, downloaded, sizeof downloaded);
    units_format_size(available, free_text, sizeof free_text);
    return error_set(err, -ENOSPC,
                     "not enough room to drill it in %s: it needs %s (the restored database, "
                     "%s%s%s), %s are free; free space there or move state_dir to a larger "
                     "disk",
                     one->directory, need, restored,
                     archive ? ", and the archive downloaded, " : "", archive ? downloaded : "",
                     free_text);
}

/* Step 3: the restored file is the database that was backed up. */
static int drill_compare_fingerprint(struct drill_one *one, struct error *err)
{
    const struct manifest *manifest = &one->restored.manifest;
    sqlite3 *connection = NULL;
    int rc = database_open_path(one->output, true, one->context->stop, &connection, err);
    if (rc == 0)
        rc = fingerprint_take(connection, &one->found, err);
    sqlite3_close(connection);
    if (rc != 0)
        return rc;
    struct fingerprint recorded = {.tables = manifest->table_count, .rows = manifest->row_count};
    snprintf(recorded.schema_sha256, sizeof recorded.schema_sha256, "%s", manifest->schema_sha256);
    snprintf(recorded.rows_sha256, sizeof recorded.rows_sha256, "%s", manifest->rows_sha256);
    char why[600];
    if (!fingerprint_matches(&recorded, &one->found, why, sizeof why))
        return error_set(err, -EBADMSG, "restored and checked, but %s", why);
    /* The totals beside the digest are part of what was recorded. */
    if (recorded.rows_sha256[0] &&
        (recorded.tables != one->found.tables || recorded.rows != one->found.rows))
        return error_set(err, -EBADMSG,
                         "restored and checked, but the manifest records %lld rows in %lld "
                         "tables and the restored database has %lld in %lld",
                         (long long)recorded.rows, (long long)recorded.tables,
                         (long long)one->found.rows, (long long)one->found.tables);
    return 0;
}

/* Steps 2 to 4 for one backup. */
static void drill_run_one(struct drill_one *one)
{
    struct job_context *context = one->context;
    const struct job_progress *progress = context->progress;
    const struct backup_restore_progress shown =
        progress ? (struct backup_restore_progress){progress->begin, progress->update,
                                                    progress->end, progress->self}
                 : (struct backup_restore_progress){0};
    const struct backup_restore_request request = {.db = context->database,
                                                   .backup_id = one->id,
                                                   .from = one->side,
                                                   .output = one->output,
                                                   .download_prefix = one->prefix,
                                                   .full_check = true,
                                                   .background = one->background,
                                                   .stop = context->stop,
                                                   .progress = progress ? &shown : NULL,
                                                   .prepare = drill_prepare,
                                                   .prepare_context = one};
    struct error err = {0};
    int64_t start_ms = io_monotonic_ms();
    one->rc = backup_restore_unpack(&request, &one->restored, &err);
    one->restore_seconds = (double)(io_monotonic_ms() - start_ms) / 1000.0;
    if (one->rc == 0)
        one->rc = drill_compare_fingerprint(one, &err);
    backup_restore_remove_file(one->output);
    backup_restore_finish(&one->restored);
    if (one->rc == 0)
        return;
    /* Name the backup and the object, whatever step failed: the restore's
     * own messages name a download by its temp file, gone by now. */
    if (one->restored.source[0])
        snprintf(one->message, sizeof one->message, "backup %s (%s): %s", one->id,
                 one->restored.source, err.message);
    else
        snprintf(one->message, sizeof one->message, "backup %s (%s): %s", one->id, one->side,
                 err.message);
}

static void *drill_thread(void *argument)
{
    struct drill_one *one = argument;
    priority_lower_this_thread(); /* it only reads and writes its own scratch files */
    drill_run_one(one);
    return NULL;
}

/* Runs one drill: on a lowered helper thread when scheduled, here when
 * asked for (or when no thread can be started). */
static void drill_backup(struct drill_one *one)
{
    pthread_t thread;
    if (one->background && io_thread_start(&thread, drill_thread, one) == 0) {
        pthread_join(thread, NULL);
        return;
    }
    drill_run_one(one);
}

/* The kept backups with a manifest, newest first. */
static int drill_list_kept(struct job_context *context, struct drill_kept *kept, struct error *err)
{
    const struct database_config *db = context->database;
    *kept = (struct drill_kept){0};
    size_t count = 0;
    int rc;
    if (db->drill.from == DRILL_FROM_LOCAL) {
        struct backup_list list;
        if ((rc = catalog_list_local(db, &list, err)) != 0)
            return rc;
        kept->ids = calloc(list.count + 1, sizeof *kept->ids);
        for (size_t i = 0; kept->ids && i < list.count; i++)
            snprintf(kept->ids[count++], sizeof kept->ids[0], "%s", list.items[i].id);
        catalog_free(&list);
    } else {
        struct target *target = NULL;
        struct remote_list list = {0};
        rc = target_open(db->upload.target, &target, err);
        target_set_stop(target, context->stop);
        if (rc == 0)
            rc = remote_list_backups(target, db->name, &list, err);
        target_close(target);
        if (rc != 0)
            return rc;
        kept->ids = calloc(list.count + 1, sizeof *kept->ids);
        for (size_t i = 0; kept->ids && i < list.count; i++)
            if (list.items[i].has_manifest)
                snprintf(kept->ids[count++], sizeof kept->ids[0], "%s", list.items[i].id);
        remote_list_free(&list);
    }
    kept->drilled = calloc(count + 1, sizeof *kept->drilled);
    if (!kept->ids || !kept->drilled) {
        free(kept->ids);
        free(kept->drilled);
        *kept = (struct drill_kept){0};
        return error_set(err, -ENOMEM, "out of memory listing the backups of %s", db->name);
    }
    kept->count = count;
    return 0;
}

static void drill_kept_free(struct drill_kept *kept)
{
    free(kept->ids);
    free(kept->drilled);
    *kept = (struct drill_kept){0};
}

/* The state's drilled ids, read into kept->drilled; those no longer kept
 * are collected in `gone` to be forgotten. */
struct drill_recalled {
    struct drill_kept *kept;
    char (*gone)[32];
    size_t gone_count, gone_capacity;
};

static void drill_recall(void *context, const char *backup)
{
    struct drill_recalled *recalled = context;
    struct drill_kept *kept = recalled->kept;
    for (size_t i = 0; i < kept->count; i++)
        if (strcmp(kept->ids[i], backup) == 0) {
            kept->drilled[i] = true;
            return;
        }
    if (recalled->gone_count == recalled->gone_capacity) {
        size_t capacity = recalled->gone_capacity ? recalled->gone_capacity * 2 : 16;
        char(*grown)[32] = realloc(recalled->gone, capacity * sizeof *grown);
        if (!grown)
            return; /* forgotten at a later run */
        recalled->gone = grown;
        recalled->gone_capacity = capacity;
    }
    snprintf(recalled->gone[recalled->gone_count++], sizeof recalled->gone[0], "%s", backup);
}

static void drill_read_drilled(struct job_context *context, const char *side,
                               struct drill_kept *kept)
{
    const struct database_config *db = context->database;
    struct drill_recalled recalled = {.kept = kept};
    struct error err = {0};
    if (!context->state)
        return;
    if (state_each_drilled(context->state, db->name, side, drill_recall, &recalled, &err) != 0)
        log_event(LOG_WARNING, db->name, "drill", "%s", err.message);
    for (size_t i = 0; i < recalled.gone_count; i++)
        state_forget_drilled(context->state, db->name, side, recalled.gone[i], NULL);
    free(recalled.gone);
}

/* The oldest kept backup, other than the newest, not yet drilled; -1 when
 * every one has been. */
static long drill_pick_older(const struct drill_kept *kept)
{
    for (size_t i = kept->count; i-- > 1;)
        if (!kept->drilled[i])
            return (long)i;
    return -1;
}

static double drill_coverage(const struct drill_kept *kept, size_t *drilled)
{
    *drilled = 0;
    for (size_t i = 0; i < kept->count; i++)
        *drilled += kept->drilled[i];
    return kept->count ? (double)*drilled / (double)kept->count : 0;
}

static void drill_describe_pass(const struct drill_one *one, char *out, size_t size)
{
    char bytes[32];
    units_format_size(one->restored.bytes, bytes, sizeof bytes);
    snprintf(out, size,
             "backup %s (%s) restored in %.2fs (%s, %s), fingerprint matches (%lld row%s in "
             "%lld table%s)",
             one->id, one->side, one->restore_seconds, bytes, one->restored.check,
             (long long)one->found.rows, one->found.rows == 1 ? "" : "s",
             (long long)one->found.tables, one->found.tables == 1 ? "" : "s");
}

/* What the side's check (restore/verify.h) found: the count and the first. */
struct drill_findings {
    size_t problems;
    char first[900];
};

static void drill_finding(void *context, bool problem, const char *object, const char *message)
{
    struct drill_findings *findings = context;
    if (!problem)
        return;
    if (findings->problems++ == 0)
        snprintf(findings->first, sizeof findings->first, "%s: %s", object, message);
}

/* The side's backups, and the replica when drilling from the target, checked
 * as `sqlprodd verify` does without --data (a listing and one small read
 * per backup): a backup deleted from the middle of the chain, an altered
 * manifest or a missing replica segment fails the drill, naming it, even
 * when the backups it restored are whole. */
static void drill_verify(struct job_context *context, const char *directory,
                         struct drill_findings *findings)
{
    const struct database_config *db = context->database;
    bool remote = db->drill.from == DRILL_FROM_REMOTE;
    struct verify_options options = {.stop = context->stop, .temp_directory = directory};
    struct verify_sink sink = {drill_finding, findings};
    struct verify_tally tally = {0};
    struct error err = {0};
    if (verify_backups(db, remote, &options, &sink, &tally, &err) != 0 && err.code != -ECANCELED)
        drill_finding(findings, true, remote ? db->upload.target->name : db->backup.dir,
                      err.message);
    err = (struct error){0};
    int rc = remote && db->replicate.target
                 ? verify_replica(db, &options, &sink, &tally, &err)
                 : 0;
    if (rc != 0 && rc != -ENOENT && rc != -ECANCELED)
        drill_finding(findings, true, "replica", err.message);
}

int job_drill(struct job_context *context, struct job_result *result)
{
    const struct database_config *db = context->database;
    const char *side = drill_side_name(db);
    struct drill_kept kept = {0};
    struct error err = {0};
    char directory[PATH_MAX] = "";
    struct drill_one *runs = NULL;
    int rc = 0;

    if (db->drill.from == DRILL_FROM_REMOTE && !db->upload.target) {
        job_result_set(result, JOB_OUTCOME_FAILED,
                       "drill.from is remote but %s has no upload target", db->name);
        return -EINVAL;
    }
    if ((rc = drill_directory(context->config, db, directory, sizeof directory, &err)) != 0 ||
        (rc = fs_make_directories(directory, 0700, &err)) != 0)
        goto fail;
    job_clean_drill_directory(context->config, db, NULL);
    if ((rc = fs_make_directories(directory, 0700, &err)) != 0)
        goto fail;
    if ((rc = drill_list_kept(context, &kept, &err)) != 0) {
        error_prefix(&err, "cannot list the %s backups: ", side);
        goto fail;
    }
    if (kept.count == 0) {
        rmdir(directory);
        if (db->drill.from == DRILL_FROM_REMOTE)
            job_result_set(result, JOB_OUTCOME_WARNING,
                           "nothing to drill: no backup with a manifest on target %s yet",
                           db->upload.target->name);
        else
            job_result_set(result, JOB_OUTCOME_WARNING, "nothing to drill: no backup in %s/%s yet",
                           db->backup.dir, db->name);
        drill_kept_free(&kept);
        return 0;
    }
    drill_read_drilled(context, side, &kept);

    long older = drill_pick_older(&kept);
    size_t chosen[2] = {0, older > 0 ? (size_t)older : 0};
    size_t run_count = older > 0 ? 2 : 1;
    runs = calloc(run_count, sizeof *runs);
    if (!runs) {
        rc = error_set(&err, -ENOMEM, "out of memory");
        goto fail;
    }
    size_t failed = 0;
    char passed[2][600] = {"", ""};
    for (size_t r = 0; r < run_count; r++) {
        struct drill_one *one = &runs[r];
        *one = (struct drill_one){.context = context,
                                  .side = side,
                                  .directory = directory,
                                  .id = kept.ids[chosen[r]],
                                  .background = !context->one_off};
        snprintf(one->output, sizeof one->output, "%s/%s.db%s", directory, db->name,
                 FS_TEMP_SUFFIX);
        snprintf(one->prefix, sizeof one->prefix, "%s/%s.db", directory, db->name);
        drill_backup(one);
        if (one->rc == -ECANCELED || (context->stop && *context->stop)) {
            rc = -ECANCELED;
            break;
        }
        if (one->rc != 0) {
            failed++;
            continue;
        }
        kept.drilled[chosen[r]] = true;
        drill_describe_pass(one, passed[r], sizeof passed[r]);
        if (context->state &&
            state_record_drilled(context->state, db->name, side, one->id, time(NULL), &err) != 0)
            log_event(LOG_WARNING, db->name, "drill", "%s", err.message);
    }
    struct drill_findings findings = {0};
    if (rc != -ECANCELED)
        drill_verify(context, directory, &findings);
    if (findings.problems)
        failed++;
    job_clean_drill_directory(context->config, db, NULL);
    if (rc == -ECANCELED || (context->stop && *context->stop)) {
        rc = -ECANCELED;
        free(runs);
        drill_kept_free(&kept);
        return rc;
    }

    size_t drilled = 0;
    double coverage = drill_coverage(&kept, &drilled);
    struct db_facts facts = {.drill_coverage = coverage,
                             .drill_restore_seconds = runs[0].restore_seconds,
                             .drill_succeeded_at = time(NULL)};
    unsigned fields = FACT_DRILL_COVERAGE;
    if (runs[0].rc == 0)
        fields |= FACT_DRILL_RESTORE_SECONDS;
    if (failed == 0)
        fields |= FACT_DRILL_SUCCEEDED_AT;
    if (context->state && state_set_facts(context->state, db->name, &facts, fields, &err) != 0)
        log_event(LOG_WARNING, db->name, "drill", "%s", err.message);

    char summary[1200] = "";
    size_t used = 0;
    for (size_t r = 0; r < run_count && used < sizeof summary; r++)
        used += (size_t)snprintf(summary + used, sizeof summary - used, "%s%s", used ? "; " : "",
                                 runs[r].rc == 0 ? passed[r] : runs[r].message);
    if (findings.problems && used < sizeof summary)
        snprintf(summary + used, sizeof summary - used,
                 "; the %s backups do not verify: %zu problem%s, first: %s (`sqlprodd verify %s "
                 "--%s` lists them)",
                 side, findings.problems, findings.problems == 1 ? "" : "s", findings.first,
                 db->name, db->drill.from == DRILL_FROM_REMOTE ? "remote" : "local");
    if (failed)
        job_result_set(result, JOB_OUTCOME_FAILED, "%s; %zu of %zu kept backups drilled", summary,
                       drilled, kept.count);
    else
        job_result_set(result, JOB_OUTCOME_OK, "%s; %zu of %zu kept backups drilled (%.0f%%)",
                       summary, drilled, kept.count, coverage * 100);
    free(runs);
    drill_kept_free(&kept);
    return 0;

fail:
    free(runs);
    drill_kept_free(&kept);
    if (directory[0])
        job_clean_drill_directory(context->config, db, NULL);
    if (rc != -ECANCELED)
        job_result_set(result, JOB_OUTCOME_FAILED, "%s", err.message);
    return rc;
}
