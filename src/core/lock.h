/*
 * lock.h: the locks under STATE_DIR.
 *
 * One lock per database under STATE_DIR/locks, so a one-off job and the
 * running agent never work on the same database at once. flock(2) on a
 * file: the kernel drops it when the holder dies, so no stale locks after a
 * crash. The file also says who holds it, for the message the waiter prints.
 *
 * One agent lock, STATE_DIR/agent.lock, held by `sqlprodd run` for as long as
 * it runs: a second agent on the same state_dir is refused, and `status`
 * tells whether an agent runs (and since when) by testing the lock, never by
 * trusting a pid written in a file. It is an open-file-description lock
 * (fcntl F_OFD_SETLK) rather than flock(2) because F_OFD_GETLK can test it
 * without taking it: a `status` that took it even for a moment could make
 * an agent starting at that moment refuse to run.
 *
 * Lock files are the only files these functions write, and they write only
 * files that are theirs: never through a symbolic link, never a FIFO or
 * device (opened without blocking), never a file with a second name (a hard
 * link to a database), never a file that holds an SQLite database.
 */
#ifndef SQLPRODD_LOCK_H
#define SQLPRODD_LOCK_H

#include <signal.h>
#include <stdbool.h>
#include <time.h>

#include "core/error.h"

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

struct lock_holder {
    bool held;
    long pid;
    time_t since;
    char line[512]; /* "pid 1234, sqlprodd run (backup), since 2026-...Z" */
};

/*
 * Whether the lock of `database` is held now, and by whom, without taking
 * it (a status that took it, even briefly, could make a job skip): the
 * kernel's list of flock(2) locks in /proc/locks, or, where that cannot be
 * read, whether the pid written in the file is alive. Reads only.
 */
void lock_probe_database(const char *state_dir, const char *database, struct lock_holder *holder);

/*
 * Takes STATE_DIR/agent.lock for the life of the agent, without waiting.
 * -EWOULDBLOCK when another agent holds it; the message names that agent
 * (pid, config, since when). `what` describes us ("sqlprodd run -c FILE").
 */
int lock_agent_acquire(struct database_lock *lock, const char *state_dir, const char *what,
                       struct error *err);
/* Notes the clean stop in the file (for `status`), then drops the lock. */
void lock_agent_release(struct database_lock *lock);

enum agent_presence {
    AGENT_RUNNING,     /* an agent holds the lock */
    AGENT_NOT_RUNNING, /* nobody holds it (or there is no lock file) */
    AGENT_UNKNOWN,     /* the lock file cannot be tested: `problem` says why */
};

struct agent_probe {
    enum agent_presence presence;
    long pid;          /* the last agent's pid, 0 when the file does not say */
    time_t started;    /* when it started, 0 when unknown */
    time_t stopped;    /* when it stopped cleanly; 0 if it did not (or is running) */
    char holder[512];  /* "pid 1234, sqlprodd run -c FILE, since ..." or "" */
    char problem[600]; /* AGENT_UNKNOWN: what went wrong and what to do */
};

/* Tests the agent lock without taking it and without blocking; reads only. */
void lock_agent_probe(const char *state_dir, struct agent_probe *probe);

#endif
