/*
 * advice.h: the commands sqlprodd prints for an operator to run (a fix in a
 * health reason, a job's warning, a refused configuration). Each is built
 * here, word by word, so that it works when pasted into sh(1) as printed:
 * every word that needs it is single-quoted (a path with a space, a quote or
 * a '$' included), and `sqlprodd` carries the -c of the configuration that
 * printed it when that is not the default one.
 *
 * Messages print a command between backquotes: `sqlite3 /w/app.db 'VACUUM'`.
 * The command ends at the first backquote outside shell quotes, which is how
 * tests/integration/test_printed_fixes.py extracts and runs each one.
 *
 * Not for deciding what the fix is: the module that finds the problem does.
 */
#ifndef SQLPRODD_ADVICE_H
#define SQLPRODD_ADVICE_H

#include <stddef.h>

#include "config/config.h"

/* Room for a command with two quoted paths. */
#define ADVICE_MAX 8600

/* Writes `word` to out as one sh word: unchanged when it holds only
 * characters sh never interprets, else in single quotes with each ' written
 * as '\''. Returns out ("" when it does not fit: a cut command must not be
 * printed as if it were whole). */
const char *advice_quote(const char *word, char *out, size_t size);

/* "WORD WORD ...": the words quoted and joined; the list ends with NULL. */
const char *advice_command(char *out, size_t size, const char *word, ...) __attribute__((sentinel));

/* "sqlprodd [-c CONFIG] WORD ...": the list ends with NULL. CONFIG is made
 * absolute, since the operator's shell is not where the agent started. */
const char *advice_sqlprodd(char *out, size_t size, const struct config *config, const char *word,
                            ...) __attribute__((sentinel));

#endif
