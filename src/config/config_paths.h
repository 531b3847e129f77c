/*
 * config_paths.h: no write of the agent may land on something it does not
 * own.
 *
 * The agent writes state_dir, metrics.textfile (and its temp file), each
 * database's backup directory DIR/NAME, each `dir` target's path, and the
 * database files themselves (checkpoint, vacuum, enforce). Each of these is
 * resolved the way the kernel and SQLite will resolve it (symlinks of the
 * existing part, then '.', '..' and '//' of the rest) and compared by device
 * and inode where it exists, so that two names of one file or directory are
 * seen as one. A config is refused when a written path is, lies inside or
 * contains a place another setting owns: a database and its -wal, -shm and
 * -journal, a backup directory, a target directory, state_dir.
 *
 * Read-only: lstat, stat and realpath only. It never opens a file, so a FIFO
 * or a database on a hung mount cannot block it. Not for checking that the
 * places are usable (writable, mounted): that is `sqlprodd check`.
 */
#ifndef SQLPRODD_CONFIG_PATHS_H
#define SQLPRODD_CONFIG_PATHS_H

#include <stddef.h>

#include "config/config.h"
#include "core/error.h"

/*
 * Checks every pair of places in a loaded config. Returns 0 when no write
 * lands on another setting's place, -EINVAL with one line per overlap
 * ("FILE:LINE: key: what, naming the other key and its line") added to diag
 * (which may be NULL) in file order, or -ENOMEM.
 */
int config_paths_check(const struct config *config, struct config_diagnostics *diag);

/*
 * Whether `restore DATABASE --to path` would write over something the
 * config owns: another database or any database's -wal/-shm/-journal, a
 * backup or target directory, state_dir, the metrics textfile. The live path
 * of `database` itself is allowed here (restore decides about it, with
 * --force). Returns 0 or -EPERM with err naming the setting and its line.
 */
int config_paths_check_restore_target(const struct config *config,
                                      const struct database_config *database, const char *path,
                                      struct error *err);

/*
 * The absolute path that `path` (relative paths start at the current
 * directory) names: the longest existing prefix resolved by realpath(3),
 * then '.', '..' and empty components of the rest folded as SQLite folds
 * them. 0, or -ENAMETOOLONG / -errno.
 */
int config_paths_normalise(const char *path, char *out, size_t out_size);

#endif
