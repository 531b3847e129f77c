/*
 * replace.c: swapping a database file for a verified one; see replace.h.
 */
#include "restore/replace.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "archive/manifest.h"

static int replace_part_path(char *out, size_t size, const char *base, int part)
{
    int n = snprintf(out, size, "%s%s", base, fs_database_suffixes[part]);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* rename(2) that never replaces: an aside name taken by an earlier restore
 * in the same second must not be lost. */
static int replace_rename_no_replace(const char *from, const char *to)
{
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -errno;
    /* A file system without RENAME_NOREPLACE: check, then rename. */
    if (access(to, F_OK) == 0)
        return -EEXIST;
    return rename(from, to) == 0 ? 0 : -errno;
}

static int replace_sync_directory_of(const char *path, struct error *err)
{
    char directory[PATH_MAX];
    snprintf(directory, sizeof directory, "%s", path);
    return fs_sync_directory(dirname(directory), err);
}

int replace_prepare(struct replacement *replacement, const char *path, struct error *err)
{
    memset(replacement, 0, sizeof *replacement);
    if (snprintf(replacement->path, sizeof replacement->path, "%s", path) >=
        (int)sizeof replacement->path)
        return error_set(err, -ENAMETOOLONG, "%s: path too long", path);
    for (int part = 0; part < REPLACE_PARTS; part++) {
        char name[PATH_MAX + 16];
        replace_part_path(name, sizeof name, path, part);
        if (lstat(name, &replacement->original[part]) == 0)
            replacement->existed[part] = true;
        else if (errno != ENOENT)
            return error_set(err, -errno, "%s: %s", name, strerror(errno));
    }
    return 0;
}

bool replace_has_parts(const struct replacement *replacement)
{
    for (int part = 0; part < REPLACE_PARTS; part++)
        if (replacement->existed[part])
            return true;
    return false;
}

/* PATH.replaced-STAMP, or PATH.replaced-STAMP.N when taken. */
static int replace_choose_aside(struct replacement *replacement, time_t now, struct error *err)
{
    char stamp[17];
    manifest_format_stamp(now, stamp);
    for (int attempt = 1; attempt < 100; attempt++) {
        char suffix[16] = "";
        if (attempt > 1)
            snprintf(suffix, sizeof suffix, ".%d", attempt);
        int n = snprintf(replacement->aside, sizeof replacement->aside, "%s.replaced-%s%s",
                         replacement->path, stamp, suffix);
        if (n < 0 || (size_t)n + 16 >= sizeof replacement->aside)
            return error_set(err, -ENAMETOOLONG, "%s: path too long to keep the old file aside",
                             replacement->path);
        bool taken = false;
        for (int part = 0; part < REPLACE_PARTS && !taken; part++) {
            char name[PATH_MAX + 16];
            struct stat st;
            replace_part_path(name, sizeof name, replacement->aside, part);
            taken = lstat(name, &st) == 0;
        }
        if (!taken)
            return 0;
    }
    return error_set(err, -EEXIST, "%s.replaced-%s and 98 more exist: remove old ones",
                     replacement->path, stamp);
}

int replace_move_aside(struct replacement *replacement, time_t now, struct error *err)
{
    int rc = replace_choose_aside(replacement, now, err);
    if (rc != 0)
        return rc;
    /* The file first: its companions without it are inert, while the file
     * without its -wal would show an old state to anyone who opened it. */
    for (int part = 0; part < REPLACE_PARTS; part++) {
        char from[PATH_MAX + 16], to[PATH_MAX + 16];
        if (!replacement->existed[part])
            continue;
        replace_part_path(from, sizeof from, replacement->path, part);
        replace_part_path(to, sizeof to, replacement->aside, part);
        rc = replace_rename_no_replace(from, to);
        if (rc != 0) {
            error_set(err, rc, "cannot move %s aside to %s: %s", from, to, strerror(-rc));
            struct error ignored = {0};
            replace_put_back(replacement, &ignored);
            return rc;
        }
        replacement->moved[part] = true;
    }
    return replace_sync_directory_of(replacement->path, err);
}

int replace_put_in_place(struct replacement *replacement, const char *from, struct error *err)
{
    /* Nothing of the old database may be left beside the new file. */
    for (int part = 0; part < REPLACE_PARTS; part++)
        if (replacement->existed[part] && !replacement->moved[part])
            return error_set(err, -EEXIST, "%s%s was not moved aside", replacement->path,
                             fs_database_suffixes[part]);
    int rc = fs_rename_durably(from, replacement->path, err);
    if (rc == 0)
        replacement->placed = true;
    return rc;
}

int replace_put_back(struct replacement *replacement, struct error *err)
{
    int result = 0;
    if (replacement->placed) {
        /* The new file's own -wal and -shm (from its check) go with it. */
        for (int part = REPLACE_PARTS - 1; part >= 0; part--) {
            char name[PATH_MAX + 16];
            replace_part_path(name, sizeof name, replacement->path, part);
            if (part > 0 || !replacement->moved[0])
                unlink(name);
        }
        replacement->placed = false;
    }
    for (int part = 0; part < REPLACE_PARTS; part++) {
        char from[PATH_MAX + 16], to[PATH_MAX + 16];
        if (!replacement->moved[part])
            continue;
        replace_part_path(from, sizeof from, replacement->aside, part);
        replace_part_path(to, sizeof to, replacement->path, part);
        /* rename, not no-replace: the new file at the path gives way. */
        if (rename(from, to) == 0) {
            replacement->moved[part] = false;
        } else if (result == 0) {
            result = error_set(err, -errno,
                               "could not put %s back to %s (%s): move it back by hand before "
                               "starting the application",
                               from, to, strerror(errno));
        }
    }
    struct error ignored = {0};
    replace_sync_directory_of(replacement->path, &ignored);
    return result;
}

void replace_describe_aside(const struct replacement *replacement, char *out, size_t size)
{
    size_t used = 0;
    int n = snprintf(out, size, "%s", replacement->aside);
    used = n > 0 ? (size_t)n : 0;
    const char *separator = " (with its ";
    for (int part = 1; part < REPLACE_PARTS && used < size; part++) {
        if (!replacement->moved[part])
            continue;
        n = snprintf(out + used, size - used, "%s%s", separator, fs_database_suffixes[part]);
        used += n > 0 ? (size_t)n : 0;
        separator = ", ";
    }
    if (strcmp(separator, ", ") == 0 && used < size)
        snprintf(out + used, size - used, ")");
}
