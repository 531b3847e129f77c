/*
 * state_packs.h: what compaction (replicate/compactor.h) records in the
 * state database: the objects on the target that it may pack, the packs it
 * made, and the keys left to delete once a pack replaced them.
 *
 * The items of a database form a stack ordered by position, oldest first: a
 * loose object joins at the top when the uploader has put it; a pack takes
 * the position of the first item it merged. A pack is "pending" from before
 * its upload (its id names it) until the one transaction that puts it in
 * its members' place and dooms their keys, so a kill at any point leaves
 * either the members or the pack as the truth, and the other to delete.
 */
#ifndef SQLPRODD_DB_STATE_PACKS_H
#define SQLPRODD_DB_STATE_PACKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "db/state.h"

struct state_pack_item {
    int64_t id, position;
    uint32_t level; /* 0: a loose object */
    bool final;     /* never merged again (a full pack) */
    char name[64];  /* level 0: the key under DB/replica/; else the pack's name */
    uint32_t first_generation, last_generation;
    int64_t bytes, objects;
    char sha256[65];
};

/* In one transaction: the queued object `queue_id` is on the target and,
 * with `loose` (not NULL), becomes an item compaction may pack. */
int state_replica_object_done_packable(struct state *state, const char *database, int64_t queue_id,
                                       const struct state_pack_item *loose, struct error *err);
/* The items that are not pending, oldest first; caller frees *out. */
int state_pack_items(struct state *state, const char *database, struct state_pack_item **out,
                     size_t *count, struct error *err);
/* The pending packs a kill left; caller frees *out. */
int state_pack_pending(struct state *state, const char *database, struct state_pack_item **out,
                       size_t *count, struct error *err);
/* A pending pack at `pack->position` of `pack->level`, generations
 * first..last: *id names it. */
int state_pack_begin(struct state *state, const char *database, const struct state_pack_item *pack,
                     int64_t *id, struct error *err);
/* In one transaction, when every member is still an item (retention may
 * have forgotten some meanwhile: then *done is false and nothing changes):
 * the members go, the pack (name, bytes, objects, sha256 of `pack`) stops
 * being pending, and `doomed` (the members' keys) are left to delete. */
int state_pack_complete(struct state *state, const char *database, int64_t id,
                        const struct state_pack_item *pack, const int64_t *members, size_t count,
                        char *const *doomed, size_t doomed_count, bool *done, struct error *err);
/* A pending pack given up: its row goes, its keys (uploaded or not) are
 * left to delete. */
int state_pack_drop(struct state *state, const char *database, int64_t id, char *const *doomed,
                    size_t doomed_count, struct error *err);
/* Whether every one of `ids` is still an item (retention forgets items). */
int state_pack_items_exist(struct state *state, const int64_t *ids, size_t count, bool *all,
                           struct error *err);
int state_pack_mark_final(struct state *state, const int64_t *ids, size_t count, struct error *err);
/* At most `limit` keys left to delete; caller frees each and *out. */
int state_doomed_keys(struct state *state, const char *database, size_t limit, char ***out,
                      size_t *count, struct error *err);
int state_doomed_done(struct state *state, const char *database, const char *key,
                      struct error *err);

#endif
