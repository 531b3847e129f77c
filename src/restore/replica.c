/*
 * replica.c: point-in-time restore from a WAL replica (replica.h).
 *
 * Order of work, each step refusing with the object it concerns:
 *   1. index.json -> the generation holding the last commit seen <= T, and
 *      the chain back to a base file (base.json "from");
 *   2. each generation's wal/ listing and sidecars (fetched in parallel):
 *      segments contiguous from 0, the cut commit found, T not before the
 *      base's frame (finding 3 of docs/replication-design.md);
 *   3. base and segments fetched in parallel, SHA-256 checked (of the stored
 *      bytes: a sealed object is checked before anything is decrypted);
 *   4. per generation: segments opened (sealed ones with request->keys) and
 *      inflated in order into OUTPUT-wal, cut,
 *      chain checked from the header, replayed by SQLite (TRUNCATE).
 * Every object is listed and fetched through replica_objects.h, which finds
 * the ones compaction packed; an object cut out of a pack is checked
 * against its sidecar or base.json like a loose one.
 */
#include "restore/replica.h"
#include "restore/wal_apply.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <libdeflate.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "archive/archive.h"
#include "archive/sealed.h"
#include "core/fsutil.h"
#include "core/io.h"
#include "core/units.h"
#include "offsite/target.h"
#include "replicate/format.h"
#include "replicate/wal.h"
#include "restore/replica_objects.h"

#define REPLICA_BUFFER           (64 * 1024)
#define REPLICA_DEFAULT_PARALLEL 4
#define REPLICA_READ_AHEAD       (1 << 20) /* WAL bytes read at once when replaying */

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

/* Fetches a small object (a manifest) into memory through a temp file. */
static int replica_get_text(struct target *target, const char *key, const char *temp_path,
                            char **text, size_t *size, struct error *err)
{
    unlink(temp_path);
    int rc = target_get_file(target, key, temp_path, NULL, err);
    if (rc == 0)
        rc = fs_read_file(temp_path, text, size, err);
    unlink(temp_path);
    return rc;
}

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

/* ---- the restore's state ---- */

struct replica_commit {
    uint64_t frame, end_offset;
    uint32_t db_pages;
    int64_t seen_ms;
    char seen_at[REPLICA_TIME_TEXT];
};

struct replica_segment {
    uint64_t start, end;
    char sha256[IO_SHA256_HEX];
    int64_t size;
    size_t commits;       /* in the sidecar */
    uint64_t first_frame; /* of its first commit */
    uint32_t salt[2];     /* of the generation's header, as the sidecar says */
    uint32_t checksum[2]; /* the chain's running checksum at `end` */
    int64_t first_seen_ms;
    /* Listed as S-E.wal.gz, as S-E.wal.gz.age (both after encryption was
     * switched on or off while a range was re-shipped); `sealed`: the
     * sidecar describes the .age one, the one fetched. */
    bool listed_plain, listed_sealed, sealed;
    int64_t listed_plain_size, listed_sealed_size; /* as the listing says */
};

struct replica_generation {
    struct replica_window window;
    bool has_base_file;
    char from[48];
    uint64_t base_frame;
    char base_sha256[IO_SHA256_HEX];
    int64_t base_size;
    bool base_sealed;        /* base.json says base.db.gz.age */
    char base_sealed_to[96]; /* its first recipient, for the message of a wrong key */
    struct replica_segment *segments;
    size_t segment_count; /* listed */
    size_t used_segments; /* fetched and applied */
    size_t used_commits;
    bool cut;                     /* the last generation: stop at `target` */
    struct replica_commit target; /* the last commit applied */
    int64_t base_taken_at_ms;
    uint32_t base_pages;
    /* The base alone is the restore: a base file at frame 0 (a WAL with no
     * commit when it was copied) and no commit of it at or before T. */
    bool base_only;
};

/* One download of the pool. */
struct replica_job {
    char key[FORMAT_KEY_SIZE];
    char path[PATH_MAX];
    const char *sha256; /* expected, or NULL */
    int64_t size;       /* expected, or -1 */
    bool done;          /* cut out of a pack before the pool ran */
    bool planned;       /* plan_only: packed, its pack listed whole; not read */
    bool loose_fetched; /* downloaded as a loose object */
    int rc;
    struct error err;
};

struct replica_pool {
    const struct target_config *target;
    const volatile sig_atomic_t *stop;
    struct replica_job *jobs;
    size_t count, next;
    volatile sig_atomic_t failed; /* also the targets' stop: one failure ends the rest */
    pthread_mutex_t mutex;
};

/* Whole-member inflation of a segment small enough to hold in memory with
 * its stored bytes (REPLICA_WHOLE_BYTES together): libdeflate, about three
 * times as fast as zlib's stream. The buffers are kept from one segment to
 * the next; only the main thread inflates. */
#define REPLICA_WHOLE_BYTES (12u << 20)

struct replica_whole {
    struct libdeflate_decompressor *decompressor;
    unsigned char *packed, *raw;
    size_t packed_capacity, raw_capacity;
};

struct replica_work {
    const struct replica_request *request;
    struct target *target; /* the main thread's */
    char prefix[1024];     /* DB/replica/ */
    char temp[PATH_MAX];   /* OUTPUT.replica-, temp names continue it */
    unsigned temp_serial;
    struct replica_windows index;
    struct replica_generation *chain; /* base generation first */
    size_t chain_count;
    struct replica_objects *objects; /* loose or packed */
    int64_t fetched_bytes;           /* of loose data objects; packs are counted there */
    struct replica_whole whole;
};

static void replica_temp_path(struct replica_work *work, const char *what, char out[PATH_MAX])
{
    snprintf(out, PATH_MAX, "%s%u-%s%s", work->temp, work->temp_serial++, what, FS_TEMP_SUFFIX);
}

/* The same names for the packs and manifests replica_objects fetches. */
static void replica_objects_temp(void *context, const char *what, char out[PATH_MAX])
{
    replica_temp_path(context, what, out);
}

/* A segment's key, or its sidecar's (suffix ".wal.json"): built when
 * needed, so that a generation's many segments cost a few numbers each. */
static const char *replica_segment_key(const struct replica_work *work,
                                       const struct replica_generation *g,
                                       const struct replica_segment *s, const char *suffix,
                                       char out[FORMAT_KEY_SIZE])
{
    char name[32];
    format_segment_name(s->start, s->end, name);
    snprintf(out, FORMAT_KEY_SIZE, "%s%s/wal/%s%s", work->prefix, g->window.name, name, suffix);
    return out;
}

#define SEGMENT_SUFFIX(s) ((s)->sealed ? ".wal.gz" SEALED_SUFFIX : ".wal.gz")
#define SEGMENT_KEY(s)                                                                             \
    replica_segment_key(work, g, (s), SEGMENT_SUFFIX(s), (char[FORMAT_KEY_SIZE]){0})
#define SIDECAR_KEY(s) replica_segment_key(work, g, (s), ".wal.json", (char[FORMAT_KEY_SIZE]){0})

/* ---- parallel downloads: a few in flight, each streamed to a file ---- */

static int replica_check_file(struct replica_job *job)
{
    if (!job->sha256)
        return 0;
    int fd = open(job->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_set(&job->err, -errno, "%s: %s", job->path, strerror(errno));
    struct stat st;
    char hex[IO_SHA256_HEX];
    int rc = fstat(fd, &st) == 0 ? 0 : -errno;
    if (rc == 0)
        rc = io_sha256_fd(fd, NULL, hex);
    close(fd);
    if (rc != 0)
        return error_set(&job->err, rc, "cannot hash the download of %s: %s", job->key,
                         strerror(-rc));
    if (job->size >= 0 && st.st_size != job->size)
        return error_set(&job->err, -EBADMSG,
                         "%s on the target has %lld bytes, its manifest says %lld: the object is "
                         "damaged or truncated",
                         job->key, (long long)st.st_size, (long long)job->size);
    if (strcmp(hex, job->sha256) != 0)
        return error_set(&job->err, -EBADMSG,
                         "%s on the target has sha256 %s, its manifest says %s: the object is "
                         "damaged",
                         job->key, hex, job->sha256);
    return 0;
}

static void *replica_pool_run(void *argument)
{
    struct replica_pool *pool = argument;
    struct target *target = NULL;
    struct error err = {0};
    int rc = target_open(pool->target, &target, &err);
    if (rc == 0)
        target_set_stop(target, &pool->failed);
    for (;;) {
        pthread_mutex_lock(&pool->mutex);
        size_t index = pool->next < pool->count && !pool->failed ? pool->next++ : pool->count;
        pthread_mutex_unlock(&pool->mutex);
        if (index >= pool->count)
            break;
        struct replica_job *job = &pool->jobs[index];
        if (job->done)
            continue;
        if (rc != 0) {
            job->rc = rc;
            job->err = err;
        } else if (pool->stop && *pool->stop) {
            job->rc = error_set(&job->err, -ECANCELED, "stopped by a signal");
        } else {
            unlink(job->path);
            job->rc = target_get_file(target, job->key, job->path, NULL, &job->err);
            job->loose_fetched = job->rc == 0;
            if (job->rc == 0)
                job->rc = replica_check_file(job);
        }
        /* Not found: compaction may have packed it since the listing; the
         * main thread looks for it in the packs once the others are done. */
        if (job->rc != 0 && job->rc != -ENOENT)
            pool->failed = 1;
    }
    target_close(target);
    return NULL;
}

static int replica_fetch_all(struct replica_work *work, struct replica_job *jobs, size_t count,
                             struct error *err)
{
    int parallel = work->request->parallel > 0 ? work->request->parallel : REPLICA_DEFAULT_PARALLEL;
    if ((size_t)parallel > count)
        parallel = (int)count;
    struct replica_pool pool = {
        .target = work->request->target, .stop = work->request->stop, .jobs = jobs, .count = count};
    pthread_t threads[16];
    int started = 0, rc = 0;
    if (parallel > 16)
        parallel = 16;
    for (size_t i = 0; i < count; i++) {
        jobs[i].rc = 1; /* not done */
        jobs[i].done = jobs[i].loose_fetched = jobs[i].planned = false;
    }
    /* Packed objects first, here: each pack is downloaded once, by the
     * one thread that owns replica_objects. */
    for (size_t i = 0; i < count; i++) {
        bool packed = false;
        int64_t size = 0;
        rc = replica_objects_packed(work->objects, jobs[i].key, &packed, err);
        if (rc == 0 && packed && work->request->plan_only) {
            /* Verify without --data downloads no pack: present is enough. */
            rc = replica_objects_check_packed(work->objects, jobs[i].key, &size, err);
            jobs[i].rc = rc;
            jobs[i].done = jobs[i].planned = true;
        } else if (rc == 0 && packed) {
            rc = replica_objects_get(work->objects, jobs[i].key, jobs[i].path, true, err);
            if (rc == 0 && (rc = replica_check_file(&jobs[i])) != 0)
                error_set(err, rc, "%s", jobs[i].err.message);
            jobs[i].rc = rc;
            jobs[i].done = true;
        }
        if (rc != 0)
            return rc;
    }
    pthread_mutex_init(&pool.mutex, NULL);
    for (; started < parallel; started++)
        if ((rc = io_thread_start(&threads[started], replica_pool_run, &pool)) != 0)
            break;
    if (started == 0 && count > 0)
        replica_pool_run(&pool); /* no thread: do it here */
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    pthread_mutex_destroy(&pool.mutex);
    rc = 0;
    for (size_t i = 0; i < count; i++) {
        struct replica_job *job = &jobs[i];
        if (job->loose_fetched && job->sha256)
            work->fetched_bytes += job->size;
        if (job->rc != -ENOENT || pool.failed)
            continue;
        error_clear(&job->err);
        job->rc = replica_objects_get(work->objects, job->key, job->path, true, &job->err);
        if (job->rc == 0)
            job->rc = replica_check_file(job);
    }
    /* The first failure in list order, not a "stopped" of its neighbours. */
    for (size_t i = 0; i < count && rc == 0; i++)
        if (jobs[i].rc < 0 && jobs[i].rc != -ECANCELED)
            rc = error_set(err, jobs[i].rc, "%s", jobs[i].err.message);
    for (size_t i = 0; i < count && rc == 0; i++)
        if (jobs[i].rc != 0)
            rc = jobs[i].rc < 0 ? error_set(err, jobs[i].rc, "%s", jobs[i].err.message)
                                : error_set(err, -ECANCELED, "stopped by a signal");
    return rc;
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
        int rc = replica_read_base(work, g, err);
        if (rc != 0)
            return rc;
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

#define REPLICA_BATCH 64 /* objects fetched before they are used: disk and memory */

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
        /* A base copied with no commit in the WAL is the database as of its
         * taken_at: restorable from then on, segments or not. */
        bool base_will_do = last && i == 0 && g->has_base_file && g->base_frame == 0 &&
                            g->base_taken_at_ms > 0 &&
                            g->base_taken_at_ms <= work->request->at_ms;
        rc = replica_list_segments(work, g, err);
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

/* ---- building and replaying each generation's WAL ---- */

/* Where a generation's inflated WAL goes: appended to a WAL file that
 * SQLite replays, or fed to the direct apply (wal_apply.h). */
struct replica_sink {
    int fd;                  /* the WAL file, or -1 */
    struct wal_apply *apply; /* or the apply */
};

static int replica_sink_write(const struct replica_sink *sink, const unsigned char *bytes,
                              size_t size, const char *key, struct error *err)
{
    if (sink->apply)
        return wal_apply_feed(sink->apply, bytes, size, err);
    int rc = io_write_full(sink->fd, bytes, size);
    if (rc != 0)
        return error_set(err, rc, "writing the WAL rebuilt from %s: %s", key, strerror(-rc));
    return 0;
}

/* A segment's gzip members inflated into the sink, fed from a file or from
 * a decrypted buffer alike. */
struct replica_inflater {
    z_stream z;
    unsigned char *out;
    bool begun, ended;
    const struct replica_sink *sink;
    uint64_t *written; /* bytes given to it */
    const char *key;   /* the object, for messages */
};

static int replica_inflater_begin(struct replica_inflater *f, const char *key,
                                  const struct replica_sink *sink, uint64_t *written,
                                  struct error *err)
{
    *f = (struct replica_inflater){.sink = sink, .written = written, .key = key};
    if (!(f->out = malloc(REPLICA_BUFFER)))
        return error_set(err, -ENOMEM, "out of memory");
    if (inflateInit2(&f->z, 16 + MAX_WBITS) != Z_OK)
        return error_set(err, -ENOMEM, "zlib: out of memory");
    f->begun = true;
    return 0;
}

/* Feeds `size` bytes; members follow one another (RFC 1952). zlib may hold
 * output back while the buffer is full, so it is asked again then. */
static int replica_inflater_feed(struct replica_inflater *f, const unsigned char *in, size_t size,
                                 struct error *err)
{
    bool full = false;
    f->z.next_in = (Bytef *)in;
    f->z.avail_in = (uInt)size;
    while (f->z.avail_in > 0 || full) {
        if (f->ended) { /* another member follows */
            inflateReset(&f->z);
            f->ended = false;
        }
        f->z.next_out = f->out;
        f->z.avail_out = REPLICA_BUFFER;
        int zrc = inflate(&f->z, Z_NO_FLUSH);
        if (zrc != Z_OK && zrc != Z_STREAM_END && zrc != Z_BUF_ERROR)
            return error_set(err, -EBADMSG, "%s is not a valid gzip stream: %s", f->key,
                             f->z.msg ? f->z.msg : "inflate failed");
        size_t produced = REPLICA_BUFFER - f->z.avail_out;
        int rc = produced ? replica_sink_write(f->sink, f->out, produced, f->key, err) : 0;
        if (rc != 0)
            return rc;
        *f->written += produced;
        full = f->z.avail_out == 0;
        if (zrc == Z_STREAM_END) {
            f->ended = true;
            full = false;
        } else if (produced == 0 && zrc == Z_BUF_ERROR) {
            break; /* nothing more without input */
        }
    }
    return 0;
}

static int replica_inflater_end(struct replica_inflater *f, int rc, struct error *err)
{
    if (rc == 0 && !f->ended)
        rc = error_set(err, -EBADMSG, "%s ends inside a gzip member: the object is truncated",
                       f->key);
    if (f->begun)
        inflateEnd(&f->z);
    free(f->out);
    return rc;
}

/* A plain segment, streamed from its file. */
static int replica_inflate_file(struct replica_inflater *f, const char *path, struct error *err)
{
    unsigned char *in = malloc(REPLICA_BUFFER);
    int input = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
    if (!in)
        rc = error_set(err, -ENOMEM, "out of memory");
    else if (input < 0)
        rc = error_set(err, -errno, "%s: %s", path, strerror(errno));
    while (rc == 0) {
        ssize_t got = io_read_full(input, in, REPLICA_BUFFER);
        if (got < 0)
            rc = error_set(err, (int)got, "%s: %s", path, strerror((int)-got));
        if (got <= 0)
            break;
        rc = replica_inflater_feed(f, in, (size_t)got, err);
    }
    if (input >= 0)
        close(input);
    free(in);
    return rc;
}

static bool replica_whole_grow(unsigned char **buffer, size_t *capacity, size_t size)
{
    if (size <= *capacity)
        return true;
    unsigned char *bigger = realloc(*buffer, size);
    if (!bigger)
        return false;
    *buffer = bigger;
    *capacity = size;
    return true;
}

/* Inflates `packed` (gzip members) whole into exactly `raw_size` bytes and
 * gives them to the sink: 1 when done, 0 when the caller must use zlib's
 * stream instead (no memory, or libdeflate refused: the stream's words then
 * name what is wrong, and a size other than the name's is reported by the
 * caller as for any segment), or the sink's error. */
static int replica_whole_inflate(struct replica_whole *w, struct replica_inflater *f,
                                 const unsigned char *packed, size_t size, size_t raw_size,
                                 struct error *err)
{
    if (raw_size == 0 || raw_size > REPLICA_WHOLE_BYTES)
        return 0;
    if (!w->decompressor && !(w->decompressor = libdeflate_alloc_decompressor()))
        return 0;
    if (!replica_whole_grow(&w->raw, &w->raw_capacity, raw_size))
        return 0;
    size_t in = 0, out = 0;
    while (in < size) {
        size_t used = 0, made = 0;
        if (libdeflate_gzip_decompress_ex(w->decompressor, packed + in, size - in, w->raw + out,
                                          raw_size - out, &used, &made) != LIBDEFLATE_SUCCESS ||
            used == 0)
            return 0;
        in += used;
        out += made;
    }
    if (out != raw_size)
        return 0;
    int rc = replica_sink_write(f->sink, w->raw, out, f->key, err);
    if (rc != 0)
        return rc;
    *f->written += out;
    f->ended = true;
    return 1;
}

/* A plain segment read whole into memory when it and its WAL fit
 * REPLICA_WHOLE_BYTES; 0 when the stream must do it. */
static int replica_inflate_whole_file(struct replica_whole *w, struct replica_inflater *f,
                                      const char *path, size_t raw_size, struct error *err)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= 0 ||
        (uint64_t)st.st_size + raw_size > REPLICA_WHOLE_BYTES ||
        !replica_whole_grow(&w->packed, &w->packed_capacity, (size_t)st.st_size) ||
        io_read_full(fd, w->packed, (size_t)st.st_size) != st.st_size)
        rc = 0;
    else
        rc = replica_whole_inflate(w, f, w->packed, (size_t)st.st_size, raw_size, err);
    if (fd >= 0)
        close(fd);
    return rc;
}

static void replica_whole_free(struct replica_whole *w)
{
    if (w->decompressor)
        libdeflate_free_decompressor(w->decompressor);
    free(w->packed);
    free(w->raw);
    memset(w, 0, sizeof *w);
}

/* A sealed segment: read whole (a segment is at most 16 MiB of WAL, less
 * once gzip'd), opened only if every chunk authenticates, then inflated. */
static int replica_inflate_sealed(struct replica_whole *w, struct replica_inflater *f,
                                  const char *path, const struct archive_keys *keys,
                                  size_t raw_size, struct error *err)
{
    char *sealed = NULL;
    unsigned char *plain = NULL;
    size_t sealed_size = 0, plain_size = 0;
    int rc = fs_read_file(path, &sealed, &sealed_size, err);
    if (rc == 0)
        rc = sealed_open_buffer(sealed, sealed_size, keys, f->key, &plain, &plain_size, err);
    if (rc == 0)
        rc = replica_whole_inflate(w, f, plain, plain_size, raw_size, err);
    if (rc == 0)
        rc = replica_inflater_feed(f, plain, plain_size, err);
    else if (rc == 1)
        rc = 0;
    free(sealed);
    free(plain);
    return rc;
}

/* Whether a fetched object is an age file: by its name, or by its first
 * bytes (a sealed object under a plain name is still opened, not inflated
 * into an error about gzip). */
static bool replica_object_sealed(const char *key, const char *path)
{
    size_t length = strlen(key), suffix = strlen(SEALED_SUFFIX);
    if (length > suffix && strcmp(key + length - suffix, SEALED_SUFFIX) == 0)
        return true;
    unsigned char head[SEALED_MAGIC_PEEK];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t got = fd >= 0 ? io_read_full(fd, head, sizeof head) : -1;
    if (fd >= 0)
        close(fd);
    return got > 0 && sealed_is_age(head, (size_t)got);
}

/* Inflates every gzip member of the object fetched to `path` (decrypted
 * first when sealed) into `sink`; *written counts the bytes. `raw_size`,
 * the WAL bytes its name says it holds, decides whether it is inflated
 * whole (replica_whole) or streamed. */
static int replica_inflate_append(struct replica_work *work, const char *path, const char *key,
                                  size_t raw_size, const struct replica_sink *sink,
                                  uint64_t *written, struct error *err)
{
    struct replica_inflater f;
    int rc = replica_inflater_begin(&f, key, sink, written, err);
    if (rc == 0 && replica_object_sealed(key, path)) {
        rc = replica_inflate_sealed(&work->whole, &f, path, &work->request->keys, raw_size, err);
    } else if (rc == 0) {
        rc = replica_inflate_whole_file(&work->whole, &f, path, raw_size, err);
        if (rc == 0)
            rc = replica_inflate_file(&f, path, err);
        else if (rc == 1)
            rc = 0;
    }
    return replica_inflater_end(&f, rc, err);
}

/* The segment holding byte `offset` of a generation's WAL, for messages. */
static const struct replica_segment *replica_segment_at(const struct replica_generation *g,
                                                        uint64_t offset)
{
    for (size_t i = 0; i < g->used_segments; i++)
        if (offset < g->segments[i].end)
            return &g->segments[i];
    return &g->segments[g->used_segments - 1];
}

/* ---- applying the chain: a batch fetched ahead while one is applied ---- */

/* One batch of a generation's segments: fetched (in parallel, on a thread
 * of its own) while the main thread inflates and applies the one before. */
struct replica_batch {
    struct replica_work *work;
    struct replica_generation *g;
    size_t first, count;
    struct replica_job *jobs;
    pthread_t thread;
    bool running;
    int rc;
    struct error err;
};

static void *replica_batch_fetch(void *argument)
{
    struct replica_batch *b = argument;
    b->rc = replica_fetch_all(b->work, b->jobs, b->count, &b->err);
    if (b->rc == -ENOENT)
        error_prefix(&b->err, "an object of the replica is missing: ");
    return NULL;
}

/* Names the batch's objects and starts fetching them; on the calling
 * thread when no thread can be started. Temp names are taken here, on the
 * main thread, never while another batch's fetch could take one. */
static void replica_batch_start(struct replica_batch *b)
{
    struct replica_work *work = b->work;
    const struct replica_generation *g = b->g;
    for (size_t k = 0; k < b->count; k++) {
        const struct replica_segment *s = &g->segments[b->first + k];
        memset(&b->jobs[k], 0, sizeof b->jobs[k]);
        replica_segment_key(work, g, s, SEGMENT_SUFFIX(s), b->jobs[k].key);
        b->jobs[k].sha256 = s->sha256;
        b->jobs[k].size = s->size;
        replica_temp_path(work, "segment", b->jobs[k].path);
    }
    error_clear(&b->err);
    b->running = io_thread_start(&b->thread, replica_batch_fetch, b) == 0;
    if (!b->running)
        replica_batch_fetch(b);
}

static void replica_batch_wait(struct replica_batch *b)
{
    if (b->running)
        pthread_join(b->thread, NULL);
    b->running = false;
}

static void replica_batch_remove(struct replica_batch *b)
{
    for (size_t k = 0; k < b->count; k++)
        unlink(b->jobs[k].path);
    b->count = 0;
}

/* Each segment's sidecar names the salts of the generation's header: a
 * segment of another generation (or WAL) put under this name is refused. */
static int replica_check_salts(const struct replica_work *work, const struct replica_generation *g,
                               const struct replica_segment *s, const struct wal_header *header,
                               struct error *err)
{
    if (s->salt[0] == header->salt[0] && s->salt[1] == header->salt[1])
        return 0;
    return error_set(err, -EBADMSG,
                     "%s belongs to a WAL with salts %08x,%08x, the header of generation %s "
                     "(in %s) has %08x,%08x",
                     SIDECAR_KEY(s), s->salt[0], s->salt[1], g->window.name,
                     SEGMENT_KEY(&g->segments[0]), header->salt[0], header->salt[1]);
}

/* The chain stopped at `next` (why: `stop`) before the commit the sidecars
 * say it reaches. */
static int replica_chain_stops(const struct replica_work *work, const struct replica_generation *g,
                               const struct wal_position *next, enum wal_stop stop,
                               struct error *err)
{
    uint64_t at = next->offset;
    return error_set(err, -EBADMSG,
                     "the WAL chain of generation %s breaks at byte %llu (%s, frame %llu), in "
                     "%s; the sidecars say commits reach byte %llu (frame %llu): the object is "
                     "damaged, restore to a time before it",
                     g->window.name, (unsigned long long)at, wal_stop_name(stop),
                     (unsigned long long)next->frame_index + 1,
                     SEGMENT_KEY(replica_segment_at(g, at)),
                     (unsigned long long)g->target.end_offset, (unsigned long long)g->target.frame);
}

/* The chain's last commit is the one the last sidecar ends with. */
static int replica_check_end(const struct replica_work *work, const struct replica_generation *g,
                             const struct wal_position *committed, struct error *err)
{
    const struct replica_segment *last = &g->segments[g->used_segments - 1];
    if (last->end != g->target.end_offset || (committed->checksum[0] == last->checksum[0] &&
                                              committed->checksum[1] == last->checksum[1]))
        return 0;
    return error_set(err, -EBADMSG,
                     "the WAL chain of generation %s ends with checksum %08x,%08x, %s says "
                     "%08x,%08x: the segments are not the ones shipped",
                     g->window.name, committed->checksum[0], committed->checksum[1],
                     SIDECAR_KEY(last), last->checksum[0], last->checksum[1]);
}

/* The whole chain from the header: every frame up to the cut accepted, and
 * the cut the end of a commit. */
static int replica_check_chain(const struct replica_work *work, const char *wal_path,
                               const struct replica_generation *g, uint64_t *frames,
                               struct error *err)
{
    struct wal_reader reader;
    int fd = open(wal_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_set(err, -errno, "%s: %s", wal_path, strerror(errno));
    int rc = wal_reader_open(&reader, fd, wal_path, err);
    if (rc != 0) {
        error_prefix(err, "the WAL header in %s: ", SEGMENT_KEY(&g->segments[0]));
        close(fd);
        return rc == -ENODATA ? -EBADMSG : rc;
    }
    wal_reader_read_ahead(&reader, REPLICA_READ_AHEAD);
    rc = wal_reader_scan(&reader, err);
    for (size_t i = 0; i < g->used_segments && rc == 0; i++)
        rc = replica_check_salts(work, g, &g->segments[i], &reader.header, err);
    if (rc == 0 && (reader.committed.offset != g->target.end_offset ||
                    reader.committed.frame_index != g->target.frame))
        rc = replica_chain_stops(work, g, &reader.next, reader.stop, err);
    if (rc == 0)
        rc = replica_check_end(work, g, &reader.committed, err);
    *frames = reader.committed.frame_index;
    wal_reader_close(&reader);
    close(fd);
    return rc;
}

/* SQLite replays the WAL on open; TRUNCATE copies every frame into the file. */
static int replica_replay(const char *output, const struct replica_generation *g, uint64_t frames,
                          struct error *err)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *statement = NULL;
    int rc = 0;
    if (sqlite3_open_v2(output, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        rc = error_set(err, -EIO, "cannot open %s to replay generation %s: %s", output,
                       g->window.name, db ? sqlite3_errmsg(db) : "out of memory");
        goto out;
    }
    if (sqlite3_prepare_v2(db, "PRAGMA wal_checkpoint(TRUNCATE)", -1, &statement, NULL) !=
            SQLITE_OK ||
        sqlite3_step(statement) != SQLITE_ROW) {
        rc = error_set(err, -EIO, "replaying generation %s into %s: %s", g->window.name, output,
                       sqlite3_errmsg(db));
        goto out;
    }
    int busy = sqlite3_column_int(statement, 0);
    int64_t log = sqlite3_column_int64(statement, 1), done = sqlite3_column_int64(statement, 2);
    sqlite3_finalize(statement);
    statement = NULL;
    /* TRUNCATE reports 0/0 once it emptied the log: ask what the header says. */
    if (busy != 0 || (log != 0 && log != done)) {
        rc = error_set(err, -EIO,
                       "replaying generation %s: SQLite checkpointed %lld of %lld frames (busy "
                       "%d)",
                       g->window.name, (long long)done, (long long)log, busy);
        goto out;
    }
    if (sqlite3_prepare_v2(db, "PRAGMA page_count", -1, &statement, NULL) != SQLITE_OK ||
        sqlite3_step(statement) != SQLITE_ROW) {
        rc = error_set(err, -EIO, "%s: %s", output, sqlite3_errmsg(db));
        goto out;
    }
    int64_t pages = sqlite3_column_int64(statement, 0);
    if (pages != g->target.db_pages)
        rc =
            error_set(err, -EBADMSG,
                      "after generation %s (%llu frames) %s has %lld pages, the sidecar's db_pages "
                      "says %u: SQLite did not replay the whole WAL",
                      g->window.name, (unsigned long long)frames, output, (long long)pages,
                      g->target.db_pages);
out:
    sqlite3_finalize(statement);
    sqlite3_close(db);
    return rc;
}

/*
 * One generation being applied, in one of two ways:
 *   - pages (the default; docs/replication-design.md 2.5.4, wal_apply.h):
 *     what SQLite's checkpoint does without its WAL index and without a WAL
 *     file: each segment is inflated straight into the database file, frame
 *     by frame as the chain accepts them up to the cut, then the file is
 *     cut to the commit's size. Each byte of WAL is inflated and read once,
 *     and a chain that breaks is named as the segment holding it ends;
 *   - sqlite: the generation's WAL built as OUTPUT-wal, its chain checked,
 *     then checkpointed by SQLite (TRUNCATE).
 */
struct replica_stage {
    struct replica_generation *g;
    struct replica_sink sink;
    struct wal_apply apply;
    int out;                     /* pages: the database file */
    char wal_path[PATH_MAX + 8]; /* sqlite: OUTPUT-wal */
    uint64_t written;            /* bytes of WAL inflated */
};

static int replica_stage_begin(struct replica_work *work, struct replica_generation *g,
                               struct replica_stage *stage, struct error *err)
{
    const char *output = work->request->output;
    *stage = (struct replica_stage){.g = g, .out = -1, .sink = {.fd = -1}};
    if (work->request->apply == REPLICA_APPLY_PAGES) {
        if ((stage->out = open(output, O_WRONLY | O_CLOEXEC)) < 0)
            return error_set(err, -errno, "%s: %s", output, strerror(errno));
        stage->sink.apply = &stage->apply;
        return wal_apply_begin(&stage->apply, stage->out, g->target.frame, g->target.db_pages, err);
    }
    snprintf(stage->wal_path, sizeof stage->wal_path, "%s-wal", output);
    unlink(stage->wal_path);
    stage->sink.fd = open(stage->wal_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (stage->sink.fd < 0)
        return error_set(err, -errno, "%s: %s", stage->wal_path, strerror(errno));
    return 0;
}

/* A fetched batch, in order, into the stage's sink. */
static int replica_stage_feed(struct replica_work *work, struct replica_stage *stage,
                              const struct replica_batch *b, struct error *err)
{
    const struct replica_generation *g = stage->g;
    const struct replica_sink *sink = &stage->sink;
    const struct wal_apply *apply = sink->apply;
    int rc = 0;
    for (size_t k = 0; k < b->count && rc == 0; k++) {
        const struct replica_segment *s = &g->segments[b->first + k];
        const struct replica_job *job = &b->jobs[k];
        uint64_t before = stage->written;
        rc = replica_inflate_append(work, job->path, job->key, (size_t)(s->end - s->start), sink,
                                    &stage->written, err);
        unlink(job->path);
        if (rc == -EBADMSG && apply && apply->bad_frame)
            rc = error_set(err, -EBADMSG,
                           "the commit frame %llu of generation %s says %u pages, the "
                           "sidecar's db_pages says %u: the sidecar does not describe this WAL",
                           (unsigned long long)apply->bad_frame, g->window.name, apply->bad_pages,
                           g->target.db_pages);
        if (rc == -EINVAL && apply && !apply->have_header) {
            error_prefix(err, "the WAL header in %s: ", SEGMENT_KEY(&g->segments[0]));
            rc = -EBADMSG;
        }
        if (rc == 0 && stage->written - before != s->end - s->start)
            rc = error_set(err, -EBADMSG,
                           "%s holds %llu bytes of WAL, its name says %llu: the object is "
                           "damaged",
                           job->key, (unsigned long long)(stage->written - before),
                           (unsigned long long)(s->end - s->start));
        if (rc == 0 && apply && apply->have_header)
            rc = replica_check_salts(work, g, s, &apply->header, err);
        if (rc == 0 && apply && apply->stop != WAL_STOP_NONE && !apply->reached)
            rc = replica_chain_stops(work, g, &apply->next, apply->stop, err);
    }
    return rc;
}

/* The generation's last checks, then the file cut (pages) or the WAL
 * replayed (sqlite). With rc != 0, only cleans up. */
static int replica_stage_end(struct replica_work *work, struct replica_stage *stage, int rc,
                             struct error *err)
{
    const struct replica_generation *g = stage->g;
    const char *output = work->request->output;
    if (stage->sink.apply) {
        struct wal_apply *apply = &stage->apply;
        if (rc == 0) {
            wal_apply_finish(apply);
            if (!apply->have_header)
                rc = error_set(err, -EBADMSG,
                               "the WAL header in %s: holds %llu bytes, no complete WAL header",
                               SEGMENT_KEY(&g->segments[0]), (unsigned long long)apply->fed);
            else if (!apply->reached || apply->committed.offset != g->target.end_offset)
                rc = replica_chain_stops(work, g, &apply->next, apply->stop, err);
        }
        if (rc == 0)
            rc = replica_check_end(work, g, &apply->committed, err);
        if (rc == 0 &&
            ftruncate(stage->out, (off_t)g->target.db_pages * apply->header.page_size) != 0)
            rc = error_set(err, -errno, "%s: %s", output, strerror(errno));
        if (stage->out >= 0 && close(stage->out) != 0 && rc == 0)
            rc = error_set(err, -errno, "%s: %s", output, strerror(errno));
        wal_apply_end(apply);
        return rc;
    }
    uint64_t frames = 0;
    if (stage->sink.fd >= 0) {
        if (rc == 0 && ftruncate(stage->sink.fd, (off_t)g->target.end_offset) != 0)
            rc = error_set(err, -errno, "%s: %s", stage->wal_path, strerror(errno));
        if (close(stage->sink.fd) != 0 && rc == 0)
            rc = error_set(err, -errno, "%s: %s", stage->wal_path, strerror(errno));
    }
    if (rc == 0)
        rc = replica_check_chain(work, stage->wal_path, g, &frames, err);
    if (rc == 0)
        rc = replica_replay(output, g, frames, err);
    if (stage->wal_path[0])
        unlink(stage->wal_path);
    return rc;
}

/* The next batch after `b` in the chain (generations in order, at most
 * REPLICA_BATCH segments each, never across generations); false at the end. */
static bool replica_batch_next(struct replica_work *work, const struct replica_batch *b,
                               struct replica_batch *next)
{
    size_t i = b->g ? (size_t)(b->g - work->chain) : 0;
    size_t first = b->g ? b->first + b->count : 0;
    while (i < work->chain_count && !work->chain[i].base_only) {
        struct replica_generation *g = &work->chain[i];
        if (first < g->used_segments) {
            size_t count = g->used_segments - first;
            next->g = g;
            next->first = first;
            next->count = count > REPLICA_BATCH ? REPLICA_BATCH : count;
            return true;
        }
        i++;
        first = 0;
    }
    return false;
}

/* Every generation of the chain after the base, in order: while the main
 * thread inflates and applies one batch, the next is fetched. Disk holds
 * two batches, memory two batches of jobs. */
static int replica_apply_chain(struct replica_work *work, struct replica_job *jobs[2],
                               struct replica_result *result, struct error *err)
{
    struct replica_batch batches[2] = {{.work = work, .jobs = jobs[0]},
                                       {.work = work, .jobs = jobs[1]}};
    struct replica_batch *current = &batches[0], *ahead = &batches[1];
    struct replica_stage stage = {0};
    bool staged = false, more = replica_batch_next(work, &(struct replica_batch){0}, current);
    int rc = 0;
    result->applied = work->request->apply;
    if (more)
        replica_batch_start(current);
    while (more && rc == 0) {
        replica_batch_wait(current);
        ahead->g = NULL;
        if (replica_batch_next(work, current, ahead))
            replica_batch_start(ahead);
        rc = current->rc;
        if (rc != 0)
            error_set(err, rc, "%s", current->err.message);
        if (rc == 0 && current->first == 0) {
            if (staged) {
                rc = replica_stage_end(work, &stage, rc, err);
                staged = false;
            }
            if (rc == 0) {
                rc = replica_stage_begin(work, current->g, &stage, err);
                staged = true;
            }
        }
        if (rc == 0)
            rc = replica_stage_feed(work, &stage, current, err);
        if (rc == 0 && current->first + current->count == current->g->used_segments) {
            result->segments += current->g->used_segments;
            result->commits += current->g->used_commits;
        }
        if (rc == 0 && work->request->stop && *work->request->stop)
            rc = error_set(err, -ECANCELED, "stopped by a signal");
        replica_batch_remove(current);
        more = ahead->g != NULL;
        struct replica_batch *swap = current;
        current = ahead;
        ahead = swap;
    }
    if (staged)
        rc = replica_stage_end(work, &stage, rc, err);
    /* A batch still fetched when something failed: its files go too. */
    replica_batch_wait(current);
    replica_batch_remove(current);
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
        struct archive_result unpacked = {0};
        struct io_context io = {.stop = request->stop};
        unlink(request->output);
        output_made = true;
        rc = archive_decompress(jobs[0].path, request->output, &request->keys, &io, &unpacked, err);
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
    result->packs = replica_objects_packs_fetched(work.objects, &result->fetched_bytes);
    result->fetched_bytes += work.fetched_bytes;
    replica_objects_close(work.objects);
    replica_whole_free(&work.whole);
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
