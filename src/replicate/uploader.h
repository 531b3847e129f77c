/*
 * uploader.h: puts one database's queued replica objects on its replicate
 * target, then rewrites index.json (sqlprodd-format(5)).
 *
 * The shipper (shipper.h) reads the WAL, spools and queues; the uploader
 * only drains that queue, on a thread of its own, so that a slow target
 * never delays the reading that stamps each commit's seen_at (a commit read
 * late is restorable only from a later instant). Each has its own state.db
 * connection and the queue in state.db is their only shared state.
 *
 * Order (what a reader of the bucket relies on): objects in queue order, a
 * segment before its sidecar; index.json last, describing the generations
 * as they were when the last uploaded object was queued, never one ahead.
 * Retention (window.h) runs once the queue is empty: generations that left
 * replicate.window are dropped from index.json before their objects are
 * deleted, so the index never names a generation that is going.
 *
 * What it is not: no thread and no retry timing (the agent's replication
 * loop decides when to call again after an error).
 */
#ifndef SQLPRODD_REPLICATE_UPLOADER_H
#define SQLPRODD_REPLICATE_UPLOADER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "core/error.h"

struct replica_uploader;
struct state;
struct target_pool;

/* Opens the uploader of `db` (which has replicate.target), and gets its
 * target from `targets` to report at once one that cannot be opened.
 * `state` and `targets` are borrowed, as for replica_open: one connection
 * and one pool (target_pool.h) for every uploader of the caller's thread,
 * whose target_pool_rest runs only between replica_upload calls. Spool
 * files are the shipper's. */
int replica_uploader_open(const struct database_config *db, const char *state_dir,
                          struct state *state, struct target_pool *targets,
                          const volatile sig_atomic_t *stop, struct replica_uploader **out,
                          struct error *err);
void replica_uploader_close(struct replica_uploader *uploader);

/* When replica_upload has work of its own (the retention window) without
 * anything newly queued: now, or the next retention time. */
int64_t replica_uploader_next_ms(const struct replica_uploader *uploader, int64_t now_ms);

/* Puts every object queued now, in order, then index.json. *uploaded: the
 * number of objects put. 0, or a negative error (what is not put stays
 * queued, in order; a later call continues). */
int replica_upload(struct replica_uploader *uploader, int64_t now_ms, int *uploaded,
                   struct error *err);

#endif
