/*
 * replica_objects.c: a replica's objects, loose or packed (replica_objects.h).
 *
 * What is kept: the listed packs (names, sizes, whether their manifest is
 * listed), and for the packs of the generations asked about one entry per
 * packed object (its name as numbers, where it sits in which pack),
 * sorted by object then by pack id, newest first, so that a lookup is a
 * binary search and the first usable match is the newest pack holding it.
 */
#include "restore/replica_objects.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "core/io.h"
#include "replicate/format.h"

#define REPLICA_OBJECTS_BUFFER (64 * 1024)

/* The objects a pack may hold, as the last part of their key says. */
enum replica_object_kind {
    OBJECT_BASE_JSON,      /* gN/base.json */
    OBJECT_SEGMENT,        /* gN/wal/S-E.wal.gz */
    OBJECT_SEALED_SEGMENT, /* gN/wal/S-E.wal.gz.age */
    OBJECT_SIDECAR,        /* gN/wal/S-E.wal.json */
};

static const char *const replica_object_suffixes[] = {
    [OBJECT_SEGMENT] = ".wal.gz",
    [OBJECT_SEALED_SEGMENT] = ".wal.gz.age",
    [OBJECT_SIDECAR] = ".wal.json",
};

/* An object's name as numbers: what a key relative to DB/replica/ says. */
struct replica_object_name {
    uint32_t generation;
    enum replica_object_kind kind;
    uint64_t start, end; /* segments and sidecars */
};

/* One object of a pack whose manifest was read. */
struct replica_packed {
    struct replica_object_name name;
    uint64_t pack_id; /* sorts the copies: newest pack first */
    size_t pack;      /* index in objects->packs */
    uint64_t offset, size;
    char sha256[IO_SHA256_HEX];
    bool loose; /* also listed loose: taken loose */
};

struct replica_pack {
    uint32_t first, last;
    uint64_t id;
    int64_t listed_size;
    bool listed, manifest_listed; /* in the newest listing */
    bool loaded;                  /* its manifest read, its objects in `packed` */
    uint64_t size;                /* as its manifest says */
    bool fetched;                 /* bytes [span_start, span_end) of it are at `path` */
    uint64_t span_start, span_end;
    char path[PATH_MAX];
};

struct replica_objects {
    struct target *target;
    const char *target_name;
    char database[256];
    char prefix[FORMAT_KEY_SIZE]; /* DB/replica/ */
    uint32_t oldest, newest;      /* the generations the restore replays (0: unbounded) */
    uint32_t (*skipped)[2];       /* ranges of generations it does not replay (page deltas) */
    size_t skipped_count;
    replica_objects_temp_path temp_path;
    void *temp_context;
    struct replica_pack *packs;
    size_t pack_count, pack_capacity;
    struct replica_packed *packed;
    size_t packed_count, packed_capacity;
    size_t packs_fetched;
    int64_t pack_bytes;
    /* The newest generation a listed pack (with its manifest) reaches: a
     * loose object of an older generation was packed before that pack, so
     * it cannot be deleted under this restore by a pack not yet listed. */
    uint32_t frontier;
};

/* ---- names ---- */

static int replica_object_name_parse(const char *relative, struct replica_object_name *out)
{
    memset(out, 0, sizeof *out);
    if (format_packable_parse(relative, &out->generation) != 0)
        return -EINVAL;
    const char *rest = relative + 10; /* after "gNNNNNNNN/" */
    if (strcmp(rest, "base.json") == 0) {
        out->kind = OBJECT_BASE_JSON;
        return 0;
    }
    rest += 4; /* "wal/" */
    for (int kind = OBJECT_SEGMENT; kind <= OBJECT_SIDECAR; kind++)
        if (format_segment_parse(rest, replica_object_suffixes[kind], &out->start, &out->end) ==
            0) {
            out->kind = (enum replica_object_kind)kind;
            return 0;
        }
    return -EINVAL;
}

/* A full key (DB/replica/...) as a name; -EINVAL when no pack may hold it. */
static int replica_object_key_parse(const struct replica_objects *objects, const char *key,
                                    struct replica_object_name *out)
{
    size_t length = strlen(objects->prefix);
    if (strncmp(key, objects->prefix, length) != 0)
        return -EINVAL;
    return replica_object_name_parse(key + length, out);
}

static void replica_object_key(const struct replica_objects *objects,
                               const struct replica_object_name *name, char out[FORMAT_KEY_SIZE])
{
    char generation[16], segment[32];
    format_generation_name(name->generation, generation);
    if (name->kind == OBJECT_BASE_JSON) {
        snprintf(out, FORMAT_KEY_SIZE, "%s%s/base.json", objects->prefix, generation);
        return;
    }
    format_segment_name(name->start, name->end, segment);
    snprintf(out, FORMAT_KEY_SIZE, "%s%s/wal/%s%s", objects->prefix, generation, segment,
             replica_object_suffixes[name->kind]);
}

static int replica_object_name_compare(const struct replica_object_name *a,
                                       const struct replica_object_name *b)
{
    if (a->generation != b->generation)
        return a->generation < b->generation ? -1 : 1;
    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    if (a->start != b->start)
        return a->start < b->start ? -1 : 1;
    if (a->end != b->end)
        return a->end < b->end ? -1 : 1;
    return 0;
}

static int replica_packed_compare(const void *x, const void *y)
{
    const struct replica_packed *a = x, *b = y;
    int order = replica_object_name_compare(&a->name, &b->name);
    if (order != 0)
        return order;
    return a->pack_id > b->pack_id ? -1 : a->pack_id < b->pack_id;
}

static void replica_pack_key(const struct replica_objects *objects, const struct replica_pack *p,
                             bool manifest, char out[FORMAT_KEY_SIZE])
{
    /* The name was parsed from a listing: always valid. */
    int rc = format_pack_key(out, FORMAT_KEY_SIZE, objects->database, p->first, p->last, p->id,
                             manifest, NULL);
    assert(rc == 0);
    (void)rc;
}

/* A pack whose objects may be cut: listed with its manifest, or already
 * downloaded and checked (a pack merged away since still holds its bytes). */
static bool replica_pack_usable(const struct replica_pack *p)
{
    return p->fetched || (p->listed && p->manifest_listed);
}

/* Whether the listing shows the pack at the size its manifest gives (a
 * shorter one was cut short, a longer one is not what the manifest says). */
static bool replica_pack_size_listed(const struct replica_pack *p)
{
    return p->listed_size >= 0 && (uint64_t)p->listed_size == p->size;
}

/* ---- the listing of packs ---- */

static struct replica_pack *replica_pack_find(struct replica_objects *objects, uint32_t first,
                                              uint32_t last, uint64_t id)
{
    for (size_t i = 0; i < objects->pack_count; i++) {
        struct replica_pack *p = &objects->packs[i];
        if (p->first == first && p->last == last && p->id == id)
            return p;
    }
    return NULL;
}

int replica_objects_relist(struct replica_objects *objects, struct error *err)
{
    struct target_listing listing = {0};
    char prefix[FORMAT_KEY_SIZE];
    int rc = format_pack_key(prefix, sizeof prefix, objects->database, 0, 0, 0, false, err);
    if (rc == 0)
        rc = target_list(objects->target, prefix, &listing, err);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < objects->pack_count; i++)
        objects->packs[i].listed = objects->packs[i].manifest_listed = false;
    for (size_t i = 0; i < listing.count; i++) {
        const char *name = listing.objects[i].key + strlen(prefix);
        uint32_t first, last;
        uint64_t id;
        bool manifest = false;
        if (strncmp(listing.objects[i].key, prefix, strlen(prefix)) != 0)
            continue;
        if (format_pack_parse(name, ".pack.json", &first, &last, &id) == 0) {
            manifest = true;
            if (last > objects->frontier)
                objects->frontier = last;
        } else if (format_pack_parse(name, ".pack", &first, &last, &id) != 0)
            continue; /* temp files */
        if (objects->newest && first > objects->newest)
            continue; /* nothing the restore replays */
        struct replica_pack *p = replica_pack_find(objects, first, last, id);
        if (!p) {
            if (objects->pack_count == objects->pack_capacity) {
                size_t grown = objects->pack_capacity ? objects->pack_capacity * 2 : 16;
                struct replica_pack *bigger = realloc(objects->packs, grown * sizeof *bigger);
                if (!bigger) {
                    rc = error_set(err, -ENOMEM, "out of memory");
                    break;
                }
                objects->packs = bigger;
                objects->pack_capacity = grown;
            }
            p = &objects->packs[objects->pack_count++];
            *p = (struct replica_pack){.first = first, .last = last, .id = id};
        }
        if (manifest) {
            p->manifest_listed = true;
        } else {
            p->listed = true;
            p->listed_size = listing.objects[i].size;
        }
    }
    target_listing_free(&listing);
    return rc;
}

/* ---- manifests ---- */

static int replica_objects_add(struct replica_objects *objects, const struct replica_packed *item,
                               struct error *err)
{
    if (objects->packed_count == objects->packed_capacity) {
        size_t grown = objects->packed_capacity ? objects->packed_capacity * 2 : 256;
        struct replica_packed *bigger = realloc(objects->packed, grown * sizeof *bigger);
        if (!bigger)
            return error_set(err, -ENOMEM, "out of memory for the objects of the packs");
        objects->packed = bigger;
        objects->packed_capacity = grown;
    }
    objects->packed[objects->packed_count++] = *item;
    return 0;
}

/* Reads a pack's manifest a line at a time (JSON Lines, format.h) and keeps
 * the objects of generations the restore may replay: memory holds one line
 * and the entries kept, however many objects the pack holds. */
static int replica_pack_load(struct replica_objects *objects, size_t index, struct error *err)
{
    struct replica_pack *p = &objects->packs[index];
    char key[FORMAT_KEY_SIZE], path[PATH_MAX];
    struct format_pack header = {0};
    char *line = NULL;
    size_t line_size = 0, lines = 0;
    uint64_t offset = 0;
    FILE *file = NULL;
    size_t kept_before = objects->packed_count;
    replica_pack_key(objects, p, true, key);
    objects->temp_path(objects->temp_context, "pack.json", path);
    unlink(path);
    int rc = target_get_file(objects->target, key, path, NULL, err);
    if (rc == 0 && !(file = fopen(path, "re")))
        rc = error_set(err, -errno, "%s: %s", path, strerror(errno));
    unlink(path); /* the open file stays readable */
    if (!file)
        return rc;
    assert(rc == 0);
    ssize_t length = getline(&line, &line_size, file);
    if (length <= 0 || line[length - 1] != '\n')
        rc = error_set(err, -EBADMSG, "%s: no header line; the manifest is damaged", key);
    else
        rc = format_pack_header_decode(line, (size_t)length - 1, key, &header, err);
    if (rc == 0 &&
        (strcmp(header.database, objects->database) != 0 || header.first_generation != p->first ||
         header.last_generation != p->last || header.id != p->id))
        rc = error_set(err, -EBADMSG,
                       "%s describes pack %llu of generations %u..%u of '%s': not its name", key,
                       (unsigned long long)header.id, header.first_generation,
                       header.last_generation, header.database);
    while (rc == 0 && (length = getline(&line, &line_size, file)) > 0) {
        struct format_pack_object o;
        struct replica_packed item = {.pack_id = p->id, .pack = index};
        size_t used = (size_t)length - (line[length - 1] == '\n');
        if (++lines > header.count) {
            rc = error_set(err, -EBADMSG, "%s: more object lines than its header's count %zu", key,
                           header.count);
            break;
        }
        rc = format_pack_object_decode(line, used, &header, offset, key, &o, err);
        if (rc == 0 && replica_object_name_parse(o.key, &item.name) != 0)
            rc = error_set(err, -EINVAL, "%s: \"%s\" is not a key a pack may hold", key, o.key);
        if (rc != 0) {
            error_prefix(err, "line %zu: ", lines + 1);
            break;
        }
        offset += o.size;
        if (objects->newest && item.name.generation > objects->newest)
            continue; /* after the chosen generation: never replayed */
        item.offset = o.offset;
        item.size = o.size;
        snprintf(item.sha256, sizeof item.sha256, "%s", o.sha256);
        rc = replica_objects_add(objects, &item, err);
    }
    if (rc == 0 && ferror(file))
        rc = error_set(err, -EIO, "reading the download of %s", key);
    if (rc == 0 && (lines != header.count || offset != header.size))
        rc = error_set(err, -EBADMSG,
                       "%s: %zu of %zu objects ending at %llu in a pack of %llu bytes; the "
                       "manifest is damaged or cut short",
                       key, lines, header.count, (unsigned long long)offset,
                       (unsigned long long)header.size);
    if (rc == -EINVAL)
        rc = -EBADMSG;
    if (rc == 0) {
        p->loaded = true;
        p->size = header.size;
        qsort(objects->packed, objects->packed_count, sizeof *objects->packed,
              replica_packed_compare);
    } else {
        objects->packed_count = kept_before; /* appended after the sorted ones */
    }
    free(line);
    fclose(file);
    format_pack_free(&header);
    return rc;
}

/* The manifests of every usable pack whose range holds `generation`. */
static int replica_objects_load_generation(struct replica_objects *objects, uint32_t generation,
                                           struct error *err)
{
    int rc = 0;
    for (size_t i = 0; i < objects->pack_count && rc == 0; i++) {
        const struct replica_pack *p = &objects->packs[i];
        if (!p->loaded && p->listed && p->manifest_listed && p->first <= generation &&
            generation <= p->last)
            rc = replica_pack_load(objects, i, err);
    }
    return rc;
}

/* The index of the first entry not before `name`. */
static size_t replica_objects_lower_bound(const struct replica_objects *objects,
                                          const struct replica_object_name *name)
{
    size_t low = 0, high = objects->packed_count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (replica_object_name_compare(&objects->packed[middle].name, name) < 0)
            low = middle + 1;
        else
            high = middle;
    }
    return low;
}

/* The first entry for `name` (the newest pack's), or NULL. */
static struct replica_packed *replica_objects_first(struct replica_objects *objects,
                                                    const struct replica_object_name *name)
{
    size_t low = replica_objects_lower_bound(objects, name);
    if (low < objects->packed_count &&
        replica_object_name_compare(&objects->packed[low].name, name) == 0)
        return &objects->packed[low];
    return NULL;
}

/* The copy in the newest usable pack, or NULL. */
static struct replica_packed *replica_objects_find(struct replica_objects *objects,
                                                   const struct replica_object_name *name)
{
    struct replica_packed *end = objects->packed + objects->packed_count;
    for (struct replica_packed *e = replica_objects_first(objects, name);
         e && e < end && replica_object_name_compare(&e->name, name) == 0; e++)
        if (replica_pack_usable(&objects->packs[e->pack]))
            return e;
    return NULL;
}

/* ---- open, close ---- */

int replica_objects_open(struct target *target, const char *target_name, const char *database,
                         uint32_t newest, replica_objects_temp_path temp_path, void *temp_context,
                         struct replica_objects **out, struct error *err)
{
    struct replica_objects *objects = calloc(1, sizeof *objects);
    *out = NULL;
    if (!objects)
        return error_set(err, -ENOMEM, "out of memory");
    objects->target = target;
    objects->target_name = target_name;
    objects->newest = newest;
    objects->temp_path = temp_path;
    objects->temp_context = temp_context;
    snprintf(objects->database, sizeof objects->database, "%s", database);
    snprintf(objects->prefix, sizeof objects->prefix, "%s/replica/", database);
    int rc = replica_objects_relist(objects, err);
    if (rc != 0) {
        replica_objects_close(objects);
        return rc;
    }
    *out = objects;
    return 0;
}

void replica_objects_expect_from(struct replica_objects *objects, uint32_t oldest)
{
    objects->oldest = oldest;
}

int replica_objects_skip(struct replica_objects *objects, uint32_t first, uint32_t last)
{
    uint32_t(*grown)[2] = realloc(objects->skipped, (objects->skipped_count + 1) * sizeof *grown);
    if (!grown)
        return -ENOMEM;
    objects->skipped = grown;
    objects->skipped[objects->skipped_count][0] = first;
    objects->skipped[objects->skipped_count][1] = last;
    objects->skipped_count++;
    return 0;
}

static bool replica_objects_skipped(const struct replica_objects *objects, uint32_t generation)
{
    for (size_t i = 0; i < objects->skipped_count; i++)
        if (generation >= objects->skipped[i][0] && generation <= objects->skipped[i][1])
            return true;
    return false;
}

void replica_objects_close(struct replica_objects *objects)
{
    if (!objects)
        return;
    for (size_t i = 0; i < objects->pack_count; i++)
        if (objects->packs[i].fetched)
            unlink(objects->packs[i].path);
    free(objects->packs);
    free(objects->packed);
    free(objects->skipped);
    free(objects);
}

/* ---- listing a generation's segments ---- */

int replica_objects_list_segments(struct replica_objects *objects, uint32_t generation,
                                  struct target_listing *out, struct error *err)
{
    char prefix[FORMAT_KEY_SIZE], name[16];
    format_generation_name(generation, name);
    snprintf(prefix, sizeof prefix, "%s%s/wal/", objects->prefix, name);
    memset(out, 0, sizeof *out);
    int rc = target_list(objects->target, prefix, out, err);
    /* Compaction puts a pack and its manifest up before it deletes the
     * loose copies, so packs listed after the loose ones miss nothing;
     * packs listed before could miss objects packed and deleted between
     * the two listings (a pack holds 16 objects in upload order, not
     * whole generations). Only the newest generations can have such
     * objects: compaction packs the oldest loose objects first, so every
     * loose object is newer than every packed one, and a generation older
     * than the frontier had nothing loose when the packs were listed. One
     * listing of packs/ per generation of a day's chain would cost
     * minutes on S3. */
    if (rc == 0 && generation >= objects->frontier)
        rc = replica_objects_relist(objects, err);
    if (rc == 0)
        rc = replica_objects_load_generation(objects, generation, err);
    if (rc != 0) {
        target_listing_free(out);
        return rc;
    }
    /* Loose copies are taken loose. */
    for (size_t i = 0; i < out->count; i++) {
        struct replica_object_name object;
        if (replica_object_key_parse(objects, out->objects[i].key, &object) != 0)
            continue;
        struct replica_packed *end = objects->packed + objects->packed_count;
        for (struct replica_packed *e = replica_objects_first(objects, &object);
             e && e < end && replica_object_name_compare(&e->name, &object) == 0; e++)
            e->loose = true;
    }
    /* Then each packed one not listed loose, once: the generation's
     * entries are a run of the sorted array. */
    struct replica_object_name from = {.generation = generation};
    size_t begin = replica_objects_lower_bound(objects, &from), end = begin, extra = 0;
    while (end < objects->packed_count && objects->packed[end].name.generation == generation)
        end++;
    for (size_t i = begin; i < end; i++) {
        const struct replica_packed *e = &objects->packed[i];
        if (e->name.kind != OBJECT_BASE_JSON && !e->loose &&
            (i == begin ||
             replica_object_name_compare(&objects->packed[i - 1].name, &e->name) != 0))
            extra++;
    }
    if (extra == 0)
        return 0;
    struct target_object *bigger = realloc(out->objects, (out->count + extra) * sizeof *bigger);
    if (!bigger) {
        target_listing_free(out);
        return error_set(err, -ENOMEM, "out of memory");
    }
    out->objects = bigger;
    for (size_t i = begin; i < end; i++) {
        const struct replica_packed *e = &objects->packed[i];
        if (e->name.kind == OBJECT_BASE_JSON || e->loose ||
            (i > begin && replica_object_name_compare(&objects->packed[i - 1].name, &e->name) == 0))
            continue;
        const struct replica_packed *usable = replica_objects_find(objects, &e->name);
        if (!usable)
            continue;
        struct target_object *o = &out->objects[out->count++];
        memset(o, 0, sizeof *o);
        replica_object_key(objects, &e->name, o->key);
        o->size = (int64_t)usable->size;
    }
    return 0;
}

int replica_objects_packed(struct replica_objects *objects, const char *key, bool *packed,
                           struct error *err)
{
    struct replica_object_name name;
    *packed = false;
    if (replica_object_key_parse(objects, key, &name) != 0)
        return 0; /* base files, index.json: never packed */
    int rc = replica_objects_load_generation(objects, name.generation, err);
    if (rc != 0)
        return rc;
    const struct replica_packed *e = replica_objects_find(objects, &name);
    *packed = e && !e->loose;
    return 0;
}

/* ---- cutting an object out of a pack ---- */

/* The bytes of pack `index` the restore replays: from its first object of
 * a generation in [oldest, newest] (and not one a page delta stands for) to
 * the end of its last one. Objects are
 * packed in the order they were put, so the generations before the restore's
 * base (the head of its first pack) and after its newest (the tail of its
 * last) are left on the target. An object outside that span (a chain that
 * reaches further back than index.json said) is fetched on its own. */
static void replica_pack_span(const struct replica_objects *objects, size_t index,
                              const struct replica_packed *wanted, uint64_t *start, uint64_t *end)
{
    uint64_t low = UINT64_MAX, high = 0;
    for (size_t i = 0; i < objects->packed_count; i++) {
        const struct replica_packed *e = &objects->packed[i];
        if (e->pack != index || e->name.generation < objects->oldest ||
            replica_objects_skipped(objects, e->name.generation))
            continue; /* entries after `newest` were never kept */
        if (e->offset < low)
            low = e->offset;
        if (e->offset + e->size > high)
            high = e->offset + e->size;
    }
    if (low > wanted->offset || high < wanted->offset + wanted->size) {
        low = wanted->offset;
        high = wanted->offset + wanted->size;
    }
    *start = low;
    *end = high;
}

/* Makes the bytes of `wanted` available at p->path: one ranged GET of the
 * span the restore needs, kept until an object outside it is asked for.
 * Each object cut out is checked against its own SHA-256 (the manifest's),
 * so the pack's SHA-256, which needs all of it, is not. */
static int replica_pack_fetch(struct replica_objects *objects, struct replica_pack *p,
                              const struct replica_packed *wanted, struct error *err)
{
    char key[FORMAT_KEY_SIZE];
    uint64_t start, end;
    if (p->fetched && p->span_start <= wanted->offset &&
        wanted->offset + wanted->size <= p->span_end)
        return 0;
    assert(p->loaded);
    replica_pack_key(objects, p, false, key);
    if (p->fetched) {
        unlink(p->path);
        p->fetched = false;
    }
    if (p->listed && !replica_pack_size_listed(p))
        return error_set(err, -EBADMSG,
                         "pack %s on target %s has %lld bytes, its manifest says %llu: the pack is "
                         "damaged or was cut short",
                         key, objects->target_name, (long long)p->listed_size,
                         (unsigned long long)p->size);
    replica_pack_span(objects, wanted->pack, wanted, &start, &end);
    objects->temp_path(objects->temp_context, "pack", p->path);
    unlink(p->path);
    int rc = target_get_range(objects->target, key, (int64_t)start, (int64_t)(end - start), p->path,
                              NULL, err);
    if (rc != 0)
        return rc;
    objects->packs_fetched++;
    objects->pack_bytes += (int64_t)(end - start);
    p->span_start = start;
    p->span_end = end;
    p->fetched = true;
    return 0;
}

/* Copies [offset, offset + size) of the pack to a new file at `path`,
 * hashing on the way. */
static int replica_pack_cut(struct replica_objects *objects, const struct replica_packed *e,
                            const char *key, const char *path, struct error *err)
{
    const struct replica_pack *p = &objects->packs[e->pack];
    unsigned char *buffer = malloc(REPLICA_OBJECTS_BUFFER);
    struct io_sha256 hash = {0};
    char hex[IO_SHA256_HEX];
    int in = -1, out = -1, rc = 0;
    assert(p->fetched && p->span_start <= e->offset && e->offset + e->size <= p->span_end);
    if (!buffer || io_sha256_begin(&hash) != 0) {
        rc = error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    unlink(path);
    if ((in = open(p->path, O_RDONLY | O_CLOEXEC)) < 0 ||
        (out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
        rc = error_set(err, -errno, "%s: %s", in < 0 ? p->path : path, strerror(errno));
        goto out;
    }
    for (uint64_t done = 0; done < e->size && rc == 0;) {
        size_t step = e->size - done < REPLICA_OBJECTS_BUFFER ? (size_t)(e->size - done)
                                                              : REPLICA_OBJECTS_BUFFER;
        rc = io_pread_full(in, buffer, step, (int64_t)(e->offset - p->span_start + done));
        if (rc == 0)
            rc = io_write_full(out, buffer, step);
        if (rc != 0)
            rc = error_set(err, rc, "cutting %s out of %s into %s: %s", key, p->path, path,
                           strerror(-rc));
        io_sha256_update(&hash, buffer, step);
        done += step;
    }
    io_sha256_end(&hash, hex);
    if (rc == 0 && strcmp(hex, e->sha256) != 0) {
        char pack_key[FORMAT_KEY_SIZE];
        replica_pack_key(objects, p, false, pack_key);
        rc = error_set(err, -EBADMSG,
                       "%s, bytes %llu+%llu of pack %s on target %s, has sha256 %s, the pack's "
                       "manifest says %s: the pack is damaged",
                       key, (unsigned long long)e->offset, (unsigned long long)e->size, pack_key,
                       objects->target_name, hex, e->sha256);
    }
out:
    io_sha256_discard(&hash);
    free(buffer);
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) != 0 && rc == 0)
        rc = error_set(err, -errno, "%s: %s", path, strerror(errno));
    if (rc != 0)
        unlink(path);
    return rc;
}

/* From the newest usable pack holding it; -ENOENT when none does or its
 * pack is gone. */
static int replica_objects_cut(struct replica_objects *objects,
                               const struct replica_object_name *name, const char *key,
                               const char *path, struct error *err)
{
    int rc = replica_objects_load_generation(objects, name->generation, err);
    if (rc != 0)
        return rc;
    struct replica_packed *e = replica_objects_find(objects, name);
    if (!e)
        return error_set(err, -ENOENT, "%s is not in any pack", key);
    struct replica_pack *p = &objects->packs[e->pack];
    rc = replica_pack_fetch(objects, p, e, err);
    if (rc == -ENOENT)
        p->listed = false; /* merged away since the listing */
    if (rc == 0)
        rc = replica_pack_cut(objects, e, key, path, err);
    return rc;
}

int replica_objects_get(struct replica_objects *objects, const char *key, const char *path,
                        bool packed, struct error *err)
{
    struct replica_object_name name;
    bool packable = replica_object_key_parse(objects, key, &name) == 0;
    int rc;
    unlink(path);
    if (packed && packable)
        rc = replica_objects_cut(objects, &name, key, path, err);
    else
        rc = target_get_file(objects->target, key, path, NULL, err);
    if (rc != -ENOENT || !packable)
        return rc;
    /* Compaction moved it since the listing: once more, from a new one. */
    error_clear(err);
    rc = replica_objects_relist(objects, err);
    if (rc == 0)
        rc = replica_objects_cut(objects, &name, key, path, err);
    if (rc == -ENOENT)
        rc = error_set(err, -ENOENT,
                       "%s is missing on target %s: neither loose nor in a pack with its manifest "
                       "(listed again once)",
                       key, objects->target_name);
    return rc;
}

int replica_objects_check_packed(struct replica_objects *objects, const char *key, int64_t *size,
                                 struct error *err)
{
    struct replica_object_name name;
    char pack_key[FORMAT_KEY_SIZE];
    if (replica_object_key_parse(objects, key, &name) != 0)
        return error_set(err, -ENOENT, "%s is missing on target %s", key, objects->target_name);
    int rc = replica_objects_load_generation(objects, name.generation, err);
    if (rc != 0)
        return rc;
    const struct replica_packed *e = replica_objects_find(objects, &name);
    if (!e)
        return error_set(err, -ENOENT,
                         "%s is missing on target %s: neither loose nor in a pack with its "
                         "manifest",
                         key, objects->target_name);
    const struct replica_pack *p = &objects->packs[e->pack];
    replica_pack_key(objects, p, false, pack_key);
    if (!replica_pack_size_listed(p))
        return error_set(err, -EBADMSG,
                         "pack %s (holding %s) is %lld bytes on target %s, its manifest says %llu",
                         pack_key, key, (long long)p->listed_size, objects->target_name,
                         (unsigned long long)p->size);
    *size = (int64_t)e->size;
    return 0;
}

bool replica_objects_cover(const struct replica_objects *objects, uint32_t generation)
{
    for (size_t i = 0; i < objects->pack_count; i++) {
        const struct replica_pack *p = &objects->packs[i];
        if (p->listed && p->manifest_listed && p->first <= generation && generation <= p->last)
            return true;
    }
    return false;
}

size_t replica_objects_packs_fetched(const struct replica_objects *objects, int64_t *bytes)
{
    if (bytes)
        *bytes = objects ? objects->pack_bytes : 0;
    return objects ? objects->packs_fetched : 0;
}
