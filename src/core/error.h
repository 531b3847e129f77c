/*
 * error.h: how failures travel in sqlprodd.
 *
 * Every fallible function returns 0 on success or a negative errno-like code,
 * and writes a human sentence into a caller-provided struct error: the object
 * (database, file, key), what went wrong and, where we know it, what to do.
 * Nothing below main.c prints or exits on its own.
 */
#ifndef SQLPRODD_ERROR_H
#define SQLPRODD_ERROR_H

#include <stddef.h>

struct error {
    int code;           /* negative errno-like value, 0 when unset */
    char message[1024]; /* one line, no trailing newline */
};

/* Fills err (when not NULL) and returns code, so callers can write
 * `return error_set(err, -EIO, "...")`. */
int error_set(struct error *err, int code, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes an existing message with more context: "backup app: " + old. */
int error_prefix(struct error *err, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

void error_clear(struct error *err);

#endif
