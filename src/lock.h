/*
 * lock.h: one lock per database under STATE_DIR/locks, so a one-off job and
 * the running agent never work on the same database at once. flock(2) on a
 * file: the kernel drops it when the holder dies, so no stale locks after a
 * crash. The file also says who holds it, for the message the waiter prints.
 */
#ifndef SQLPRODD_LOCK_H
#define SQLPRODD_LOCK_H

#include <signal.h>
#include <stdbool.h>

#include "error.h"

struct database_lock {
    int fd;
    char path[4096];
};

/*
 * Takes the lock for `database`. With wait = false returns -EWOULDBLOCK at
 * once when held, with `holder` (may be NULL) describing the holder
 * ("pid 1234, sqlprodd run, since 2026-11-25T08:00:00Z"). With wait = true
 * blocks until it is free or *stop becomes non-zero (-ECANCELED).
 * `what` describes us for others ("sqlprodd backup").
 */
int lock_acquire(struct database_lock *lock, const char *state_dir, const char *database,
                 const char *what, bool wait, const volatile sig_atomic_t *stop, char *holder,
                 size_t holder_size, struct error *err);
void lock_release(struct database_lock *lock);

#endif
