/*
 * backup.c: a consistent, verified, compressed copy of a live database.
 *
 * The steps, each undone on failure so that nothing half-made is ever
 * mistaken for a backup:
 *   1. VACUUM INTO a temp file beside the archives: one read transaction,
 *      so a consistent snapshot that never blocks the application's writers
 *      in WAL mode; with a spare CPU, blocks of the copy are compressed
 *      while it is still being written (archive_early.h);
 *   2. verify the copy (quick_check, or integrity_check once per
 *      health.integrity_every as the database's verdict, integrity.h; page
 *      count, schema) while
 *   3. compressing it to a temp archive (archive.c fsyncs it): both only
 *      read the finished copy, so they run at once and the backup takes
 *      the longer of the two, not their sum; a copy that fails the check
 *      loses its archive before anything is renamed;
 *      (with encrypt.local, the archive is written encrypted to its
 *      recipients as it is compressed: archive/sealed.h);
 *   4. rename the archive to NAME-STAMP.db.gz (.db.zst with compress =
 *      "zstd", ".age" after either when encrypted) and fsync the directory;
 *   5. write the manifest, last: it is what makes the archive a backup;
 *   6. queue the upload; local retention and the upload follow (jobs/plan.c).
 * The live database is opened read-only and never modified.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "archive/archive.h"
#include "archive/archive_early.h"
#include "archive/catalog.h"
#include "archive/copy_watch.h"
#include "archive/manifest.h"
#include "archive/sealed.h"
#include "config/advice.h"
#include "core/fsutil.h"
#include "core/io.h"
#include "core/log.h"
#include "core/priority.h"
#include "db/database.h"
#include "db/fingerprint.h"
#include "jobs/integrity.h"
#include "jobs/job.h"

struct backup_paths {
    char directory[4096];
    char copy[4200];    /* the VACUUM INTO output */
    char temp[4200];    /* the archive being written */
    char archive[4200]; /* its final name */
    char manifest[4300];
};

/* encrypt.local: the archives kept here are encrypted too. */
static bool backup_seals_locally(const struct database_config *db)
{
    return db->encrypt.local && db->encrypt.recipient_count > 0;
}

static void remove_copy(const struct backup_paths *paths)
{
    char journal[4300];
    unlink(paths->copy);
    snprintf(journal, sizeof journal, "%s-journal", paths->copy);
    unlink(journal);
}

/* SQL string literal for a path: single quotes doubled. */
static void quote_sql_string(const char *text, char *out, size_t out_size)
{
    size_t used = 0;
    if (out_size < 3)
        return;
    out[used++] = '\'';
    for (; *text && used + 3 < out_size; text++) {
        if (*text == '\'')
            out[used++] = '\'';
        out[used++] = *text;
    }
    out[used++] = '\'';
    out[used] = '\0';
}

/* SHA-256 of the schema (sqlite_schema rows in a stable order), so a restore
 * can tell the copy has the same tables, indexes and triggers. */
/* SQLite says SQLITE_FULL both for a full disk and for some corrupt files
 * (a page count past its limit). The partial copy is still there when we
 * ask, so a disk that was really filled has less room left than the
 * database would take. */
static bool backup_directory_is_full(const char *directory, const char *database_path)
{
    struct statvfs fs;
    struct stat st;
    if (statvfs(directory, &fs) != 0 || stat(database_path, &st) != 0)
        return true; /* cannot tell: say what SQLite said */
    return (int64_t)fs.f_bavail * (int64_t)fs.f_frsize < (int64_t)st.st_size;
}

/* The page cache of the copying connection, and of the copy (VACUUM gives
 * the new file the source's). VACUUM INTO reads each b-tree once in order
 * and appends to the copy's, so pages are not read twice: SQLite's 2 MiB
 * default only held 4 MiB in the agent at its busiest (with a replica's base
 * compressing), and a 256 MiB copy took 1.5-1.7 s with 256 KiB against
 * 1.7-1.8 s with the default. */
#define BACKUP_COPY_CACHE_SQL "PRAGMA cache_size = -256"

/* Step 1: the snapshot; written through the watch when there is one. */
static int backup_copy(struct job_context *context, const struct backup_paths *paths,
                       const struct copy_watch *watch, struct manifest *manifest, struct error *err)
{
    const struct database_config *db = context->database;
    sqlite3 *source = NULL;
    char sql[8500], uri[8400];
    int rc = database_open(db, true, context->stop, &source, err);
    if (rc != 0)
        return rc;
    bool watched = watch && copy_watch_uri(watch, uri, sizeof uri) == 0;
    quote_sql_string(watched ? uri : paths->copy, sql + 12, sizeof sql - 12);
    memcpy(sql, "VACUUM INTO ", 12);
    rc = database_exec(source, BACKUP_COPY_CACHE_SQL, 4, context->stop, err);
    if (rc == 0)
        rc = database_exec(source, sql, 4, context->stop, err);
    if (rc == 0) {
        /* VACUUM INTO creates the file with the process umask; tighten it
         * before it holds the whole database for longer than a moment. */
        chmod(paths->copy, 0600);
        /* Restore gives it back: the copy itself is always in rollback mode. */
        rc = database_query_text(source, "PRAGMA journal_mode", manifest->journal_mode,
                                 sizeof manifest->journal_mode, err);
    } else if (rc == -ENOSPC && backup_directory_is_full(paths->directory, db->path)) {
        error_prefix(err, "no space left in %s: ", paths->directory);
    } else if (rc == -ENOSPC) {
        char fix[ADVICE_MAX];
        rc = error_set(
            err, -EBADMSG,
            "SQLite reported a full database while copying, but the disk has room: "
            "the source is probably corrupt; run `%s`",
            advice_command(fix, sizeof fix, "sqlite3", db->path, "PRAGMA integrity_check", NULL));
    }
    sqlite3_close(source);
    return rc;
}

/* Early compression needs a CPU that VACUUM INTO leaves idle. */
static bool backup_has_spare_cpu(void)
{
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) == 0)
        return CPU_COUNT(&allowed) >= 2;
    return sysconf(_SC_NPROCESSORS_ONLN) >= 2;
}

/* What step 1 hands to step 3 when blocks are compressed during the copy. */
struct backup_early {
    struct copy_watch *watch;
    struct archive_early *early;
};

static int backup_compression_level(const struct database_config *db)
{
    return db->backup.compress == COMPRESS_ZSTD ? archive_zstd_level(db->backup.level)
                                                : archive_deflate_level(db->backup.level);
}

/* Without a spare CPU, or if anything here fails, the backup goes on
 * without early compression: it is only faster with it. */
static void backup_early_start(struct job_context *context, const struct backup_paths *paths,
                               struct backup_early *early)
{
    const struct database_config *db = context->database;
    struct error err = {0};
    struct io_context io = {.stop = context->stop, .background = !context->one_off};
    /* The snapshot can hold pages that are still only in the WAL. */
    int64_t expected = fs_file_size(db->path, "") + fs_file_size(db->path, "-wal");

    *early = (struct backup_early){0};
    if (!backup_has_spare_cpu())
        return;
    if (copy_watch_create(paths->copy, expected, &early->watch, &err) != 0 ||
        archive_early_start(paths->copy, paths->directory, early->watch,
                            (enum archive_format)db->backup.compress, backup_compression_level(db),
                            &io, &early->early, &err) != 0) {
        log_event(LOG_DEBUG, db->name, "backup", "compressing after the copy only: %s",
                  err.message);
        copy_watch_destroy(early->watch);
        early->watch = NULL;
    }
}

/* The copy is finished (or failed): no more early blocks. */
static void backup_early_copy_done(struct backup_early *early)
{
    if (!early->watch)
        return;
    copy_watch_end(early->watch);
    archive_early_finish(early->early);
}

static void backup_early_free(const struct job_context *context, struct backup_early *early)
{
    struct archive_early_stats stats;
    archive_early_get_stats(early->early, &stats);
    if (early->early)
        log_event(stats.mismatched ? LOG_WARNING : LOG_DEBUG, context->database->name, "backup",
                  "%llu MiB compressed while the copy was written, %llu rewritten by SQLite "
                  "afterwards, %llu taken into the archive, %llu changed unseen by the watch",
                  (unsigned long long)stats.compressed, (unsigned long long)stats.rewritten,
                  (unsigned long long)stats.taken, (unsigned long long)stats.mismatched);
    archive_early_free(early->early);
    copy_watch_destroy(early->watch);
    *early = (struct backup_early){0};
}

/* Step 2: the copy must open, pass the check and have pages and a schema. */
static int backup_verify(struct job_context *context, const struct backup_paths *paths,
                         bool full, struct manifest *manifest, bool *checked, struct error *err)
{
    const struct database_config *db = context->database;
    bool quick = !full;
    sqlite3 *copy = NULL;
    bool ok = false;
    int64_t page_size = 0, page_count = 0;
    struct fingerprint fingerprint;
    int rc = database_open_path(paths->copy, true, context->stop, &copy, err);
    if (rc == 0)
        rc = database_check(copy, quick, &(struct database_check_limits){.stop = context->stop},
                            &ok, manifest->verify_result, sizeof manifest->verify_result, err);
    if (rc == 0)
        rc = database_query_int(copy, "PRAGMA page_size", &page_size, err);
    if (rc == 0)
        rc = database_query_int(copy, "PRAGMA page_count", &page_count, err);
    if (rc == 0)
        rc = fingerprint_take(copy, &fingerprint, err);
    sqlite3_close(copy);
    if (rc != 0)
        return rc;
    *checked = true;
    snprintf(manifest->schema_sha256, sizeof manifest->schema_sha256, "%s",
             fingerprint.schema_sha256);
    snprintf(manifest->rows_sha256, sizeof manifest->rows_sha256, "%s", fingerprint.rows_sha256);
    manifest->table_count = fingerprint.tables;
    manifest->row_count = fingerprint.rows;
    snprintf(manifest->verify_method, sizeof manifest->verify_method, "%s",
             quick ? "quick_check" : "integrity_check");
    manifest->page_size = (int)page_size;
    manifest->page_count = page_count;
    /* The copy's size, not the live file's (which has free pages and a WAL
     * of its own): what the archive decompresses to. */
    manifest->database_bytes = page_size * page_count;
    if (!ok) {
        char fix[ADVICE_MAX];
        return error_set(
            err, -EBADMSG, "the copy failed %s: %s (the source database may be corrupt: run `%s`)",
            manifest->verify_method, manifest->verify_result,
            advice_command(fix, sizeof fix, "sqlite3", db->path, "PRAGMA integrity_check", NULL));
    }
    if (page_count < 1)
        return error_set(err, -EBADMSG, "the copy has no pages");
    manifest->verified = true;
    return 0;
}

/* backup.compress is passed to archive.c as is. */
_Static_assert((int)COMPRESS_GZIP == (int)ARCHIVE_GZIP && (int)COMPRESS_ZSTD == (int)ARCHIVE_ZSTD,
               "enum compress_mode and enum archive_format must match");

struct backup_verification {
    struct job_context *context;
    const struct backup_paths *paths;
    struct manifest *manifest;
    bool background;
    bool full;    /* integrity_check, else quick_check */
    bool checked; /* the check ran to its end: manifest->verified says how */
    struct error err;
    int rc;
};

static void *backup_verify_thread(void *argument)
{
    struct backup_verification *verification = argument;
    if (verification->background)
        priority_lower_this_thread(); /* it only reads our private copy */
    verification->rc =
        backup_verify(verification->context, verification->paths, verification->full,
                      verification->manifest, &verification->checked, &verification->err);
    return NULL;
}

/* A full check that ran to its end is the database's verdict; stored from
 * the job's thread, which owns the state connection. */
static void backup_record_integrity(const struct backup_verification *verification, time_t now)
{
    if (verification->full && verification->checked)
        integrity_record(verification->context, INTEGRITY_ON_BACKUP_COPY, now,
                         verification->manifest->verified, verification->manifest->verify_result,
                         NULL);
}

/* Steps 2 and 3 at once. The check runs on its own thread (signals blocked:
 * they belong to the agent's thread) and only writes the manifest's
 * verification fields; compression runs here. Without a thread, in turn. */
static int backup_verify_and_compress(struct job_context *context, const struct backup_paths *paths,
                                      struct archive_early *early, struct manifest *manifest,
                                      struct archive_result *archived, struct error *err)
{
    const struct database_config *db = context->database;
    /* Scheduled backups yield the CPU to the application; a backup asked
     * for on the command line runs at full speed. */
    bool background = !context->one_off;
    /* A full check every backup when asked, else once per integrity_every:
     * it is then the database's integrity verdict (integrity.h). */
    time_t now = time(NULL);
    bool integrity_due = integrity_check_due(context, INTEGRITY_ON_BACKUP_COPY, now);
    struct backup_verification verification = {
        .context = context,
        .paths = paths,
        .manifest = manifest,
        .background = background,
        .full = db->backup.verify == VERIFY_INTEGRITY || integrity_due,
    };
    const struct job_progress *progress = context->progress;
    struct io_context io = {.stop = context->stop,
                            .progress = progress ? progress->update : NULL,
                            .progress_context = progress ? progress->self : NULL,
                            .background = background};
    struct archive_options options = {.early = early};
    if (backup_seals_locally(db)) {
        options.recipients = db->encrypt.recipients;
        options.recipient_count = db->encrypt.recipient_count;
        struct sealed_recipients recipients = sealed_recipients_of(db);
        manifest->encrypted = true;
        sealed_describe_recipients(&recipients, manifest->recipients, sizeof manifest->recipients);
    }
    pthread_t thread;

    bool threaded = io_thread_start(&thread, backup_verify_thread, &verification) == 0;
    if (!threaded) {
        verification.background = false; /* this thread's priority could not come back */
        backup_verify_thread(&verification);
        if (verification.rc != 0) {
            backup_record_integrity(&verification, now);
            *err = verification.err;
            return verification.rc;
        }
    }
    if (progress)
        progress->begin(progress->self, db->name);
    int rc =
        archive_compress_format(paths->copy, paths->temp, (enum archive_format)db->backup.compress,
                                backup_compression_level(db), &io, &options, archived, err);
    if (progress)
        progress->end(progress->self);
    if (threaded)
        pthread_join(thread, NULL);
    backup_record_integrity(&verification, now);
    /* A failed check says more about the backup than a failed compression. */
    if (verification.rc != 0) {
        if (rc == 0)
            unlink(paths->temp);
        *err = verification.err;
        return verification.rc;
    }
    return rc;
}

static void backup_fill_manifest(const struct job_context *context, time_t created,
                                 const char *archive_name, struct manifest *manifest)
{
    const struct database_config *db = context->database;
    snprintf(manifest->database, sizeof manifest->database, "%s", db->name);
    manifest->created = created;
    snprintf(manifest->archive, sizeof manifest->archive, "%s", archive_name);
    snprintf(manifest->sqlite_version, sizeof manifest->sqlite_version, "%s", sqlite3_libversion());
    snprintf(manifest->source_path, sizeof manifest->source_path, "%s", db->path);
    snprintf(manifest->compression, sizeof manifest->compression, "%s",
             archive_format_name((enum archive_format)db->backup.compress));
    manifest->level = db->backup.level;
    if (gethostname(manifest->host, sizeof manifest->host) != 0)
        manifest->host[0] = '\0';
    snprintf(manifest->sqlprodd_version, sizeof manifest->sqlprodd_version, "%s", SQLPRODD_VERSION);
}

static int backup_prepare_paths(const struct database_config *db, time_t created,
                                struct backup_paths *paths, char *archive_name, size_t name_size,
                                struct error *err)
{
    if (catalog_directory(db, paths->directory, sizeof paths->directory) != 0)
        return error_set(err, -ENAMETOOLONG, "backup directory for %s: path too long", db->name);
    int rc = fs_make_directories(paths->directory, 0700, err);
    if (rc != 0)
        return rc;
    char suffix[32];
    snprintf(suffix, sizeof suffix, "%s%s",
             archive_format_suffix((enum archive_format)db->backup.compress),
             backup_seals_locally(db) ? SEALED_SUFFIX : "");
    catalog_archive_name_with(db->name, created, suffix, archive_name, name_size);
    if (catalog_archive_path(db, archive_name, paths->archive, sizeof paths->archive) != 0)
        return error_set(err, -ENAMETOOLONG, "backup directory for %s: path too long", db->name);
    snprintf(paths->manifest, sizeof paths->manifest, "%s.json", paths->archive);
    snprintf(paths->temp, sizeof paths->temp, "%s%s", paths->archive, FS_TEMP_SUFFIX);
    snprintf(paths->copy, sizeof paths->copy, "%s/%s-copy.db%s", paths->directory, db->name,
             FS_TEMP_SUFFIX);
    if (access(paths->archive, F_OK) == 0)
        return error_set(err, -EEXIST, "%s already exists: a backup was taken this second",
                         paths->archive);
    return 0;
}

/* Archive names have one-second resolution (SPEC: NAME-YYYYMMDDTHHMMSSZ), so
 * a backup asked for in the second of the previous one (`sqlprodd backup`
 * right after the agent's) waits for the next second instead of failing.
 * Only a clock stepped back finds that second taken too. */
static int backup_claim_second(const struct job_context *context, time_t *created,
                               struct backup_paths *paths, char *archive_name, size_t name_size,
                               struct error *err)
{
    int rc = backup_prepare_paths(context->database, *created, paths, archive_name, name_size, err);
    if (rc != -EEXIST)
        return rc;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t left_ms = 1000 - now.tv_nsec / 1000000 + 5;
    if (io_sleep_ms(left_ms, 50, context->stop) != 0)
        return error_set(err, -ECANCELED, "stopped before the backup began");
    *created = time(NULL);
    error_clear(err);
    return backup_prepare_paths(context->database, *created, paths, archive_name, name_size, err);
}

/* Links the new backup to the newest one kept here (archive/chain.h): its
 * manifest names that backup and its chain hash, and gets its own. */
static void backup_link(const struct database_config *db, struct manifest *manifest)
{
    struct backup_list list;
    struct error err = {0};
    if (catalog_list_local(db, &list, &err) == 0 && list.count > 0) {
        const struct manifest *previous = &list.items[0].manifest;
        snprintf(manifest->previous_backup, sizeof manifest->previous_backup, "%s",
                 list.items[0].id);
        if (previous->chain_sha256[0])
            snprintf(manifest->previous_sha256, sizeof manifest->previous_sha256, "%s",
                     previous->chain_sha256);
        else
            manifest_chain_hash(previous, manifest->previous_sha256);
    }
    catalog_free(&list); /* empty after a failure: the chain then starts anew */
    manifest_chain_hash(manifest, manifest->chain_sha256);
}

/* Makes the archive in place a backup: queues its upload, then writes its
 * manifest. On failure the archive is removed: without both it is not a
 * backup. */
static int backup_publish(struct job_context *context, const struct backup_paths *paths,
                          time_t created, const struct manifest *manifest, struct error *err)
{
    const struct database_config *db = context->database;
    int rc;
    /* Queue the upload before the manifest makes the archive a backup: a
     * crash in between then leaves an unfinished archive (removed at the next
     * start, and dropped from the queue as gone), never a complete backup that
     * nothing will upload and that retention may delete. */
    if (context->state && db->upload.target &&
        (rc = state_enqueue_upload(context->state, db->name, db->upload.target->name,
                                   paths->archive, created, err)) != 0) {
        error_prefix(err, "cannot queue the upload: ");
        unlink(paths->archive);
        return rc;
    }
    rc = manifest_write(paths->manifest, manifest, err);
    if (rc != 0)
        unlink(paths->archive);
    return rc;
}

int job_backup(struct job_context *context, struct job_result *result)
{
    const struct database_config *db = context->database;
    struct error err = {0};
    struct backup_paths paths;
    struct manifest manifest;
    struct archive_result archived = {0};
    struct backup_early early = {0};
    char archive_name[256];
    time_t created = time(NULL);
    bool copy_made = false, temp_made = false;

    memset(&manifest, 0, sizeof manifest);
    int rc =
        backup_claim_second(context, &created, &paths, archive_name, sizeof archive_name, &err);
    if (rc != 0)
        goto fail;
    job_clean_backup_directory(db, NULL);
    backup_fill_manifest(context, created, archive_name, &manifest);

    copy_made = true;
    backup_early_start(context, &paths, &early);
    rc = backup_copy(context, &paths, early.watch, &manifest, &err);
    backup_early_copy_done(&early);
    if (rc != 0)
        goto fail;
    temp_made = true;
    rc = backup_verify_and_compress(context, &paths, early.early, &manifest, &archived, &err);
    backup_early_free(context, &early);
    if (rc != 0)
        goto fail;
    remove_copy(&paths);
    copy_made = false;

    rc = fs_rename_durably(paths.temp, paths.archive, &err);
    if (rc != 0)
        goto fail;
    temp_made = false;
    snprintf(manifest.archive_sha256, sizeof manifest.archive_sha256, "%s", archived.sha256);
    manifest.archive_bytes = archived.output_bytes;
    backup_link(db, &manifest);
    rc = backup_publish(context, &paths, created, &manifest, &err);
    if (rc != 0)
        goto fail;

    if (context->state) {
        struct db_facts facts = {.backup_last_bytes = archived.output_bytes,
                                 .database_bytes = manifest.database_bytes};
        state_set_facts(context->state, db->name, &facts,
                        FACT_BACKUP_LAST_BYTES | FACT_DATABASE_BYTES, NULL);
    }
    job_result_set(result, JOB_OUTCOME_OK, "%s: %lld -> %lld bytes, %s %s", paths.archive,
                   (long long)archived.input_bytes, (long long)archived.output_bytes,
                   manifest.verify_method, manifest.verify_result);
    /* Retention and the upload follow a good backup only (jobs/plan.c): a
     * failed one never costs an old one. */
    result->changed_backups = true;
    return 0;

fail:
    backup_early_free(context, &early);
    if (temp_made)
        unlink(paths.temp);
    if (copy_made)
        remove_copy(&paths);
    if (rc != -ECANCELED)
        job_result_set(result, JOB_OUTCOME_FAILED, "%s", err.message);
    return rc;
}
