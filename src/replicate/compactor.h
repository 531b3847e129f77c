/*
 * compactor.h: merges a replica's small objects into packs
 * (sqlprodd-format(5), PACKS), so that a day of replication leaves tens of
 * objects on the target, not hundreds of thousands, and a restore reads a
 * few dozen (about a hundred for a writer of a TiB of gzip'd WAL a day,
 * whose packs are full at PACK_FULL_BYTES: design 2.7, end).
 *
 * Log-structured: what the uploader put (segments, sidecars, base.json; never
 * a base file) joins a stack of items. When the newest PACK_FANOUT_LOOSE
 * items are loose objects, they become one pack of level 1; when the newest
 * PACK_FANOUT items are packs of one level L, they become one of level L + 1.
 * A pack that would exceed PACK_FULL_OBJECTS objects or PACK_FULL_BYTES is
 * not made: its would-be members are full and stay as they are. So the
 * stack holds at most PACK_FANOUT - 1 packs of each level, and a restore to
 * any instant reads the full packs since its base, at most 3 packs per
 * level, and at most PACK_FANOUT_LOOSE - 1 loose objects.
 *
 * Each merge is safe against a kill at any point: the members are read
 * back from the target, streamed into the pack's upload (pack_stream.h: no
 * local copy of the pack) and checked against the SHA-256 recorded when
 * they were put, the pack and then its manifest are uploaded, one state.db
 * transaction puts the pack in its members' place, and only then are the
 * members deleted (a kill before that deletion leaves copies, which
 * restore tells apart by their identical bytes; the next replica_compact deletes
 * them). A restore that meets a member deleted under it lists again.
 *
 * What it is not: no thread of its own (the agent's compaction thread,
 * agent/replication.c, calls it after uploads), and no compaction under
 * Object Lock, where nothing could be deleted before its lock ends and packs
 * would only add copies.
 */
#ifndef SQLPRODD_REPLICATE_COMPACTOR_H
#define SQLPRODD_REPLICATE_COMPACTOR_H

#include <signal.h>
#include <stdbool.h>

#include "config/config.h"
#include "core/error.h"

#define PACK_FANOUT_LOOSE 16
#define PACK_FANOUT       4
#define PACK_FULL_OBJECTS 65536
#define PACK_FULL_BYTES   (64LL << 30)

struct replica_compactor;
struct target_pool;

/* Whether `db` is compacted: it replicates with replicate.compact, and not
 * under Object Lock. */
bool replica_compacts(const struct database_config *db);

/* Opens the compactor of `db` for one turn: a state.db connection, and the
 * target from `targets` (target_pool.h; borrowed, the caller's thread's,
 * not rested before replica_compactor_close). */
int replica_compactor_open(const struct database_config *db, const char *state_dir,
                           struct target_pool *targets, const volatile sig_atomic_t *stop,
                           struct replica_compactor **out, struct error *err);
/* Gives up what a kill left half done: a pending pack (its keys left to
 * delete) and, on a dir target, the temp file of its cut upload. Once per
 * agent, before the first merge; 0 or a negative error. */
int replica_compactor_recover(struct replica_compactor *compactor, struct error *err);
void replica_compactor_close(struct replica_compactor *compactor);

/* Makes every pack that is due, then deletes what they replaced. *packs:
 * the packs made. 0, or a negative error (a later call starts over). */
int replica_compact(struct replica_compactor *compactor, int *packs, struct error *err);

#endif
