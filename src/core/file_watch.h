/*
 * file_watch.h: sleep until a file changes, a deadline passes or another
 * thread wakes us, with inotify(7).
 *
 * The replication reader uses it to leave a quiet database alone: no round
 * and no look at its locks until its -wal or database file is written,
 * created, removed or renamed over. Each watched file carries a tag (the
 * caller's index); a wait reports the tags whose files had an event. It
 * watches the file's directory, not the file, so a file renamed over it or
 * created later is seen too. Not a general event loop, and no timers
 * beyond the one deadline of each wait.
 */
#ifndef SQLPRODD_FILE_WATCH_H
#define SQLPRODD_FILE_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct file_watch;

/* 0 or -errno (no inotify: the caller keeps looking on its own). */
int file_watch_open(struct file_watch **out);
void file_watch_close(struct file_watch *watch);

/* Reports `tag` when `path`, `path`-wal or `path`-journal is written,
 * created, removed, renamed or has its attributes changed, in the
 * directory of `path` and, for a symbolic link, of the file it names.
 * 0 or -errno (ENOSPC: fs.inotify.max_user_watches reached). */
int file_watch_add(struct file_watch *watch, const char *path, size_t tag);

/* Called once per tag with an event, in no particular order. */
typedef void (*file_watch_changed)(void *context, size_t tag);

/* Waits up to `timeout_ms` (< 0: no deadline) for a wake and, when
 * `events_wake`, for an event; then reports every tag with an event since
 * the last wait (events that did not wake it included). A queue overflow
 * reports every tag. 0, or -errno of poll(2) or read(2). */
int file_watch_wait(struct file_watch *watch, int64_t timeout_ms, bool events_wake,
                    file_watch_changed changed, void *context);

/* Ends the current or next wait at once; safe from any thread. */
void file_watch_wake(struct file_watch *watch);

#endif
