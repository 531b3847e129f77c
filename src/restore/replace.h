/*
 * replace.h: putting a verified file in the place of an existing SQLite
 * database, keeping the old one aside until the new one is verified in
 * place, and putting the old one back exactly as it was when anything fails.
 *
 * A database is the file and its companions (-wal, -shm, -journal): a -wal
 * or hot -journal left beside a new file would be replayed into it, which
 * is corruption. So all four move aside together, to PATH.replaced-STAMP
 * and PATH.replaced-STAMP-wal ...: the same directory (rename is atomic and
 * costs no space), and names SQLite pairs again if the old database is
 * opened to salvage rows. The live path never holds a partly written file:
 * it is empty for a moment, then holds the whole new file.
 *
 * Not for deciding whether replacing is allowed (no process may have the
 * files open: restore checks that with openers.h) nor for making the file.
 */
#ifndef SQLPRODD_REPLACE_H
#define SQLPRODD_REPLACE_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <time.h>

#include "core/error.h"
#include "core/fsutil.h"

#define REPLACE_PARTS FS_DATABASE_PARTS /* the file, -wal, -shm, -journal */

struct replacement {
    char path[PATH_MAX];
    char aside[PATH_MAX]; /* PATH.replaced-STAMP, "" until something moved */
    bool existed[REPLACE_PARTS];
    struct stat original[REPLACE_PARTS]; /* lstat of each part that existed */
    bool moved[REPLACE_PARTS];
    bool placed; /* the new file is at path */
};

/* Finds which parts exist at `path` (lstat: a link is not followed). */
int replace_prepare(struct replacement *replacement, const char *path, struct error *err);

/* Whether anything exists at the path. */
bool replace_has_parts(const struct replacement *replacement);

/* Moves every existing part aside, the file first. On failure what moved
 * is put back. */
int replace_move_aside(struct replacement *replacement, time_t now, struct error *err);

/* Renames `from` to the path and fsyncs the directory. */
int replace_put_in_place(struct replacement *replacement, const char *from, struct error *err);

/* Undoes whatever was done: the new file (if placed) is removed, and the
 * parts return under their names. Says in `err` where anything that could
 * not return is. */
int replace_put_back(struct replacement *replacement, struct error *err);

/* "PATH.replaced-STAMP (with its -wal, -shm)" for the operator. */
void replace_describe_aside(const struct replacement *replacement, char *out, size_t size);

#endif
