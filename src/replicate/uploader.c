/*
 * uploader.c: the replica upload queue drained to the target (uploader.h).
 */
#include "replicate/uploader.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive/sealed.h"
#include "core/fsutil.h"
#include "core/io.h"
#include "core/log.h"
#include "db/state.h"
#include "db/state_packs.h"
#include "offsite/target_pool.h"
#include "policy/retention.h"
#include "replicate/compactor.h"
#include "replicate/format.h"
#include "replicate/shipper.h"
#include "replicate/window.h"

struct replica_uploader {
    const struct database_config *db;
    const volatile sig_atomic_t *stop;
    char *spool;         /* allocated to its length: one uploader per replicated database */
    struct state *state; /* borrowed: the caller's thread's connection */
    struct target_pool *targets; /* borrowed: the caller's thread's targets */
    bool index_stale; /* objects are up that index.json does not describe yet */
    bool sweep_due;   /* objects of forgotten generations may be left on the target */
    int64_t next_retention_ms;
};

/* How often the window is looked at: often enough that the replica holds
 * little more than `window`, rarely enough to cost nothing (one state.db
 * read; the target is listed only when something left the window). */
#define RETENTION_EVERY_MIN_MS 1000
#define RETENTION_EVERY_MAX_MS (15 * 60 * 1000)

/* The target, from the thread's pool: kept for this call only. */
static int uploader_target(struct replica_uploader *u, struct target **out, struct error *err)
{
    return target_pool_get(u->targets, u->db->replicate.target, out, err);
}

int replica_uploader_open(const struct database_config *db, const char *state_dir,
                          struct state *state, struct target_pool *targets,
                          const volatile sig_atomic_t *stop, struct replica_uploader **out,
                          struct error *err)
{
    struct replica_uploader *u = calloc(1, sizeof *u);
    int rc;

    *out = NULL;
    if (!u)
        return error_set(err, -ENOMEM, "out of memory");
    u->db = db;
    u->stop = stop;
    u->state = state;
    u->targets = targets;
    char spool[PATH_MAX];
    if ((rc = replica_spool_directory(state_dir, db->name, spool, sizeof spool, err)) < 0)
        goto fail;
    if (!(u->spool = strdup(spool))) {
        rc = error_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    if (!db->replicate.target) {
        rc = error_set(err, -EINVAL, "%s: replicate has no target", db->name);
        goto fail;
    }
    /* Got here, though the first upload would, so that a target that
     * cannot be opened is reported when replication starts. */
    struct target *target;
    if ((rc = fs_make_directories(u->spool, 0700, err)) < 0 ||
        (rc = uploader_target(u, &target, err)) < 0)
        goto fail;
    u->index_stale = true; /* a kill may have come between the objects and it */
    u->sweep_due = true;   /* and between forgetting generations and deleting them */
    *out = u;
    return 0;
fail:
    replica_uploader_close(u);
    return rc;
}

void replica_uploader_close(struct replica_uploader *u)
{
    if (!u)
        return;
    free(u->spool);
    free(u);
}

/* index.json from a snapshot of the generations. Spooled under a dot name:
 * the shipper's spool clean-up (at its open) skips those. */
static int write_index(struct replica_uploader *u, const struct state_replica_generation *list,
                       size_t count, int64_t now_ms, struct error *err)
{
    struct format_index_generation *gens = calloc(count + 1, sizeof *gens);
    if (!gens)
        return error_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < count; i++)
        gens[i] = (struct format_index_generation){.generation = list[i].generation,
                                                   .first_seen_at_ms = list[i].first_seen_at_ms,
                                                   .last_seen_at_ms = list[i].last_seen_at_ms,
                                                   .base_from = list[i].base_from,
                                                   .snapshot = list[i].snapshot};
    struct format_index index = {.database = (char *)u->db->name,
                                 .count = count,
                                 .generations = gens,
                                 .updated_at_ms = now_ms};
    char *json = format_index_encode(&index, err);
    free(gens);
    if (!json)
        return err ? err->code : -EINVAL;
    char path[PATH_MAX], key[FORMAT_KEY_SIZE];
    snprintf(path, sizeof path, "%s/.index.json", u->spool);
    format_key(key, sizeof key, u->db->name, FORMAT_INDEX, 0, 0, 0, NULL);
    int rc = fs_write_file_atomically(path, json, strlen(json), 0600, err);
    free(json);
    struct target *target = NULL;
    if (rc == 0)
        rc = uploader_target(u, &target, err);
    if (rc == 0)
        rc = target_put_file(target, key, path, NULL, NULL, err);
    unlink(path);
    return rc;
}

/* Deletes every object on the target of a generation numbered below
 * `oldest_kept`, and every pack whose generations all are: what retention
 * forgot, whether deleted already or left by
 * a kill between forgetting and deleting. An object that S3 Object Lock
 * still holds is left (*held) for a later sweep: deleting it would only hide
 * it behind a delete marker. */
static int sweep(struct replica_uploader *u, uint32_t oldest_kept, size_t *deleted, size_t *held,
                 struct error *err)
{
    char prefix[FORMAT_KEY_SIZE];
    struct target_listing listing = {0};
    time_t now = time(NULL);
    *deleted = 0;
    *held = 0;
    snprintf(prefix, sizeof prefix, "%s/replica/", u->db->name);
    struct target *target = NULL;
    int rc = uploader_target(u, &target, err);
    if (rc == 0)
        rc = target_list(target, prefix, &listing, err);
    for (size_t i = 0; rc == 0 && i < listing.count && !(u->stop && *u->stop); i++) {
        const char *key = listing.objects[i].key;
        if (strncmp(key, prefix, strlen(prefix)) != 0)
            continue;
        char name[16];
        const char *rest = key + strlen(prefix);
        size_t length = strcspn(rest, "/");
        uint32_t generation, first;
        uint64_t id;
        if (strncmp(rest, "packs/", 6) == 0) {
            /* A pack goes when its newest generation has gone. */
            if ((format_pack_parse(rest + 6, ".pack", &first, &generation, &id) != 0 &&
                 format_pack_parse(rest + 6, ".pack.json", &first, &generation, &id) != 0) ||
                generation >= oldest_kept)
                continue;
        } else if (strncmp(rest, "deltas/", 7) == 0) {
            /* A delta goes with its last generation: no chain kept needs it. */
            if ((format_delta_parse(rest + 7, FORMAT_DELTA_MANIFEST, &first, &generation) != 0 &&
                 format_delta_parse(rest + 7, FORMAT_DELTA_PAGES, &first, &generation) != 0 &&
                 format_delta_parse(rest + 7, FORMAT_DELTA_PAGES SEALED_SUFFIX, &first,
                                    &generation) != 0) ||
                generation >= oldest_kept)
                continue;
        } else {
            if (rest[length] != '/' || length >= sizeof name)
                continue; /* index.json, or not ours */
            memcpy(name, rest, length);
            name[length] = '\0';
            if (format_generation_parse(name, &generation) != 0 || generation >= oldest_kept)
                continue;
        }
        if (retention_object_is_locked(listing.objects[i].modified,
                                       u->db->replicate.target->object_lock_days, now)) {
            (*held)++;
            continue;
        }
        rc = target_delete(target, key, err);
        if (rc == 0)
            (*deleted)++;
    }
    target_listing_free(&listing);
    return rc;
}

/*
 * The retention window (sqlprodd-format(5), RETENTION): generations no
 * instant of the window needs are forgotten in state.db, index.json is
 * rewritten without them, and only then are their objects deleted, so the
 * bucket never advertises an instant whose objects are going. Runs only
 * when every queued object is up and index.json says so: the index written
 * here must not run ahead of the queue.
 */
static int retain(struct replica_uploader *u, int64_t now_ms, struct error *err)
{
    if (u->index_stale || (now_ms < u->next_retention_ms && !u->sweep_due))
        return 0;
    int64_t window_ms = u->db->replicate.window_seconds * 1000;
    int64_t every = window_ms / 8;
    every = every < RETENTION_EVERY_MIN_MS ? RETENTION_EVERY_MIN_MS
            : every > RETENTION_EVERY_MAX_MS ? RETENTION_EVERY_MAX_MS
                                             : every;
    u->next_retention_ms = now_ms + every;

    struct state_replica_generation *list = NULL;
    size_t count = 0;
    int64_t up_to = 0;
    int rc = state_replica_generations(u->state, u->db->name, &list, &count, &up_to, err);
    if (rc < 0 || up_to != 0 || count == 0)
        goto out;
    uint32_t keep_from = replica_window_keep_from(list, count, now_ms, window_ms);
    if (keep_from != 0) {
        bool forgotten = false;
        rc = state_replica_forget_generations(u->state, u->db->name, keep_from, &forgotten, err);
        if (rc < 0 || !forgotten)
            goto out;
        uint32_t oldest = list[0].generation;
        free(list);
        list = NULL;
        rc = state_replica_generations(u->state, u->db->name, &list, &count, &up_to, err);
        if (rc < 0 || count == 0)
            goto out;
        if (up_to != 0) {
            /* Queued since: the next upload writes the index, then sweeps. */
            u->index_stale = true;
            u->sweep_due = true;
            goto out;
        }
        rc = write_index(u, list, count, now_ms, err);
        u->index_stale = rc < 0;
        if (rc < 0)
            goto out;
        char span[32];
        if (oldest + 1 == keep_from)
            snprintf(span, sizeof span, "generation %" PRIu32, oldest);
        else
            snprintf(span, sizeof span, "generations %" PRIu32 "..%" PRIu32, oldest,
                     keep_from - 1);
        log_event(LOG_INFO, u->db->name, "replicate",
                  "%s left the %llds window (restore --at reaches back to generation %" PRIu32
                  "); deleting their objects",
                  span, (long long)u->db->replicate.window_seconds, keep_from);
        u->sweep_due = true;
    }
    if (u->sweep_due) {
        size_t deleted = 0, held = 0;
        rc = sweep(u, list[0].generation, &deleted, &held, err);
        if (rc == 0) {
            u->sweep_due = false;
            if (deleted > 0)
                log_event(LOG_INFO, u->db->name, "replicate",
                          "deleted %zu objects of generations before %" PRIu32 " from %s", deleted,
                          list[0].generation, u->db->replicate.target_name);
            if (held > 0)
                log_event(LOG_INFO, u->db->name, "replicate",
                          "kept %zu objects of generations before %" PRIu32
                          " that object_lock holds on %s; a later sweep deletes them",
                          held, list[0].generation, u->db->replicate.target_name);
        } else {
            error_prefix(err, "%s: retention: ", u->db->name);
        }
    }
out:
    free(list);
    return rc;
}

int64_t replica_uploader_next_ms(const struct replica_uploader *u, int64_t now_ms)
{
    if (u->index_stale || u->sweep_due || u->next_retention_ms <= now_ms)
        return now_ms;
    return u->next_retention_ms;
}

/* Whether compaction may pack the object just put, and its item. */
static bool uploader_packable(const struct replica_uploader *u,
                              const struct state_replica_object *object, const char *sha,
                              struct state_pack_item *out)
{
    char prefix[FORMAT_KEY_SIZE];
    struct stat st;
    uint32_t generation;
    int n = snprintf(prefix, sizeof prefix, "%s/replica/", u->db->name);
    const char *key = object->key;
    if (!replica_compacts(u->db) || n <= 0 || strncmp(key, prefix, (size_t)n) != 0 ||
        format_packable_parse(key + n, &generation) < 0 || strlen(key + n) >= sizeof out->name ||
        stat(object->path, &st) != 0)
        return false;
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", key + n);
    out->first_generation = out->last_generation = generation;
    out->bytes = st.st_size;
    out->objects = 1;
    snprintf(out->sha256, sizeof out->sha256, "%s", sha);
    return true;
}

int replica_upload(struct replica_uploader *u, int64_t now_ms, int *uploaded, struct error *err)
{
    struct io_context io = {.stop = u->stop, .background = true};
    struct state_replica_generation *list = NULL;
    size_t count = 0;
    int64_t up_to = 0;
    *uploaded = 0;
    /* The index that will be true once the objects queued up to now are up. */
    int rc = state_replica_generations(u->state, u->db->name, &list, &count, &up_to, err);
    if (rc < 0 || (up_to == 0 && !u->index_stale)) {
        free(list);
        return rc < 0 ? rc : retain(u, now_ms, err);
    }
    for (;;) {
        struct state_replica_object object;
        bool found;
        if (up_to == 0)
            break;
        rc = state_next_replica_object(u->state, u->db->name, &object, &found, err);
        if (rc < 0 || !found || object.id > up_to)
            break;
        char sha[IO_SHA256_HEX] = "";
        int fd = open(object.path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            io_sha256_fd(fd, &io, sha);
            close(fd);
        }
        struct target *target;
        rc = uploader_target(u, &target, err);
        if (rc == 0)
            rc = target_put_file(target, object.key, object.path, sha[0] ? sha : NULL, &io, err);
        if (rc < 0) {
            error_prefix(err, "%s: upload of %s: ", u->db->name, object.key);
            break;
        }
        struct state_pack_item loose;
        bool packable = sha[0] && uploader_packable(u, &object, sha, &loose);
        rc = state_replica_object_done_packable(u->state, u->db->name, object.id,
                                                packable ? &loose : NULL, err);
        if (rc < 0)
            break;
        unlink(object.path);
        (*uploaded)++;
        u->index_stale = true;
    }
    if (rc == 0 && u->index_stale && count > 0) {
        rc = write_index(u, list, count, now_ms, err);
        u->index_stale = rc < 0;
        int64_t newest = 0;
        for (size_t i = 0; i < count; i++)
            if (list[i].last_seen_at_ms > newest)
                newest = list[i].last_seen_at_ms;
        if (rc == 0 && newest > 0)
            rc = state_replica_uploaded(u->state, u->db->name, newest, err);
    }
    free(list);
    return rc < 0 ? rc : retain(u, now_ms, err);
}
