/*
 * openers.h: which processes have a file open, found as fuser(1) does, by
 * comparing the device and inode behind every /proc/PID/fd/N with the
 * file's. Restore uses it to refuse replacing a database that an
 * application still has open (its -wal and -shm included).
 *
 * Not a lock: a process may open the file right after the scan. It answers
 * "is the application stopped?", which the operator was asked to do.
 */
#ifndef SQLPRODD_OPENERS_H
#define SQLPRODD_OPENERS_H

#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "core/error.h"

#define OPENERS_LISTED 8

struct opener {
    pid_t pid;
    char command[32]; /* /proc/PID/comm */
};

struct opener_list {
    struct opener items[OPENERS_LISTED];
    size_t count;      /* processes found, may exceed OPENERS_LISTED */
    size_t unreadable; /* processes whose open files we may not see */
};

/* Scans every process but this one for an open descriptor of any of the
 * `file_count` files (given by their stat). 0, or a negative error when
 * /proc cannot be read at all. */
int openers_find(const struct stat *files, size_t file_count, struct opener_list *list,
                 struct error *err);

/* "pid 1234 (myapp), pid 99 (sqlite3)". */
void openers_describe(const struct opener_list *list, char *out, size_t size);

#endif
