/*
 * shell_command.h: running the real tools (gzip, zstd, cmp, sqlite3) that a
 * user would check an archive with, from the cmocka tests that need them.
 */
#ifndef SQLPRODD_SHELL_COMMAND_H
#define SQLPRODD_SHELL_COMMAND_H

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

/* Runs a shell command and returns its exit status (-1 if it did not exit).
 * Callers pass paths they made under mkdtemp, or quote them. */
static inline int run(const char *format, ...) __attribute__((format(printf, 1, 2)));
static inline int run(const char *format, ...)
{
    char command[4 * PATH_MAX];
    va_list args;
    va_start(args, format);
    vsnprintf(command, sizeof command, format, args);
    va_end(args);
    int status = system(command);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#endif
