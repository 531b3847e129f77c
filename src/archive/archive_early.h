/*
 * archive_early.h: compressing a backup's copy while VACUUM INTO still
 * writes it.
 *
 * VACUUM INTO keeps one core busy; on a machine with more than one, a
 * thread here compresses the blocks that copy_watch hands out (those far
 * enough behind the writing) into an unnamed spool file beside the copy.
 * Once the copy is finished, archive_compress_format (given the early
 * compression in archive_options.early) takes each block's member from the spool
 * instead of compressing the block again, if both of these hold:
 *   - the watch saw no write to the block since it was read;
 *   - the block of the finished file has the CRC-32 of what was compressed
 *     (a second check, independent of the watch).
 * Otherwise it compresses the block as usual. The archive is therefore
 * always made of the finished file's bytes; early compression only saves
 * time. The spool has no name: it disappears with its descriptor, even
 * after a crash.
 */
#ifndef SQLPRODD_ARCHIVE_EARLY_H
#define SQLPRODD_ARCHIVE_EARLY_H

#include <stdint.h>

#include "archive/archive.h"
#include "archive/copy_watch.h"
#include "core/error.h"

struct archive_early;

/* What early compression did, for the log. */
struct archive_early_stats {
    uint64_t compressed; /* blocks compressed while the copy was written */
    uint64_t rewritten;  /* of those, blocks written to again afterwards */
    uint64_t taken;      /* members taken into the archive */
    uint64_t mismatched; /* blocks the watch passed but whose CRC differed: 0 unless
                            the watch missed a write */
};

/* Starts the thread, which compresses blocks of `source` (the copy being
 * written, watched by `watch`) in `format` at `level` until the watch ends
 * or io->stop is set; io->background lowers its priority. The spool is
 * created in `spool_directory`. */
int archive_early_start(const char *source, const char *spool_directory, struct copy_watch *watch,
                        enum archive_format format, int level, const struct io_context *io,
                        struct archive_early **out, struct error *err);

/* Call after copy_watch_end: waits for the thread, then forgets every block
 * the watch saw written to after it was compressed. */
void archive_early_finish(struct archive_early *early);

void archive_early_get_stats(const struct archive_early *early, struct archive_early_stats *stats);

/* Closes the spool. NULL is fine. */
void archive_early_free(struct archive_early *early);

#endif
