/*
 * cli_restore.c: `sqlprodd restore DB --to PATH [--backup ID]
 * [--from local|remote] [--force]`.
 *
 * Fetch (remote: download archive and manifest beside PATH), check the
 * archive's sha256 against the manifest, decompress to a temp file beside
 * PATH, run integrity_check on it, and only then rename it into place. A
 * file that failed any step is deleted, never renamed. PATH is never the
 * live database, and an existing PATH is replaced only with --force.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive.h"
#include "catalog.h"
#include "cli.h"
#include "database.h"
#include "fsutil.h"
#include "remote.h"
#include "report/progress.h"
#include "target.h"

struct restore_request {
    const struct database_config *db;
    const char *to;
    const char *backup_id; /* NULL: newest */
    const char *from;      /* NULL: local if there, else remote */
    bool force;
};

struct restore_files {
    char archive[PATH_MAX];  /* local archive to read */
    char manifest[PATH_MAX];
    char downloaded_archive[PATH_MAX]; /* temp copies when remote, "" otherwise */
    char downloaded_manifest[PATH_MAX];
    char output[PATH_MAX]; /* decompressed temp file beside PATH */
    char id[32];
};

static int restore_usage(void)
{
    fprintf(stderr, "usage: sqlprodd restore DB --to PATH [--backup ID] [--from local|remote] [--force]\n");
    return CLI_USAGE;
}

/* Refuses the live database and, without --force, any existing file. */
static int restore_check_destination(const struct restore_request *request, struct error *err)
{
    char live[PATH_MAX], wanted[PATH_MAX], directory[PATH_MAX];
    struct stat st;
    snprintf(directory, sizeof directory, "%s", request->to);
    if (stat(dirname(directory), &st) != 0 || !S_ISDIR(st.st_mode))
        return error_set(err, -ENOENT, "directory of %s does not exist", request->to);
    bool same = strcmp(request->db->path, request->to) == 0;
    if (!same && realpath(request->db->path, live) && realpath(request->to, wanted))
        same = strcmp(live, wanted) == 0;
    if (same)
        return error_set(err, -EPERM,
                         "%s is the live database of %s: restore to another path, stop the "
                         "application, then move the restored file into place",
                         request->to, request->db->name);
    if (access(request->to, F_OK) == 0 && !request->force)
        return error_set(err, -EEXIST, "%s exists: choose another path or add --force to replace it",
                         request->to);
    char wal[PATH_MAX + 8];
    snprintf(wal, sizeof wal, "%s-wal", request->to);
    if (access(wal, F_OK) == 0)
        return error_set(err, -EBUSY,
                         "%s exists: a WAL of the old file would be applied to the restored one; if "
                         "no application uses %s, remove %s-wal and %s-shm first",
                         wal, request->to, request->to, request->to);
    return 0;
}

static int restore_pick_local(const struct restore_request *request, struct restore_files *files,
                              struct error *err)
{
    struct backup_list list;
    int rc = catalog_list_local(request->db, &list, err);
    if (rc != 0)
        return rc;
    rc = -ENOENT;
    for (size_t i = 0; i < list.count; i++) {
        if (request->backup_id && strcmp(list.items[i].id, request->backup_id) != 0)
            continue;
        snprintf(files->archive, sizeof files->archive, "%s", list.items[i].archive_path);
        snprintf(files->manifest, sizeof files->manifest, "%s", list.items[i].manifest_path);
        snprintf(files->id, sizeof files->id, "%s", list.items[i].id);
        rc = 0;
        break;
    }
    catalog_free(&list);
    if (rc != 0)
        error_set(err, rc, "no local backup %s of %s in %s/%s", request->backup_id ? request->backup_id : "at all",
                  request->db->name, request->db->backup.dir, request->db->name);
    return rc;
}

static int restore_fetch_remote(const struct restore_request *request, struct restore_files *files,
                                const struct archive_io *io, struct error *err)
{
    struct remote_list list = {0};
    struct target *target = NULL;
    const struct remote_backup *chosen = NULL;
    int rc = target_open(request->db->upload.target, &target, err);
    if (rc == 0)
        rc = remote_list_backups(target, request->db->name, &list, err);
    if (rc != 0)
        goto out;
    for (size_t i = 0; i < list.count && !chosen; i++)
        if ((!request->backup_id || strcmp(list.items[i].id, request->backup_id) == 0) &&
            list.items[i].has_manifest)
            chosen = &list.items[i];
    if (!chosen) {
        rc = error_set(err, -ENOENT, "no backup %s of %s with a manifest on target %s",
                       request->backup_id ? request->backup_id : "at all", request->db->name,
                       request->db->upload.target->name);
        goto out;
    }
    snprintf(files->id, sizeof files->id, "%s", chosen->id);
    snprintf(files->downloaded_archive, sizeof files->downloaded_archive, "%s.archive%s",
             request->to, FS_TEMP_SUFFIX);
    snprintf(files->downloaded_manifest, sizeof files->downloaded_manifest, "%s.manifest%s",
             request->to, FS_TEMP_SUFFIX);
    unlink(files->downloaded_archive);
    unlink(files->downloaded_manifest);
    rc = target_get_file(target, chosen->manifest_key, files->downloaded_manifest, io, err);
    if (rc == 0)
        rc = target_get_file(target, chosen->archive_key, files->downloaded_archive, io, err);
    snprintf(files->archive, sizeof files->archive, "%s", files->downloaded_archive);
    snprintf(files->manifest, sizeof files->manifest, "%s", files->downloaded_manifest);
out:
    target_close(target);
    remote_list_free(&list);
    return rc;
}

static int restore_verify_output(const char *path, char *result, size_t result_size,
                                 struct error *err)
{
    sqlite3 *connection = NULL;
    bool ok = false;
    int rc = database_open_path(path, true, &cli_stop, &connection, err);
    if (rc == 0)
        rc = database_check(connection, false, &ok, result, result_size, err);
    sqlite3_close(connection);
    if (rc == 0 && !ok)
        rc = error_set(err, -EBADMSG, "the restored copy failed integrity_check: %s", result);
    return rc;
}

static int restore(const struct restore_request *request, struct error *err)
{
    struct restore_files files = {0};
    struct manifest manifest;
    struct archive_result unpacked = {0};
    struct progress progress;
    struct archive_io io = {.stop = &cli_stop, .progress = progress_update, .progress_context = &progress};
    char check[256];
    bool remote = request->from && strcmp(request->from, "remote") == 0;

    int rc = restore_check_destination(request, err);
    if (rc != 0)
        return rc;
    if (!remote) {
        rc = restore_pick_local(request, &files, err);
        if (rc == -ENOENT && !request->from && request->db->upload.target)
            remote = true; /* not here: try the off-site copy */
        else if (rc != 0)
            return rc;
    }
    progress_begin(&progress, true, "download");
    if (remote)
        rc = restore_fetch_remote(request, &files, &io, err);
    progress_end(&progress);
    if (rc == 0)
        rc = manifest_read(files.manifest, &manifest, err);
    if (rc != 0)
        goto out;
    if (strcmp(manifest.database, request->db->name) != 0) {
        rc = error_set(err, -EINVAL, "manifest %s is for database %s, not %s", files.manifest,
                       manifest.database, request->db->name);
        goto out;
    }
    snprintf(files.output, sizeof files.output, "%s%s", request->to, FS_TEMP_SUFFIX);
    unlink(files.output);
    progress_begin(&progress, true, "decompress");
    rc = archive_decompress(files.archive, files.output, &io, &unpacked, err);
    progress_end(&progress);
    if (rc != 0)
        goto out;
    if (strcmp(unpacked.sha256, manifest.archive_sha256) != 0) {
        rc = error_set(err, -EBADMSG,
                       "archive %s does not match its manifest: sha256 %s, manifest says %s; the "
                       "copy is damaged, try another backup (--backup ID)",
                       remote ? files.id : files.archive, unpacked.sha256, manifest.archive_sha256);
        goto out;
    }
    rc = restore_verify_output(files.output, check, sizeof check, err);
    if (rc == 0)
        rc = fs_rename_durably(files.output, request->to, err);
    if (rc == 0)
        printf("restored %s backup %s (%s) to %s: %lld bytes, sha256 matches the manifest, "
               "integrity_check %s\n",
               request->db->name, files.id, remote ? "remote" : "local", request->to,
               (long long)unpacked.output_bytes, check);
out:
    if (files.output[0] && rc != 0)
        unlink(files.output);
    if (files.downloaded_archive[0])
        unlink(files.downloaded_archive);
    if (files.downloaded_manifest[0])
        unlink(files.downloaded_manifest);
    return rc;
}

int cli_restore(const struct config *config, int argc, char **argv)
{
    static const struct option options[] = {
        {"to", required_argument, NULL, 't'},     {"backup", required_argument, NULL, 'b'},
        {"from", required_argument, NULL, 'f'},   {"force", no_argument, NULL, 'F'},
        {NULL, 0, NULL, 0}};
    struct restore_request request = {0};
    int option;
    optind = 0; /* 0, not 1: glibc then also resets its internal state */
    while ((option = getopt_long(argc, argv, "t:b:f:F", options, NULL)) != -1) {
        switch (option) {
        case 't': request.to = optarg; break;
        case 'b': request.backup_id = optarg; break;
        case 'f': request.from = optarg; break;
        case 'F': request.force = true; break;
        default: return restore_usage();
        }
    }
    if (argc - optind != 1 || !request.to)
        return restore_usage();
    if (request.from && strcmp(request.from, "local") != 0 && strcmp(request.from, "remote") != 0) {
        fprintf(stderr, "sqlprodd: restore: --from takes local or remote, not '%s'\n", request.from);
        return CLI_USAGE;
    }
    if (!(request.db = cli_select_database(config, argv[optind])))
        return CLI_USAGE;
    if (request.from && strcmp(request.from, "remote") == 0 && !request.db->upload.target) {
        fprintf(stderr, "sqlprodd: restore: %s has no upload target to restore from\n", request.db->name);
        return CLI_USAGE;
    }
    struct error err = {0};
    if (restore(&request, &err) != 0) {
        fprintf(stderr, "sqlprodd: restore %s: %s\n", request.db->name, err.message);
        return CLI_FAILED;
    }
    return CLI_OK;
}
