/*
 * compactor.c: packs of a replica's objects (compactor.h).
 */
#include "replicate/compactor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "core/io.h"
#include "core/log.h"
#include "db/state.h"
#include "db/state_packs.h"
#include "offsite/target_pool.h"
#include "replicate/format.h"
#include "replicate/pack_stream.h"
#include "replicate/shipper.h"

/* Keys deleted per look at replica_doomed. */
#define DOOMED_BATCH 256

struct replica_compactor {
    const struct database_config *db;
    const volatile sig_atomic_t *stop;
    char spool[PATH_MAX];
    struct state *state;
    struct target *target; /* from the caller's pool, for this turn */
};

/* A pack being made: its header fields, its members' bytes as a stream
 * from the target, and its manifest's object lines in a file of their own
 * (the header, which comes first, needs the pack's SHA-256, known once the
 * pack is uploaded). */
struct pack_writer {
    struct format_pack pack; /* header fields; objects unused */
    struct pack_stream *stream;
    FILE *lines;
    char stage[PATH_MAX], lines_path[PATH_MAX], manifest[PATH_MAX];
};

bool replica_compacts(const struct database_config *db)
{
    return db->replicate.target && db->replicate.compact &&
           db->replicate.target->object_lock_days == 0;
}

static int compactor_key(const struct replica_compactor *c, const struct state_pack_item *item,
                         bool manifest, char out[FORMAT_KEY_SIZE], struct error *err)
{
    if (item->level == 0) {
        int n = snprintf(out, FORMAT_KEY_SIZE, "%s/replica/%s", c->db->name, item->name);
        return n > 0 && n < FORMAT_KEY_SIZE
                   ? 0
                   : error_set(err, -ENAMETOOLONG, "%s: key too long", c->db->name);
    }
    uint32_t first, last;
    uint64_t id;
    if (format_pack_parse(item->name, "", &first, &last, &id) < 0)
        return error_set(err, -EINVAL, "%s: state.db names a pack \"%s\"", c->db->name, item->name);
    return format_pack_key(out, FORMAT_KEY_SIZE, c->db->name, first, last, id, manifest, err);
}

/* The keys an item stands for on the target: one object, or a pack and
 * its manifest. Appends strdup'd keys to keys[*count]. */
static int compactor_item_keys(const struct replica_compactor *c,
                               const struct state_pack_item *item, char **keys, size_t *count,
                               struct error *err)
{
    for (int manifest = 0; manifest <= (item->level > 0); manifest++) {
        char key[FORMAT_KEY_SIZE];
        int rc = compactor_key(c, item, manifest, key, err);
        if (rc < 0)
            return rc;
        if (!(keys[*count] = strdup(key)))
            return error_set(err, -ENOMEM, "out of memory");
        (*count)++;
    }
    return 0;
}

static void compactor_free_keys(char **keys, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(keys[i]);
}

/* Deletes what packs replaced, and what a given-up pack left. */
static int compactor_delete_doomed(struct replica_compactor *c, struct error *err)
{
    for (;;) {
        char **keys = NULL;
        size_t count = 0;
        int rc = state_doomed_keys(c->state, c->db->name, DOOMED_BATCH, &keys, &count, err);
        for (size_t i = 0; rc == 0 && i < count && !(c->stop && *c->stop); i++) {
            rc = target_delete(c->target, keys[i], err);
            if (rc == 0)
                rc = state_doomed_done(c->state, c->db->name, keys[i], err);
        }
        compactor_free_keys(keys, count);
        free(keys);
        if (rc < 0 || count < DOOMED_BATCH || (c->stop && *c->stop))
            return rc;
    }
}

/* A pending pack is one a kill interrupted: whatever of it reached the
 * target goes, and its members stay what they were. */
static int compactor_drop_pending(struct replica_compactor *c, struct error *err)
{
    struct state_pack_item *pending = NULL;
    size_t count = 0;
    int rc = state_pack_pending(c->state, c->db->name, &pending, &count, err);
    for (size_t i = 0; rc == 0 && i < count; i++) {
        char *keys[2];
        size_t n = 0;
        char name[FORMAT_PACK_NAME_SIZE];
        format_pack_name(pending[i].first_generation, pending[i].last_generation,
                         (uint64_t)pending[i].id, name);
        snprintf(pending[i].name, sizeof pending[i].name, "%s", name);
        rc = compactor_item_keys(c, &pending[i], keys, &n, err);
        if (rc == 0)
            rc = state_pack_drop(c->state, c->db->name, pending[i].id, keys, n, err);
        compactor_free_keys(keys, n);
    }
    free(pending);
    return rc;
}

int replica_compactor_open(const struct database_config *db, const char *state_dir,
                           struct target_pool *targets, const volatile sig_atomic_t *stop,
                           struct replica_compactor **out, struct error *err)
{
    struct replica_compactor *c = calloc(1, sizeof *c);
    int rc;
    *out = NULL;
    if (!c)
        return error_set(err, -ENOMEM, "out of memory");
    c->db = db;
    c->stop = stop;
    if ((rc = replica_spool_directory(state_dir, db->name, c->spool, sizeof c->spool, err)) < 0 ||
        (rc = fs_make_directories(c->spool, 0700, err)) < 0 ||
        (rc = state_open(state_dir, &c->state, err)) < 0 ||
        (rc = target_pool_get(targets, db->replicate.target, &c->target, err)) < 0)
        goto fail;
    *out = c;
    return 0;
fail:
    replica_compactor_close(c);
    return rc;
}

int replica_compactor_recover(struct replica_compactor *c, struct error *err)
{
    int rc = compactor_drop_pending(c, err);
    if (rc < 0)
        return rc;
    /* A dir target's temp file of a pack whose upload a kill cut: the pack
     * is given up above, never put again under that name, so nothing else
     * would remove it. Only the compactor writes under packs/. */
    char packs[FORMAT_KEY_SIZE];
    if ((rc = format_pack_key(packs, sizeof packs, c->db->name, 0, 0, 0, false, err)) < 0)
        return rc;
    packs[strlen(packs) - 1] = '\0'; /* no trailing '/' */
    if ((rc = target_remove_temp_files(c->target, packs, err)) < 0)
        return rc;
    if (rc > 0)
        log_event(LOG_NOTICE, c->db->name, "replicate",
                  "removed %d temp file%s of a pack whose upload was interrupted", rc,
                  rc == 1 ? "" : "s");
    return 0;
}

void replica_compactor_close(struct replica_compactor *c)
{
    if (!c)
        return;
    state_close(c->state);
    free(c);
}

static int pack_line(struct pack_writer *w, const struct format_pack_object *object,
                     struct error *err)
{
    char *line = format_pack_object_encode(object, err);
    if (!line)
        return -ENOMEM;
    int rc = fprintf(w->lines, "%s\n", line) < 0
                 ? error_set(err, -EIO, "%s: %s", w->lines_path, strerror(errno))
                 : 0;
    free(line);
    return rc;
}

/* Adds one member to the pack's stream and its manifest lines (a pack
 * member's own lines, shifted to where it now starts). */
static int pack_member(struct replica_compactor *c, struct pack_writer *w,
                       const struct state_pack_item *item, struct error *err)
{
    struct io_context io = {.stop = c->stop, .background = true};
    char key[FORMAT_KEY_SIZE], manifest_key[FORMAT_KEY_SIZE];
    uint64_t base = w->pack.size;
    int rc = compactor_key(c, item, false, key, err);
    if (rc < 0 || (rc = pack_stream_add(w->stream, key, item->bytes, item->sha256, err)) < 0)
        return rc;
    w->pack.size += (uint64_t)item->bytes;
    if (item->level == 0) {
        struct format_pack_object object = {.offset = base, .size = (uint64_t)item->bytes};
        snprintf(object.key, sizeof object.key, "%s", item->name);
        snprintf(object.sha256, sizeof object.sha256, "%s", item->sha256);
        w->pack.count++;
        return pack_line(w, &object, err);
    }
    unlink(w->manifest);
    if ((rc = compactor_key(c, item, true, manifest_key, err)) < 0 ||
        (rc = target_get_file(c->target, manifest_key, w->manifest, &io, err)) < 0)
        return rc;
    FILE *in = fopen(w->manifest, "re");
    if (!in) {
        rc = error_set(err, -errno, "%s: %s", w->manifest, strerror(errno));
        unlink(w->manifest);
        return rc;
    }
    char *line = NULL;
    size_t capacity = 0, count = 0;
    ssize_t length;
    struct format_pack header = {0};
    uint64_t offset = 0;
    while (rc == 0 && (length = getline(&line, &capacity, in)) > 0) {
        if (line[length - 1] == '\n')
            line[--length] = '\0';
        if (header.id == 0) {
            rc = format_pack_header_decode(line, (size_t)length, manifest_key, &header, err);
            if (rc == 0 &&
                (header.size != (uint64_t)item->bytes || strcmp(header.sha256, item->sha256) != 0))
                rc = error_set(err, -EIO, "%s does not describe the pack that was put",
                               manifest_key);
            continue;
        }
        struct format_pack_object object;
        rc = format_pack_object_decode(line, (size_t)length, &header, offset, manifest_key, &object,
                                       err);
        if (rc < 0)
            break;
        offset += object.size;
        object.offset += base;
        rc = pack_line(w, &object, err);
        count++;
    }
    if (rc == 0 && (header.id == 0 || count != header.count || offset != header.size))
        rc = error_set(err, -EIO,
                       "%s lists %zu objects ending at %" PRIu64
                       ", not the %zu of its header: damaged",
                       manifest_key, count, offset, header.count);
    w->pack.count += count;
    free(line);
    fclose(in);
    format_pack_free(&header);
    unlink(w->manifest);
    return rc;
}

/* Empties the stage directory: what the last merge, or a kill, left. A
 * symlink there is refused, not followed: its files are not ours. */
static int compactor_clear_stage(const char *stage, struct error *err)
{
    int rc = fs_make_directories(stage, 0700, err);
    if (rc < 0)
        return rc;
    int fd = open(stage, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *directory = fd >= 0 ? fdopendir(fd) : NULL;
    if (!directory) {
        rc = errno == ELOOP || errno == ENOTDIR
                 ? error_set(err, -errno,
                             "%s is a symlink or not a directory: not ours to empty; remove it "
                             "and merges go on",
                             stage)
                 : error_set(err, -errno, "%s: %s", stage, strerror(errno));
        if (fd >= 0)
            close(fd);
        return rc;
    }
    struct dirent *entry;
    while ((entry = readdir(directory)))
        if (entry->d_name[0] != '.')
            unlinkat(dirfd(directory), entry->d_name, 0);
    closedir(directory);
    return 0;
}

/* The manifest: the header line, then the object lines. */
static int pack_write_manifest(struct pack_writer *w, struct error *err)
{
    char *header = format_pack_header_encode(&w->pack, err);
    if (!header)
        return -EINVAL;
    int rc = 0;
    FILE *out = fopen(w->manifest, "we");
    if (!out || fprintf(out, "%s\n", header) < 0 || fflush(w->lines) != 0 ||
        fseek(w->lines, 0, SEEK_SET) != 0)
        rc = error_set(err, -EIO, "%s: %s", w->manifest, strerror(errno));
    char buffer[8192];
    size_t n;
    while (rc == 0 && (n = fread(buffer, 1, sizeof buffer, w->lines)) > 0) {
        if (fwrite(buffer, 1, n, out) != n)
            rc = error_set(err, -EIO, "%s: %s", w->manifest, strerror(errno));
    }
    if (out && fclose(out) != 0 && rc == 0)
        rc = error_set(err, -EIO, "%s: %s", w->manifest, strerror(errno));
    free(header);
    return rc;
}

/* Merges `members` (oldest first) into one pack of level members[0].level
 * + 1, puts it on the target, then in their place in state.db. */
static int compactor_merge(struct replica_compactor *c, const struct state_pack_item *members,
                           size_t count, struct error *err)
{
    struct io_context io = {.stop = c->stop, .background = true};
    struct pack_writer w = {0};
    struct state_pack_item pack = {.level = members[0].level + 1,
                                   .position = members[0].position,
                                   .first_generation = members[0].first_generation,
                                   .last_generation = members[0].last_generation};
    char *doomed[2 * PACK_FANOUT_LOOSE + 2] = {0}, *own[2] = {0};
    size_t doomed_count = 0, own_count = 0;
    int64_t id = 0, ids[PACK_FANOUT_LOOSE];
    bool done = false;
    int rc, at_fault = -1;

    for (size_t i = 0; i < count; i++) {
        if (members[i].first_generation < pack.first_generation)
            pack.first_generation = members[i].first_generation;
        if (members[i].last_generation > pack.last_generation)
            pack.last_generation = members[i].last_generation;
        ids[i] = members[i].id;
    }
    snprintf(w.stage, sizeof w.stage, "%s/.merge", c->spool);
    snprintf(w.lines_path, sizeof w.lines_path, "%s/.pack-lines.tmp", c->spool);
    snprintf(w.manifest, sizeof w.manifest, "%s/.pack-manifest.tmp", c->spool);
    if ((rc = state_pack_begin(c->state, c->db->name, &pack, &id, err)) < 0)
        return rc;
    w.pack = (struct format_pack){.database = (char *)c->db->name,
                                  .first_generation = pack.first_generation,
                                  .last_generation = pack.last_generation,
                                  .id = (uint64_t)id,
                                  .level = pack.level};
    format_pack_name(pack.first_generation, pack.last_generation, (uint64_t)id, pack.name);
    if ((rc = compactor_item_keys(c, &pack, own, &own_count, err)) < 0 ||
        (rc = compactor_clear_stage(w.stage, err)) < 0 ||
        (rc = pack_stream_open(c->target, w.stage, &io, &w.stream, err)) < 0)
        goto out;
    if (!(w.lines = fopen(w.lines_path, "w+e"))) {
        rc = error_set(err, -errno, "%s: %s", w.lines_path, strerror(errno));
        goto out;
    }
    for (size_t i = 0; i < count && rc == 0; i++) {
        if ((rc = pack_member(c, &w, &members[i], err)) == -ENOENT)
            at_fault = (int)i; /* a pack member's manifest is gone */
        if (rc == 0)
            rc = compactor_item_keys(c, &members[i], doomed, &doomed_count, err);
    }
    /* The pack streamed from its members on the target into its upload:
     * no local copy of it, each member checked against its SHA-256. */
    if (rc == 0) {
        struct target_source source;
        int code = 0;
        pack_stream_source(w.stream, pack.name, &source);
        rc = target_put_source(c->target, own[0], &source, NULL, w.pack.sha256, &io, err);
        if (rc < 0)
            at_fault = pack_stream_failed_member(w.stream, &code);
        if (at_fault >= 0 && code == -EBADMSG) {
            struct error cause = *err;
            error_set(err, rc,
                      "%s; not packed. Restores that need it fail; `sqlprodd verify %s --remote "
                      "--data` names them",
                      cause.message, c->db->name);
        }
    }
    if (at_fault >= 0 && (rc == -EBADMSG || rc == -ENOENT)) {
        struct error ignored = {0};
        bool still = true;
        if (rc == -ENOENT &&
            state_pack_items_exist(c->state, &members[at_fault].id, 1, &still, &ignored) == 0 &&
            !still) {
            /* Retention forgot and deleted it meanwhile: this merge is
             * simply moot. */
            rc = 0;
            goto out;
        }
        /* Changed on the target, or gone from it: left as it is and never
         * merged again, so the items after it still make packs and the
         * error is reported once. */
        state_pack_mark_final(c->state, &members[at_fault].id, 1, &ignored);
    }
    if (rc < 0 || (rc = pack_write_manifest(&w, err)) < 0 ||
        (rc = target_put_file(c->target, own[1], w.manifest, NULL, &io, err)) < 0)
        goto out;
    pack.bytes = (int64_t)w.pack.size;
    pack.objects = (int64_t)w.pack.count;
    snprintf(pack.sha256, sizeof pack.sha256, "%s", w.pack.sha256);
    rc = state_pack_complete(c->state, c->db->name, id, &pack, ids, count, doomed, doomed_count,
                             &done, err);
out:
    pack_stream_close(w.stream);
    if (w.lines)
        fclose(w.lines);
    unlink(w.lines_path);
    unlink(w.manifest);
    /* .merge/ is empty again: readers, parts and a staged object each
     * remove their file, failed or not; a kill's are the next merge's. */
    if (!done && id != 0) {
        /* Given up (an error, or retention forgot a member meanwhile):
         * whatever of this pack reached the target goes. */
        struct error ignored = {0};
        state_pack_drop(c->state, c->db->name, id, own, own_count, rc < 0 ? &ignored : err);
    }
    compactor_free_keys(own, own_count);
    compactor_free_keys(doomed, doomed_count);
    if (rc == 0 && done)
        log_event(LOG_DEBUG, c->db->name, "replicate",
                  "packed %zu items into %s (level %" PRIu32 ", %" PRId64 " objects, %" PRId64
                  " bytes)",
                  count, pack.name, pack.level, pack.objects, pack.bytes);
    return rc < 0 ? rc : done ? 1 : 0;
}

/* The oldest merge due, if any: PACK_FANOUT_LOOSE loose objects or
 * PACK_FANOUT packs of one level, next to each other in the stack and none
 * of them full (new loose objects above a run of packs do not stop the run
 * from merging). *count 0: none. */
static int compactor_due(struct replica_compactor *c, const struct state_pack_item *items,
                         size_t total, size_t *first, size_t *count, struct error *err)
{
    *count = 0;
    size_t run = 0;
    for (size_t i = 0; i < total; i++) {
        if (items[i].final) {
            run = 0;
            continue;
        }
        run = run > 0 && items[i - 1].level == items[i].level && !items[i - 1].final ? run + 1 : 1;
        size_t fanout = items[i].level == 0 ? PACK_FANOUT_LOOSE : PACK_FANOUT;
        if (run < fanout)
            continue;
        size_t start = i + 1 - fanout;
        int64_t objects = 0, bytes = 0, ids[PACK_FANOUT_LOOSE];
        for (size_t j = start; j <= i; j++) {
            objects += items[j].level == 0 ? 1 : items[j].objects;
            bytes += items[j].bytes;
            ids[j - start] = items[j].id;
        }
        if (objects > PACK_FULL_OBJECTS || bytes > PACK_FULL_BYTES) {
            /* Full: they stay, and the items after them start a new run. */
            int rc = state_pack_mark_final(c->state, ids, fanout, err);
            if (rc < 0)
                return rc;
            run = 0;
            continue;
        }
        *first = start;
        *count = fanout;
        return 0;
    }
    return 0;
}

int replica_compact(struct replica_compactor *c, int *packs, struct error *err)
{
    int rc = 0;
    *packs = 0;
    while (!(c->stop && *c->stop)) {
        struct state_pack_item *items = NULL;
        size_t total = 0, first = 0, count = 0;
        rc = state_pack_items(c->state, c->db->name, &items, &total, err);
        if (rc == 0)
            rc = compactor_due(c, items, total, &first, &count, err);
        if (rc == 0 && count > 0) {
            rc = compactor_merge(c, &items[first], count, err);
            if (rc > 0)
                (*packs)++;
            rc = rc < 0 ? rc : 0;
        }
        free(items);
        if (rc < 0) {
            error_prefix(err, "%s: compaction: ", c->db->name);
            break;
        }
        if (count == 0)
            break;
        /* Delete as we go: a long cascade must not leave thousands behind. */
        if ((rc = compactor_delete_doomed(c, err)) < 0)
            break;
    }
    if (rc == 0)
        rc = compactor_delete_doomed(c, err);
    return rc;
}
