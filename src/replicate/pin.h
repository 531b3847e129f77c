/*
 * pin.h: the shipper's hold on one database's WAL, and what it sees of
 * other connections' locks.
 *
 * The pin is a read transaction on a connection of its own: while it is
 * held nobody can restart the WAL under commits the shipper has not read
 * (docs/replication-design.md 2.3). It moves forward by beginning a new one
 * before the old one goes, never leaving a moment unpinned. The locks of
 * other connections are read from the -shm with F_GETLK (SQLite's unix VFS
 * locks byte 120 + n for lock n: 0 write, 1 checkpoint, 3 + m read mark m).
 *
 * POSIX locks belong to the process, and close() of ANY descriptor of a
 * file drops them all, the pin's read mark included: the database and its
 * -shm are therefore opened once (pin_keep_open) and closed only after the
 * connections (pin_close).
 */
#ifndef SQLPRODD_REPLICATE_PIN_H
#define SQLPRODD_REPLICATE_PIN_H

#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "config/config.h"

struct pin {
    const struct database_config *db;
    const volatile sig_atomic_t *stop;
    sqlite3 *connection; /* the read transaction; NULL: not pinned */
    int db_fd, shm_fd;   /* kept open: see above; -1 until opened */
};

void pin_init(struct pin *pin, const struct database_config *db,
              const volatile sig_atomic_t *stop);
/* Ends the pin, then closes the descriptors kept open. */
void pin_close(struct pin *pin);

/* `path` opened once and kept in *fd, reopened only when the path names
 * another file (a replaced database); *st: the path's stat. 0, -EINVAL
 * for anything but a regular file (never opened blocking), or -errno. */
int pin_keep_open(const char *path, int *fd, struct stat *st);

/* A read transaction on a connection of its own, in *out: it sees the
 * database as of now and keeps seeing it until rolled back. 0 or -errno. */
int pin_read_transaction(const struct database_config *db, const volatile sig_atomic_t *stop,
                         sqlite3 **out, struct error *err);

/* A new read transaction on a connection of its own (logged when it
 * cannot be had); the caller keeps the old pin until pin_swap. */
sqlite3 *pin_begin(struct pin *pin);
/* `next` (from pin_begin) becomes the pin; the old one goes only now. */
void pin_swap(struct pin *pin, sqlite3 *next);
/* pin_begin then pin_swap: false, and the old pin kept, on failure. */
bool pin_renew(struct pin *pin);
void pin_end(struct pin *pin);

/* Whether the wal-index says the WAL's last commit is frame `frame` of the
 * generation with salts `salt`: read after pin_begin, it proves the new
 * pin's snapshot ends there. */
bool pin_wal_ends_at(struct pin *pin, uint64_t frame, const uint32_t salt[2]);

/* Whether the wal-index says the WAL was restarted since the generation
 * with salts `salt`, and holds a frame of the new one. */
bool pin_wal_restarted_since(struct pin *pin, const uint32_t salt[2]);

/* Whether another process holds a read mark 1..4: the WAL cannot restart
 * at the next write then, and may restart later, after a writer appended. */
bool pin_other_readers(struct pin *pin);

/* Whether an application's FULL/RESTART/TRUNCATE checkpoint waits for the
 * pin: another process holds both the write and the checkpoint lock. A hint
 * of when to yield, never a proof of what was appended. */
bool pin_checkpointer_waits(struct pin *pin);

/* BEGIN IMMEDIATE on `writer` (a connection of this process), waiting up
 * to checkpoint.max_wait like any of the agent's connections, but giving
 * way at once (*gave_way) to an application checkpoint waiting for the
 * pin: waiting would hold both up until one timed out. */
bool pin_begin_write(struct pin *pin, sqlite3 *writer, bool *gave_way);

#endif
