/*
 * target_dir.c: a target that is a mounted directory (a NAS, another disk).
 *
 * Objects are files below the target's path, written as temp file + fsync +
 * rename + fsync of the directory, so a reader never sees half a file under
 * a final name. The root must already exist: creating it would quietly put
 * "off-site" copies on the local disk when the NAS is not mounted. Not for
 * anything remote: target_s3.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "offsite/target_internal.h"

#define DIR_COPY_BUFFER (1024 * 1024)
#define DIR_LIST_DEPTH  16 /* keys are NAME/FILE; deeper trees are not ours */

struct dir_target {
    char root[PATH_MAX];
};

static struct dir_target *dir_of(struct target *target)
{
    return target->implementation;
}

static int dir_path_of(struct target *target, const char *key, char *out, size_t out_size,
                       struct error *err)
{
    if (fs_join(out, out_size, dir_of(target)->root, key) != 0)
        return error_set(err, -ENAMETOOLONG, "%s: path for key %s is too long", target->description,
                         key);
    return 0;
}

/* The root must still be there at each put: folders below it are made as
 * needed, the root never, or an unmounted share would fill the mount point
 * on the local disk while the objects seem to go off-site. */
static int dir_root_present(struct target *target, struct error *err)
{
    struct stat st;
    const char *root = dir_of(target)->root;
    if (stat(root, &st) != 0)
        return error_set(err, -errno,
                         "%s: directory %s: %s (is the share mounted? sqlprodd does not create a "
                         "target's root)",
                         target->description, root, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return error_set(err, -ENOTDIR, "%s: %s is not a directory", target->description, root);
    return 0;
}

/* Cuts "ROOT/NAME/FILE" to "ROOT/NAME" (paths here always hold a '/'). */
static void dir_parent(char *path)
{
    char *slash = strrchr(path, '/');
    if (slash == path)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
}

/*
 * Copies `source` to the open descriptor `to`, hashing what passes through;
 * fsyncs `to` when `sync` (an upload: a download is a temp file restore
 * reads once and removes, and syncing it cost a second per GiB for nothing,
 * as target_s3.c says). The messages name the source and `to_name`.
 */
static int dir_copy(const struct target_source *source, int to, const char *to_name, bool sync,
                    char sha256_hex[IO_SHA256_HEX], const struct io_context *io, struct error *err)
{
    unsigned char *buffer = malloc(DIR_COPY_BUFFER);
    struct io_sha256 hash = {0};
    void *reader = NULL;
    int rc = 0;
    if (!buffer || io_sha256_begin(&hash) != 0) {
        rc = error_set(err, -ENOMEM, "copying %s: out of memory", source->name);
        goto out;
    }
    if ((rc = source->open_reader(source->context, &reader, err)) != 0)
        goto out;
    for (int64_t done = 0; done < source->size;) {
        if (io_stopped(io)) {
            rc = error_set(err, -ECANCELED, "copying %s to %s: cancelled", source->name, to_name);
            goto out;
        }
        int64_t left = source->size - done;
        size_t length = left < DIR_COPY_BUFFER ? (size_t)left : DIR_COPY_BUFFER;
        if ((rc = source->read(reader, buffer, length, done, err)) != 0)
            goto out;
        io_sha256_update(&hash, buffer, length);
        if ((rc = io_write_full(to, buffer, length)) != 0) {
            error_set(err, rc, "cannot write %s: %s", to_name, strerror(-rc));
            goto out;
        }
        done += (int64_t)length;
        io_report_progress(io, done, source->size);
    }
    if (source->check && (rc = source->check(reader, err)) != 0)
        goto out;
    if (sync && fsync(to) != 0) {
        rc = error_set(err, -errno, "cannot sync %s: %s", to_name, strerror(errno));
        goto out;
    }
    io_sha256_end(&hash, sha256_hex);
out:
    if (reader)
        source->close_reader(reader);
    io_sha256_discard(&hash);
    free(buffer);
    return rc;
}

/* Copies `source` into `to`, a new file at `to_path`: filled, synced when
 * `sync`, and closed, or removed again on any failure. */
static int dir_copy_to_new_file(const struct target_source *source, int to, const char *to_path,
                                bool sync, char sha256_hex[IO_SHA256_HEX],
                                const struct io_context *io, struct error *err)
{
    int rc = dir_copy(source, to, to_path, sync, sha256_hex, io, err);
    if (close(to) != 0 && rc == 0)
        rc = error_set(err, -errno, "cannot write %s: %s", to_path, strerror(errno));
    if (rc != 0)
        unlink(to_path);
    return rc;
}

static int dir_put_source(struct target *target, const char *key,
                          const struct target_source *source, const char *sha256_hex,
                          char stored_sha256[IO_SHA256_HEX], const struct io_context *io,
                          struct error *err)
{
    char destination[PATH_MAX], temp[PATH_MAX + 32], directory[PATH_MAX];
    int rc;
    bool created = false;

    if ((rc = dir_path_of(target, key, destination, sizeof destination, err)) != 0)
        return rc;
    snprintf(temp, sizeof temp, "%s%s", destination, FS_TEMP_SUFFIX);
    snprintf(directory, sizeof directory, "%s", destination);
    dir_parent(directory);
    if ((rc = dir_root_present(target, err)) != 0)
        return rc;
    if ((rc = fs_make_directories(directory, 0700, err)) != 0)
        return error_prefix(err, "%s: ", target->description);

    /* Archives and manifests are never raw databases: one under either name
     * is not ours to replace (a target path that names a live directory). */
    int to = fs_create_temp_beside(destination, temp, 0600, err);
    if (to < 0)
        return error_prefix(err, "%s: ", target->description);
    if ((rc = dir_copy_to_new_file(source, to, temp, true, stored_sha256, io, err)) != 0)
        goto out;
    created = true;
    if (sha256_hex && strcmp(sha256_hex, stored_sha256) != 0) {
        rc = error_set(err, -EBADMSG,
                       "%s changed or is corrupt: its sha256 is %s, the manifest says %s; "
                       "not uploaded",
                       source->name, stored_sha256, sha256_hex);
        goto out;
    }
    if ((rc = fs_rename_durably(temp, destination, err)) != 0)
        goto out;
    created = false;
out:
    if (created)
        unlink(temp);
    return rc;
}

/* Copies bytes [offset, offset + length) of the object at `key` (length
 * < 0: from offset to its end) to a new file at `path`. */
static int dir_get(struct target *target, const char *key, int64_t offset, int64_t length,
                   const char *path, char whole_sha256[IO_SHA256_HEX], const struct io_context *io,
                   struct error *err)
{
    char source[PATH_MAX], sha256_hex[IO_SHA256_HEX];
    bool whole = length < 0;
    int rc;

    if ((rc = dir_path_of(target, key, source, sizeof source, err)) != 0)
        return rc;
    int from = open(source, O_RDONLY | O_CLOEXEC);
    if (from < 0)
        return error_set(err, -errno, "%s: %s %s: %s", target->description,
                         errno == ENOENT ? "no such object" : "cannot read", key, strerror(errno));
    struct stat st;
    if (fstat(from, &st) != 0) {
        rc = error_set(err, -errno, "cannot read %s: %s", source, strerror(errno));
        close(from);
        return rc;
    }
    if (length < 0)
        length = (int64_t)st.st_size - offset;
    if (offset + length > (int64_t)st.st_size) {
        close(from);
        return error_set(err, -EBADMSG,
                         "%s: %s is %lld bytes, not the %lld that bytes %lld+%lld need",
                         target->description, key, (long long)st.st_size,
                         (long long)(offset + length), (long long)offset, (long long)length);
    }
    struct target_file file;
    struct target_source object;
    target_file_wrap(from, source, length, &file, &object);
    file.offset = offset;
    int to = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    rc = to < 0 ? error_set(err, -errno, "cannot create %s: %s", path, strerror(errno))
                : dir_copy_to_new_file(&object, to, path, false, sha256_hex, io, err);
    close(from);
    if (rc == 0 && whole && whole_sha256)
        memcpy(whole_sha256, sha256_hex, IO_SHA256_HEX);
    return rc;
}

/* Adds the regular files below `directory` (whose key prefix is `relative`)
 * that start with `prefix`. */
static int dir_walk(struct target *target, const char *directory, const char *relative,
                    const char *prefix, int depth, struct target_listing *out, struct error *err)
{
    DIR *handle = opendir(directory);
    if (!handle) {
        if (errno == ENOENT && depth > 0)
            return 0; /* a prefix naming a directory not made yet: no objects */
        return error_set(err, -errno, "%s: cannot list %s: %s", target->description, directory,
                         strerror(errno));
    }
    int rc = 0;
    struct dirent *entry;
    while (rc == 0 && (entry = readdir(handle)) != NULL) {
        const char *name = entry->d_name;
        size_t length = strlen(name), suffix = strlen(FS_TEMP_SUFFIX);
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        if (length > suffix && strcmp(name + length - suffix, FS_TEMP_SUFFIX) == 0)
            continue;
        char path[PATH_MAX], key[PATH_MAX];
        struct stat st;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", directory, name) >= sizeof path ||
            (size_t)snprintf(key, sizeof key, "%s%s%s", relative, *relative ? "/" : "", name) >=
                sizeof key)
            continue;
        if (lstat(path, &st) != 0)
            continue; /* deleted while we looked */
        /* Only descend where a key with this prefix can be. */
        size_t key_length = strlen(key);
        if (S_ISDIR(st.st_mode) && depth < DIR_LIST_DEPTH &&
            (strncmp(key, prefix, key_length) == 0 || strncmp(key, prefix, strlen(prefix)) == 0))
            rc = dir_walk(target, path, key, prefix, depth + 1, out, err);
        else if (S_ISREG(st.st_mode) && strncmp(key, prefix, strlen(prefix)) == 0)
            rc = target_listing_add(out, key, (int64_t)st.st_size, st.st_mtime, err);
    }
    closedir(handle);
    return rc;
}

static int dir_list(struct target *target, const char *prefix, struct target_listing *out,
                    struct error *err)
{
    return dir_walk(target, dir_of(target)->root, "", prefix, 0, out, err);
}

static int dir_delete(struct target *target, const char *key, struct error *err)
{
    char path[PATH_MAX];
    int rc = dir_path_of(target, key, path, sizeof path, err);
    if (rc != 0)
        return rc;
    if (unlink(path) != 0) {
        if (errno == ENOENT)
            return 0;
        return error_set(err, -errno, "%s: cannot delete %s: %s", target->description, key,
                         strerror(errno));
    }
    /* Folders the delete emptied go too, up to (never) the root: a
     * bucket has no empty folders, and an operator looking at the target
     * should not see a replica's forgotten generations as empty shells. */
    const char *root = dir_of(target)->root;
    size_t root_length = strlen(root);
    dir_parent(path);
    while (strlen(path) > root_length && strncmp(path, root, root_length) == 0 &&
           path[root_length] == '/' && rmdir(path) == 0)
        dir_parent(path);
    return fs_sync_directory(path, err);
}

static int dir_remove_temp_files(struct target *target, const char *directory_key,
                                 struct error *err)
{
    char directory[PATH_MAX];
    int rc = dir_path_of(target, directory_key, directory, sizeof directory, err);
    if (rc == 0 && (rc = fs_remove_temp_files(directory, err)) < 0)
        error_prefix(err, "%s: ", target->description);
    return rc;
}

static void dir_close(struct target *target)
{
    free(target->implementation);
    target->implementation = NULL;
}

static const struct target_operations dir_operations = {
    .put_source = dir_put_source,
    .get = dir_get,
    .list = dir_list,
    .delete_object = dir_delete,
    .remove_temp_files = dir_remove_temp_files,
    .close = dir_close,
};

int target_dir_open(const struct target_config *config, struct target *target, struct error *err)
{
    struct stat st;
    size_t length = config->path ? strlen(config->path) : 0;
    if (length == 0 || length >= PATH_MAX - 1)
        return error_set(err, -EINVAL, "target %s: path must be set", config->name);
    if (stat(config->path, &st) != 0)
        return error_set(err, -errno,
                         "target %s: directory %s: %s (is the share mounted? sqlprodd does not "
                         "create a target's root)",
                         config->name, config->path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return error_set(err, -ENOTDIR, "target %s: %s is not a directory", config->name,
                         config->path);
    struct dir_target *dir = calloc(1, sizeof *dir);
    if (!dir)
        return error_set(err, -ENOMEM, "target %s: out of memory", config->name);
    memcpy(dir->root, config->path, length + 1);
    while (length > 1 && dir->root[length - 1] == '/')
        dir->root[--length] = '\0';
    target->implementation = dir;
    target->operations = &dir_operations;
    snprintf(target->description, sizeof target->description, "dir %s", dir->root);
    return 0;
}
