/*
 * replica.c: point-in-time restore from a WAL replica (replica.h).
 *
 * Order of work, each step refusing with the object it concerns:
 *   1. index.json -> the generation holding the last commit seen <= T; the
 *      page deltas that stand for generations of its chain before it
 *      (replica_deltas.c: each fetched and checked against its manifest);
 *      the chain back to a base file (base.json "from", not read for a
 *      generation a delta stands for);
 *   2. each other generation's wal/ listing and sidecars (fetched in
 *      parallel): segments contiguous from 0, the cut commit found, T not
 *      before the base's frame (finding 3 of docs/replication-design.md);
 *   3. base and segments fetched in parallel, SHA-256 checked (of the stored
 *      bytes: a sealed object is checked before anything is decrypted);
 *   4. per generation (replica_apply.c): the deltas that end before it
 *      applied, then its segments opened (sealed ones with request->keys)
 *      and inflated in order straight into the output, frame by frame as the
 *      checksum chain accepts them, and the file cut at the commit (or,
 *      SQLPRODD_RESTORE_APPLY=sqlite, into OUTPUT-wal that SQLite replays).
 * Every object is listed and fetched through replica_objects.h, which finds
 * the ones compaction packed; an object cut out of a pack is checked
 * against its sidecar or base.json like a loose one.
 */
#include "restore/replica.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "archive/archive.h"
#include "archive/sealed.h"
#include "core/fsutil.h"
#include "core/io.h"
#include "core/units.h"
#include "offsite/target.h"
#include "replicate/format.h"
#include "restore/replica_internal.h"
#include "restore/replica_objects.h"

/* ---- times ---- */

void replica_format_time(int64_t ms, char out[REPLICA_TIME_TEXT])
{
    char text[FORMAT_TIME_SIZE];
    format_time(ms, text);
    snprintf(out, REPLICA_TIME_TEXT, "%s", text);
}

/* RFC 3339: date 'T' time, optional fraction, 'Z' or +HH:MM/-HH:MM. */
static int replica_parse_rfc3339(const char *text, int64_t *ms)
{
    struct tm tm = {0};
    const char *rest = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest)
        rest = strptime(text, "%Y-%m-%d %H:%M:%S", &tm);
    if (!rest)
        return -EINVAL;
    int64_t fraction_ms = 0;
    if (*rest == '.') {
        int digits = 0;
        int64_t scale = 100;
        for (rest++; *rest >= '0' && *rest <= '9'; rest++, digits++) {
            fraction_ms += (*rest - '0') * scale;
            scale /= 10;
        }
        if (digits == 0)
            return -EINVAL;
    }
    int64_t offset_s = 0;
    if (*rest == 'Z' || *rest == 'z') {
        rest++;
    } else if (*rest == '+' || *rest == '-') {
        int sign = *rest == '-' ? -1 : 1, hours, minutes, used = 0;
        if (sscanf(rest + 1, "%2d:%2d%n", &hours, &minutes, &used) != 2 || used != 5 ||
            hours > 23 || minutes > 59)
            return -EINVAL;
        offset_s = sign * (hours * 3600 + minutes * 60);
        rest += 6;
    } else {
        return -EINVAL; /* a time without a zone is ambiguous: refuse it */
    }
    if (*rest)
        return -EINVAL;
    time_t seconds = timegm(&tm);
    *ms = ((int64_t)seconds - offset_s) * 1000 + fraction_ms;
    return 0;
}

int replica_parse_time(const char *text, int64_t now_ms, int64_t *at_ms, struct error *err)
{
    if (strcmp(text, "latest") == 0) {
        *at_ms = REPLICA_LATEST;
        return 0;
    }
    if (text[0] == '-') {
        int64_t seconds;
        char why[128];
        if (units_parse_duration(text + 1, &seconds, why, sizeof why) != 0)
            return error_set(err, -EINVAL, "--at %s: %s (a relative time is like -15m or -2h)",
                             text, why);
        *at_ms = now_ms - seconds * 1000;
        return 0;
    }
    if (replica_parse_rfc3339(text, at_ms) != 0)
        return error_set(err, -EINVAL,
                         "--at %s: expected latest, a time before now like -15m, or RFC 3339 "
                         "with its zone like 2026-12-02T10:15:00Z or 2026-12-02T11:15:00+01:00",
                         text);
    return 0;
}

/* ---- manifests (replicate/format.h decodes them) ---- */

/* One base.json: -ENOENT when it is not there, -EINVAL when it is not valid. */
static int replica_fetch_base(struct target *target, const char *key, const char *temp_path,
                              struct format_base *base, struct error *err)
{
    char *text = NULL;
    size_t size = 0;
    int rc = replica_get_text(target, key, temp_path, &text, &size, err);
    if (rc == 0)
        rc = format_base_decode(text, size, key, base, err);
    free(text);
    return rc;
}

/* ---- the restore's state (replica_internal.h) ---- */

/* The same names for the packs and manifests replica_objects fetches. */
static void replica_objects_temp(void *context, const char *what, char out[PATH_MAX])
{
    replica_temp_path(context, what, out);
}

/* ---- index.json ---- */

static int replica_read_index(const struct target_config *config, struct target *target,
                              const char *database, const char *temp_path,
                              struct replica_windows *out, struct error *err)
{
    char key[FORMAT_KEY_SIZE];
    char *text = NULL;
    size_t size = 0;
    struct format_index index = {0};
    memset(out, 0, sizeof *out);
    int rc = format_key(key, sizeof key, database, FORMAT_INDEX, 0, 0, 0, err);
    if (rc == 0)
        rc = replica_get_text(target, key, temp_path, &text, &size, err);
    if (rc == -ENOENT)
        return error_set(err, -ENOENT,
                         "target %s holds no replica of %s (%s not found): is replicate "
                         "configured and has the agent shipped yet?",
                         config->name, database, key);
    if (rc == 0)
        rc = format_index_decode(text, size, key, &index, err);
    free(text);
    if (rc != 0)
        return rc == -EINVAL ? -EBADMSG : rc;
    snprintf(out->database, sizeof out->database, "%s", index.database);
    replica_format_time(index.updated_at_ms, out->updated_at);
    if (strcmp(index.database, database) != 0) {
        rc = error_set(err, -EBADMSG, "%s is for database '%s', not for %s", key, index.database,
                       database);
        goto out;
    }
    out->items = calloc(index.count + 1, sizeof *out->items);
    if (!out->items) {
        rc = error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < index.count; i++) {
        const struct format_index_generation *g = &index.generations[i];
        struct replica_window *w = &out->items[out->count];
        if (g->first_seen_at_ms == 0)
            continue; /* nothing shipped yet: nothing to restore in it */
        format_generation_name(g->generation, w->name);
        w->first_ms = g->first_seen_at_ms;
        w->last_ms = g->last_seen_at_ms;
        replica_format_time(w->first_ms, w->first_seen_at);
        replica_format_time(w->last_ms, w->last_seen_at);
        if (g->base_from) {
            char from[16];
            format_generation_name(g->base_from, from);
            snprintf(w->base, sizeof w->base, "%s/end", from);
        } else {
            snprintf(w->base, sizeof w->base, "file");
        }
        w->starts_chain = g->base_from == 0;
        w->snapshot = g->snapshot;
        out->count++;
    }
    if (out->count == 0)
        rc = error_set(err, -ENOENT, "%s lists no generation with a shipped commit yet", key);
out:
    format_index_free(&index);
    if (rc != 0)
        replica_windows_free(out);
    return rc;
}

void replica_windows_free(struct replica_windows *windows)
{
    free(windows->items);
    windows->items = NULL;
    windows->count = 0;
}

/* Whom generation `w`'s base.json says it is sealed to: one small GET. A
 * base.json that cannot be read is said in the text, not fatal: the
 * listing is still worth printing. */
static void replica_window_sealed_to(struct target *target, const char *target_name,
                                     const char *database, const char *temp_path,
                                     struct replica_objects **objects, struct replica_window *w)
{
    char key[FORMAT_KEY_SIZE];
    struct format_base base = {0};
    struct error err = {0};
    uint32_t number = 0;
    int rc = format_generation_parse(w->name, &number);
    if (rc == 0)
        rc = format_key(key, sizeof key, database, FORMAT_BASE_JSON, number, 0, 0, &err);
    if (rc == 0)
        rc = replica_fetch_base(target, key, temp_path, &base, &err);
    /* Packed: not read (a pack may hold a day of WAL), as for the
     * generations between the first and the last. */
    if (rc == -ENOENT && !*objects)
        replica_objects_open(target, target_name, database, 0, NULL, NULL, objects, NULL);
    if (rc == -ENOENT && *objects && replica_objects_cover(*objects, number)) {
        w->sealed_to[0] = 0;
        return;
    }
    if (rc != 0) {
        snprintf(w->sealed_to, sizeof w->sealed_to, "? (%s)", err.message);
        return;
    }
    size_t used = 0;
    for (size_t i = 0; i < base.encryption.recipient_count && used < sizeof w->sealed_to; i++) {
        int n = snprintf(w->sealed_to + used, sizeof w->sealed_to - used, "%s%s", i ? ", " : "",
                         base.encryption.recipients[i]);
        used += n > 0 ? (size_t)n : 0;
    }
}

int replica_list_windows(const struct target_config *target_config, const char *database,
                         const volatile sig_atomic_t *stop, const char *temp_prefix,
                         struct replica_windows *out, struct error *err)
{
    struct target *target = NULL;
    struct replica_objects *objects = NULL;
    char temp[PATH_MAX];
    snprintf(temp, sizeof temp, "%s.replica-index%s", temp_prefix, FS_TEMP_SUFFIX);
    int rc = target_open(target_config, &target, err);
    if (rc == 0) {
        target_set_stop(target, stop);
        rc = replica_read_index(target_config, target, database, temp, out, err);
    }
    /* The first and the newest generation of each window: a window may
     * chain thousands (one per WAL reset), and one GET each would make the
     * listing as slow as a restore. The newest says the key in use now. */
    for (size_t i = 0; rc == 0 && i < out->count; i++)
        if (out->items[i].starts_chain || i == 0 || i + 1 == out->count ||
            out->items[i + 1].starts_chain)
            replica_window_sealed_to(target, target_config->name, database, temp, &objects,
                                     &out->items[i]);
    replica_objects_close(objects);
    target_close(target);
    return rc;
}

/* ---- base.json, the chain of generations ---- */

static struct replica_window *replica_find_window(struct replica_windows *index, const char *name)
{
    for (size_t i = 0; i < index->count; i++)
        if (strcmp(index->items[i].name, name) == 0)
            return &index->items[i];
    return NULL;
}

/* plan_only, base.json packed: the chain's link from index.json, which
 * says the same ("from"), and the pack listed whole with its manifest; the
 * base file's size is then checked against nothing but its presence. */
static int replica_plan_base_from_index(struct replica_work *work, struct replica_generation *g,
                                        const char *key, struct error *err)
{
    int64_t size = 0;
    int rc = replica_objects_check_packed(work->objects, key, &size, err);
    if (rc != 0)
        return rc;
    g->has_base_file = g->window.starts_chain;
    snprintf(g->from, sizeof g->from, "%s", g->has_base_file ? "" : g->window.base);
    g->base_frame = 0;
    g->base_size = -1; /* unknown: base.json not read */
    g->base_sealed = false;
    g->base_taken_at_ms = 0;
    g->base_pages = 0;
    return 0;
}

static int replica_read_base(struct replica_work *work, struct replica_generation *g,
                             struct error *err)
{
    char key[FORMAT_KEY_SIZE], path[PATH_MAX];
    struct format_base base = {0};
    uint32_t number = 0;
    char *text = NULL;
    size_t size = 0;
    bool packed = false;
    snprintf(key, sizeof key, "%s%s/base.json", work->prefix, g->window.name);
    replica_temp_path(work, "base.json", path);
    int rc = replica_objects_packed(work->objects, key, &packed, err);
    if (rc == 0 && packed && work->request->plan_only)
        return replica_plan_base_from_index(work, g, key, err);
    if (rc == 0)
        rc = replica_objects_get(work->objects, key, path, packed, err);
    if (rc == 0)
        rc = fs_read_file(path, &text, &size, err);
    unlink(path);
    if (rc == 0)
        rc = format_base_decode(text, size, key, &base, err);
    free(text);
    if (rc == -ENOENT)
        rc = error_set(err, -ENOENT, "%s is missing on target %s: generation %s cannot be restored",
                       key, work->request->target->name, g->window.name);
    if (rc != 0)
        return rc == -EINVAL ? -EBADMSG : rc;
    if (format_generation_parse(g->window.name, &number) != 0 || base.generation != number)
        return error_set(err, -EBADMSG, "%s says generation %u, it is under %s", key,
                         base.generation, g->window.name);
    g->from[0] = 0;
    if (base.from_generation) {
        char from[16];
        format_generation_name(base.from_generation, from);
        snprintf(g->from, sizeof g->from, "%s/end", from);
    }
    g->has_base_file = !base.from_generation;
    g->base_frame = base.frame;
    snprintf(g->base_sha256, sizeof g->base_sha256, "%s", base.sha256);
    g->base_size = (int64_t)base.size;
    g->base_sealed = base.encryption.recipient_count > 0;
    if (g->base_sealed)
        snprintf(g->base_sealed_to, sizeof g->base_sealed_to, "%.70s%s",
                 base.encryption.recipients[0],
                 base.encryption.recipient_count > 1 ? " and others" : "");
    g->base_taken_at_ms = base.taken_at_ms;
    g->base_pages = base.page_size ? (uint32_t)(base.database_bytes / base.page_size) : 0;
    return 0;
}

/* The generation the chain of `chosen` starts from, as index.json says (the
 * nearest one at or before it with a base file); 0 when it cannot tell. */
static uint32_t replica_chain_start(const struct replica_windows *index, size_t chosen)
{
    uint32_t number = 0;
    size_t i = chosen;
    while (i > 0 && !index->items[i].starts_chain)
        i--;
    if (!index->items[i].starts_chain ||
        format_generation_parse(index->items[i].name, &number) != 0)
        return 0;
    return number;
}

/* From the chosen generation back to the one with a base file. */
static int replica_build_chain(struct replica_work *work, size_t chosen, struct error *err)
{
    size_t capacity = chosen + 1;
    work->chain = calloc(capacity, sizeof *work->chain);
    if (!work->chain)
        return error_set(err, -ENOMEM, "out of memory");
    struct replica_window *w = &work->index.items[chosen];
    /* Filled from the end: the chosen one last. */
    size_t slot = capacity;
    for (;;) {
        if (slot == 0)
            return error_set(err, -EBADMSG, "the \"from\" links of %sindex.json form a loop",
                             work->prefix);
        struct replica_generation *g = &work->chain[--slot];
        g->window = *w;
        uint32_t number = 0;
        format_generation_parse(w->name, &number);
        /* A page delta stands for it, and index.json says it continues the
         * one before: its base.json is not read, nor are its segments. */
        if (replica_delta_covers(work, number) && !w->starts_chain && number > 1) {
            g->covered = true;
            format_generation_name(number - 1, g->from);
            if (!(w = replica_find_window(&work->index, g->from)))
                return error_set(err, -ENOENT,
                                 "generation %s continues %s, which %sindex.json no longer lists",
                                 g->window.name, g->from, work->prefix);
            snprintf(g->from + strlen(g->from), sizeof g->from - strlen(g->from), "/end");
            continue;
        }
        int rc = replica_read_base(work, g, err);
        if (rc != 0)
            return rc;
        g->covered = replica_delta_covers(work, number);
        if (g->has_base_file)
            break;
        char previous[48];
        snprintf(previous, sizeof previous, "%s", g->from);
        char *slash = strchr(previous, '/');
        if (!slash || strcmp(slash, "/end") != 0)
            return error_set(err, -EBADMSG, "%s%s/base.json: \"from\" is '%s', not gNNNNNNNN/end",
                             work->prefix, g->window.name, g->from);
        *slash = 0;
        if (!(w = replica_find_window(&work->index, previous)))
            return error_set(err, -ENOENT,
                             "generation %s starts from the end of %s, which %sindex.json no "
                             "longer lists (removed by retention?): nothing before %s can be "
                             "restored from this chain",
                             g->window.name, previous, work->prefix, g->window.first_seen_at);
    }
    work->chain_count = capacity - slot;
    memmove(work->chain, work->chain + slot, work->chain_count * sizeof *work->chain);
    return 0;
}

/* ---- segments and their sidecars ---- */

static int replica_compare_segments(const void *a, const void *b)
{
    const struct replica_segment *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* One entry per range: a range listed both plain and sealed keeps one,
 * and its sidecar says which of the two it describes. */
static void replica_merge_listed(struct replica_generation *g)
{
    size_t kept = 0;
    for (size_t i = 0; i < g->segment_count; i++) {
        struct replica_segment *s = &g->segments[i];
        if (kept > 0 && g->segments[kept - 1].start == s->start &&
            g->segments[kept - 1].end == s->end) {
            g->segments[kept - 1].listed_plain |= s->listed_plain;
            g->segments[kept - 1].listed_sealed |= s->listed_sealed;
            g->segments[kept - 1].listed_plain_size += s->listed_plain_size;
            g->segments[kept - 1].listed_sealed_size += s->listed_sealed_size;
            continue;
        }
        g->segments[kept++] = *s;
    }
    g->segment_count = kept;
}

/* Lists GEN/wal/ and pairs each segment with its sidecar. */
static int replica_list_segments(struct replica_work *work, struct replica_generation *g,
                                 struct error *err)
{
    struct target_listing listing = {0};
    char prefix[1100];
    uint32_t number = 0;
    snprintf(prefix, sizeof prefix, "%s%s/wal/", work->prefix, g->window.name);
    int rc = format_generation_parse(g->window.name, &number);
    assert(rc == 0);
    rc = replica_objects_list_segments(work->objects, number, &listing, err);
    if (rc != 0)
        return rc;
    g->segments = calloc(listing.count + 1, sizeof *g->segments);
    if (!g->segments) {
        rc = error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < listing.count; i++) {
        const char *key = listing.objects[i].key;
        const char *name = key + strlen(prefix);
        uint64_t start, end;
        bool sealed = false;
        if (strncmp(key, prefix, strlen(prefix)) != 0)
            continue;
        if (format_segment_parse(name, ".wal.gz" SEALED_SUFFIX, &start, &end) == 0)
            sealed = true;
        else if (format_segment_parse(name, ".wal.gz", &start, &end) != 0)
            continue; /* sidecars, temp files */
        struct replica_segment *s = &g->segments[g->segment_count++];
        s->start = start;
        s->end = end;
        s->size = listing.objects[i].size;
        s->listed_sealed = sealed;
        s->listed_plain = !sealed;
        *(sealed ? &s->listed_sealed_size : &s->listed_plain_size) = s->size;
    }
    qsort(g->segments, g->segment_count, sizeof *g->segments, replica_compare_segments);
    replica_merge_listed(g);
    for (size_t i = 0; i < listing.count; i++) {
        const char *key = listing.objects[i].key;
        struct replica_segment probe = {0};
        if (strncmp(key, prefix, strlen(prefix)) != 0 ||
            format_segment_parse(key + strlen(prefix), ".wal.json", &probe.start, &probe.end) != 0)
            continue;
        struct replica_segment *s = bsearch(&probe, g->segments, g->segment_count,
                                            sizeof *g->segments, replica_compare_segments);
        if (s && s->end == probe.end)
            s->listed_sidecar = true;
    }
out:
    target_listing_free(&listing);
    return rc;
}

/* Contiguous from 0: a missing segment is named by the range it held. */
static int replica_check_contiguous(struct replica_work *work, const struct replica_generation *g,
                                    size_t count, struct error *err)
{
    uint64_t expected = 0;
    for (size_t i = 0; i < count; i++) {
        const struct replica_segment *s = &g->segments[i];
        if (s->start != expected)
            return error_set(
                err, -ENOENT,
                "segment %s%s/wal/%012llu-%012llu.wal.gz is missing on target %s (%s): the WAL "
                "of generation %s has a gap%s%s; restore to a time before it, or from a backup",
                work->prefix, g->window.name, (unsigned long long)expected,
                (unsigned long long)s->start, work->request->target->name,
                s->start > expected ? "the next segment starts later" : "segments overlap",
                g->window.name, i > 0 ? " after " : "",
                i > 0 ? SEGMENT_KEY(&g->segments[i - 1]) : "");
        expected = s->end;
    }
    return 0;
}

/* Reads one sidecar: the segment's sha256 and size, and its commits. */
static int replica_read_sidecar(const char *path, const char *key,
                                const struct replica_generation *g, struct replica_segment *s,
                                struct replica_commit **commits, size_t *count, struct error *err)
{
    char *text = NULL;
    size_t size = 0;
    struct format_segment segment = {0};
    uint32_t number = 0;
    int rc = fs_read_file(path, &text, &size, err);
    if (rc == 0)
        rc = format_segment_decode(text, size, key, &segment, err);
    free(text);
    if (rc != 0)
        return rc == -EINVAL ? -EBADMSG : rc;
    format_generation_parse(g->window.name, &number);
    if (segment.generation != number || segment.start != s->start || segment.end != s->end) {
        rc = error_set(err, -EBADMSG, "%s describes generation %u, bytes %llu-%llu: not its name",
                       key, segment.generation, (unsigned long long)segment.start,
                       (unsigned long long)segment.end);
        goto out;
    }
    s->sealed = segment.encryption.recipient_count > 0;
    if (!(s->sealed ? s->listed_sealed : s->listed_plain)) {
        char name[32];
        format_segment_name(s->start, s->end, name);
        rc = error_set(err, -ENOENT,
                       "%s describes %s%s, which the target does not hold (only the %s one): "
                       "the segment was re-shipped and not uploaded again",
                       key, name, SEGMENT_SUFFIX(s), s->sealed ? "unencrypted" : "encrypted");
        goto out;
    }
    snprintf(s->sha256, sizeof s->sha256, "%s", segment.sha256);
    s->size = (int64_t)segment.size;
    s->salt[0] = segment.salt[0];
    s->salt[1] = segment.salt[1];
    s->checksum[0] = segment.checksum[0];
    s->checksum[1] = segment.checksum[1];
    *count = segment.commit_count;
    *commits = calloc(*count, sizeof **commits);
    if (!*commits) {
        rc = error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < *count; i++) {
        const struct format_commit *from = &segment.commits[i];
        struct replica_commit *c = &(*commits)[i];
        c->frame = from->frame;
        c->end_offset = from->end_offset;
        c->db_pages = from->db_pages;
        c->seen_ms = from->seen_at_ms;
        replica_format_time(c->seen_ms, c->seen_at);
        if (c->end_offset <= s->start || c->end_offset > s->end ||
            (i > 0 && c->end_offset <= (*commits)[i - 1].end_offset)) {
            rc = error_set(err, -EBADMSG, "%s: commit %zu ends at %llu, outside the segment", key,
                           i + 1, (unsigned long long)c->end_offset);
            goto out;
        }
    }
    if ((*commits)[*count - 1].end_offset != s->end)
        rc = error_set(err, -EBADMSG, "%s: the last commit ends at %llu, the segment at %llu", key,
                       (unsigned long long)(*commits)[*count - 1].end_offset,
                       (unsigned long long)s->end);
out:
    format_segment_free(&segment);
    if (rc != 0) {
        free(*commits);
        *commits = NULL;
    }
    return rc;
}

/* Reads the sidecars of segments [first, first + count) of `g`, fetched in
 * parallel, and decides what the generation applies: all of it, or up to
 * the last commit seen <= T for the last generation of the chain. */
static int replica_plan_batch(struct replica_work *work, struct replica_generation *g, bool last,
                              size_t first, size_t count, struct replica_job *jobs,
                              struct error *err)
{
    for (size_t k = 0; k < count; k++) {
        memset(&jobs[k], 0, sizeof jobs[k]);
        replica_segment_key(work, g, &g->segments[first + k], ".wal.json", jobs[k].key);
        jobs[k].size = -1;
        replica_temp_path(work, "sidecar", jobs[k].path);
    }
    int rc = replica_fetch_all(work, jobs, count, err);
    if (rc == -ENOENT)
        error_prefix(err, "a segment's sidecar is missing: ");
    for (size_t k = 0; k < count && rc == 0; k++) {
        struct replica_segment *s = &g->segments[first + k];
        struct replica_commit *commits = NULL;
        size_t commit_count = 0;
        if (jobs[k].planned) {
            /* plan_only, the sidecar packed: the segment counts as listed
             * (its size is the manifest's), applied whole. */
            s->sealed = s->listed_sealed && !s->listed_plain;
            if (!g->cut)
                g->used_segments = first + k + 1;
            continue;
        }
        rc = replica_read_sidecar(jobs[k].path, jobs[k].key, g, s, &commits, &commit_count, err);
        if (rc != 0)
            break;
        s->commits = commit_count;
        s->first_frame = commits[0].frame;
        s->first_seen_ms = commits[0].seen_ms;
        if (!g->cut) {
            size_t taken = 0;
            for (; taken < commit_count; taken++)
                if (last && commits[taken].seen_ms > work->request->at_ms)
                    break;
            if (taken > 0) {
                g->target = commits[taken - 1];
                g->used_segments = first + k + 1;
                g->used_commits += taken;
            }
            if (taken < commit_count)
                g->cut = true;
        }
        free(commits);
    }
    for (size_t k = 0; k < count; k++)
        unlink(jobs[k].path);
    return rc;
}

static int replica_plan_segments(struct replica_work *work, struct error *err)
{
    int rc = 0;
    struct replica_job *jobs = calloc(REPLICA_BATCH, sizeof *jobs);
    if (!jobs)
        return error_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < work->chain_count && rc == 0; i++) {
        struct replica_generation *g = &work->chain[i];
        bool last = i + 1 == work->chain_count;
        if (g->covered)
            continue; /* a page delta stands for it (replica_deltas.c) */
        /* A base copied with no commit in the WAL is the database as of its
         * taken_at: restorable from then on, segments or not. */
        bool base_will_do = last && i == 0 && g->has_base_file && g->base_frame == 0 &&
                            g->base_taken_at_ms > 0 &&
                            g->base_taken_at_ms <= work->request->at_ms;
        rc = replica_list_segments(work, g, err);
        /* The uploader puts a segment, then its sidecar (uploader.h): the
         * newest segment of all without one was on its way when the agent
         * stopped or its host died. Its commits are not restorable yet (the
         * sidecar gives their times), the ones before it are. Anywhere else
         * a missing sidecar is a gap, and fails below. */
        if (rc == 0 && last && g->segment_count > 0 &&
            !g->segments[g->segment_count - 1].listed_sidecar) {
            g->segment_count--;
            work->in_flight = true;
        }
        if (rc == 0 && g->segment_count == 0 && !base_will_do)
            rc = error_set(err, -ENOENT, "generation %s has no segment on target %s (%s%s/wal/)",
                           g->window.name, work->request->target->name, work->prefix,
                           g->window.name);
        /* The last generation's sidecars are read until the cut, or on
         * until the base's frame when the base is not at the start. */
        for (size_t first = 0;
             rc == 0 && first < g->segment_count && (!g->cut || (i == 0 && g->base_frame > 0));
             first += REPLICA_BATCH) {
            size_t count = g->segment_count - first;
            rc = replica_plan_batch(work, g, last, first,
                                    count < REPLICA_BATCH ? count : REPLICA_BATCH, jobs, err);
        }
        if (rc == 0)
            rc = replica_check_contiguous(work, g, g->used_segments, err);
        if (rc == 0 && g->used_segments == 0 && base_will_do) {
            g->base_only = true;
            g->target = (struct replica_commit){.seen_ms = g->base_taken_at_ms,
                                                .db_pages = g->base_pages};
            replica_format_time(g->base_taken_at_ms, g->target.seen_at);
        } else if (rc == 0 && g->used_segments == 0) {
            rc = error_set(err, -ERANGE, "no commit of generation %s is at or before the time",
                           g->window.name);
        }
        if (rc == 0 && !last && g->used_segments != g->segment_count)
            rc = error_set(err, -EBADMSG, "generation %s lists segments past its end",
                           g->window.name);
    }
    free(jobs);
    return rc;
}

/* ---- the restore ---- */

/* The earliest commit a chain whose base file sits at frame F can restore:
 * the first one at or after F. */
static int replica_check_base_frame(struct replica_work *work, struct error *err)
{
    const struct replica_generation *base = &work->chain[0];
    if (work->chain_count > 1 || base->target.frame >= base->base_frame)
        return 0;
    char earliest[REPLICA_TIME_TEXT] = "";
    for (size_t k = 0; k < base->segment_count; k++)
        if (base->segments[k].commits && base->segments[k].first_frame >= base->base_frame) {
            replica_format_time(base->segments[k].first_seen_ms, earliest);
            break;
        }
    return error_set(err, -ERANGE,
                     "the chosen commit (frame %llu, seen %s) is before the base of generation "
                     "%s (copied at frame %llu): replaying it would give a damaged database; "
                     "the earliest restorable time of this window is about %s",
                     (unsigned long long)base->target.frame, base->target.seen_at,
                     base->window.name, (unsigned long long)base->base_frame,
                     earliest[0] ? earliest : "the next segment's first commit");
}

static int replica_choose(struct replica_work *work, size_t *chosen, struct error *err)
{
    const struct replica_windows *index = &work->index;
    int64_t at = work->request->at_ms;
    for (size_t i = index->count; i-- > 0;)
        if (index->items[i].first_ms <= at) {
            *chosen = i;
            return 0;
        }
    char asked[REPLICA_TIME_TEXT];
    replica_format_time(at, asked);
    return error_set(err, -ERANGE,
                     "%s is before the replica's window of %s: the earliest restorable time is "
                     "%s (generation %s)",
                     asked, work->request->database, index->items[0].first_seen_at,
                     index->items[0].name);
}

/* request->plan_only: every object the restore would fetch is listed with
 * the size its sidecar or base.json gives, without fetching it. */
static int replica_check_sizes(struct replica_work *work, struct error *err)
{
    const struct replica_generation *base = &work->chain[0];
    struct target_listing listing = {0};
    char key[FORMAT_KEY_SIZE];
    snprintf(key, sizeof key, "%s%s/base.db.gz%s", work->prefix, base->window.name,
             base->base_sealed ? SEALED_SUFFIX : "");
    int rc = target_list(work->target, key, &listing, err);
    const struct target_object *found = NULL;
    for (size_t i = 0; rc == 0 && i < listing.count; i++)
        if (strcmp(listing.objects[i].key, key) == 0 ||
            (base->base_size < 0 && strncmp(listing.objects[i].key, key, strlen(key)) == 0 &&
             strcmp(listing.objects[i].key + strlen(key), SEALED_SUFFIX) == 0))
            found = &listing.objects[i];
    if (rc == 0 && found && base->base_size < 0)
        goto segments; /* base.json packed: present is what can be said */
    if (rc == 0 && !found)
        rc = error_set(err, -ENOENT, "%s is missing on target %s: base.json describes it", key,
                       work->request->target->name);
    else if (rc == 0 && found->size != base->base_size)
        rc = error_set(err, -EBADMSG, "%s is %lld bytes on target %s, base.json says %lld", key,
                       (long long)found->size, work->request->target->name,
                       (long long)base->base_size);
segments:
    target_listing_free(&listing);
    for (size_t i = 0; i < work->chain_count && rc == 0; i++) {
        const struct replica_generation *g = &work->chain[i];
        for (size_t k = 0; k < g->used_segments && rc == 0; k++) {
            const struct replica_segment *s = &g->segments[k];
            int64_t listed = s->sealed ? s->listed_sealed_size : s->listed_plain_size;
            bool packed = false;
            rc = replica_objects_packed(work->objects, SEGMENT_KEY(s), &packed, err);
            if (rc == 0 && packed)
                rc = replica_objects_check_packed(work->objects, SEGMENT_KEY(s), &listed, err);
            if (rc == 0 && listed != s->size)
                rc =
                    error_set(err, -EBADMSG, "%s is %lld bytes on target %s, its sidecar says %lld",
                              SEGMENT_KEY(s), (long long)listed, work->request->target->name,
                              (long long)s->size);
        }
    }
    return rc;
}

int replica_restore(const struct replica_request *request, struct replica_result *result,
                    struct error *err)
{
    struct replica_work work = {.request = request};
    struct replica_job *jobs = NULL;
    size_t chosen = 0;
    char index_path[PATH_MAX];
    bool output_made = false;
    memset(result, 0, sizeof *result);
    snprintf(work.prefix, sizeof work.prefix, "%s/replica/", request->database);
    snprintf(work.temp, sizeof work.temp, "%s.replica-", request->output);
    int rc = target_open(request->target, &work.target, err);
    if (rc != 0)
        return rc;
    target_set_stop(work.target, request->stop);
    replica_temp_path(&work, "index.json", index_path);
    rc = replica_read_index(request->target, work.target, request->database, index_path,
                            &work.index, err);
    if (rc == 0)
        rc = replica_choose(&work, &chosen, err);
    uint32_t newest = 0;
    if (rc == 0 && format_generation_parse(work.index.items[chosen].name, &newest) == 0)
        rc = replica_objects_open(work.target, request->target->name, request->database, newest,
                                  replica_objects_temp, &work, &work.objects, err);
    if (rc == 0)
        replica_objects_expect_from(work.objects, replica_chain_start(&work.index, chosen));
    if (rc == 0)
        rc = replica_plan_deltas(&work, replica_chain_start(&work.index, chosen), newest, err);
    if (rc == 0)
        rc = replica_build_chain(&work, chosen, err);
    if (rc == 0)
        rc = replica_plan_segments(&work, err);
    if (rc == 0)
        rc = replica_check_base_frame(&work, err);
    if (rc == 0 && request->plan_only) {
        rc = replica_check_sizes(&work, err);
        for (size_t i = 0; i < work.chain_count; i++)
            result->segments += work.chain[i].used_segments;
        result->generations = work.chain_count;
        goto out;
    }
    if (rc == 0 && !(jobs = calloc(2 * REPLICA_BATCH, sizeof *jobs)))
        rc = error_set(err, -ENOMEM, "out of memory");
    if (rc != 0)
        goto out;

    /* The base, checked against base.json, decompressed to the output. */
    const struct replica_generation *base = &work.chain[0];
    snprintf(jobs[0].key, sizeof jobs[0].key, "%s%s/base.db.gz%s", work.prefix, base->window.name,
             base->base_sealed ? SEALED_SUFFIX : "");
    jobs[0].sha256 = base->base_sha256;
    jobs[0].size = base->base_size;
    replica_temp_path(&work, "base.db.gz", jobs[0].path);
    rc = replica_fetch_all(&work, jobs, 1, err);
    if (rc == 0) {
        struct io_context io = {.stop = request->stop};
        unlink(request->output);
        output_made = true;
        /* No result: its SHA-256 was checked as it was downloaded. */
        rc = archive_decompress(jobs[0].path, request->output, &request->keys, &io, NULL, err);
        if (rc != 0)
            error_prefix(err, "%s: ", jobs[0].key);
        /* Which key opens it, from base.json: what the operator looks for. */
        if (rc == -ENOKEY && base->base_sealed_to[0] && err) {
            size_t used = strlen(err->message);
            snprintf(err->message + used, sizeof err->message - used,
                     " (its base.json: sealed to %s)", base->base_sealed_to);
        }
    }
    unlink(jobs[0].path);
    if (rc == 0)
        rc = replica_apply_chain(&work, (struct replica_job *[2]){jobs, jobs + REPLICA_BATCH},
                                 result, err);
    if (rc != 0)
        goto out;
    const struct replica_generation *last = &work.chain[work.chain_count - 1];
    snprintf(result->seen_at, sizeof result->seen_at, "%s", last->target.seen_at);
    snprintf(result->generation, sizeof result->generation, "%s", last->window.name);
    snprintf(result->base_generation, sizeof result->base_generation, "%s", base->window.name);
    result->frame = last->target.frame;
    result->db_pages = last->target.db_pages;
    result->generations = work.chain_count;
out:
    result->in_flight = work.in_flight;
    result->packs = replica_objects_packs_fetched(work.objects, &result->fetched_bytes);
    result->fetched_bytes += work.fetched_bytes;
    replica_objects_close(work.objects);
    replica_whole_free(&work.whole);
    replica_deltas_free(&work);
    free(jobs);
    for (size_t i = 0; i < work.chain_count; i++)
        free(work.chain[i].segments);
    free(work.chain);
    replica_windows_free(&work.index);
    target_close(work.target);
    if (rc != 0 && output_made) {
        char name[PATH_MAX + 16];
        for (int part = 0; part < FS_DATABASE_PARTS; part++) {
            snprintf(name, sizeof name, "%s%s", request->output, fs_database_suffixes[part]);
            unlink(name);
        }
    }
    return rc;
}
