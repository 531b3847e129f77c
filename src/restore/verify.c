/*
 * verify.c: the checks of `sqlprodd verify` (verify.h).
 */
#include "restore/verify.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive/catalog.h"
#include "archive/chain.h"
#include "archive/manifest.h"
#include "archive/sealed.h"
#include "core/fsutil.h"
#include "core/io.h"
#include "offsite/remote.h"
#include "offsite/target.h"
#include "restore/replica.h"

#define VERIFY_DEFAULT_PARALLEL 4
#define VERIFY_MAX_PARALLEL     16

/* One backup of a side: its archive and its manifest, either may be missing. */
struct verify_slot {
    char id[32];
    char archive[256];          /* the archive's file name */
    char object[1100];          /* its path or key */
    char manifest_object[1200]; /* the manifest's path or key */
    bool has_archive, has_manifest, manifest_ok;
    int64_t archive_size;
    struct manifest manifest;
};

struct verify_run {
    const struct database_config *db;
    bool remote;
    const struct verify_options *options;
    const struct verify_sink *sink;
    struct verify_tally *tally;
    struct verify_slot *slots;
    size_t count, next;
    bool sealed_unread_said;
    pthread_mutex_t mutex;
};

static void verify_say(struct verify_run *run, bool problem, const char *object,
                       const char *format, ...) __attribute__((format(printf, 4, 5)));

static void verify_say(struct verify_run *run, bool problem, const char *object,
                       const char *format, ...)
{
    char message[1500];
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(message, sizeof message, format, arguments);
    va_end(arguments);
    pthread_mutex_lock(&run->mutex);
    if (problem)
        run->tally->problems++;
    else
        run->tally->notes++;
    run->sink->report(run->sink->context, problem, object, message);
    pthread_mutex_unlock(&run->mutex);
}

static void verify_count(struct verify_run *run, size_t objects, int64_t bytes)
{
    pthread_mutex_lock(&run->mutex);
    run->tally->objects += objects;
    run->tally->bytes_read += bytes;
    pthread_mutex_unlock(&run->mutex);
}

/* ---- listing a side: archives and manifests, paired by name ---- */

struct verify_listed {
    char name[256]; /* file name, without ".json" for a manifest */
    bool manifest;
    int64_t size;
};

static int verify_compare_listed(const void *a, const void *b)
{
    const struct verify_listed *x = a, *y = b;
    return strcmp(y->name, x->name); /* newest first: stamps sort as text */
}

/* Adds `file` (a name below the database's directory) when it is an archive
 * or a manifest of `db`. */
static int verify_add_listed(const struct database_config *db, const char *file, int64_t size,
                             struct verify_listed **listed, size_t *count, size_t *capacity)
{
    char id[32];
    time_t created;
    size_t length = strlen(file);
    if (strstr(file, FS_TEMP_SUFFIX) || length >= sizeof(*listed)->name ||
        catalog_parse_archive_name(db->name, file, id, &created) != 0)
        return 0;
    if (*count == *capacity) {
        *capacity = *capacity ? *capacity * 2 : 64;
        struct verify_listed *grown = realloc(*listed, *capacity * sizeof *grown);
        if (!grown)
            return -ENOMEM;
        *listed = grown;
    }
    struct verify_listed *item = &(*listed)[(*count)++];
    item->manifest = length > 5 && strcmp(file + length - 5, ".json") == 0;
    snprintf(item->name, sizeof item->name, "%.*s", (int)(item->manifest ? length - 5 : length),
             file);
    item->size = size;
    return 0;
}

/* Pairs the listed files into slots; `where` joins a file name into a path
 * or a key. */
static int verify_make_slots(struct verify_run *run, struct verify_listed *listed, size_t count,
                             const char *where, struct error *err)
{
    if (count > 1)
        qsort(listed, count, sizeof *listed, verify_compare_listed);
    run->slots = calloc(count + 1, sizeof *run->slots);
    if (!run->slots)
        return error_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < count; i++) {
        struct verify_slot *slot = run->count > 0 ? &run->slots[run->count - 1] : NULL;
        if (!slot || strcmp(slot->archive, listed[i].name) != 0) {
            slot = &run->slots[run->count++];
            time_t created;
            snprintf(slot->archive, sizeof slot->archive, "%s", listed[i].name);
            catalog_parse_archive_name(run->db->name, slot->archive, slot->id, &created);
            snprintf(slot->object, sizeof slot->object, "%s/%s", where, slot->archive);
            snprintf(slot->manifest_object, sizeof slot->manifest_object, "%s.json",
                     slot->object);
        }
        if (listed[i].manifest) {
            slot->has_manifest = true;
        } else {
            slot->has_archive = true;
            slot->archive_size = listed[i].size;
        }
    }
    return 0;
}

static int verify_list_local(struct verify_run *run, char *directory, size_t size,
                             struct error *err)
{
    struct verify_listed *listed = NULL;
    size_t count = 0, capacity = 0;
    int rc = 0;
    if (catalog_directory(run->db, directory, size) != 0)
        return error_set(err, -ENAMETOOLONG, "backup directory for %s: path too long",
                         run->db->name);
    DIR *dir = opendir(directory);
    if (!dir && errno != ENOENT)
        return error_set(err, -errno, "cannot read %s: %s", directory, strerror(errno));
    for (struct dirent *entry; dir && rc == 0 && (entry = readdir(dir)) != NULL;) {
        struct stat st;
        if (fstatat(dirfd(dir), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(st.st_mode))
            continue;
        if (verify_add_listed(run->db, entry->d_name, (int64_t)st.st_size, &listed, &count,
                              &capacity) != 0)
            rc = error_set(err, -ENOMEM, "out of memory");
    }
    if (dir)
        closedir(dir);
    if (rc == 0)
        rc = verify_make_slots(run, listed, count, directory, err);
    free(listed);
    return rc;
}

static int verify_list_remote(struct verify_run *run, struct target *target, struct error *err)
{
    struct target_listing listing = {0};
    struct verify_listed *listed = NULL;
    size_t count = 0, capacity = 0;
    char prefix[300];
    snprintf(prefix, sizeof prefix, "%s/", run->db->name);
    int rc = target_list(target, prefix, &listing, err);
    for (size_t i = 0; rc == 0 && i < listing.count; i++) {
        const char *file = listing.objects[i].key + strlen(prefix);
        if (strchr(file, '/'))
            continue; /* the replica, the records of deleted backups */
        if (verify_add_listed(run->db, file, listing.objects[i].size, &listed, &count,
                              &capacity) != 0)
            rc = error_set(err, -ENOMEM, "out of memory");
    }
    target_listing_free(&listing);
    if (rc == 0)
        rc = verify_make_slots(run, listed, count, run->db->name, err);
    free(listed);
    return rc;
}

/* ---- one backup ---- */

static void verify_temp_path(const struct verify_run *run, size_t index, const char *what,
                             char out[PATH_MAX])
{
    snprintf(out, PATH_MAX, "%s/.sqlprodd-verify-%ld-%zu-%s%s", run->options->temp_directory,
             (long)getpid(), index, what, FS_TEMP_SUFFIX);
}

static int verify_read_manifest(struct verify_run *run, struct target *target,
                                struct verify_slot *slot, size_t index, struct error *err)
{
    if (!run->remote)
        return manifest_read(slot->manifest_object, &slot->manifest, err);
    char path[PATH_MAX];
    verify_temp_path(run, index, "manifest", path);
    unlink(path);
    int rc = target_get_file(target, slot->manifest_object, path, NULL, err);
    if (rc == 0)
        rc = manifest_read(path, &slot->manifest, err);
    unlink(path);
    if (rc != 0) /* the temp file's name says nothing to the operator */
        error_prefix(err, "%s: ", slot->manifest_object);
    return rc;
}

/* The manifest against the listing: the database, the archive's name and size. */
static void verify_describe(struct verify_run *run, struct verify_slot *slot)
{
    const struct manifest *m = &slot->manifest;
    if (strcmp(m->database, run->db->name) != 0)
        verify_say(run, true, slot->manifest_object, "the manifest is for database %s, not %s",
                   m->database, run->db->name);
    if (strcmp(m->archive, slot->archive) != 0)
        verify_say(run, true, slot->manifest_object,
                   "the manifest describes archive %s, not %s beside it", m->archive,
                   slot->archive);
    if (!slot->has_archive)
        verify_say(run, true, slot->object,
                   "the archive is missing: its manifest is there, so the backup cannot be "
                   "restored");
    else if (slot->archive_size != m->archive_bytes)
        verify_say(run, true, slot->object,
                   "the archive is %lld bytes, its manifest says %lld (cut short or replaced)",
                   (long long)slot->archive_size, (long long)m->archive_bytes);
}

static bool verify_is_sealed(const struct verify_slot *slot)
{
    size_t length = strlen(slot->archive), suffix = strlen(SEALED_SUFFIX);
    return slot->manifest.encrypted ||
           (length > suffix && strcmp(slot->archive + length - suffix, SEALED_SUFFIX) == 0);
}

/* Reads the archive back in full: SHA-256, then decompression. */
static void verify_data(struct verify_run *run, struct target *target, struct verify_slot *slot,
                        size_t index)
{
    const struct manifest *m = &slot->manifest;
    struct io_context io = {.stop = run->options->stop};
    struct archive_result result = {0};
    struct error err = {0};
    char temp[PATH_MAX];
    const char *path = slot->object;
    int rc = 0;
    if (run->remote) {
        verify_temp_path(run, index, "archive", temp);
        unlink(temp);
        path = temp;
        if ((rc = target_get_file(target, slot->object, temp, &io, &err)) != 0) {
            verify_say(run, true, slot->object, "cannot read it back: %s", err.message);
            return;
        }
    }
    bool sealed = verify_is_sealed(slot);
    struct archive_keys keys = run->options->keys;
    keys.object = slot->object;
    if (sealed && keys.count == 0) {
        rc = archive_sha256_file(path, result.sha256, &err);
        pthread_mutex_lock(&run->mutex);
        bool say = !run->sealed_unread_said;
        run->sealed_unread_said = true;
        pthread_mutex_unlock(&run->mutex);
        if (say)
            verify_say(run, false, slot->object,
                       "encrypted: checked as stored (SHA-256) only; give --identity FILE to "
                       "decrypt and decompress the encrypted backups too");
    } else if ((rc = archive_check(path, &keys, &io, &result, &err)) != 0 && rc != -ECANCELED) {
        /* A flipped byte fails decompression before the digest is done:
         * the digest is the finding that names the cause. */
        struct error ignored = {0};
        if (archive_sha256_file(path, result.sha256, &ignored) != 0)
            result.sha256[0] = '\0';
        else if (strcmp(result.sha256, m->archive_sha256) != 0)
            rc = 0;
    }
    if (run->remote)
        unlink(temp);
    verify_count(run, 0, slot->archive_size);
    if (rc == -ECANCELED)
        return;
    if (rc != 0 && !result.sha256[0])
        verify_say(run, true, slot->object, "cannot read it back: %s", err.message);
    else if (strcmp(result.sha256, m->archive_sha256) != 0)
        verify_say(run, true, slot->object,
                   "its SHA-256 is %s, its manifest says %s: the archive was altered or damaged",
                   result.sha256, m->archive_sha256);
    else if (rc != 0)
        verify_say(run, true, slot->object, "matches its SHA-256 but does not decompress: %s",
                   err.message);
    else if ((!sealed || keys.count > 0) && m->database_bytes > 0 &&
             result.output_bytes != m->database_bytes)
        verify_say(run, true, slot->object,
                   "decompresses to %lld bytes, its manifest says %lld",
                   (long long)result.output_bytes, (long long)m->database_bytes);
}

static void verify_slot(struct verify_run *run, struct target *target, size_t index)
{
    struct verify_slot *slot = &run->slots[index];
    struct error err = {0};
    if (!slot->has_manifest) {
        verify_say(run, false, slot->object,
                   run->remote ? "an archive without a manifest: an upload under way or cut "
                                 "short (remote retention removes it after a day); not a backup"
                               : "an archive without a manifest: a backup under way or cut "
                                 "short (the agent removes it at its next start); not a backup");
        return;
    }
    int rc = verify_read_manifest(run, target, slot, index, &err);
    if (rc == -ENOENT) {
        /* Listed, then gone: retention ran meanwhile (its record covers the
         * chain), or someone deleted it (the chain shows). */
        verify_say(run, false, slot->manifest_object, "deleted while verify ran");
        return;
    }
    if (rc != 0) {
        verify_say(run, true, slot->manifest_object, "cannot read the manifest: %s", err.message);
        return;
    }
    slot->manifest_ok = true;
    verify_count(run, slot->has_archive ? 2 : 1, 0);
    verify_describe(run, slot);
    if (run->options->data && slot->has_archive &&
        !(run->options->stop && *run->options->stop))
        verify_data(run, target, slot, index);
}

/* ---- the pool: a few backups at a time, each thread with its target ---- */

static void *verify_worker(void *argument)
{
    struct verify_run *run = argument;
    struct target *target = NULL;
    struct error err = {0};
    int rc = 0;
    if (run->remote && (rc = target_open(run->db->upload.target, &target, &err)) == 0)
        target_set_stop(target, run->options->stop);
    for (;;) {
        pthread_mutex_lock(&run->mutex);
        size_t index = run->next < run->count ? run->next++ : run->count;
        pthread_mutex_unlock(&run->mutex);
        if (index >= run->count || (run->options->stop && *run->options->stop))
            break;
        if (rc != 0)
            verify_say(run, true, run->slots[index].manifest_object, "cannot read it: %s",
                       err.message);
        else
            verify_slot(run, target, index);
    }
    target_close(target);
    return NULL;
}

static void verify_slots(struct verify_run *run)
{
    int parallel = run->options->parallel > 0 ? run->options->parallel : VERIFY_DEFAULT_PARALLEL;
    pthread_t threads[VERIFY_MAX_PARALLEL];
    int started = 0;
    /* Local manifests are small files: threads only pay for archives. */
    if (!run->remote && !run->options->data)
        parallel = 1;
    if (parallel > VERIFY_MAX_PARALLEL)
        parallel = VERIFY_MAX_PARALLEL;
    if ((size_t)parallel > run->count)
        parallel = (int)run->count;
    while (parallel > 1 && started < parallel &&
           io_thread_start(&threads[started], verify_worker, run) == 0)
        started++;
    if (started == 0)
        verify_worker(run);
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
}

/* ---- the chain ---- */

static void verify_chain_problem(void *context, const char *object, const char *message)
{
    verify_say(context, true, object, "%s", message);
}

static void verify_chain(struct verify_run *run, const struct chain_record *records,
                         size_t record_count)
{
    struct chain_member *members = calloc(run->count + 1, sizeof *members);
    size_t count = 0;
    if (!members)
        return;
    for (size_t i = 0; i < run->count; i++)
        if (run->slots[i].manifest_ok)
            members[count++] = (struct chain_member){
                run->slots[i].id, &run->slots[i].manifest, run->slots[i].manifest_object};
    /* verify_say counts: chain_check's return is the same number. */
    chain_check(members, count, records, record_count, verify_chain_problem, run);
    free(members);
}

/* The ids the kept backups link to that are not kept: the records needed. */
static size_t verify_missing_links(const struct verify_run *run, const char **ids)
{
    size_t count = 0;
    for (size_t i = 0; i < run->count; i++) {
        const char *previous = run->slots[i].manifest.previous_backup;
        bool kept = false;
        if (!run->slots[i].manifest_ok || !previous[0])
            continue;
        for (size_t k = 0; k < run->count && !kept; k++)
            kept = run->slots[k].manifest_ok && strcmp(run->slots[k].id, previous) == 0;
        if (!kept)
            ids[count++] = previous;
    }
    return count;
}

/* The records of deletions that a kept backup links to (the others are
 * history nobody needs), read from the side. */
static int verify_read_records(struct verify_run *run, struct target *target,
                               struct chain_record **records, size_t *count, struct error *err)
{
    const char **ids = calloc(run->count + 1, sizeof *ids);
    if (!ids)
        return error_set(err, -ENOMEM, "out of memory");
    size_t id_count = verify_missing_links(run, ids);
    int rc = 0;
    if (run->remote) {
        rc = remote_read_records(target, run->db->name, run->options->temp_directory, ids,
                                 id_count, records, count, err);
    } else if ((rc = chain_list_local(run->db, records, count, err)) == 0) {
        size_t used = 0; /* keep the ones linked to, as remotely */
        for (size_t i = 0; i < *count; i++)
            for (size_t k = 0; k < id_count; k++)
                if (strcmp((*records)[i].backup, ids[k]) == 0) {
                    (*records)[used++] = (*records)[i];
                    break;
                }
        *count = used;
    }
    free(ids);
    return rc;
}

int verify_backups(const struct database_config *db, bool remote,
                   const struct verify_options *options, const struct verify_sink *sink,
                   struct verify_tally *tally, struct error *err)
{
    struct verify_run run = {
        .db = db, .remote = remote, .options = options, .sink = sink, .tally = tally};
    struct target *target = NULL;
    struct chain_record *records = NULL;
    size_t record_count = 0;
    char directory[4096];
    int rc = 0;
    if (remote && !db->upload.target)
        return error_set(err, -ENOENT, "%s has no upload target", db->name);
    pthread_mutex_init(&run.mutex, NULL);
    if (remote) {
        rc = target_open(db->upload.target, &target, err);
        if (rc == 0) {
            target_set_stop(target, options->stop);
            rc = verify_list_remote(&run, target, err);
        }
    } else {
        rc = verify_list_local(&run, directory, sizeof directory, err);
    }
    if (rc == 0) {
        verify_slots(&run);
        for (size_t i = 0; i < run.count; i++)
            tally->backups += run.slots[i].manifest_ok;
        /* Listed after the backups: a deletion between the two has left its
         * record before the backup went. */
        rc = verify_read_records(&run, target, &records, &record_count, err);
    }
    if (rc == 0) {
        tally->records += record_count;
        verify_chain(&run, records, record_count);
        if (options->stop && *options->stop)
            rc = error_set(err, -ECANCELED, "stopped by a signal");
    }
    target_close(target);
    free(records);
    free(run.slots);
    pthread_mutex_destroy(&run.mutex);
    return rc;
}

/* ---- the replica ---- */

int verify_replica(const struct database_config *db, const struct verify_options *options,
                   const struct verify_sink *sink, struct verify_tally *tally, struct error *err)
{
    struct replica_windows windows = {0};
    char prefix[PATH_MAX], output[PATH_MAX];
    const struct target_config *target = db->replicate.target;
    if (!target)
        return error_set(err, -ENOENT, "%s has no replicate target", db->name);
    snprintf(prefix, sizeof prefix, "%s/.sqlprodd-verify-%ld", options->temp_directory,
             (long)getpid());
    int rc = replica_list_windows(target, db->name, options->stop, prefix, &windows, err);
    if (rc != 0)
        return rc;
    /* One restore plan (with data: one restore) per window, to its last
     * commit: that reads every generation of the window. */
    for (size_t end = 1; end <= windows.count && rc == 0; end++) {
        if (end < windows.count && !windows.items[end].starts_chain)
            continue;
        const struct replica_window *last = &windows.items[end - 1];
        struct replica_request request = {.target = target,
                                          .database = db->name,
                                          .at_ms = last->last_ms,
                                          .output = output,
                                          .stop = options->stop,
                                          .parallel = options->parallel,
                                          .keys = options->keys,
                                          .plan_only = !options->data};
        struct replica_result result;
        struct error problem = {0};
        char object[300];
        snprintf(output, sizeof output, "%s-%s.db%s", prefix, last->name, FS_TEMP_SUFFIX);
        snprintf(object, sizeof object, "%s/replica/ (window to %s, generation %s)", db->name,
                 last->last_seen_at, last->name);
        int outcome = replica_restore(&request, &result, &problem);
        for (int part = 0; part < FS_DATABASE_PARTS; part++) {
            char name[PATH_MAX + 16];
            snprintf(name, sizeof name, "%s%s", output, fs_database_suffixes[part]);
            unlink(name);
        }
        if (outcome == -ECANCELED) {
            rc = error_set(err, -ECANCELED, "stopped by a signal");
            break;
        }
        tally->windows++;
        tally->segments += result.segments;
        tally->objects += result.segments * 2 + result.generations;
        tally->bytes_read += result.fetched_bytes;
        if (outcome != 0) {
            tally->problems++;
            sink->report(sink->context, true, object, problem.message);
        }
    }
    replica_windows_free(&windows);
    return rc;
}
