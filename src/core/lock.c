/*
 * lock.c: the per-database locks and the agent lock (see lock.h). Not a
 * lock on the managed database itself: SQLite's own locking protects the
 * data; these only keep sqlprodd processes out of each other's way.
 */
#include "core/lock.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "core/fsutil.h"

#define LOCK_AGENT_FILE "agent.lock"

static const char *lock_file_type(mode_t mode)
{
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISSOCK(mode))
        return "a socket";
    if (S_ISCHR(mode) || S_ISBLK(mode))
        return "a device";
    return "not a regular file";
}

/*
 * Opens a lock file that is ours to rewrite, or says why not. A lock file
 * is truncated and rewritten by whoever takes it, so one that is a symbolic
 * link or a second name of a database would have that database replaced by
 * a line of text; one that is a FIFO would hang open(2) for good.
 */
static int lock_open_owned(const char *path, int flags, mode_t mode, struct error *err)
{
    int fd = open(path, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, mode);
    if (fd < 0) {
        int saved = errno;
        if (saved == ELOOP)
            return error_set(err, -ELOOP,
                             "lock file %s is a symbolic link; sqlprodd writes only its own "
                             "files there: remove it",
                             path);
        if (saved == EISDIR)
            return error_set(err, -EISDIR,
                             "lock file %s is a directory, not a sqlprodd lock file: remove it",
                             path);
        return error_set(err, -saved, "cannot open lock file %s: %s", path, strerror(saved));
    }
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        rc = error_set(err, -errno, "cannot stat lock file %s: %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        rc = error_set(err, -EINVAL, "lock file %s is %s, not a sqlprodd lock file: remove it",
                       path, lock_file_type(st.st_mode));
    } else if (st.st_nlink != 1) {
        rc = error_set(err, -EINVAL,
                       "lock file %s has %lu names (hard links): it may be another file, such as "
                       "a database; sqlprodd will not rewrite it: remove it",
                       path, (unsigned long)st.st_nlink);
    } else if (fs_fd_is_database(fd) == 1) {
        rc = error_set(err, -EINVAL,
                       "lock file %s holds an SQLite database, not a sqlprodd lock: move it away",
                       path);
    }
    if (rc != 0) {
        close(fd);
        return rc;
    }
    return fd;
}

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

static time_t lock_parse_time(const char *text)
{
    struct tm tm = {0};
    const char *end = strptime(text, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return end ? timegm(&tm) : 0;
}

/* "pid 1234, WHAT, since 2026-...Z": the pid (0 when absent) and, when the
 * line has one, the time; *since is left alone otherwise. */
static void lock_parse_holder_line(const char *text, long *pid, time_t *since)
{
    if (sscanf(text, "pid %ld,", pid) != 1)
        *pid = 0;
    const char *at = strstr(text, ", since ");
    if (at)
        *since = lock_parse_time(at + strlen(", since "));
}

static void lock_format_time(time_t t, char *out, size_t out_size)
{
    struct tm tm;
    strftime(out, out_size, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
}

/* The holder description is a courtesy for others; the lock itself is held. */
static void lock_describe_holder(int fd, const char *what)
{
    char stamp[32], text[1024];
    lock_format_time(time(NULL), stamp, sizeof stamp);
    int length =
        snprintf(text, sizeof text, "pid %ld, %s, since %s\n", (long)getpid(), what, stamp);
    if (length >= (int)sizeof text)
        length = (int)sizeof text - 1;
    if (ftruncate(fd, 0) == 0 && pwrite(fd, text, (size_t)length, 0) < 0) {
    }
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
    int fd = lock_open_owned(lock->path, O_RDWR | O_CREAT, 0600, err);
    if (fd < 0)
        return fd;
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
    lock_describe_holder(fd, what);
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

/* Is there a FLOCK on this device and inode in the kernel's list? -1 when
 * the list cannot be read. */
static int lock_listed_in_proc(const struct stat *st)
{
    FILE *list = fopen("/proc/locks", "re");
    if (!list)
        return -1;
    char line[256];
    int found = 0;
    while (!found && fgets(line, sizeof line, list)) {
        char kind[16];
        unsigned int major_number, minor_number;
        unsigned long inode;
        /* "1: FLOCK  ADVISORY  WRITE 1234 08:01:123456 0 EOF"; blocked
         * waiters ("1: -> FLOCK ...") do not hold it and do not match. */
        if (sscanf(line, "%*d: %15s %*s %*s %*d %x:%x:%lu", kind, &major_number, &minor_number,
                   &inode) == 4 &&
            strcmp(kind, "FLOCK") == 0 && major_number == major(st->st_dev) &&
            minor_number == minor(st->st_dev) && inode == (unsigned long)st->st_ino)
            found = 1;
    }
    fclose(list);
    return found;
}

void lock_probe_database(const char *state_dir, const char *database, struct lock_holder *holder)
{
    char path[4096], name[512], text[600];
    struct error err = {0};
    struct stat st;
    memset(holder, 0, sizeof *holder);
    snprintf(name, sizeof name, "locks/%s.lock", database);
    if (fs_join(path, sizeof path, state_dir, name) != 0)
        return;
    int fd = lock_open_owned(path, O_RDONLY, 0, &err);
    if (fd < 0)
        return;
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    int listed = fstat(fd, &st) == 0 ? lock_listed_in_proc(&st) : -1;
    close(fd);
    /* Released locks are truncated: an empty file is a free lock. */
    if (n <= 0)
        return;
    text[n] = '\0';
    text[strcspn(text, "\n")] = '\0';
    snprintf(holder->line, sizeof holder->line, "%s", text);
    lock_parse_holder_line(text, &holder->pid, &holder->since);
    if (listed >= 0)
        holder->held = listed == 1;
    else /* a holder killed mid-job leaves its line behind, and a dead pid */
        holder->held = holder->pid > 0 && (kill((pid_t)holder->pid, 0) == 0 || errno == EPERM);
}

/* ---- the agent lock --------------------------------------------------- */

static int lock_agent_path(char *path, size_t path_size, const char *state_dir, struct error *err)
{
    if (fs_join(path, path_size, state_dir, LOCK_AGENT_FILE) != 0)
        return error_set(err, -ENAMETOOLONG, "state_dir %s: path too long", state_dir);
    return 0;
}

int lock_agent_acquire(struct database_lock *lock, const char *state_dir, const char *what,
                       struct error *err)
{
    lock->fd = -1;
    int rc = lock_agent_path(lock->path, sizeof lock->path, state_dir, err);
    if (rc == 0)
        rc = fs_make_directories(state_dir, 0700, err);
    if (rc != 0)
        return rc;
    /* 0644: `status` run by another user may read who runs and since when. */
    int fd = lock_open_owned(lock->path, O_RDWR | O_CREAT, 0644, err);
    if (fd < 0)
        return fd;
    struct flock range = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_OFD_SETLK, &range) != 0) {
        int saved = errno;
        char holder[512];
        lock_read_holder(fd, holder, sizeof holder);
        close(fd);
        if (saved == EAGAIN || saved == EACCES)
            return error_set(err, -EWOULDBLOCK,
                             "another sqlprodd agent already runs on state_dir %s (%s); one "
                             "agent per state_dir: stop that one first, or give this "
                             "configuration its own state_dir",
                             state_dir, holder);
        return error_set(err, -saved, "cannot lock %s: %s", lock->path, strerror(saved));
    }
    lock_describe_holder(fd, what);
    lock->fd = fd;
    return 0;
}

void lock_agent_release(struct database_lock *lock)
{
    if (lock->fd < 0)
        return;
    /* "stopped" on a second line: status then tells a clean stop from a
     * crash (the kernel drops the lock either way; only this line differs). */
    char line[64], stamp[32];
    struct stat st;
    lock_format_time(time(NULL), stamp, sizeof stamp);
    int length = snprintf(line, sizeof line, "stopped %s\n", stamp);
    if (fstat(lock->fd, &st) == 0 && pwrite(lock->fd, line, (size_t)length, st.st_size) < 0) {
    }
    close(lock->fd); /* drops the OFD lock */
    lock->fd = -1;
}

void lock_agent_probe(const char *state_dir, struct agent_probe *probe)
{
    char path[4096], text[1024];
    struct error err = {0};
    memset(probe, 0, sizeof *probe);
    probe->presence = AGENT_UNKNOWN;
    if (lock_agent_path(path, sizeof path, state_dir, &err) != 0) {
        snprintf(probe->problem, sizeof probe->problem, "%s", err.message);
        return;
    }
    int fd = lock_open_owned(path, O_RDONLY, 0, &err);
    if (fd < 0) {
        if (fd == -ENOENT)
            probe->presence = AGENT_NOT_RUNNING; /* no agent ever ran on this state_dir */
        else if (fd == -EACCES)
            snprintf(probe->problem, sizeof probe->problem,
                     "%s; run status as the agent's user or as root", err.message);
        else
            snprintf(probe->problem, sizeof probe->problem, "%s", err.message);
        return;
    }
    /* A test, not a take: the kernel answers whether anybody holds it. */
    struct flock range = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_OFD_GETLK, &range) != 0) {
        snprintf(probe->problem, sizeof probe->problem, "cannot test lock %s: %s", path,
                 strerror(errno));
        close(fd);
        return;
    }
    probe->presence = range.l_type == F_UNLCK ? AGENT_NOT_RUNNING : AGENT_RUNNING;
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    close(fd);
    text[n > 0 ? n : 0] = '\0';
    char *stopped = strchr(text, '\n');
    if (stopped)
        *stopped++ = '\0';
    snprintf(probe->holder, sizeof probe->holder, "%s", text);
    lock_parse_holder_line(text, &probe->pid, &probe->started);
    /* A "stopped" line left by an agent that is running again is the old one's. */
    if (probe->presence == AGENT_NOT_RUNNING && stopped && strncmp(stopped, "stopped ", 8) == 0)
        probe->stopped = lock_parse_time(stopped + 8);
}
