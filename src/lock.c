/*
 * lock.c: per-database advisory locks (see lock.h). Not a lock on the
 * managed database itself: SQLite's own locking protects the data; this one
 * only keeps two sqlprodd processes from running jobs on it at once.
 */
#include "lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"

static void lock_read_holder(int fd, char *holder, size_t holder_size)
{
    if (!holder || holder_size == 0)
        return;
    char text[512];
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    if (n <= 0) {
        snprintf(holder, holder_size, "another sqlprodd process");
        return;
    }
    text[n] = '\0';
    text[strcspn(text, "\n")] = '\0';
    snprintf(holder, holder_size, "%s", text);
}

int lock_acquire(struct database_lock *lock, const char *state_dir, const char *database,
                 const char *what, bool wait, const volatile sig_atomic_t *stop, char *holder,
                 size_t holder_size, struct error *err)
{
    char directory[4096], name[512];
    lock->fd = -1;
    if (fs_join(directory, sizeof directory, state_dir, "locks") != 0)
        return error_set(err, -ENAMETOOLONG, "state_dir %s: path too long", state_dir);
    int rc = fs_make_directories(directory, 0700, err);
    if (rc != 0)
        return rc;
    snprintf(name, sizeof name, "%s.lock", database);
    if (fs_join(lock->path, sizeof lock->path, directory, name) != 0)
        return error_set(err, -ENAMETOOLONG, "lock path for %s too long", database);
    int fd = open(lock->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return error_set(err, -errno, "cannot open lock file %s: %s", lock->path, strerror(errno));
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            rc = error_set(err, -errno, "cannot lock %s: %s", lock->path, strerror(errno));
            close(fd);
            return rc;
        }
        lock_read_holder(fd, holder, holder_size);
        if (!wait) {
            close(fd);
            return error_set(err, -EWOULDBLOCK, "database %s is busy: held by %s", database,
                             holder ? holder : "another sqlprodd process");
        }
        if (stop && *stop) {
            close(fd);
            return error_set(err, -ECANCELED, "stopped while waiting for the lock on %s", database);
        }
        /* Polling keeps this interruptible by *stop; waits are rare and short. */
        struct timespec pause = {0, 100 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    /* The holder line truncates the file: never a database someone named
     * NAME.lock inside state_dir/locks. */
    if (fs_fd_is_database(fd) == 1) {
        close(fd);
        return error_set(err, -EEXIST,
                         "refusing to use %s as a lock file: it is a SQLite database, not a "
                         "file sqlprodd wrote",
                         lock->path);
    }
    char stamp[32], text[512];
    time_t now = time(NULL);
    struct tm tm;
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    int length = snprintf(text, sizeof text, "pid %ld, %s, since %s\n", (long)getpid(), what, stamp);
    if (ftruncate(fd, 0) == 0 && pwrite(fd, text, (size_t)length, 0) < 0) {
        /* The holder description is a courtesy; the lock itself is held. */
    }
    lock->fd = fd;
    return 0;
}

void lock_release(struct database_lock *lock)
{
    if (lock->fd >= 0) {
        if (ftruncate(lock->fd, 0) != 0) {
            /* Harmless: the next holder overwrites it. */
        }
        flock(lock->fd, LOCK_UN);
        close(lock->fd);
        lock->fd = -1;
    }
}
