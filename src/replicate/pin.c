/*
 * pin.c: the shipper's hold on one database's WAL (pin.h).
 */
#include "replicate/pin.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <syslog.h>
#include <unistd.h>

#include "core/error.h"
#include "core/io.h"
#include "core/log.h"
#include "db/database.h"
#include "replicate/wal.h"

void pin_init(struct pin *pin, const struct database_config *db,
              const volatile sig_atomic_t *stop)
{
    *pin = (struct pin){.db = db, .stop = stop, .db_fd = -1, .shm_fd = -1};
}

void pin_close(struct pin *pin)
{
    pin_end(pin);
    if (pin->db_fd >= 0)
        close(pin->db_fd);
    if (pin->shm_fd >= 0)
        close(pin->shm_fd);
    pin->db_fd = pin->shm_fd = -1;
}

int pin_keep_open(const char *path, int *fd, struct stat *st)
{
    if (stat(path, st) != 0)
        return -errno;
    struct stat held;
    if (*fd >= 0 && fstat(*fd, &held) == 0 && held.st_ino == st->st_ino &&
        held.st_dev == st->st_dev)
        return 0;
    /* Never blocks on a FIFO swapped in after the stat; never keeps one. */
    int fresh = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fresh < 0)
        return -errno;
    if (fstat(fresh, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fresh);
        return -EINVAL;
    }
    if (*fd >= 0)
        close(*fd);
    *fd = fresh;
    return 0;
}

void pin_end(struct pin *pin)
{
    if (pin->connection) {
        sqlite3_exec(pin->connection, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close(pin->connection);
        pin->connection = NULL;
    }
}

int pin_read_transaction(const struct database_config *db, const volatile sig_atomic_t *stop,
                         sqlite3 **out, struct error *err)
{
    int rc = database_open(db, true, stop, out, err);
    if (rc < 0)
        return rc;
    /* A pin is kept open per replicated database, so kept small: no
     * lookaside slots (about 120 KiB a connection), and a read of the
     * header's schema cookie, which begins the read transaction without
     * parsing the application's schema. */
    sqlite3_db_config(*out, SQLITE_DBCONFIG_LOOKASIDE, NULL, 0, 0);
    if (sqlite3_exec(*out, "BEGIN; PRAGMA schema_version;", NULL, NULL, NULL) != SQLITE_OK) {
        rc = error_set(err, -EIO, "cannot begin a read transaction: %s", sqlite3_errmsg(*out));
        sqlite3_close(*out);
        *out = NULL;
    }
    return rc;
}

sqlite3 *pin_begin(struct pin *pin)
{
    sqlite3 *next = NULL;
    struct error failed = {0};
    if (pin_read_transaction(pin->db, pin->stop, &next, &failed) != 0) {
        log_event(LOG_WARNING, pin->db->name, "replicate", "cannot pin the WAL: %s",
                  failed.message);
        return NULL;
    }
    return next;
}

void pin_swap(struct pin *pin, sqlite3 *next)
{
    pin_end(pin);
    pin->connection = next;
}

bool pin_renew(struct pin *pin)
{
    sqlite3 *next = pin_begin(pin);
    if (!next)
        return false;
    pin_swap(pin, next);
    return true;
}

/* The -shm, kept open; -1 when there is none. */
static int shm_kept_open(struct pin *pin)
{
    char shm_path[PATH_MAX + 8];
    struct stat st;
    snprintf(shm_path, sizeof shm_path, "%s-shm", pin->db->path);
    return pin_keep_open(shm_path, &pin->shm_fd, &st) == 0 ? pin->shm_fd : -1;
}

/* Whether another process holds a lock on byte `offset` of `shm` that
 * conflicts with `type` (F_RDLCK: a write lock; F_WRLCK: any). */
static bool lock_held(int shm, off_t offset, short type)
{
    struct flock lock = {.l_type = type, .l_whence = SEEK_SET, .l_start = offset, .l_len = 1};
    if (fcntl(shm, F_GETLK, &lock) != 0)
        return false;
    return lock.l_type != F_UNLCK;
}

bool pin_wal_ends_at(struct pin *pin, uint64_t frame, const uint32_t salt[2])
{
    struct wal_index index;
    int shm = shm_kept_open(pin);
    return shm >= 0 && wal_index_read(shm, &index) == 0 && index.last_frame == frame &&
           index.salt[0] == salt[0] && index.salt[1] == salt[1];
}

bool pin_wal_restarted_since(struct pin *pin, const uint32_t salt[2])
{
    struct wal_index index;
    int shm = shm_kept_open(pin);
    return shm >= 0 && wal_index_read(shm, &index) == 0 && index.last_frame > 0 &&
           (index.salt[0] != salt[0] || index.salt[1] != salt[1]);
}

bool pin_other_readers(struct pin *pin)
{
    int shm = shm_kept_open(pin);
    for (int n = 1; shm >= 0 && n <= 4; n++)
        if (lock_held(shm, 120 + 3 + n, F_WRLCK))
            return true;
    return false;
}

bool pin_checkpointer_waits(struct pin *pin)
{
    int shm = shm_kept_open(pin);
    if (shm < 0)
        return false;
    /* Checkpoint lock, write lock, checkpoint lock again: one connection of
     * an application holds both only inside a FULL/RESTART/TRUNCATE
     * checkpoint, but a writer's transaction ending just as its PASSIVE
     * autocheckpoint begins would pass a single look at each. */
    return lock_held(shm, 121, F_WRLCK) && lock_held(shm, 120, F_WRLCK) &&
           lock_held(shm, 121, F_WRLCK);
}

struct write_wait {
    struct pin *pin;
    int64_t deadline_ms;
    bool gave_way;
};

static int write_wait_busy(void *context, int count)
{
    struct write_wait *wait = context;
    struct pin *pin = wait->pin;
    if ((pin->stop && *pin->stop) || io_monotonic_ms() >= wait->deadline_ms)
        return 0;
    if (pin->connection && pin_checkpointer_waits(pin)) {
        wait->gave_way = true;
        return 0;
    }
    io_sleep_ms(count < 4 ? 1 : 5, 1, pin->stop);
    return 1;
}

bool pin_begin_write(struct pin *pin, sqlite3 *writer, bool *gave_way)
{
    struct write_wait wait = {.pin = pin,
                              .deadline_ms = io_monotonic_ms() + pin->db->checkpoint.max_wait_ms};
    sqlite3_busy_handler(writer, write_wait_busy, &wait);
    bool begun = sqlite3_exec(writer, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
    /* `wait` lives on this stack: no handler may outlive it. */
    sqlite3_busy_handler(writer, NULL, NULL);
    *gave_way = wait.gave_way;
    return begun;
}
