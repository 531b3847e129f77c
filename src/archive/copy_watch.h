/*
 * copy_watch.h: watching VACUUM INTO write a backup's copy, so that the
 * copy can be compressed while it is still being written.
 *
 * VACUUM INTO is one thread of SQLite's that keeps one core busy for
 * seconds per GiB while the other cores wait for the finished file. The
 * watch is a thin SQLite VFS ("sqlprodd-watch") over the default one: it
 * passes every call through and, for the one file it was made for, notes
 * where each write lands. A reader asks it when a block of the file is far
 * enough behind the writing to be worth compressing (copy_watch_claim), and
 * afterwards whether anything wrote to that block since it was read
 * (copy_watch_changed). SQLite rewrites a few pages until the very end (page
 * 1, the root pages, upper b-tree levels), so a claimed block can change:
 * the caller then compresses it again from the finished file.
 *
 * Exact by construction: every write to the file goes through xWrite or
 * xTruncate here, and a write is noted under the same lock that marks a block
 * as being read, so either the read sees the write or the block is marked
 * changed.
 */
#ifndef SQLPRODD_COPY_WATCH_H
#define SQLPRODD_COPY_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define COPY_WATCH_VFS_NAME "sqlprodd-watch"

/* The unit of claims and changes; archive.c compresses blocks of this size. */
#define COPY_WATCH_BLOCK_BYTES (1024 * 1024)

/* How far behind the highest byte written a block must end before it is
 * handed out. SQLite writes a b-tree's interior pages late, when its page
 * cache spills them: traced on a 100 MiB copy with the default cache, 4.7
 * MiB behind the highest write; only page 1 and the root pages (block 0,
 * never handed out) come later, at the commit. A block handed out too early
 * is only compressed twice. */
#define COPY_WATCH_MARGIN_BYTES (8 * 1024 * 1024)

struct copy_watch;

/* Starts watching `path` (a file that does not exist yet) for blocks below
 * `expected_bytes` (writes beyond are ignored: those blocks are never
 * claimed). Registers the VFS on first use. */
int copy_watch_create(const char *path, int64_t expected_bytes, struct copy_watch **out,
                      struct error *err);

/* Stops watching; the VFS stays registered for the next copy. NULL is fine. */
void copy_watch_destroy(struct copy_watch *watch);

/* The SQLite URI that opens `path` through the watch ("file:...?vfs=..."),
 * for VACUUM INTO on a connection opened with SQLITE_OPEN_URI; percent-encoded,
 * so it never holds a quote. -ENAMETOOLONG if `size` is too small. */
int copy_watch_uri(const struct copy_watch *watch, char *out, size_t size);

/* What the VFS calls after each write to the watched file (public for the
 * tests, which write files the way SQLite would). */
void copy_watch_note_write(struct copy_watch *watch, int64_t offset, int64_t size);

/* The writer is done, or failed: wakes a reader waiting in claim. */
void copy_watch_end(struct copy_watch *watch);

/* Waits until block `block` ends COPY_WATCH_MARGIN_BYTES behind the highest
 * byte written, then marks it as being read: any later write to it makes it
 * changed. False, at once, when the writer has ended or the block is beyond
 * expected_bytes: the reader leaves the rest for the finished file. */
bool copy_watch_claim(struct copy_watch *watch, uint64_t block);

/* True once block `block` has been claimed (for the tests). */
bool copy_watch_claimed(struct copy_watch *watch, uint64_t block);

/* True if block `block` was written to after it was claimed (or was never
 * claimed): what was read of it then is not what the file holds. */
bool copy_watch_changed(struct copy_watch *watch, uint64_t block);

#endif
