/*
 * backup_restore.c: a backup archive made into a checked database file
 * (see backup_restore.h). The messages are those `sqlprodd restore` has
 * always printed: tests and operators' scripts match them.
 */
#include "restore/backup_restore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "archive/archive.h"
#include "archive/catalog.h"
#include "archive/sealed.h"
#include "core/fsutil.h"
#include "db/database.h"
#include "offsite/remote.h"
#include "offsite/target.h"
#include "restore/identity.h"

static void progress_begin_step(const struct backup_restore_request *request, const char *label)
{
    if (request->progress && request->progress->begin)
        request->progress->begin(request->progress->self, label);
}

static void progress_end_step(const struct backup_restore_request *request)
{
    if (request->progress && request->progress->end)
        request->progress->end(request->progress->self);
}

static int backup_restore_pick_local(const struct backup_restore_request *request,
                                     struct backup_restore_result *result, char *archive,
                                     char *manifest, struct error *err)
{
    const struct database_config *db = request->db;
    struct backup_list list;
    int rc = catalog_list_local(db, &list, err);
    if (rc != 0)
        return rc;
    rc = -ENOENT;
    for (size_t i = 0; i < list.count; i++) {
        if (request->backup_id && strcmp(list.items[i].id, request->backup_id) != 0)
            continue;
        snprintf(archive, PATH_MAX, "%s", list.items[i].archive_path);
        snprintf(manifest, PATH_MAX, "%s", list.items[i].manifest_path);
        snprintf(result->id, sizeof result->id, "%s", list.items[i].id);
        snprintf(result->source, sizeof result->source, "%s", archive);
        rc = 0;
        break;
    }
    catalog_free(&list);
    if (rc != 0)
        error_set(err, rc, "no local backup %s of %s in %s/%s",
                  request->backup_id ? request->backup_id : "at all", db->name, db->backup.dir,
                  db->name);
    return rc;
}

/* The backup on the target, its manifest downloaded; `archive_key` gets the
 * key of its archive, fetched once the manifest has been read. */
static int backup_restore_fetch_manifest(const struct backup_restore_request *request,
                                         struct target *target,
                                         struct backup_restore_result *result, char *archive_key,
                                         size_t archive_key_size, const struct io_context *io,
                                         struct error *err)
{
    const struct database_config *db = request->db;
    struct remote_list list = {0};
    const struct remote_backup *chosen = NULL;
    int rc = remote_list_backups(target, db->name, &list, err);
    if (rc != 0)
        goto out;
    for (size_t i = 0; i < list.count && !chosen; i++)
        if ((!request->backup_id || strcmp(list.items[i].id, request->backup_id) == 0) &&
            list.items[i].has_manifest)
            chosen = &list.items[i];
    if (!chosen) {
        rc = error_set(err, -ENOENT, "no backup %s of %s with a manifest on target %s",
                       request->backup_id ? request->backup_id : "at all", db->name,
                       db->upload.target->name);
        goto out;
    }
    snprintf(result->id, sizeof result->id, "%s", chosen->id);
    /* The key, not the temp copy: that one is gone when the message is read. */
    snprintf(result->source, sizeof result->source, "%s on target %s", chosen->archive_key,
             db->upload.target->name);
    snprintf(archive_key, archive_key_size, "%s", chosen->archive_key);
    snprintf(result->downloaded_archive, sizeof result->downloaded_archive, "%s.archive%s",
             request->download_prefix, FS_TEMP_SUFFIX);
    snprintf(result->downloaded_manifest, sizeof result->downloaded_manifest, "%s.manifest%s",
             request->download_prefix, FS_TEMP_SUFFIX);
    unlink(result->downloaded_archive);
    unlink(result->downloaded_manifest);
    rc = target_get_file(target, chosen->manifest_key, result->downloaded_manifest, io, err);
out:
    remote_list_free(&list);
    return rc;
}

/* Whether the archive is an age file: what the manifest says, or what the
 * file says when it was encrypted by hand (age -r). */
static bool backup_restore_looks_sealed(const char *path)
{
    unsigned char head[SEALED_MAGIC_PEEK];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    ssize_t got = fd >= 0 ? read(fd, head, sizeof head) : -1;
    if (fd >= 0)
        close(fd);
    return got > 0 && sealed_is_age(head, (size_t)got);
}

int backup_restore_check_file(const char *path, bool full, const volatile sig_atomic_t *stop,
                              char *result, size_t result_size, struct error *err)
{
    sqlite3 *connection = NULL;
    const char *method = full ? "integrity_check" : "quick_check";
    char found[256] = "";
    bool ok = false;
    int rc = database_open_path(path, true, stop, &connection, err);
    if (rc == 0)
        rc = database_check(connection, !full, &(struct database_check_limits){.stop = stop}, &ok,
                            found, sizeof found, err);
    sqlite3_close(connection);
    snprintf(result, result_size, "%s %s", method, found);
    if (rc == 0 && !ok)
        rc = error_set(err, -EBADMSG, "the restored copy failed %s: %s", method, found);
    return rc;
}

/* The journal modes SQLite has; only WAL is kept by the file itself, the
 * rollback ones are each connection's choice. */
static bool backup_restore_is_rollback_mode(const char *mode)
{
    static const char *const modes[] = {"delete", "truncate", "persist", "memory", "off"};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        if (strcmp(mode, modes[i]) == 0)
            return true;
    return false;
}

/* VACUUM INTO wrote the archived copy in rollback mode: the restored file
 * gets the source's WAL mode back here. Closing the last connection
 * removes the file's -wal and -shm. */
int backup_restore_apply_journal_mode(const char *path, const char *recorded,
                                      const volatile sig_atomic_t *stop, char *applied,
                                      size_t applied_size, char *note, size_t note_size,
                                      struct error *err)
{
    snprintf(applied, applied_size, "delete");
    note[0] = '\0';
    if (strcmp(recorded, "wal") != 0) {
        if (recorded[0] && !backup_restore_is_rollback_mode(recorded))
            snprintf(note, note_size,
                     "the source was in journal_mode %s, which this sqlprodd does not know: the "
                     "restored file is in delete mode",
                     recorded);
        return 0;
    }
    sqlite3 *connection = NULL;
    char mode[32] = "";
    int rc = database_open_path(path, false, stop, &connection, err);
    if (rc == 0)
        rc = database_query_text(connection, "PRAGMA journal_mode=WAL", mode, sizeof mode, err);
    sqlite3_close(connection);
    if (rc == 0 && strcmp(mode, "wal") != 0)
        rc = error_set(err, -EIO, "%s stayed in journal_mode %s when set to wal", path, mode);
    if (rc == 0)
        snprintf(applied, applied_size, "wal");
    return rc;
}

void backup_restore_remove_file(const char *path)
{
    char name[PATH_MAX + 16];
    for (int part = 0; part < FS_DATABASE_PARTS; part++) {
        snprintf(name, sizeof name, "%s%s", path, fs_database_suffixes[part]);
        unlink(name);
    }
}

void backup_restore_finish(struct backup_restore_result *result)
{
    if (result->downloaded_archive[0])
        unlink(result->downloaded_archive);
    if (result->downloaded_manifest[0])
        unlink(result->downloaded_manifest);
}

/* Reads the manifest, which must be the database's, and lets the caller
 * look at it before anything large is read or written. */
static int backup_restore_read_manifest(const struct backup_restore_request *request,
                                        const char *path, struct backup_restore_result *result,
                                        struct error *err)
{
    int rc = manifest_read(path, &result->manifest, err);
    if (rc != 0)
        return rc;
    if (strcmp(result->manifest.database, request->db->name) != 0)
        return error_set(err, -EINVAL, "manifest %s is for database %s, not %s", path,
                         result->manifest.database, request->db->name);
    if (request->prepare)
        return request->prepare(request->prepare_context, &result->manifest, result->remote, err);
    return 0;
}

/* Finds the backup and, when remote, downloads its manifest and archive:
 * `archive` gets the local file to read. */
static int backup_restore_locate(const struct backup_restore_request *request,
                                 struct backup_restore_result *result, char archive[PATH_MAX],
                                 const struct io_context *io, struct error *err)
{
    const struct database_config *db = request->db;
    char manifest[PATH_MAX], archive_key[1024];
    struct target *target = NULL;
    int rc = 0;

    result->remote = request->from && strcmp(request->from, "remote") == 0;
    if (!result->remote) {
        rc = backup_restore_pick_local(request, result, archive, manifest, err);
        if (rc == -ENOENT && !request->from && db->upload.target)
            result->remote = true; /* not here: try the off-site copy */
        else if (rc != 0)
            return rc;
        else
            return backup_restore_read_manifest(request, manifest, result, err);
    }
    progress_begin_step(request, "download");
    rc = target_open(db->upload.target, &target, err);
    target_set_stop(target, request->stop);
    if (rc == 0)
        rc = backup_restore_fetch_manifest(request, target, result, archive_key, sizeof archive_key,
                                           io, err);
    if (rc == 0)
        rc = backup_restore_read_manifest(request, result->downloaded_manifest, result, err);
    if (rc == 0)
        rc = target_get_file(target, archive_key, result->downloaded_archive, io, err);
    snprintf(archive, PATH_MAX, "%s", result->downloaded_archive);
    target_close(target);
    progress_end_step(request);
    return rc;
}

int backup_restore_unpack(const struct backup_restore_request *request,
                          struct backup_restore_result *result, struct error *err)
{
    const struct database_config *db = request->db;
    const struct backup_restore_progress *progress = request->progress;
    struct archive_result unpacked = {0};
    struct identity_keys identities = {0};
    struct io_context io = {.stop = request->stop,
                            .progress = progress ? progress->update : NULL,
                            .progress_context = progress ? progress->self : NULL,
                            .background = request->background};
    char archive[PATH_MAX] = "";

    memset(result, 0, sizeof *result);
    int rc = backup_restore_locate(request, result, archive, &io, err);
    if (rc != 0)
        return rc;
    backup_restore_remove_file(request->output);
    bool sealed = result->manifest.encrypted || backup_restore_looks_sealed(archive);
    if (sealed && (rc = identity_keys_load(db, request->identity, &identities, err)) != 0)
        return rc;
    struct archive_keys keys = identity_keys_view(&identities);
    keys.object = result->source;
    progress_begin_step(request, sealed ? "decrypt and decompress" : "decompress");
    rc = archive_decompress(archive, request->output, &keys, &io, &unpacked, err);
    progress_end_step(request);
    identity_keys_free(&identities);
    if (rc != 0)
        return rc;
    if (strcmp(unpacked.sha256, result->manifest.archive_sha256) != 0)
        return error_set(err, -EBADMSG,
                         "archive %s does not match its manifest: sha256 %s, manifest says %s; "
                         "the copy is damaged, try another backup (--backup ID)",
                         result->source, unpacked.sha256, result->manifest.archive_sha256);
    result->bytes = unpacked.output_bytes;
    rc = backup_restore_check_file(request->output, request->full_check, request->stop,
                                   result->check, sizeof result->check, err);
    if (rc == 0)
        rc = backup_restore_apply_journal_mode(
            request->output, result->manifest.journal_mode, request->stop, result->journal_mode,
            sizeof result->journal_mode, result->note, sizeof result->note, err);
    if (rc == 0)
        rc = fs_sync_file(request->output, err);
    return rc;
}
