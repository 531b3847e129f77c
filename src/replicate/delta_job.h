/*
 * delta_job.h: a closed span (delta.h) built into a page delta on a thread
 * of its own, so that the shipper goes on shipping every second while
 * seconds or minutes of pages are read, compressed and sealed.
 *
 * The thread only makes files in the spool: the plain delta (a dot name,
 * which the spool's clean-up and its size leave alone, removed once
 * compressed), then DB/replica/deltas/gA-gB.pages.gz[.age] as a spool file,
 * then its manifest (.pages.json), written last. The shipper's own thread
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

/* Takes `pages` over (emptied) and starts the thread. `recipients` must
 * stay valid until delta_job_finish or delta_job_cancel. */
int delta_job_start(struct delta_job **out, struct delta_pages *pages, const char *spool,
                    const char *database, struct sealed_recipients recipients, int64_t now_ms,
                    struct error *err);
bool delta_job_done(const struct delta_job *job);
/* Joins the finished job and frees it: 0 with the two objects to queue
 * (the delta, then its manifest) and the manifest's record, or the build's
 * error (its files removed). */
int delta_job_finish(struct delta_job *job, struct state_replica_object objects[2],
                     struct format_delta *out, struct error *err);
/* Stops the job (its compression gives up within a block), joins it,
 * removes its files and frees it. */
void delta_job_cancel(struct delta_job *job);

/* The names a span and a job use in the spool, removed at start-up. */
#define DELTA_SPOOL_OPEN   ".delta-span"
#define DELTA_SPOOL_CLOSED ".delta-closed"
#define DELTA_SPOOL_PLAIN  ".delta-plain"

#endif
