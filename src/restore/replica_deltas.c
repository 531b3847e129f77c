/*
 * replica_deltas.c: the page deltas a point-in-time restore applies
 * instead of whole generations of WAL (replica_internal.h, delta.h).
 *
 * Chosen from one listing of DB/replica/deltas/: starting from the base's
 * generation, the delta reaching furthest that can be applied over what
 * is applied so far (its first generation at or before the next one
 * needed), never into the generation of T itself, which is cut at T's
 * commit from its segments. The deltas chosen are downloaded together
 * and checked (SHA-256 and size from their manifests) before any
 * generation is planned without them: one that is missing, damaged or
 * unreadable is reported and the restore goes on with the segments it
 * and the deltas after it stand for, which are kept for the same window.
 * Applied after the base: each page written at its place, the file cut to
 * the delta's db_pages.
 */
#include "restore/replica_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "archive/archive.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "replicate/delta.h"

/* One delta the listing shows: its manifest, and its data object if listed. */
struct replica_delta_listed {
    uint32_t first, last;
    bool has_data, sealed;
    int64_t data_size;
};

static void replica_deltas_listed(const struct target_listing *listing, const char *prefix,
                                  struct replica_delta_listed *out, size_t *count)
{
    size_t n = 0, length = strlen(prefix);
    uint32_t first, last;
    for (size_t i = 0; i < listing->count; i++) {
        const char *key = listing->objects[i].key;
        if (strncmp(key, prefix, length) == 0 &&
            format_delta_parse(key + length, FORMAT_DELTA_MANIFEST, &first, &last) == 0)
            out[n++] = (struct replica_delta_listed){.first = first, .last = last};
    }
    for (size_t i = 0; i < listing->count; i++) {
        const char *key = listing->objects[i].key;
        bool sealed = false;
        if (strncmp(key, prefix, length) != 0)
            continue;
        if (format_delta_parse(key + length, FORMAT_DELTA_PAGES SEALED_SUFFIX, &first, &last) == 0)
            sealed = true;
        else if (format_delta_parse(key + length, FORMAT_DELTA_PAGES, &first, &last) != 0)
            continue;
        for (size_t k = 0; k < n; k++)
            if (out[k].first == first && out[k].last == last) {
                /* Both plain and sealed (encryption switched while a span
                 * was rebuilt): the manifest says which; kept as listed. */
                out[k].has_data = true;
                out[k].sealed = sealed;
                out[k].data_size = listing->objects[i].size;
            }
    }
    *count = n;
}

/*
 * The next delta to use, from `need` (the first generation not applied
 * yet; `inside`: the state is inside `need`, as a base is, not at its
 * start), ending before `chosen`, starting at or after the base `first`
 * (a delta never spans a base: the agent starts spans anew there). One
 * that applies at once (A <= need, reaching past need) and reaches
 * furthest; else the one that starts soonest after need (its generations
 * before it replayed from segments), reaching furthest. NULL when none.
 */
static const struct replica_delta_listed *
replica_delta_best(const struct replica_delta_listed *listed, size_t count, uint32_t first,
                   uint32_t need, bool inside, uint32_t chosen)
{
    const struct replica_delta_listed *now = NULL, *later = NULL;
    for (size_t i = 0; i < count; i++) {
        const struct replica_delta_listed *d = &listed[i];
        if (!d->has_data || d->first < first || d->last >= chosen || d->last < need)
            continue;
        if (inside ? d->first == need : d->first <= need) {
            if (!now || d->last > now->last)
                now = d;
        } else if (d->first > need && (!later || d->first < later->first ||
                                       (d->first == later->first && d->last > later->last))) {
            later = d;
        }
    }
    return now ? now : later;
}

/* The manifest of `d`, read and checked against its name and listing. */
static int replica_delta_manifest(struct replica_work *work, const struct replica_delta_listed *d,
                                  struct replica_delta *out, struct error *err)
{
    char key[FORMAT_KEY_SIZE], path[PATH_MAX];
    char *text = NULL;
    size_t size = 0;
    int rc = format_delta_key(key, sizeof key, work->request->database, d->first, d->last,
                              FORMAT_DELTA_MANIFEST, err);
    if (rc != 0)
        return rc;
    replica_temp_path(work, "delta.json", path);
    rc = replica_get_text(work->target, key, path, &text, &size, err);
    if (rc == 0)
        rc = format_delta_decode(text, size, key, &out->manifest, err);
    free(text);
    if (rc != 0)
        return rc;
    const struct format_delta *m = &out->manifest;
    bool sealed = m->encryption.recipient_count > 0;
    if (m->first_generation != d->first || m->last_generation != d->last)
        return error_set(err, -EBADMSG, "%s says generations %" PRIu32 "..%" PRIu32, key,
                         m->first_generation, m->last_generation);
    rc = format_delta_key(out->key, sizeof out->key, work->request->database, d->first, d->last,
                          sealed ? FORMAT_DELTA_PAGES SEALED_SUFFIX : FORMAT_DELTA_PAGES, err);
    if (rc == 0 && (sealed != d->sealed || d->data_size != (int64_t)m->size))
        rc = error_set(err, -EBADMSG, "%s is %lld bytes on target %s%s, its manifest says %llu",
                       out->key, (long long)d->data_size, work->request->target->name,
                       sealed != d->sealed ? " (or not listed)" : "", (unsigned long long)m->size);
    return rc;
}

/* Downloads the chosen deltas together (a few at a time, as segments
 * are) and checks each against its manifest. The chain holds up to the
 * first that fails, which is reported: its generations, and those of the
 * deltas after it, are replayed from their segments, which stay for the
 * same window. */
static int replica_deltas_fetch(struct replica_work *work, struct error *err)
{
    struct replica_job *jobs = calloc(work->delta_count, sizeof *jobs);
    if (!jobs)
        return error_set(err, -ENOMEM, "out of memory");
    for (size_t k = 0; k < work->delta_count; k++) {
        struct replica_delta *delta = &work->deltas[k];
        replica_temp_path(work, "delta", delta->path);
        snprintf(jobs[k].key, sizeof jobs[k].key, "%s", delta->key);
        snprintf(jobs[k].path, sizeof jobs[k].path, "%s", delta->path);
        jobs[k].sha256 = delta->manifest.sha256;
        jobs[k].size = (int64_t)delta->manifest.size;
    }
    struct error first = {0};
    int rc = replica_fetch_all(work, jobs, work->delta_count, &first);
    /* The first that failed (a failure cancels the downloads in flight,
     * which may be of deltas before it: they go too). */
    size_t usable = 0, failed = 0;
    while (usable < work->delta_count && jobs[usable].rc == 0)
        usable++;
    while (failed < work->delta_count && (jobs[failed].rc >= 0 || jobs[failed].rc == -ECANCELED))
        failed++;
    if (rc == -ECANCELED || (rc != 0 && failed == work->delta_count)) {
        error_set(err, rc, "%s", first.message);
    } else if (rc != 0) {
        const struct format_delta *m = &work->deltas[failed].manifest;
        log_event(LOG_WARNING, work->request->database, "restore",
                  "page delta of generations %" PRIu32 "..%" PRIu32
                  " not used (%s); its generations are replayed from their segments",
                  m->first_generation, m->last_generation, jobs[failed].err.message);
        rc = 0;
    }
    for (size_t k = usable; k < work->delta_count; k++)
        unlink(work->deltas[k].path);
    work->delta_count = usable;
    free(jobs);
    return rc;
}

int replica_plan_deltas(struct replica_work *work, uint32_t base, uint32_t chosen,
                        struct error *err)
{
    if (base == 0 || base >= chosen || work->request->no_deltas)
        return 0;
    char prefix[FORMAT_KEY_SIZE];
    struct target_listing listing = {0};
    int rc = format_delta_key(prefix, sizeof prefix, work->request->database, 0, 0, "", err);
    if (rc == 0)
        rc = target_list(work->target, prefix, &listing, err);
    if (rc != 0) {
        target_listing_free(&listing);
        return rc;
    }
    struct replica_delta_listed *listed = calloc(listing.count + 1, sizeof *listed);
    size_t count = 0;
    if (!listed) {
        target_listing_free(&listing);
        return error_set(err, -ENOMEM, "out of memory");
    }
    replica_deltas_listed(&listing, prefix, listed, &count);
    target_listing_free(&listing);

    uint32_t need = base;
    bool inside = true;
    const struct replica_delta_listed *d;
    while (rc == 0 && (d = replica_delta_best(listed, count, base, need, inside, chosen))) {
        struct replica_delta delta = {0};
        struct error why = {0};
        int got = replica_delta_manifest(work, d, &delta, &why);
        if (got == 0 &&
            delta.manifest.page_size !=
                (work->delta_count ? work->deltas[0].manifest.page_size : delta.manifest.page_size))
            got = error_set(&why, -EBADMSG, "%s: page size %u, the delta before it %u", delta.key,
                            delta.manifest.page_size, work->deltas[0].manifest.page_size);
        if (got == -ECANCELED) {
            rc = error_set(err, got, "%s", why.message);
            break;
        }
        if (got != 0) {
            /* The segments it stands for are still there: restore from them. */
            log_event(LOG_WARNING, work->request->database, "restore",
                      "page delta of generations %" PRIu32 "..%" PRIu32
                      " not used (%s); its generations are replayed from their segments",
                      d->first, d->last, why.message);
            break;
        }
        struct replica_delta *grown =
            realloc(work->deltas, (work->delta_count + 1) * sizeof *grown);
        if (!grown) {
            rc = error_set(err, -ENOMEM, "out of memory");
            break;
        }
        work->deltas = grown;
        /* It stands for its generations from `need` on (the ones before
         * it, and before need, are applied otherwise). */
        delta.covers_from = d->first > need ? d->first : need;
        work->deltas[work->delta_count++] = delta;
        need = d->last + 1;
        inside = false;
    }
    free(listed);
    if (rc == 0 && work->delta_count && !work->request->plan_only)
        rc = replica_deltas_fetch(work, err);
    /* Their generations' objects stay on the target (a pack's span skips them). */
    for (size_t k = 0; k < work->delta_count && rc == 0; k++)
        if (replica_objects_skip(work->objects, work->deltas[k].covers_from,
                                 work->deltas[k].manifest.last_generation) != 0)
            rc = error_set(err, -ENOMEM, "out of memory");
    return rc;
}

bool replica_delta_covers(const struct replica_work *work, uint32_t generation)
{
    for (size_t k = 0; k < work->delta_count; k++)
        if (generation >= work->deltas[k].covers_from &&
            generation <= work->deltas[k].manifest.last_generation)
            return true;
    return false;
}

static int replica_delta_consume(void *context, const void *data, size_t size, struct error *err)
{
    return delta_apply_feed(context, data, size, err);
}

/* One fetched delta: decrypted and decompressed straight into the output
 * page by page (its SHA-256 was checked on download), the output cut to
 * its size. */
static int replica_apply_delta(struct replica_work *work, const struct replica_delta *delta,
                               uint64_t *pages, struct error *err)
{
    struct io_context io = {.stop = work->request->stop};
    struct archive_keys keys = work->request->keys;
    struct delta_apply apply = {0};
    keys.object = delta->key;
    int out = open(work->request->output, O_WRONLY | O_CLOEXEC);
    if (out < 0) {
        int rc = error_set(err, -errno, "%s: %s", work->request->output, strerror(errno));
        unlink(delta->path);
        return rc;
    }
    int rc = delta_apply_begin(&apply, out, delta->key, err);
    if (rc == 0)
        rc = archive_decompress_into(delta->path, replica_delta_consume, &apply, &keys, &io, NULL,
                                     err);
    unlink(delta->path);
    if (rc != 0 && !strstr(err->message, delta->key))
        error_prefix(err, "%s: ", delta->key);
    if (rc == 0)
        rc = delta_apply_finish(&apply, err);
    const struct format_delta *m = &delta->manifest;
    if (rc == 0 &&
        (apply.header.page_size != m->page_size || apply.header.db_pages != m->db_pages ||
         apply.header.pages != m->pages || apply.header.first_generation != m->first_generation ||
         apply.header.last_generation != m->last_generation))
        rc = error_set(err, -EBADMSG,
                       "%s holds %llu pages of %u bytes of a %u-page database for generations "
                       "%u..%u, its manifest says %llu of %u of %u for %u..%u",
                       delta->key, (unsigned long long)apply.header.pages, apply.header.page_size,
                       apply.header.db_pages, apply.header.first_generation,
                       apply.header.last_generation, (unsigned long long)m->pages, m->page_size,
                       m->db_pages, m->first_generation, m->last_generation);
    if (rc == 0 && ftruncate(out, (off_t)m->db_pages * m->page_size) != 0)
        rc = error_set(err, -errno, "%s: %s", work->request->output, strerror(errno));
    *pages = apply.records;
    delta_apply_end(&apply);
    if (close(out) != 0 && rc == 0)
        rc = error_set(err, -errno, "%s: %s", work->request->output, strerror(errno));
    return rc;
}

int replica_apply_deltas(struct replica_work *work, uint32_t before, struct replica_result *result,
                         struct error *err)
{
    for (size_t i = 0; i < work->delta_count; i++) {
        if (work->deltas[i].applied || work->deltas[i].manifest.last_generation >= before)
            continue;
        work->deltas[i].applied = true;
        uint64_t pages = 0;
        int rc = replica_apply_delta(work, &work->deltas[i], &pages, err);
        if (rc != 0)
            return rc;
        result->deltas++;
        result->delta_pages += pages;
        format_generation_name(work->deltas[i].manifest.last_generation, result->deltas_through);
        if (work->request->stop && *work->request->stop)
            return error_set(err, -ECANCELED, "stopped by a signal");
    }
    return 0;
}

void replica_deltas_free(struct replica_work *work)
{
    for (size_t i = 0; i < work->delta_count; i++)
        unlink(work->deltas[i].path);
    free(work->deltas);
    work->deltas = NULL;
    work->delta_count = 0;
}
