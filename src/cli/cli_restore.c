/*
 * cli_restore.c: `sqlprodd restore DB --to PATH [--backup ID]
 * [--from local|remote] [--identity FILE] [--force]`, and from the WAL
 * replica `sqlprodd restore DB --to PATH --at TIME [--force]` (replica.h
 * makes the file; everything after it, checks and swap, is the same).
 *
 * An encrypted archive (age, archive/sealed.h) is decrypted on the way
 * with the identity of --identity, encrypt.identity or
 * encrypt.identity_credential (restore/identity.h), read only when the
 * archive needs it.
 *
 * Fetch (remote: download archive and manifest beside PATH), check the
 * archive's sha256 against the manifest, decompress to a temp file beside
 * PATH, run quick_check on it (integrity_check with --check integrity),
 * give it the source's journal mode (all of which is
 * restore/backup_restore.c, shared with the restore drill), and
 * only then rename it into place. A file that failed any step is deleted,
 * never renamed.
 *
 * An existing PATH is replaced only with --force, and only while no other
 * process has it (or its -wal, -shm, -journal) open: that is how the live
 * database of a stopped application is restored, with the very command
 * health prints. The replaced files are kept aside (replace.h) and put
 * back as they were if anything fails or a signal arrives before the
 * restored file is verified in place.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config_paths.h"
#include "core/fsutil.h"
#include "core/lock.h"
#include "db/database.h"
#include "offsite/target.h"
#include "report/progress.h"
#include "restore/backup_restore.h"
#include "restore/identity.h"
#include "restore/openers.h"
#include "restore/replace.h"
#include "restore/replica.h"

struct restore_request {
    const struct config *config;
    const struct database_config *db;
    const char *to;
    const char *backup_id; /* NULL: newest */
    const char *from;      /* NULL: local if there, else remote */
    const char *at;        /* --at TIME: from the replica; NULL: from backups */
    const char *identity;  /* --identity FILE, or NULL */
    int64_t at_ms;
    bool full_check; /* --check integrity: integrity_check, else quick_check */
    bool force;
    bool live; /* PATH is the database's own file */
};

struct restore_files {
    char output[PATH_MAX];                 /* decompressed temp file beside PATH */
    struct backup_restore_result unpacked; /* from a backup archive */
    struct replica_result replica;         /* --at */
};

static int restore_usage(void)
{
    fprintf(stderr,
            "usage: sqlprodd restore DB --to PATH [--backup ID] [--from local|remote]\n"
            "                        [--check quick|integrity] [--identity FILE] [--force]\n"
            "       sqlprodd restore DB --to PATH --at TIME|-15m|latest\n"
            "                        [--check quick|integrity] [--identity FILE] [--force]\n");
    return CLI_USAGE;
}

/* The absolute path of `path` with its directory resolved (the file
 * itself need not exist). False when the directory does not resolve. */
static bool restore_resolve(const char *path, char out[PATH_MAX])
{
    char directory[PATH_MAX], name[PATH_MAX];
    snprintf(directory, sizeof directory, "%s", path);
    snprintf(name, sizeof name, "%s", path);
    if (!realpath(dirname(directory), out))
        return false;
    size_t used = strlen(out);
    return snprintf(out + used, PATH_MAX - used, "/%s", basename(name)) < (int)(PATH_MAX - used);
}

/* Whether two paths name one file: the same device and inode when both
 * exist, else the same path once their directories are resolved. */
static bool restore_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    char resolved_a[PATH_MAX], resolved_b[PATH_MAX];
    if (!restore_resolve(a, resolved_a) || !restore_resolve(b, resolved_b))
        return strcmp(a, b) == 0;
    return strcmp(resolved_a, resolved_b) == 0;
}

/* What is at PATH decides what restore may do there. A link is refused
 * rather than followed: rename(2) would replace the link, not its target,
 * and leave the database it points to as it was. */
static int restore_check_destination(struct restore_request *request, struct error *err)
{
    char directory[PATH_MAX];
    struct stat st;
    snprintf(directory, sizeof directory, "%s", request->to);
    const char *parent = dirname(directory);
    if (stat(parent, &st) != 0)
        return error_set(
            err, -ENOENT,
            "directory %s (of --to %s) does not exist: create it, or restore to another path",
            parent, request->to);
    if (!S_ISDIR(st.st_mode))
        return error_set(err, -ENOTDIR, "%s (of --to %s) is not a directory", parent, request->to);
    if (lstat(request->to, &st) == 0) {
        if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            bool resolved = realpath(request->to, target) != NULL;
            return error_set(err, -ELOOP,
                             "%s is a symbolic link%s%s: restore --to the file itself, since "
                             "the link would be replaced, not the file it points to",
                             request->to, resolved ? " to " : "", resolved ? target : "");
        }
        if (S_ISDIR(st.st_mode))
            return error_set(err, -EISDIR,
                             "%s is a directory: --to takes the path of the database file to "
                             "write",
                             request->to);
        if (!S_ISREG(st.st_mode))
            return error_set(err, -EINVAL,
                             "%s is not a regular file (a FIFO, socket or device): restore "
                             "writes database files only",
                             request->to);
    } else if (errno != ENOENT) {
        return error_set(err, -errno, "%s: %s", request->to, strerror(errno));
    }
    request->live = restore_same_file(request->to, request->db->path);
    return 0;
}

/* Refuses while anything but us has the database's files open: replacing
 * them under a running application loses its next writes and can corrupt
 * the restored file. Run before the long work, and again just before the
 * swap. */
static int restore_check_openers(const struct restore_request *request,
                                 const struct replacement *replacement, bool *warned,
                                 struct error *err)
{
    struct stat files[REPLACE_PARTS];
    size_t count = 0;
    struct opener_list openers;
    for (int part = 0; part < REPLACE_PARTS; part++)
        if (replacement->existed[part])
            files[count++] = replacement->original[part];
    int rc = openers_find(files, count, &openers, err);
    if (rc != 0)
        return rc;
    if (openers.count > 0) {
        char who[512];
        openers_describe(&openers, who, sizeof who);
        return error_set(err, -EBUSY,
                         "%s (or its -wal, -shm) is open by %s: stop %s first; nothing was "
                         "changed",
                         request->to, who,
                         request->live ? "the application" : "every process using it");
    }
    if (openers.unreadable > 0 && !*warned) {
        fprintf(stderr,
                "sqlprodd: restore: the open files of %zu processes of other users could not "
                "be checked (run restore as root to check them all)\n",
                openers.unreadable);
        *warned = true;
    }
    return 0;
}

/* After the rename: the file at PATH is the one written and checked, in
 * the journal mode it was given, with all its pages. */
static int restore_verify_in_place(const char *path, const struct stat *written,
                                   const char *journal_mode, struct error *err)
{
    struct stat st;
    sqlite3 *connection = NULL;
    char mode[32] = "";
    int64_t page_count = 0, page_size = 0;
    if (stat(path, &st) != 0 || st.st_dev != written->st_dev || st.st_ino != written->st_ino)
        return error_set(err, -ESTALE,
                         "%s is not the file just restored: another process "
                         "replaced it",
                         path);
    int rc = database_open_path(path, false, &cli_stop, &connection, err);
    if (rc == 0)
        rc = database_query_text(connection, "PRAGMA journal_mode", mode, sizeof mode, err);
    if (rc == 0)
        rc = database_query_int(connection, "PRAGMA page_count", &page_count, err);
    if (rc == 0)
        rc = database_query_int(connection, "PRAGMA page_size", &page_size, err);
    sqlite3_close(connection);
    if (rc == 0 && strcmp(mode, journal_mode) != 0)
        rc = error_set(err, -EIO, "%s is in journal_mode %s in place, not %s", path, mode,
                       journal_mode);
    if (rc == 0 && page_count * page_size != (int64_t)written->st_size)
        rc = error_set(err, -EIO,
                       "%s has %lld pages of %lld bytes in place, the file written "
                       "has %lld bytes",
                       path, (long long)page_count, (long long)page_size,
                       (long long)written->st_size);
    return rc;
}

/* The application must be able to open what replaces its file: the same
 * owner, group and mode (a restore runs as root, whose 0600 file the
 * application's user could not read). */
static int restore_take_ownership_of(const char *path, const struct stat *original,
                                     struct error *err)
{
    if (chown(path, original->st_uid, original->st_gid) != 0)
        return error_set(err, -errno,
                         "cannot give the restored file the owner of the one it replaces (uid "
                         "%u, gid %u): %s; run restore as root",
                         (unsigned)original->st_uid, (unsigned)original->st_gid, strerror(errno));
    if (chmod(path, original->st_mode & 07777) != 0)
        return error_set(err, -errno, "cannot give %s mode %04o: %s", path,
                         (unsigned)(original->st_mode & 07777), strerror(errno));
    return 0;
}

static int restore_cancelled(struct error *err)
{
    return cli_stop ? error_set(err, -ECANCELED, "stopped by a signal") : 0;
}

static int restore_refuse_existing(const struct restore_request *request,
                                   const struct replacement *replacement, struct error *err)
{
    if (replacement->existed[0])
        return error_set(err, -EEXIST,
                         "%s exists: choose another path, or add --force to replace it (the "
                         "old file is kept aside)",
                         request->to);
    return error_set(err, -EEXIST,
                     "%s-wal, -shm or -journal of an old database exists: add --force to move "
                     "it aside, so that it is not replayed into the restored file",
                     request->to);
}

/* The terminal bar of report/progress.c, handed to backup_restore.c. */
static void restore_progress_begin(void *self, const char *label)
{
    progress_begin(self, true, label);
}

static void restore_progress_end(void *self)
{
    progress_end(self);
}

/* Fetches, checks and decompresses the archive to files->output, with the
 * source's journal mode (restore/backup_restore.h). */
static int restore_unpack(const struct restore_request *request, struct restore_files *files,
                          struct error *err)
{
    struct progress bar;
    const struct backup_restore_progress progress = {restore_progress_begin, progress_update,
                                                     restore_progress_end, &bar};
    snprintf(files->output, sizeof files->output, "%s%s", request->to, FS_TEMP_SUFFIX);
    const struct backup_restore_request unpack = {.db = request->db,
                                                  .backup_id = request->backup_id,
                                                  .from = request->from,
                                                  .identity = request->identity,
                                                  .output = files->output,
                                                  .download_prefix = request->to,
                                                  .full_check = request->full_check,
                                                  .stop = &cli_stop,
                                                  .progress = &progress};
    int rc = backup_restore_unpack(&unpack, &files->unpacked, err);
    if (files->unpacked.note[0])
        fprintf(stderr, "sqlprodd: restore: %s\n", files->unpacked.note);
    return rc;
}

/* The target holding the database's replica. */
static const struct target_config *restore_replica_target(const struct database_config *db)
{
    return db->replicate.target;
}

/* SQLPRODD_RESTORE_APPLY=sqlite|pages: how a generation's WAL goes into
 * the file (replica.h); both give the same bytes (test_restore_at.py). */
static enum replica_apply restore_apply_method(void)
{
    const char *method = getenv("SQLPRODD_RESTORE_APPLY");
    return method && strcmp(method, "sqlite") == 0 ? REPLICA_APPLY_SQLITE : REPLICA_APPLY_PAGES;
}

/* SQLPRODD_RESTORE_DELTAS=off: every generation from its segments, page
 * deltas or not; the same bytes (test_replicate_deltas.py). */
static bool restore_without_deltas(void)
{
    const char *deltas = getenv("SQLPRODD_RESTORE_DELTAS");
    return deltas && strcmp(deltas, "off") == 0;
}

/* --at: rebuilds the file from the replica (replica.h), then the same
 * check as an archive gets; the file keeps WAL mode, as the
 * database had (replicate requires it). */
static int restore_unpack_replica(const struct restore_request *request,
                                  struct restore_files *files, char *check, size_t check_size,
                                  char *mode, size_t mode_size, int64_t *bytes, struct error *err)
{
    struct replica_request replica = {.target = restore_replica_target(request->db),
                                      .database = request->db->name,
                                      .at_ms = request->at_ms,
                                      .output = files->output,
                                      .stop = &cli_stop,
                                      .apply = restore_apply_method(),
                                      .no_deltas = restore_without_deltas()};
    snprintf(files->output, sizeof files->output, "%s%s", request->to, FS_TEMP_SUFFIX);
    backup_restore_remove_file(files->output);
    struct identity_keys identities = {0};
    int rc = identity_keys_load(request->db, request->identity, &identities, err);
    if (rc != 0)
        return rc;
    replica.keys = identity_keys_view(&identities);
    rc = replica_restore(&replica, &files->replica, err);
    identity_keys_free(&identities);
    if (rc == 0)
        rc = backup_restore_check_file(files->output, request->full_check, &cli_stop, check,
                                       check_size, err);
    char note[512];
    if (rc == 0)
        rc = backup_restore_apply_journal_mode(files->output, "wal", &cli_stop, mode, mode_size,
                                               note, sizeof note, err);
    if (rc == 0)
        rc = fs_sync_file(files->output, err);
    struct stat st;
    if (rc == 0 && stat(files->output, &st) == 0)
        *bytes = st.st_size;
    return rc;
}

static int restore(struct restore_request *request, struct error *err)
{
    struct restore_files files = {0};
    struct replacement replacement;
    struct database_lock lock = {.fd = -1};
    struct stat written;
    char check[300], mode[16], aside[PATH_MAX + 64];
    int64_t bytes = 0;
    bool locked = false, warned = false, swapping = false;

    int rc = restore_check_destination(request, err);
    if (rc == 0)
        rc = replace_prepare(&replacement, request->to, err);
    if (rc != 0)
        return rc;
    bool replacing = replace_has_parts(&replacement);
    if (replacing && !request->force)
        return restore_refuse_existing(request, &replacement, err);
    if (request->live) {
        /* No job of the agent opens the database while it is swapped. */
        char holder[256] = "";
        rc = lock_acquire(&lock, request->config->state_dir, request->db->name, "sqlprodd restore",
                          false, &cli_stop, holder, sizeof holder, err);
        if (rc == -EWOULDBLOCK) {
            fprintf(stderr, "sqlprodd: restore: waiting for the database lock, held by %s\n",
                    holder);
            rc = lock_acquire(&lock, request->config->state_dir, request->db->name,
                              "sqlprodd restore", true, &cli_stop, NULL, 0, err);
        }
        if (rc != 0)
            return rc;
        locked = true;
    }
    if (replacing && (rc = restore_check_openers(request, &replacement, &warned, err)) != 0)
        goto out;

    if (request->at)
        rc = restore_unpack_replica(request, &files, check, sizeof check, mode, sizeof mode, &bytes,
                                    err);
    else if ((rc = restore_unpack(request, &files, err)) == 0) {
        snprintf(check, sizeof check, "%s", files.unpacked.check);
        snprintf(mode, sizeof mode, "%s", files.unpacked.journal_mode);
        bytes = files.unpacked.bytes;
    }
    if (rc == 0 && replacement.existed[0])
        rc = restore_take_ownership_of(files.output, &replacement.original[0], err);
    if (rc == 0 && stat(files.output, &written) != 0)
        rc = error_set(err, -errno, "%s: %s", files.output, strerror(errno));
    if (rc == 0)
        rc = restore_cancelled(err);
    /* Look again: the application may have started meanwhile, and made a
     * file (or a -wal) where there was none. */
    if (rc == 0)
        rc = restore_check_destination(request, err);
    if (rc == 0)
        rc = replace_prepare(&replacement, request->to, err);
    if (rc == 0 && replace_has_parts(&replacement) && !request->force)
        rc = restore_refuse_existing(request, &replacement, err);
    if (rc == 0 && replace_has_parts(&replacement))
        rc = restore_check_openers(request, &replacement, &warned, err);
    if (rc != 0)
        goto out;

    swapping = true;
    if (replace_has_parts(&replacement))
        rc = replace_move_aside(&replacement, time(NULL), err);
    if (rc == 0)
        rc = restore_cancelled(err);
    if (rc == 0)
        rc = replace_put_in_place(&replacement, files.output, err);
    if (rc == 0)
        rc = restore_verify_in_place(request->to, &written, mode, err);
    if (rc == 0)
        rc = restore_cancelled(err);
    if (rc != 0)
        goto out;

    char deltas[128] = "";
    if (files.replica.deltas)
        snprintf(deltas, sizeof deltas, "; %zu page delta%s of %llu pages through %s",
                 files.replica.deltas, files.replica.deltas == 1 ? "" : "s",
                 (unsigned long long)files.replica.delta_pages, files.replica.deltas_through);
    if (request->at)
        printf("restored %s to %s as of the commit seen at %s (generation %s, frame %llu): %zu "
               "commit%s in %zu segment%s (%ld objects read, %zu of them pack%s) over %zu "
               "generation%s from the "
               "base of %s (%s%s), %lld bytes, every object's sha256 and the WAL checksum chain "
               "checked, %s, journal_mode %s\n",
               request->db->name, request->to, files.replica.seen_at, files.replica.generation,
               (unsigned long long)files.replica.frame, files.replica.commits,
               files.replica.commits == 1 ? "" : "s", files.replica.segments,
               files.replica.segments == 1 ? "" : "s", target_objects_read(), files.replica.packs,
               files.replica.packs == 1 ? "" : "s", files.replica.generations,
               files.replica.generations == 1 ? "" : "s", files.replica.base_generation,
               files.replica.applied == REPLICA_APPLY_PAGES ? "pages written directly"
                                                            : "replayed by SQLite",
               deltas, (long long)bytes, check, mode);
    else
        printf("restored %s backup %s%s to %s: %lld bytes, sha256 matches the manifest, "
               "%s, journal_mode %s\n",
               request->db->name, files.unpacked.id,
               files.unpacked.remote ? " (remote)" : " (local)", request->to, (long long)bytes,
               check, mode);
    if (request->at && files.replica.in_flight)
        printf("the newest segment on the target has no sidecar yet (it was being uploaded when "
               "the agent stopped): its commits are not restorable until the agent puts it\n");
    if (replacement.aside[0]) {
        replace_describe_aside(&replacement, aside, sizeof aside);
        printf("the replaced database is kept as %s: remove it once the application works "
               "with the restored one\n",
               aside);
    }
out:
    if (rc != 0 && swapping && (replacement.aside[0] || replacement.placed)) {
        struct error back = {0};
        size_t used = strlen(err->message);
        if (replace_put_back(&replacement, &back) != 0)
            snprintf(err->message + used, sizeof err->message - used, "; %s", back.message);
        else if (replacement.aside[0])
            snprintf(err->message + used, sizeof err->message - used,
                     "; %s is back in place as it was", request->to);
    }
    if (files.output[0] && !replacement.placed)
        backup_restore_remove_file(files.output);
    backup_restore_finish(&files.unpacked);
    if (locked)
        lock_release(&lock);
    return rc;
}

int cli_restore(const struct config *config, int argc, char **argv)
{
    static const struct option options[] = {{"to", required_argument, NULL, 't'},
                                            {"backup", required_argument, NULL, 'b'},
                                            {"from", required_argument, NULL, 'f'},
                                            {"force", no_argument, NULL, 'F'},
                                            {"at", required_argument, NULL, 'a'},
                                            {"identity", required_argument, NULL, 'i'},
                                            {"check", required_argument, NULL, 'C'},
                                            {NULL, 0, NULL, 0}};
    struct restore_request request = {.config = config};
    int option;
    optind = 0; /* 0, not 1: glibc then also resets its internal state */
    while ((option = getopt_long(argc, argv, "t:b:f:Fa:i:", options, NULL)) != -1) {
        switch (option) {
        case 't': request.to = optarg; break;
        case 'b': request.backup_id = optarg; break;
        case 'f': request.from = optarg; break;
        case 'F': request.force = true; break;
        case 'a': request.at = optarg; break;
        case 'i': request.identity = optarg; break;
        case 'C': /* long only: -c is the configuration */
            if (strcmp(optarg, "quick") != 0 && strcmp(optarg, "integrity") != 0) {
                fprintf(stderr, "sqlprodd: restore: --check takes quick or integrity, not '%s'\n",
                        optarg);
                return CLI_USAGE;
            }
            request.full_check = strcmp(optarg, "integrity") == 0;
            break;
        default: return restore_usage();
        }
    }
    if (argc - optind != 1 || !request.to || !request.to[0])
        return restore_usage();
    if (request.from && strcmp(request.from, "local") != 0 && strcmp(request.from, "remote") != 0) {
        fprintf(stderr, "sqlprodd: restore: --from takes local or remote, not '%s'\n",
                request.from);
        return CLI_USAGE;
    }
    if (request.at && (request.backup_id || request.from)) {
        fprintf(stderr, "sqlprodd: restore: --at restores from the WAL replica; --backup and "
                        "--from choose a backup archive: give one or the other\n");
        return CLI_USAGE;
    }
    if (!(request.db = cli_select_database(config, argv[optind])))
        return CLI_USAGE;
    if (request.at) {
        struct error why = {0};
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        if (replica_parse_time(request.at, (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000,
                               &request.at_ms, &why) != 0) {
            fprintf(stderr, "sqlprodd: restore: %s\n", why.message);
            return CLI_USAGE;
        }
        if (!restore_replica_target(request.db)) {
            fprintf(stderr, "sqlprodd: restore: %s has no replica target to restore --at a time "
                            "from (replicate = { target = ...; })\n",
                    request.db->name);
            return CLI_USAGE;
        }
    }
    if (request.from && strcmp(request.from, "remote") == 0 && !request.db->upload.target) {
        fprintf(stderr, "sqlprodd: restore: %s has no upload target to restore from\n",
                request.db->name);
        return CLI_USAGE;
    }
    struct error err = {0};
    if (config_paths_check_restore_target(config, request.db, request.to, &err) != 0) {
        fprintf(stderr, "sqlprodd: restore %s: %s\n", request.db->name, err.message);
        return CLI_USAGE;
    }
    if (restore(&request, &err) != 0) {
        fprintf(stderr, "sqlprodd: restore %s: %s\n", request.db->name, err.message);
        return CLI_FAILED;
    }
    return CLI_OK;
}
