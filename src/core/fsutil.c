/*
 * fsutil.c: careful file-system operations: directories with a mode, fsync of
 * files and directories, durable renames and atomic small-file writes, the
 * way Redis's rdb.c persists (temp file, fsync, rename, fsync the directory).
 *
 * Not for streaming large files (archive.c does that) and not for deciding
 * names or layouts of backups (the backup job does). Every error names the
 * path and the system's reason.
 */
#include "core/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/io.h"

/* Copies the directory part of `path` into out ("." when there is none). */
static int fs_directory_of(const char *path, char *out, size_t out_size)
{
    const char *slash = strrchr(path, '/');
    size_t length;

    if (!slash) {
        length = 1;
        path = ".";
    } else if (slash == path) {
        length = 1; /* "/name" lives in "/" */
    } else {
        length = (size_t)(slash - path);
    }
    if (length >= out_size)
        return -ENAMETOOLONG;
    memcpy(out, path, length);
    out[length] = '\0';
    return 0;
}

/* Creates one directory; an existing directory is fine, anything else there is not. */
static int fs_make_one_directory(const char *path, mode_t mode, struct error *err)
{
    struct stat st;

    if (mkdir(path, mode) == 0) {
        /* mkdir() applied the umask; the caller asked for this exact mode. */
        if (chmod(path, mode) < 0) {
            int saved = errno;
            return error_set(err, -saved, "cannot set mode of directory %s: %s", path,
                             strerror(saved));
        }
        return 0;
    }
    int saved = errno;
    if (saved == EEXIST) {
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return 0;
        return error_set(err, -ENOTDIR, "cannot create directory %s: %s", path, strerror(ENOTDIR));
    }
    return error_set(err, -saved, "cannot create directory %s: %s", path, strerror(saved));
}

int fs_make_directories(const char *path, mode_t mode, struct error *err)
{
    char buffer[PATH_MAX];
    size_t length = strlen(path);

    if (length == 0)
        return error_set(err, -EINVAL, "cannot create directory: empty path");
    if (length >= sizeof buffer)
        return error_set(err, -ENAMETOOLONG, "cannot create directory %s: %s", path,
                         strerror(ENAMETOOLONG));
    memcpy(buffer, path, length + 1);

    /* Each prefix ending before a '/' is a parent; skip the leading '/' and
     * runs of slashes so "a//b" does not try to create "a/". */
    for (size_t i = 1; i < length; i++) {
        if (buffer[i] != '/' || buffer[i - 1] == '/')
            continue;
        buffer[i] = '\0';
        int rc = fs_make_one_directory(buffer, mode, err);
        buffer[i] = '/';
        if (rc < 0)
            return rc;
    }
    return fs_make_one_directory(buffer, mode, err);
}

/* open(2) with `flags`, fsync(2), close; `kind` ("directory " or "") names it in messages. */
static int fs_sync_path(const char *path, int flags, const char *kind, struct error *err)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0) {
        int saved = errno;
        return error_set(err, -saved, "cannot open %s%s: %s", kind, path, strerror(saved));
    }
    int rc = 0;
    if (fsync(fd) < 0) {
        int saved = errno;
        rc = error_set(err, -saved, "cannot sync %s%s: %s", kind, path, strerror(saved));
    }
    close(fd);
    return rc;
}

int fs_sync_directory(const char *directory, struct error *err)
{
    return fs_sync_path(directory, O_RDONLY | O_DIRECTORY, "directory ", err);
}

int fs_sync_file(const char *path, struct error *err)
{
    return fs_sync_path(path, O_RDONLY, "", err);
}

int fs_rename_durably(const char *from, const char *to, struct error *err)
{
    char directory[PATH_MAX];

    if (fs_directory_of(to, directory, sizeof directory) < 0)
        return error_set(err, -ENAMETOOLONG, "cannot rename %s to %s: %s", from, to,
                         strerror(ENAMETOOLONG));
    if (rename(from, to) < 0) {
        int saved = errno;
        return error_set(err, -saved, "cannot rename %s to %s: %s", from, to, strerror(saved));
    }
    /* The rename is only durable once the directory entry is on disk. */
    return fs_sync_directory(directory, err);
}

const char *const fs_database_suffixes[FS_DATABASE_PARTS] = {"", "-wal", "-shm", "-journal"};

#define FS_SQLITE_HEADER "SQLite format 3" /* and its terminating NUL: 16 bytes */

int fs_fd_is_database(int fd)
{
    char header[sizeof FS_SQLITE_HEADER];
    int rc = io_pread_full(fd, header, sizeof header, 0);
    if (rc == -ENODATA)
        return 0; /* shorter than a header: not a database */
    if (rc < 0)
        return rc;
    return memcmp(header, FS_SQLITE_HEADER, sizeof header) == 0;
}

int fs_refuse_to_replace(const char *path, struct error *err)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        int saved = errno;
        return error_set(err, -saved, "cannot look at %s before replacing it: %s", path,
                         strerror(saved));
    }
    if (S_ISLNK(st.st_mode))
        return 0;
    if (!S_ISREG(st.st_mode))
        return error_set(err, -EEXIST,
                         "refusing to replace %s: it is %s, not a file sqlprodd wrote; point the "
                         "setting that names it at a path of its own",
                         path, fs_file_kind(st.st_mode));
    if (st.st_size < (off_t)sizeof FS_SQLITE_HEADER)
        return 0;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int saved = errno;
        if (saved == ENOENT)
            return 0;
        return error_set(err, -saved, "cannot read %s to make sure it is not a database: %s", path,
                         strerror(saved));
    }
    int rc = fs_fd_is_database(fd);
    close(fd);
    if (rc < 0)
        return error_set(err, rc, "cannot read %s to make sure it is not a database: %s", path,
                         strerror(-rc));
    if (rc == 1)
        return error_set(err, -EEXIST,
                         "refusing to replace %s: it is a SQLite database (it starts with the "
                         "SQLite header), not a file sqlprodd wrote; point the setting that names "
                         "it at a path of its own",
                         path);
    return 0;
}

int fs_create_temp_beside(const char *path, const char *temp, mode_t mode, struct error *err)
{
    int rc;
    if ((rc = fs_refuse_to_replace(path, err)) != 0 || (rc = fs_refuse_to_replace(temp, err)) != 0)
        return rc;
    /* A temp file left by a crash is ours to replace; O_EXCL after the unlink
     * makes sure we never write through a link someone put there. */
    if (unlink(temp) < 0 && errno != ENOENT) {
        rc = -errno;
        return error_set(err, rc, "cannot remove stale temp file %s: %s", temp, strerror(-rc));
    }
    int fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        rc = -errno;
        return error_set(err, rc, "cannot create %s: %s", temp, strerror(-rc));
    }
    /* open() applied the umask; the caller asked for this exact mode. */
    if (fchmod(fd, mode) < 0) {
        rc = -errno;
        error_set(err, rc, "cannot set mode of %s: %s", temp, strerror(-rc));
        close(fd);
        unlink(temp);
        return rc;
    }
    return fd;
}

int fs_write_file_atomically(const char *path, const void *data, size_t size, mode_t mode,
                             struct error *err)
{
    char temp[PATH_MAX], directory[PATH_MAX];
    int fd = -1, rc;
    bool created = false;

    if ((size_t)snprintf(temp, sizeof temp, "%s%s", path, FS_TEMP_SUFFIX) >= sizeof temp)
        return error_set(err, -ENAMETOOLONG, "cannot write %s: %s", path, strerror(ENAMETOOLONG));

    /* Neither the file nor a stale temp may be a database: this writes only
     * small text files, so a database there is not one of ours. */
    fd = fs_create_temp_beside(path, temp, mode, err);
    if (fd < 0) {
        rc = fd;
        goto out;
    }
    created = true;
    rc = io_write_full(fd, data, size);
    if (rc < 0) {
        error_set(err, rc, "cannot write %s: %s", temp, strerror(-rc));
        goto out;
    }
    if (fsync(fd) < 0) {
        rc = -errno;
        error_set(err, rc, "cannot sync %s: %s", temp, strerror(-rc));
        goto out;
    }
    rc = close(fd);
    fd = -1;
    if (rc < 0) {
        rc = -errno;
        error_set(err, rc, "cannot write %s: %s", temp, strerror(-rc));
        goto out;
    }
    /* Again right before the rename: the file may have become a database
     * while the temp file was written. */
    if ((rc = fs_refuse_to_replace(path, err)) != 0)
        goto out;
    if (rename(temp, path) < 0) {
        rc = -errno;
        error_set(err, rc, "cannot rename %s to %s: %s", temp, path, strerror(-rc));
        goto out;
    }
    created = false;                                    /* the temp name no longer exists */
    fs_directory_of(path, directory, sizeof directory); /* fits: shorter than temp */
    rc = fs_sync_directory(directory, err);

out:
    if (fd >= 0)
        close(fd);
    if (rc < 0 && created)
        unlink(temp);
    return rc;
}

static bool fs_has_temp_suffix(const char *name)
{
    size_t length = strlen(name), suffix = strlen(FS_TEMP_SUFFIX);
    return length > suffix && strcmp(name + length - suffix, FS_TEMP_SUFFIX) == 0;
}

int fs_remove_temp_files(const char *directory, struct error *err)
{
    DIR *dir = opendir(directory);
    int removed = 0, rc = 0;

    if (!dir) {
        if (errno == ENOENT)
            return 0;
        int saved = errno;
        return error_set(err, -saved, "cannot open directory %s: %s", directory, strerror(saved));
    }
    for (;;) {
        errno = 0;
        struct dirent *entry = readdir(dir);
        if (!entry) {
            if (errno != 0) {
                rc = -errno;
                error_set(err, rc, "cannot read directory %s: %s", directory, strerror(-rc));
            }
            break;
        }
        if (!fs_has_temp_suffix(entry->d_name))
            continue;
        if (unlinkat(dirfd(dir), entry->d_name, 0) < 0) {
            if (errno == ENOENT || errno == EISDIR)
                continue; /* cleaned up by someone else, or not a file of ours */
            rc = -errno;
            error_set(err, rc, "cannot remove %s/%s: %s", directory, entry->d_name, strerror(-rc));
            break;
        }
        removed++;
    }
    closedir(dir);
    return rc < 0 ? rc : removed;
}

int fs_read_file(const char *path, char **data, size_t *size, struct error *err)
{
    char *buffer = NULL;
    size_t used = 0, capacity = 0;
    int rc = 0;

    *data = NULL;
    if (size)
        *size = 0;
    int fd = fs_open_regular(path, "a regular file", err);
    if (fd < 0)
        return fd;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        error_set(err, rc, "cannot stat %s: %s", path, strerror(-rc));
        goto out;
    }
    /* The size is a hint only: the file may grow while it is read. */
    capacity = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
    buffer = malloc(capacity);
    if (!buffer) {
        rc = error_set(err, -ENOMEM, "cannot read %s: out of memory", path);
        goto out;
    }
    for (;;) {
        if (used + 1 == capacity) {
            char *grown = realloc(buffer, capacity * 2);
            if (!grown) {
                rc = error_set(err, -ENOMEM, "cannot read %s: out of memory", path);
                goto out;
            }
            buffer = grown;
            capacity *= 2;
        }
        ssize_t got = io_read_full(fd, buffer + used, capacity - used - 1);
        if (got < 0) {
            rc = (int)got;
            error_set(err, rc, "cannot read %s: %s", path, strerror(-rc));
            goto out;
        }
        used += (size_t)got;
        if (used + 1 < capacity)
            break; /* a short read: the end of the file */
    }
    buffer[used] = '\0';
    *data = buffer;
    buffer = NULL;
    if (size)
        *size = used;

out:
    free(buffer);
    close(fd);
    return rc;
}

int fs_join(char *out, size_t out_size, const char *directory, const char *name)
{
    size_t directory_length = strlen(directory);

    /* Trailing slashes of the directory and leading ones of the name collapse
     * into one; the root directory keeps its single '/'. */
    while (directory_length > 1 && directory[directory_length - 1] == '/')
        directory_length--;
    while (*name == '/')
        name++;

    int written;
    if (directory_length == 0)
        written = snprintf(out, out_size, "%s", name);
    else if (directory_length == 1 && directory[0] == '/')
        written = snprintf(out, out_size, "/%s", name);
    else
        written = snprintf(out, out_size, "%.*s/%s", (int)directory_length, directory, name);
    if (written < 0 || (size_t)written >= out_size) {
        if (out_size > 0)
            out[0] = '\0';
        return -ENAMETOOLONG;
    }
    return 0;
}

int64_t fs_file_size(const char *path, const char *suffix)
{
    char full[PATH_MAX + 8];
    struct stat st;
    snprintf(full, sizeof full, "%s%s", path, suffix);
    return stat(full, &st) == 0 ? (int64_t)st.st_size : 0;
}

const char *fs_file_kind(mode_t mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG: return "a regular file";
    case S_IFIFO: return "a FIFO";
    case S_IFSOCK: return "a socket";
    case S_IFCHR: return "a character device";
    case S_IFBLK: return "a block device";
    case S_IFDIR: return "a directory";
    case S_IFLNK: return "a symbolic link";
    default: return "not a regular file";
    }
}

int fs_open_regular(const char *path, const char *what, struct error *err)
{
    /* O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer,
     * for good; O_NOCTTY: a terminal must not become ours. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        int saved = errno;
        return error_set(err, -saved, "cannot open %s: %s", path, strerror(saved));
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int saved = errno;
        close(fd);
        return error_set(err, -saved, "cannot stat %s: %s", path, strerror(saved));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return error_set(err, S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL, "%s is %s, not %s", path,
                         fs_file_kind(st.st_mode), what);
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
        int saved = errno;
        close(fd);
        return error_set(err, -saved, "cannot read %s: %s", path, strerror(saved));
    }
    return fd;
}
