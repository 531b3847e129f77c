/*
 * state_internal.h: what the parts of the state database (state.c,
 * state_packs.c) share; not for other modules.
 */
#ifndef SQLPRODD_DB_STATE_INTERNAL_H
#define SQLPRODD_DB_STATE_INTERNAL_H

#include <limits.h>
#include <sqlite3.h>

#include "core/error.h"

struct state {
    sqlite3 *db;
    char path[PATH_MAX];
};

/* An error naming the state database, what was being done, and the errno
 * SQLite saw. */
int state_fail(struct state *state, struct error *err, const char *doing);

/* Prepares, binds text/int64 arguments from a format string, and steps once.
 * Format letters: s = const char *, i = int64_t, d = double, t = time_t.
 * Returns SQLITE_ROW/SQLITE_DONE or an error; *out gets the statement when
 * the caller wants to read rows (then it must finalize it). */
int state_run(struct state *state, sqlite3_stmt **out, const char *sql, const char *types, ...);

#endif
