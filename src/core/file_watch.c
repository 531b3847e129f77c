#include "core/file_watch.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#define WATCH_EVENTS                                                                           \
    (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM |           \
     IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF)

struct watched_name {
    int wd;
    char name[NAME_MAX + 1];
    size_t tag;
};

struct file_watch {
    int inotify_fd, wake_fd;
    struct watched_name *names;
    size_t count, capacity;
    bool *changed; /* by tag, during one wait */
    size_t tags;   /* the highest tag + 1 */
};

int file_watch_open(struct file_watch **out)
{
    *out = NULL;
    struct file_watch *watch = calloc(1, sizeof *watch);
    if (!watch)
        return -ENOMEM;
    watch->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    watch->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (watch->inotify_fd < 0 || watch->wake_fd < 0) {
        int rc = -errno;
        file_watch_close(watch);
        return rc;
    }
    *out = watch;
    return 0;
}

void file_watch_close(struct file_watch *watch)
{
    if (!watch)
        return;
    if (watch->inotify_fd >= 0)
        close(watch->inotify_fd);
    if (watch->wake_fd >= 0)
        close(watch->wake_fd);
    free(watch->names);
    free(watch->changed);
    free(watch);
}

static int add_name(struct file_watch *watch, int wd, const char *name, const char *suffix,
                    size_t tag)
{
    if (watch->count == watch->capacity) {
        size_t capacity = watch->capacity ? watch->capacity * 2 : 16;
        struct watched_name *names = realloc(watch->names, capacity * sizeof *names);
        if (!names)
            return -ENOMEM;
        watch->names = names;
        watch->capacity = capacity;
    }
    struct watched_name *entry = &watch->names[watch->count];
    int n = snprintf(entry->name, sizeof entry->name, "%s%s", name, suffix);
    if (n < 0 || (size_t)n >= sizeof entry->name)
        return -ENAMETOOLONG;
    entry->wd = wd;
    entry->tag = tag;
    watch->count++;
    return 0;
}

/* The directory of `path` watched, and its last component with each
 * suffix SQLite gives a companion file. */
static int add_directory_of(struct file_watch *watch, const char *path, size_t tag)
{
    char directory[PATH_MAX];
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    if (slash == path)
        snprintf(directory, sizeof directory, "/");
    else if (slash)
        snprintf(directory, sizeof directory, "%.*s", (int)(slash - path), path);
    else
        snprintf(directory, sizeof directory, ".");
    int wd = inotify_add_watch(watch->inotify_fd, directory, WATCH_EVENTS);
    if (wd < 0)
        return -errno;
    static const char *const suffixes[] = {"", "-wal", "-journal"};
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        int rc = add_name(watch, wd, name, suffixes[i], tag);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int file_watch_add(struct file_watch *watch, const char *path, size_t tag)
{
    if (tag >= watch->tags) {
        bool *changed = realloc(watch->changed, (tag + 1) * sizeof *changed);
        if (!changed)
            return -ENOMEM;
        memset(changed + watch->tags, 0, (tag + 1 - watch->tags) * sizeof *changed);
        watch->changed = changed;
        watch->tags = tag + 1;
    }
    int rc = add_directory_of(watch, path, tag);
    /* SQLite opens the file a symbolic link names and puts its -wal there. */
    char real[PATH_MAX];
    if (rc == 0 && realpath(path, real) && strcmp(real, path) != 0)
        rc = add_directory_of(watch, real, tag);
    return rc;
}

static void mark(struct file_watch *watch, int wd, const char *name)
{
    for (size_t i = 0; i < watch->count; i++)
        if (wd < 0 || (watch->names[i].wd == wd && (!name || !strcmp(watch->names[i].name, name))))
            watch->changed[watch->names[i].tag] = true;
}

static int drain(struct file_watch *watch)
{
    char buffer[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    /* Bounded: a file written without pause beside ours must not keep the
     * caller here; what is left is read by the next wait. */
    for (int reads = 0; reads < 16; reads++) {
        ssize_t got = read(watch->inotify_fd, buffer, sizeof buffer);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return errno == EAGAIN ? 0 : -errno;
        for (char *at = buffer; at < buffer + got;) {
            const struct inotify_event *event = (const struct inotify_event *)at;
            if (event->mask & IN_Q_OVERFLOW)
                mark(watch, -1, NULL); /* events were lost: everything changed */
            else if (event->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED))
                mark(watch, event->wd, NULL); /* the directory itself went */
            else if (event->len > 0)
                mark(watch, event->wd, event->name);
            at += sizeof *event + event->len;
        }
    }
    return 0;
}

int file_watch_wait(struct file_watch *watch, int64_t timeout_ms, bool events_wake,
                    file_watch_changed changed, void *context)
{
    struct pollfd fds[2] = {{.fd = watch->wake_fd, .events = POLLIN},
                            {.fd = watch->inotify_fd, .events = POLLIN}};
    int timeout = timeout_ms < 0 ? -1 : timeout_ms > INT_MAX ? INT_MAX : (int)timeout_ms;
    if (poll(fds, events_wake ? 2 : 1, timeout) < 0 && errno != EINTR)
        return -errno;
    uint64_t wakes;
    if (read(watch->wake_fd, &wakes, sizeof wakes) < 0 && errno != EAGAIN)
        return -errno;
    int rc = drain(watch);
    for (size_t tag = 0; tag < watch->tags; tag++)
        if (watch->changed[tag]) {
            watch->changed[tag] = false;
            changed(context, tag);
        }
    return rc;
}

void file_watch_wake(struct file_watch *watch)
{
    uint64_t one = 1;
    /* A full counter already means a pending wake. */
    ssize_t ignored = write(watch->wake_fd, &one, sizeof one);
    (void)ignored;
}
