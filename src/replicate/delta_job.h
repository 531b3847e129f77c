/*
 * delta_job.h: a closed span (delta.h) built into a page delta on a thread
 * of its own, so that the shipper goes on shipping every second while
 * seconds or minutes of pages are read, compressed and sealed.
 *
 * The thread only makes files in the spool: for each delta, the plain
 * delta (a dot name, which the spool's clean-up and its size leave alone,
 * removed once compressed), then DB/replica/deltas/gA-gB.pages.gz[.age] as
 * a spool file, then its manifest (.pages.json), written last; and the
 * levels' page files (dot names too). The shipper's own thread
 * records them in state.db once the job is done, so that nothing reaches
 * the queue half made; a kill before that leaves spool files no queue row
 * names, which replica_open removes.
 */
#ifndef SQLPRODD_REPLICATE_DELTA_JOB_H
#define SQLPRODD_REPLICATE_DELTA_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include "archive/sealed.h"
#include "core/error.h"
#include "db/state.h"
#include "replicate/delta.h"
#include "replicate/format.h"

struct delta_job;

/* Takes `pages` (a closed span) over, emptied, and starts the thread,
 * which merges it into `levels` (DELTA_LEVELS - 1 of them, the caller's,
 * untouched by the caller until the job is finished or cancelled) and makes
 * the deltas due: the span's, and each level's whose reach (every_ms times
 * DELTA_LEVEL_FACTOR^k) is up. `recipients` must stay valid as long. */
int delta_job_start(struct delta_job **out, struct delta_pages *pages, struct delta_pages *levels,
                    int64_t every_ms, const char *spool, const char *database,
                    struct sealed_recipients recipients, int64_t now_ms, struct error *err);
bool delta_job_done(const struct delta_job *job);
/* Joins the finished job and frees it: 0 with the objects to queue (each
 * delta, then its manifest: 2 * DELTA_LEVELS at most) and the manifests'
 * records, or the build's error (its files removed, the levels emptied). */
int delta_job_finish(struct delta_job *job, struct state_replica_object *objects,
                     size_t *object_count, struct format_delta *records, size_t *record_count,
                     struct error *err);
/* Stops the job (its compression gives up within a block), joins it,
 * removes its files and frees it. */
void delta_job_cancel(struct delta_job *job);

/* The names a span and a job use in the spool, removed at start-up. */
#define DELTA_SPOOL_OPEN   ".delta-span"
#define DELTA_SPOOL_CLOSED ".delta-closed"
#define DELTA_SPOOL_PLAIN  ".delta-plain"
#define DELTA_SPOOL_LEVEL  ".delta-level" /* + 2, 3: the levels */

#endif
