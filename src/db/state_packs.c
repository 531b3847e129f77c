/*
 * state_packs.c: compaction's records in the state database (state_packs.h).
 */
#include "db/state_packs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/state_internal.h"

#define ITEM_COLUMNS                                                                               \
    "id, position, level, final, name, first_generation, last_generation, bytes, objects, "        \
    "sha256"

static void state_pack_read(sqlite3_stmt *row, struct state_pack_item *item)
{
    memset(item, 0, sizeof *item);
    item->id = sqlite3_column_int64(row, 0);
    item->position = sqlite3_column_int64(row, 1);
    item->level = (uint32_t)sqlite3_column_int64(row, 2);
    item->final = sqlite3_column_int(row, 3) != 0;
    snprintf(item->name, sizeof item->name, "%s", (const char *)sqlite3_column_text(row, 4));
    item->first_generation = (uint32_t)sqlite3_column_int64(row, 5);
    item->last_generation = (uint32_t)sqlite3_column_int64(row, 6);
    item->bytes = sqlite3_column_int64(row, 7);
    item->objects = sqlite3_column_int64(row, 8);
    snprintf(item->sha256, sizeof item->sha256, "%s", (const char *)sqlite3_column_text(row, 9));
}

static int state_pack_select(struct state *state, const char *database, int pending,
                             struct state_pack_item **out, size_t *count, struct error *err)
{
    sqlite3_stmt *row = NULL;
    size_t used = 0, capacity = 0;
    struct state_pack_item *list = NULL;
    *out = NULL;
    *count = 0;
    int rc = state_run(state, &row,
                       "SELECT " ITEM_COLUMNS " FROM replica_pack_items WHERE database = ?1"
                       " AND pending = ?2 ORDER BY position, id",
                       "si", database, (int64_t)pending);
    while (rc == SQLITE_ROW) {
        if (used == capacity) {
            capacity = capacity ? 2 * capacity : 16;
            struct state_pack_item *grown = realloc(list, capacity * sizeof *list);
            if (!grown) {
                sqlite3_finalize(row);
                free(list);
                return error_set(err, -ENOMEM, "out of memory");
            }
            list = grown;
        }
        state_pack_read(row, &list[used++]);
        rc = sqlite3_step(row);
    }
    sqlite3_finalize(row);
    if (rc != SQLITE_DONE) {
        free(list);
        return state_fail(state, err, "cannot read the replica's packs");
    }
    *out = list;
    *count = used;
    return 0;
}

int state_pack_items(struct state *state, const char *database, struct state_pack_item **out,
                     size_t *count, struct error *err)
{
    return state_pack_select(state, database, 0, out, count, err);
}

int state_pack_pending(struct state *state, const char *database, struct state_pack_item **out,
                       size_t *count, struct error *err)
{
    return state_pack_select(state, database, 1, out, count, err);
}

static int state_pack_insert(struct state *state, const char *database,
                             const struct state_pack_item *item, int pending, int64_t position)
{
    return state_run(state, NULL,
                     "INSERT INTO replica_pack_items (database, position, level, final, pending,"
                     " name, first_generation, last_generation, bytes, objects, sha256)"
                     " VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                     "siiisiiiis", database, position, (int64_t)item->level, (int64_t)pending,
                     item->name, (int64_t)item->first_generation, (int64_t)item->last_generation,
                     item->bytes, item->objects, item->sha256);
}

int state_replica_object_done_packable(struct state *state, const char *database, int64_t queue_id,
                                       const struct state_pack_item *loose, struct error *err)
{
    if (sqlite3_exec(state->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return state_fail(state, err, "cannot begin");
    if (state_run(state, NULL, "DELETE FROM replica_queue WHERE id = ?1", "i", queue_id) !=
        SQLITE_DONE)
        goto fail;
    /* A loose object's position is its own id: the newest item. */
    if (loose && (state_pack_insert(state, database, loose, 0, 0) != SQLITE_DONE ||
                  state_run(state, NULL,
                            "UPDATE replica_pack_items SET position = id WHERE id ="
                            " last_insert_rowid()",
                            "") != SQLITE_DONE))
        goto fail;
    if (sqlite3_exec(state->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    return 0;
fail:;
    int rc = state_fail(state, err, "cannot update the replica queue");
    sqlite3_exec(state->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int state_pack_begin(struct state *state, const char *database, const struct state_pack_item *pack,
                     int64_t *id, struct error *err)
{
    if (state_pack_insert(state, database, pack, 1, pack->position) != SQLITE_DONE)
        return state_fail(state, err, "cannot record a pack");
    *id = sqlite3_last_insert_rowid(state->db);
    return 0;
}

static int state_doom(struct state *state, const char *database, char *const *keys, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (state_run(state, NULL,
                      "INSERT OR IGNORE INTO replica_doomed (database, key) VALUES (?1, ?2)", "ss",
                      database, keys[i]) != SQLITE_DONE)
            return -1;
    }
    return 0;
}

int state_pack_complete(struct state *state, const char *database, int64_t id,
                        const struct state_pack_item *pack, const int64_t *members, size_t count,
                        char *const *doomed, size_t doomed_count, bool *done, struct error *err)
{
    *done = false;
    if (sqlite3_exec(state->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return state_fail(state, err, "cannot begin");
    for (size_t i = 0; i < count; i++) {
        sqlite3_stmt *row = NULL;
        int rc =
            state_run(state, &row, "SELECT 1 FROM replica_pack_items WHERE id = ?1 AND pending = 0",
                      "i", members[i]);
        sqlite3_finalize(row);
        if (rc == SQLITE_DONE) { /* forgotten by retention meanwhile */
            sqlite3_exec(state->db, "ROLLBACK", NULL, NULL, NULL);
            return 0;
        }
        if (rc != SQLITE_ROW)
            goto fail;
    }
    for (size_t i = 0; i < count; i++) {
        if (state_run(state, NULL, "DELETE FROM replica_pack_items WHERE id = ?1", "i",
                      members[i]) != SQLITE_DONE)
            goto fail;
    }
    if (state_run(state, NULL,
                  "UPDATE replica_pack_items SET pending = 0, name = ?2, bytes = ?3, objects = ?4,"
                  " sha256 = ?5 WHERE id = ?1",
                  "isiis", id, pack->name, pack->bytes, pack->objects,
                  pack->sha256) != SQLITE_DONE ||
        state_doom(state, database, doomed, doomed_count) < 0 ||
        sqlite3_exec(state->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    *done = true;
    return 0;
fail:;
    int rc = state_fail(state, err, "cannot record a pack");
    sqlite3_exec(state->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int state_pack_drop(struct state *state, const char *database, int64_t id, char *const *doomed,
                    size_t doomed_count, struct error *err)
{
    if (sqlite3_exec(state->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return state_fail(state, err, "cannot begin");
    if (state_run(state, NULL, "DELETE FROM replica_pack_items WHERE id = ?1 AND pending = 1", "i",
                  id) != SQLITE_DONE ||
        state_doom(state, database, doomed, doomed_count) < 0 ||
        sqlite3_exec(state->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        int rc = state_fail(state, err, "cannot drop a pack");
        sqlite3_exec(state->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    return 0;
}

int state_pack_items_exist(struct state *state, const int64_t *ids, size_t count, bool *all,
                           struct error *err)
{
    *all = true;
    for (size_t i = 0; i < count && *all; i++) {
        sqlite3_stmt *row = NULL;
        int rc =
            state_run(state, &row, "SELECT 1 FROM replica_pack_items WHERE id = ?1", "i", ids[i]);
        sqlite3_finalize(row);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return state_fail(state, err, "cannot read the replica's packs");
        *all = rc == SQLITE_ROW;
    }
    return 0;
}

int state_pack_mark_final(struct state *state, const int64_t *ids, size_t count, struct error *err)
{
    for (size_t i = 0; i < count; i++) {
        if (state_run(state, NULL, "UPDATE replica_pack_items SET final = 1 WHERE id = ?1", "i",
                      ids[i]) != SQLITE_DONE)
            return state_fail(state, err, "cannot record a full pack");
    }
    return 0;
}

int state_doomed_keys(struct state *state, const char *database, size_t limit, char ***out,
                      size_t *count, struct error *err)
{
    sqlite3_stmt *row = NULL;
    char **keys = calloc(limit ? limit : 1, sizeof *keys);
    size_t used = 0;
    *out = NULL;
    *count = 0;
    if (!keys)
        return error_set(err, -ENOMEM, "out of memory");
    int rc = state_run(state, &row, "SELECT key FROM replica_doomed WHERE database = ?1 LIMIT ?2",
                       "si", database, (int64_t)limit);
    while (rc == SQLITE_ROW && used < limit) {
        if (!(keys[used] = strdup((const char *)sqlite3_column_text(row, 0))))
            break;
        used++;
        rc = sqlite3_step(row);
    }
    sqlite3_finalize(row);
    if (rc != SQLITE_DONE && !(rc == SQLITE_ROW && used == limit)) {
        for (size_t i = 0; i < used; i++)
            free(keys[i]);
        free(keys);
        return rc == SQLITE_ROW ? error_set(err, -ENOMEM, "out of memory")
                                : state_fail(state, err, "cannot read the keys to delete");
    }
    *out = keys;
    *count = used;
    return 0;
}

int state_doomed_done(struct state *state, const char *database, const char *key, struct error *err)
{
    return state_run(state, NULL, "DELETE FROM replica_doomed WHERE database = ?1 AND key = ?2",
                     "ss", database, key) == SQLITE_DONE
               ? 0
               : state_fail(state, err, "cannot record a deleted key");
}
