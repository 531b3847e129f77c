/*
 * fsutil.h: the few file-system operations that must be done carefully:
 * directories created with a mode, durable writes (write, fsync, rename,
 * fsync the directory, as Redis's rdb.c does), and temp-file naming so that a
 * crash never leaves a half-written file under a final name.
 */
#ifndef SQLPRODD_FSUTIL_H
#define SQLPRODD_FSUTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/error.h"

/* Suffix of every temp file sqlprodd writes; start-up removes leftovers. */
#define FS_TEMP_SUFFIX ".sqlprodd-tmp"

/* mkdir -p with `mode` for each directory it creates (existing ones untouched). */
int fs_make_directories(const char *path, mode_t mode, struct error *err);

/* fsync(2) a directory, so a rename inside it is durable. */
int fs_sync_directory(const char *directory, struct error *err);

/* fsync the file at `path` (opened read-only). */
int fs_sync_file(const char *path, struct error *err);

/* rename(2) then fsync the destination's directory. */
int fs_rename_durably(const char *from, const char *to, struct error *err);

/* 1 when the file open on fd starts with the 16-byte SQLite header
 * "SQLite format 3\0", 0 when it does not, -errno when it cannot be read. */
int fs_fd_is_database(int fd);

/*
 * The second guard behind config_paths.c: 0 when sqlprodd may replace or
 * truncate `path`: absent, a symlink (renaming over it replaces the link,
 * not what it points to), or a regular file that is not a SQLite database.
 * Else -EEXIST with err naming the path and what it is: a database, or a
 * FIFO, socket, device or directory, which an operator put there for
 * another purpose (as root, a rename over "/dev/null" would replace the
 * device). -errno when it cannot be read to tell. Uses lstat, then opens
 * with O_NONBLOCK|O_NOFOLLOW: it never blocks on a FIFO.
 */
int fs_refuse_to_replace(const char *path, struct error *err);

/* Creates `temp`, the temp file for `path`, as a new file with exactly `mode`
 * and returns its descriptor (or a negative code with err set). Refuses when
 * `path` or `temp` is a database or not a regular file (fs_refuse_to_replace),
 * and first removes a stale `temp` left by a crash: O_EXCL after the unlink
 * never writes through a link someone put there. */
int fs_create_temp_beside(const char *path, const char *temp, mode_t mode, struct error *err);

/* Writes `data` to path via path + FS_TEMP_SUFFIX, fsync, rename, fsync dir.
 * Refuses (-EEXIST) what fs_refuse_to_replace refuses, at path or as a stale
 * temp file: sqlprodd never writes those through this. */
int fs_write_file_atomically(const char *path, const void *data, size_t size, mode_t mode,
                             struct error *err);

/* Removes every file ending in FS_TEMP_SUFFIX directly inside `directory`;
 * returns how many were removed (>= 0) or a negative error. A missing
 * directory is not an error. */
int fs_remove_temp_files(const char *directory, struct error *err);

/* Size of the file at path + suffix (suffix "" or "-wal"), 0 when it does
 * not exist: a missing -wal file is an empty log, not an error. */
int64_t fs_file_size(const char *path, const char *suffix);

/* A SQLite database is its file and the companions SQLite makes beside it:
 * "", "-wal", "-shm", "-journal", the file first. Whoever checks, moves or
 * protects a database handles all of them: a -wal or hot -journal left
 * beside another file would be replayed into it. */
#define FS_DATABASE_PARTS 4
extern const char *const fs_database_suffixes[FS_DATABASE_PARTS];

/* "a FIFO", "a socket", "a character device", ... for a message. */
const char *fs_file_kind(mode_t mode);

/* Opens `path` read-only only if it is a regular file (a symlink to one is
 * fine): a FIFO, device, socket or directory is refused without blocking,
 * "PATH is a FIFO, not WHAT". Returns the descriptor or a negative code. */
int fs_open_regular(const char *path, const char *what, struct error *err);

/* Reads a whole (small) regular file; *data is NUL-terminated, caller frees. */
int fs_read_file(const char *path, char **data, size_t *size, struct error *err);

/* Joins directory and name with exactly one '/'. Returns -ENAMETOOLONG if it does not fit. */
int fs_join(char *out, size_t out_size, const char *directory, const char *name);

#endif
