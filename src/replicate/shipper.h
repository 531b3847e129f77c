/*
 * shipper.h: continuous shipping of one database's WAL to its replicate
 * target (docs/replication-design.md, section 2; layout: sqlprodd-format(5)).
 *
 * One round (replica_round), every `interval`:
 *   1. look: a stat of the database and its -wal; nothing changed since the
 *      last round and nothing queued: done (an idle database costs a stat);
 *   2. resume at the saved position (wal_reader_resume) and ship each next
 *      range of whole commits (segment_plan_next): copy and gzip it into a
 *      spool file (fsync), then record position, generation, the objects and
 *      each commit's seen_at in state.db in ONE transaction;
 *   3. keep the pin: a read transaction, renewed each round, so that nobody
 *      but the agent can restart the WAL under frames not yet read;
 *   4. when the WAL passes a size, or an application's own FULL/RESTART/
 *      TRUNCATE checkpoint waits for us, make the reset lossless: under the
 *      write lock (or while the application's checkpointer holds it) ship
 *      to the last commit, end the pin, checkpoint, and mark the generation
 *      ended, so that the next header (salt-1 + 1) continues from its end;
 *   5. the uploader (uploader.h, another thread) drains the queue.
 * A break (the WAL restarted by someone else, a chain that does not follow,
 * the database replaced or out of WAL mode) starts a new generation from a
 * fresh base, never a silent gap: logged, counted per reason in state.db.
 *
 * What it is not: no thread, no clock of its own (now is a parameter), no
 * decision about when a round runs (the agent's replication thread does).
 */
#ifndef SQLPRODD_REPLICATE_SHIPPER_H
#define SQLPRODD_REPLICATE_SHIPPER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "core/error.h"
#include "db/state.h"

struct replica;

/* STATE_DIR/replica/DATABASE, where the shipper spools and the uploader
 * reads: 0, or -ENAMETOOLONG naming the database. */
int replica_spool_directory(const char *state_dir, const char *database, char *out, size_t size,
                            struct error *err);

/* Bytes waiting in the spool `spool` (replica_spool_directory) for the
 * target, but the newest base file (a one-time cost of a new generation
 * that a database larger than spool_max needs whatever the bound) and page
 * deltas (bounded by the room they find on the disk, delta_room in
 * shipper.c, and never a reason to break). What replicate.spool_max bounds.
 * 0 for a missing spool; -errno. */
int64_t replica_spool_bytes(const char *spool);

/* What a restore from the target would lose now, in ms: 0 when every
 * commit the agent has read is on the target with its index.json (an idle
 * database is not late), else now minus the time the newest commit on the
 * target was seen (before the first: when the first base was taken). -1
 * when nothing was shipped yet. Metrics and status both show this. */
int64_t replica_lag_ms(const struct state_replica *row, int64_t now_ms);

/* Opens the shipper of `db` (which has replicate.target) and its spool
 * directory STATE_DIR/replica/NAME. `state` is borrowed: one state.db
 * connection serves every shipper of the caller's thread (a connection each
 * cost about 0.2 MiB per replicated database), and must outlive them.
 * Removes spool files a kill left behind that no queued object names. */
int replica_open(const struct database_config *db, const char *state_dir, struct state *state,
                 const volatile sig_atomic_t *stop, struct replica **out, struct error *err);
void replica_close(struct replica *replica);

/* One round as above. With spool_max reached (the target away for long),
 * it lets the WAL go instead (a break, "spool_full": the application's
 * checkpoints go on and its WAL stays small) and ships nothing until the
 * uploads have drained the spool to half the bound; then a new generation
 * starts from a fresh base.
 * `force_reset`: do the lossless reset of step 4 now
 * (the checkpoint job's "ship, then checkpoint"). 0, or a negative error
 * (the round is retried next interval; nothing is lost). */
int replica_round(struct replica *replica, int64_t now_ms, bool force_reset, struct error *err);

/* Between rounds, every few ms: an application's FULL/RESTART/TRUNCATE
 * checkpoint waiting for the pin gets step 4 at once (ship to its end, let
 * go) instead of waiting up to `interval`. Costs three fcntl(F_GETLK) when
 * nothing waits. 0 or a negative error, as replica_round. */
int replica_watch(struct replica *replica, int64_t now_ms, struct error *err);

/* Nothing to watch until a file of the database changes: the generation
 * is ended where the WAL ends and the pin cannot hold up any checkpoint.
 * A round ends the generation once nothing new was seen for 10 s. */
bool replica_quiet(const struct replica *replica);

/* What status and metrics show; filled from state.db. */
struct replica_summary {
    uint32_t generation;
    int64_t last_seen_at_ms;
    int64_t shipped_bytes;
    int64_t queued;
    char last_break[32];
    int64_t last_break_at_ms;
};

/* Checks that `db` can be replicated now: in WAL mode. The message names
 * where replicate.target was written. 0 or -EINVAL. */
int replica_check_database(const struct database_config *db, struct error *err);

#endif
