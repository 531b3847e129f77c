/*
 * replica_objects.h: the objects of a replica as restore sees them, loose
 * or packed (sqlprodd-format(5) PACKS, replicate/format.h).
 *
 * Compaction moves base.json, segments and sidecars of runs of generations
 * into DB/replica/packs/gA-gB.N.pack, described by gA-gB.N.pack.json, then
 * deletes the loose copies. This layer sits between replica.c and the
 * target: it lists a generation's segments loose and packed alike, and
 * gets an object loose when it is listed loose, else cuts it out of the
 * newest pack holding it. A pack counts only when its manifest is listed
 * too. Of a pack, only the span the restore replays is downloaded, with
 * one ranged GET, to a temp file removed by replica_objects_close: from
 * its first object of the restore's generations to its last (see
 * replica_objects_expect_from). The pack's listed size is checked against
 * its manifest first, and each object cut out against its own SHA-256 (a
 * span has no checksum of its own). Manifests are read only for the
 * generations asked about (the restore's chain), so memory follows the
 * objects the restore needs, not the replica's length.
 *
 * Compaction runs while a restore reads: a GET that finds nothing (a loose
 * object deleted once packed, a small pack deleted once merged) is retried
 * once from a new listing of the packs (replica_objects_relist).
 *
 * What it is not: it never writes to the target; it does not check an
 * object against its sidecar or base.json (replica.c does, on the bytes
 * cut out); it is used from one thread (the restore's downloads of loose
 * objects run in replica.c's pool).
 */
#ifndef SQLPRODD_RESTORE_REPLICA_OBJECTS_H
#define SQLPRODD_RESTORE_REPLICA_OBJECTS_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "offsite/target.h"

struct replica_objects;

/* Names a new temp file for `what` (the restore's own naming). */
typedef void (*replica_objects_temp_path)(void *context, const char *what, char out[PATH_MAX]);

/* Lists DB/replica/packs/ of `database` on `target` (described as
 * `target_name` in messages). Objects of generations after `newest` are
 * never kept (0: no bound). */
int replica_objects_open(struct target *target, const char *target_name, const char *database,
                         uint32_t newest, replica_objects_temp_path temp_path, void *temp_context,
                         struct replica_objects **out, struct error *err);
/* The first generation the restore replays (its base's, as index.json
 * gives the chain): a pack's objects of older generations are not
 * downloaded with its span. Only a hint: an object outside the span is
 * still fetched, on its own. 0 (the default): from the pack's start. */
void replica_objects_expect_from(struct replica_objects *objects, uint32_t oldest);
/* Generations first..last are not replayed (a page delta stands for them):
 * a pack's span leaves their objects on the target. 0 or -ENOMEM. */
int replica_objects_skip(struct replica_objects *objects, uint32_t first, uint32_t last);

/* Removes the packs downloaded. NULL is fine. */
void replica_objects_close(struct replica_objects *objects);

/* Lists DB/replica/gN/wal/ as target_list would if nothing were packed:
 * the loose objects, then the packed ones not listed loose, with the
 * sizes their manifests give. The packs are listed again after the loose
 * objects (one more LIST per generation), so that objects compaction packs
 * and deletes in between are seen in their pack. */
int replica_objects_list_segments(struct replica_objects *objects, uint32_t generation,
                                  struct target_listing *out, struct error *err);

/* Whether `key` (a full key, DB/replica/...) is to be cut from a pack: held
 * by one and not listed loose by replica_objects_list_segments. Reads the
 * manifests of the packs of its generation first. */
int replica_objects_packed(struct replica_objects *objects, const char *key, bool *packed,
                           struct error *err);

/* Gets `key` into a new file at `path` (must not exist; on failure it does
 * not exist afterwards): from the newest pack holding it when `packed`,
 * else loose; a loose or packed copy not found is looked for once more
 * after a new listing of the packs. -ENOENT names the object. */
int replica_objects_get(struct replica_objects *objects, const char *key, const char *path,
                        bool packed, struct error *err);

/* After a GET of `key` found nothing: the packs listed again (at most once
 * per call of replica_objects_relist by the caller's batch). */
int replica_objects_relist(struct replica_objects *objects, struct error *err);

/* Without downloading anything: 0 when `key` is held by a listed pack
 * whose manifest is there and whose listed size equals its manifest's;
 * *size is the object's. -ENOENT or -EBADMSG naming the pack otherwise. */
int replica_objects_check_packed(struct replica_objects *objects, const char *key, int64_t *size,
                                 struct error *err);

/* Whether a listed pack with its manifest names `generation` in its range
 * (no manifest read; it may hold only part of the generation):
 * replica_list_windows uses it to tell a packed base.json from a missing
 * one. */
bool replica_objects_cover(const struct replica_objects *objects, uint32_t generation);

/* Ranged GETs of packs so far, and the bytes they downloaded. */
size_t replica_objects_packs_fetched(const struct replica_objects *objects, int64_t *bytes);

#endif
