/*
 * replica.c: point-in-time restore from a WAL replica (replica.h).
 *
 * Order of work, each step refusing with the object it concerns:
 *   1. index.json -> the generation holding the last commit seen <= T, and
 *      the chain back to a base file (base.json "from");
 *   2. each generation's wal/ listing and sidecars (fetched in parallel):
 *      segments contiguous from 0, the cut commit found, T not before the
 *      base's frame (finding 3 of docs/replication-design.md);
 *   3. base and segments fetched in parallel, SHA-256 checked;
 *   4. per generation: segments inflated in order into OUTPUT-wal, cut,
 *      chain checked from the header, replayed by SQLite (TRUNCATE).
 */
#include "restore/replica.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
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
#include "core/fsutil.h"
#include "core/io.h"
#include "core/units.h"
#include "offsite/target.h"
#include "replicate/wal.h"

#define REPLICA_BUFFER           (64 * 1024)
#define REPLICA_DEFAULT_PARALLEL 4

/* ---- times ---- */

void replica_format_time(int64_t ms, char out[REPLICA_TIME_TEXT])
{
    time_t seconds = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&seconds, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, REPLICA_TIME_TEXT, "%s.%03dZ", base, (int)(ms % 1000));
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

/* ---- JSON of the replica (sqlprodd-format(5)) ---- */

static const char *replica_json_text(json_t *object, const char *key)
{
    const char *value = json_string_value(json_object_get(object, key));
    return value ? value : "";
}

static int replica_json_u64(json_t *object, const char *key, uint64_t *value)
{
    json_t *item = json_object_get(object, key);
    if (!json_is_integer(item) || json_integer_value(item) < 0)
        return -EINVAL;
    *value = (uint64_t)json_integer_value(item);
    return 0;
}

static int replica_load_json(const char *path, const char *key, json_t **out, struct error *err)
{
    json_error_t why;
    *out = json_load_file(path, 0, &why);
    if (!*out || !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return error_set(err, -EBADMSG, "%s is not valid JSON (line %d: %s)", key, why.line,
                         why.text);
    }
    return 0;
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
    char key[1100]; /* of the .wal.gz */
    char sidecar_key[1100];
    char sha256[IO_SHA256_HEX];
    int64_t size;
    size_t commits;       /* in the sidecar */
    uint64_t first_frame; /* of its first commit */
    char first_seen_at[REPLICA_TIME_TEXT];
};

struct replica_generation {
    struct replica_window window;
    bool has_base_file;
    char from[48];
    uint64_t base_frame;
    char base_sha256[IO_SHA256_HEX];
    int64_t base_size;
    struct replica_segment *segments;
    size_t segment_count; /* listed */
    size_t used_segments; /* fetched and applied */
    size_t used_commits;
    bool cut;                     /* the last generation: stop at `target` */
    struct replica_commit target; /* the last commit applied */
};

/* One download of the pool. */
struct replica_job {
    const char *key;
    char path[PATH_MAX];
    const char *sha256; /* expected, or NULL */
    int64_t size;       /* expected, or -1 */
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

struct replica_work {
    const struct replica_request *request;
    struct target *target; /* the main thread's */
    char prefix[1024];     /* DB/replica/ */
    char temp[PATH_MAX];   /* OUTPUT.replica-, temp names continue it */
    unsigned temp_serial;
    struct replica_windows index;
    struct replica_generation *chain; /* base generation first */
    size_t chain_count;
};

static void replica_temp_path(struct replica_work *work, const char *what, char out[PATH_MAX])
{
    snprintf(out, PATH_MAX, "%s%u-%s%s", work->temp, work->temp_serial++, what, FS_TEMP_SUFFIX);
}

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
        if (rc != 0) {
            job->rc = rc;
            job->err = err;
        } else if (pool->stop && *pool->stop) {
            job->rc = error_set(&job->err, -ECANCELED, "stopped by a signal");
        } else {
            unlink(job->path);
            job->rc = target_get_file(target, job->key, job->path, NULL, &job->err);
            if (job->rc == 0)
                job->rc = replica_check_file(job);
        }
        if (job->rc != 0)
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
    pthread_mutex_init(&pool.mutex, NULL);
    for (size_t i = 0; i < count; i++)
        jobs[i].rc = 1; /* not done */
    for (; started < parallel; started++)
        if ((rc = io_thread_start(&threads[started], replica_pool_run, &pool)) != 0)
            break;
    if (started == 0 && count > 0)
        replica_pool_run(&pool); /* no thread: do it here */
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    pthread_mutex_destroy(&pool.mutex);
    rc = 0;
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
    char key[1100];
    json_t *root = NULL;
    memset(out, 0, sizeof *out);
    snprintf(key, sizeof key, "%s/replica/index.json", database);
    unlink(temp_path);
    int rc = target_get_file(target, key, temp_path, NULL, err);
    if (rc == -ENOENT)
        return error_set(err, -ENOENT,
                         "target %s holds no replica of %s (%s not found): is replicate "
                         "configured and has the agent shipped yet?",
                         config->name, database, key);
    if (rc == 0)
        rc = replica_load_json(temp_path, key, &root, err);
    unlink(temp_path);
    if (rc != 0)
        return rc;
    snprintf(out->database, sizeof out->database, "%s", replica_json_text(root, "database"));
    snprintf(out->updated_at, sizeof out->updated_at, "%s", replica_json_text(root, "updated_at"));
    json_t *generations = json_object_get(root, "generations");
    size_t count = json_array_size(generations);
    if (strcmp(out->database, database) != 0 || count == 0) {
        rc = error_set(err, -EBADMSG, "%s is for database '%s' with %zu generations, not for %s",
                       key, out->database, count, database);
        goto out;
    }
    out->items = calloc(count, sizeof *out->items);
    if (!out->items) {
        rc = error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        json_t *item = json_array_get(generations, i);
        struct replica_window *w = &out->items[i];
        snprintf(w->name, sizeof w->name, "%s", replica_json_text(item, "name"));
        snprintf(w->first_seen_at, sizeof w->first_seen_at, "%s",
                 replica_json_text(item, "first_seen_at"));
        snprintf(w->last_seen_at, sizeof w->last_seen_at, "%s",
                 replica_json_text(item, "last_seen_at"));
        snprintf(w->base, sizeof w->base, "%s", replica_json_text(item, "base"));
        w->starts_chain = strcmp(w->base, "file") == 0;
        if (!w->name[0] || !w->base[0] || replica_parse_rfc3339(w->first_seen_at, &w->first_ms) ||
            replica_parse_rfc3339(w->last_seen_at, &w->last_ms) ||
            (i > 0 && strcmp(w->name, out->items[i - 1].name) <= 0)) {
            out->count = i;
            rc = error_set(err, -EBADMSG,
                           "%s: generation %zu ('%s') lacks a name, base or valid "
                           "first_seen_at/last_seen_at, or is out of order",
                           key, i + 1, w->name);
            goto out;
        }
    }
    out->count = count;
out:
    json_decref(root);
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

int replica_list_windows(const struct target_config *target_config, const char *database,
                         const volatile sig_atomic_t *stop, const char *temp_prefix,
                         struct replica_windows *out, struct error *err)
{
    struct target *target = NULL;
    char temp[PATH_MAX];
    snprintf(temp, sizeof temp, "%s.replica-index%s", temp_prefix, FS_TEMP_SUFFIX);
    int rc = target_open(target_config, &target, err);
    if (rc == 0) {
        target_set_stop(target, stop);
        rc = replica_read_index(target_config, target, database, temp, out, err);
    }
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

static int replica_read_base(struct replica_work *work, struct replica_generation *g,
                             struct error *err)
{
    char key[1100], path[PATH_MAX];
    json_t *root = NULL;
    snprintf(key, sizeof key, "%s%s/base.json", work->prefix, g->window.name);
    replica_temp_path(work, "base.json", path);
    int rc = target_get_file(work->target, key, path, NULL, err);
    if (rc == -ENOENT)
        rc = error_set(err, -ENOENT, "%s is missing on target %s: generation %s cannot be restored",
                       key, work->request->target->name, g->window.name);
    if (rc == 0)
        rc = replica_load_json(path, key, &root, err);
    unlink(path);
    if (rc != 0)
        return rc;
    snprintf(g->from, sizeof g->from, "%s", replica_json_text(root, "from"));
    g->has_base_file = !g->from[0];
    if (replica_json_u64(root, "frame", &g->base_frame) != 0)
        g->base_frame = 0;
    if (g->has_base_file) {
        uint64_t size = 0;
        snprintf(g->base_sha256, sizeof g->base_sha256, "%s", replica_json_text(root, "sha256"));
        if (strlen(g->base_sha256) != 64 || replica_json_u64(root, "size", &size) != 0)
            rc = error_set(err, -EBADMSG, "%s has no sha256 or size of base.db.gz", key);
        g->base_size = (int64_t)size;
    }
    json_decref(root);
    return rc;
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

/* Lists GEN/wal/ and pairs each segment with its sidecar. */
static int replica_list_segments(struct replica_work *work, struct replica_generation *g,
                                 struct error *err)
{
    struct target_listing listing = {0};
    char prefix[1100];
    snprintf(prefix, sizeof prefix, "%s%s/wal/", work->prefix, g->window.name);
    int rc = target_list(work->target, prefix, &listing, err);
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
        unsigned long long start, end;
        int used = 0;
        if (strncmp(key, prefix, strlen(prefix)) != 0 ||
            sscanf(name, "%12llu-%12llu.wal.gz%n", &start, &end, &used) != 2 || name[used] != 0)
            continue; /* sidecars, temp files */
        struct replica_segment *s = &g->segments[g->segment_count++];
        s->start = start;
        s->end = end;
        snprintf(s->key, sizeof s->key, "%s", key);
        snprintf(s->sidecar_key, sizeof s->sidecar_key, "%.*s.wal.json",
                 (int)(strlen(key) - strlen(".wal.gz")), key);
        s->size = listing.objects[i].size;
    }
    qsort(g->segments, g->segment_count, sizeof *g->segments, replica_compare_segments);
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
                g->window.name, i > 0 ? " after " : "", i > 0 ? g->segments[i - 1].key : "");
        expected = s->end;
    }
    return 0;
}

/* Reads one sidecar: the segment's sha256 and size, and its commits, of
 * which `on_commit` sees each. */
static int replica_read_sidecar(const char *path, struct replica_segment *s,
                                struct replica_commit **commits, size_t *count, struct error *err)
{
    json_t *root = NULL;
    int rc = replica_load_json(path, s->sidecar_key, &root, err);
    if (rc != 0)
        return rc;
    uint64_t size = 0;
    json_t *list = json_object_get(root, "commits");
    snprintf(s->sha256, sizeof s->sha256, "%s", replica_json_text(root, "sha256"));
    if (strlen(s->sha256) != 64 || replica_json_u64(root, "size", &size) != 0 ||
        !json_is_array(list) || json_array_size(list) == 0) {
        rc = error_set(err, -EBADMSG, "%s lacks sha256, size or commits", s->sidecar_key);
        goto out;
    }
    s->size = (int64_t)size;
    *count = json_array_size(list);
    *commits = calloc(*count, sizeof **commits);
    if (!*commits) {
        rc = error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < *count; i++) {
        json_t *item = json_array_get(list, i);
        struct replica_commit *c = &(*commits)[i];
        uint64_t pages = 0;
        snprintf(c->seen_at, sizeof c->seen_at, "%s", replica_json_text(item, "seen_at"));
        if (replica_json_u64(item, "frame", &c->frame) ||
            replica_json_u64(item, "end_offset", &c->end_offset) ||
            replica_json_u64(item, "db_pages", &pages) ||
            replica_parse_rfc3339(c->seen_at, &c->seen_ms) || c->end_offset <= s->start ||
            c->end_offset > s->end || (i > 0 && c->end_offset <= (*commits)[i - 1].end_offset)) {
            rc = error_set(err, -EBADMSG,
                           "%s: commit %zu has no valid frame, end_offset inside the segment, "
                           "db_pages or seen_at",
                           s->sidecar_key, i + 1);
            goto out;
        }
        c->db_pages = (uint32_t)pages;
    }
    if ((*commits)[*count - 1].end_offset != s->end)
        rc = error_set(err, -EBADMSG, "%s: the last commit ends at %llu, the segment at %llu",
                       s->sidecar_key, (unsigned long long)(*commits)[*count - 1].end_offset,
                       (unsigned long long)s->end);
out:
    json_decref(root);
    if (rc != 0) {
        free(*commits);
        *commits = NULL;
    }
    return rc;
}

/* Fetches every sidecar of the chain (in parallel), and decides what each
 * generation applies: all of it, or up to the last commit seen <= T for the
 * last one. */
static int replica_plan_segments(struct replica_work *work, struct error *err)
{
    size_t total = 0;
    int rc = 0;
    for (size_t i = 0; i < work->chain_count && rc == 0; i++)
        rc = replica_list_segments(work, &work->chain[i], err);
    for (size_t i = 0; i < work->chain_count && rc == 0; i++) {
        struct replica_generation *g = &work->chain[i];
        if (g->segment_count == 0)
            return error_set(err, -ENOENT, "generation %s has no segment on target %s (%s%s/wal/)",
                             g->window.name, work->request->target->name, work->prefix,
                             g->window.name);
        total += g->segment_count;
    }
    if (rc != 0)
        return rc;
    struct replica_job *jobs = calloc(total, sizeof *jobs);
    if (!jobs)
        return error_set(err, -ENOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < work->chain_count; i++)
        for (size_t k = 0; k < work->chain[i].segment_count; k++, n++) {
            jobs[n].key = work->chain[i].segments[k].sidecar_key;
            jobs[n].size = -1;
            replica_temp_path(work, "sidecar", jobs[n].path);
        }
    rc = replica_fetch_all(work, jobs, total, err);
    if (rc == -ENOENT)
        error_prefix(err, "a segment's sidecar is missing: ");
    const struct replica_request *request = work->request;
    n = 0;
    for (size_t i = 0; i < work->chain_count && rc == 0; i++) {
        struct replica_generation *g = &work->chain[i];
        bool last = i + 1 == work->chain_count;
        for (size_t k = 0; k < g->segment_count && rc == 0; k++, n++) {
            struct replica_segment *s = &g->segments[k];
            struct replica_commit *commits = NULL;
            size_t count = 0;
            rc = replica_read_sidecar(jobs[n].path, s, &commits, &count, err);
            if (rc != 0)
                break;
            s->commits = count;
            s->first_frame = commits[0].frame;
            snprintf(s->first_seen_at, sizeof s->first_seen_at, "%s", commits[0].seen_at);
            if (!g->cut) {
                size_t taken = 0;
                for (; taken < count; taken++)
                    if (last && commits[taken].seen_ms > request->at_ms)
                        break;
                if (taken > 0) {
                    g->target = commits[taken - 1];
                    g->used_segments = k + 1;
                    g->used_commits += taken;
                }
                if (taken < count)
                    g->cut = true;
            }
            free(commits);
        }
        if (rc == 0)
            rc = replica_check_contiguous(work, g, g->used_segments, err);
        if (rc == 0 && g->used_segments == 0)
            rc = error_set(err, -ERANGE, "no commit of generation %s is at or before the time",
                           g->window.name);
        if (rc == 0 && !last && g->used_segments != g->segment_count)
            rc = error_set(err, -EBADMSG, "generation %s lists segments past its end",
                           g->window.name);
    }
    for (size_t i = 0; i < total; i++)
        unlink(jobs[i].path);
    free(jobs);
    return rc;
}

/* ---- building and replaying each generation's WAL ---- */

/* Inflates every gzip member of `path` and appends the bytes to `fd`;
 * *written counts them. */
static int replica_inflate_append(const char *path, const char *key, int fd, uint64_t *written,
                                  struct error *err)
{
    unsigned char *in = malloc(REPLICA_BUFFER), *out = malloc(REPLICA_BUFFER);
    z_stream z = {0};
    int input = -1, rc = 0;
    bool begun = false, ended = false;
    if (!in || !out) {
        rc = error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    if ((input = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        rc = error_set(err, -errno, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
        rc = error_set(err, -ENOMEM, "zlib: out of memory");
        goto out;
    }
    begun = true;
    for (;;) {
        if (z.avail_in == 0) {
            ssize_t got = io_read_full(input, in, REPLICA_BUFFER);
            if (got < 0) {
                rc = error_set(err, (int)got, "%s: %s", path, strerror((int)-got));
                goto out;
            }
            if (got == 0)
                break;
            z.next_in = in;
            z.avail_in = (uInt)got;
        }
        if (ended) { /* another member follows */
            inflateReset(&z);
            ended = false;
        }
        z.next_out = out;
        z.avail_out = REPLICA_BUFFER;
        int zrc = inflate(&z, Z_NO_FLUSH);
        if (zrc != Z_OK && zrc != Z_STREAM_END && zrc != Z_BUF_ERROR) {
            rc = error_set(err, -EBADMSG, "%s is not a valid gzip stream: %s", key,
                           z.msg ? z.msg : "inflate failed");
            goto out;
        }
        size_t produced = REPLICA_BUFFER - z.avail_out;
        if (produced && (rc = io_write_full(fd, out, produced)) != 0) {
            rc = error_set(err, rc, "writing the WAL rebuilt from %s: %s", key, strerror(-rc));
            goto out;
        }
        *written += produced;
        if (zrc == Z_STREAM_END)
            ended = true;
    }
    if (!ended)
        rc = error_set(err, -EBADMSG, "%s ends inside a gzip member: the object is truncated", key);
out:
    if (begun)
        inflateEnd(&z);
    if (input >= 0)
        close(input);
    free(in);
    free(out);
    return rc;
}

/* The segment holding byte `offset` of a generation's WAL, for messages. */
static const char *replica_segment_at(const struct replica_generation *g, uint64_t offset)
{
    for (size_t i = 0; i < g->used_segments; i++)
        if (offset < g->segments[i].end)
            return g->segments[i].key;
    return g->used_segments ? g->segments[g->used_segments - 1].key : "(none)";
}

/* The whole chain from the header: every frame up to the cut accepted, and
 * the cut the end of a commit. */
static int replica_check_chain(const char *wal_path, const struct replica_generation *g,
                               uint64_t *frames, struct error *err)
{
    struct wal_reader reader;
    int fd = open(wal_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_set(err, -errno, "%s: %s", wal_path, strerror(errno));
    int rc = wal_reader_open(&reader, fd, wal_path, err);
    if (rc != 0) {
        error_prefix(err, "the WAL header in %s: ", g->segments[0].key);
        close(fd);
        return rc == -ENODATA ? -EBADMSG : rc;
    }
    rc = wal_reader_scan(&reader, err);
    if (rc == 0 && (reader.committed.offset != g->target.end_offset ||
                    reader.committed.frame_index != g->target.frame)) {
        uint64_t at = reader.next.offset;
        rc = error_set(err, -EBADMSG,
                       "the WAL chain of generation %s breaks at byte %llu (%s, frame %llu), in "
                       "%s; the sidecars say commits reach byte %llu (frame %llu): the object is "
                       "damaged, restore to a time before it",
                       g->window.name, (unsigned long long)at, wal_stop_name(reader.stop),
                       (unsigned long long)reader.next.frame_index + 1, replica_segment_at(g, at),
                       (unsigned long long)g->target.end_offset,
                       (unsigned long long)g->target.frame);
    }
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
        rc = error_set(err, -EBADMSG,
                       "after generation %s (%llu frames) %s has %lld pages, the commit says %u: "
                       "SQLite did not replay the whole WAL",
                       g->window.name, (unsigned long long)frames, output, (long long)pages,
                       g->target.db_pages);
out:
    sqlite3_finalize(statement);
    sqlite3_close(db);
    return rc;
}

static int replica_apply_generation(struct replica_work *work, struct replica_generation *g,
                                    struct replica_job *jobs, struct error *err)
{
    char wal_path[PATH_MAX + 8];
    snprintf(wal_path, sizeof wal_path, "%s-wal", work->request->output);
    unlink(wal_path);
    int fd = open(wal_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return error_set(err, -errno, "%s: %s", wal_path, strerror(errno));
    int rc = 0;
    uint64_t written = 0, frames = 0;
    for (size_t i = 0; i < g->used_segments && rc == 0; i++) {
        const struct replica_segment *s = &g->segments[i];
        uint64_t before = written;
        rc = replica_inflate_append(jobs[i].path, s->key, fd, &written, err);
        if (rc == 0 && written - before != s->end - s->start)
            rc = error_set(err, -EBADMSG,
                           "%s holds %llu bytes of WAL, its name says %llu: the object is damaged",
                           s->key, (unsigned long long)(written - before),
                           (unsigned long long)(s->end - s->start));
        unlink(jobs[i].path); /* disk: one generation's WAL at a time beside the output */
    }
    if (rc == 0 && ftruncate(fd, (off_t)g->target.end_offset) != 0)
        rc = error_set(err, -errno, "%s: %s", wal_path, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = error_set(err, -errno, "%s: %s", wal_path, strerror(errno));
    if (rc == 0)
        rc = replica_check_chain(wal_path, g, &frames, err);
    if (rc == 0)
        rc = replica_replay(work->request->output, g, frames, err);
    unlink(wal_path);
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
    const char *earliest = "";
    for (size_t k = 0; k < base->segment_count; k++)
        if (base->segments[k].commits && base->segments[k].first_frame >= base->base_frame) {
            earliest = base->segments[k].first_seen_at;
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

int replica_restore(const struct replica_request *request, struct replica_result *result,
                    struct error *err)
{
    struct replica_work work = {.request = request};
    struct replica_job *jobs = NULL;
    size_t job_count = 0, chosen = 0;
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
    if (rc == 0)
        rc = replica_build_chain(&work, chosen, err);
    if (rc == 0)
        rc = replica_plan_segments(&work, err);
    if (rc == 0)
        rc = replica_check_base_frame(&work, err);
    if (rc != 0)
        goto out;

    /* Base and segments: every download checked before anything is applied. */
    job_count = 1;
    for (size_t i = 0; i < work.chain_count; i++)
        job_count += work.chain[i].used_segments;
    jobs = calloc(job_count, sizeof *jobs);
    if (!jobs) {
        rc = error_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    char base_key[1100];
    snprintf(base_key, sizeof base_key, "%s%s/base.db.gz", work.prefix, work.chain[0].window.name);
    jobs[0].key = base_key;
    jobs[0].sha256 = work.chain[0].base_sha256;
    jobs[0].size = work.chain[0].base_size;
    replica_temp_path(&work, "base.db.gz", jobs[0].path);
    size_t n = 1;
    for (size_t i = 0; i < work.chain_count; i++)
        for (size_t k = 0; k < work.chain[i].used_segments; k++, n++) {
            struct replica_segment *s = &work.chain[i].segments[k];
            jobs[n].key = s->key;
            jobs[n].sha256 = s->sha256;
            jobs[n].size = s->size;
            replica_temp_path(&work, "segment", jobs[n].path);
            result->fetched_bytes += s->size;
        }
    result->fetched_bytes += jobs[0].size;
    rc = replica_fetch_all(&work, jobs, job_count, err);
    if (rc == -ENOENT)
        error_prefix(err, "an object of the replica is missing: ");
    if (rc != 0)
        goto out;

    struct archive_result unpacked = {0};
    struct io_context io = {.stop = request->stop};
    unlink(request->output);
    output_made = true;
    rc = archive_decompress(jobs[0].path, request->output, &io, &unpacked, err);
    unlink(jobs[0].path);
    if (rc != 0) {
        error_prefix(err, "%s: ", base_key);
        goto out;
    }
    n = 1;
    for (size_t i = 0; i < work.chain_count && rc == 0; i++) {
        rc = replica_apply_generation(&work, &work.chain[i], jobs + n, err);
        n += work.chain[i].used_segments;
        result->segments += work.chain[i].used_segments;
        result->commits += work.chain[i].used_commits;
        if (rc == 0 && request->stop && *request->stop)
            rc = error_set(err, -ECANCELED, "stopped by a signal");
    }
    if (rc != 0)
        goto out;
    const struct replica_generation *last = &work.chain[work.chain_count - 1];
    snprintf(result->seen_at, sizeof result->seen_at, "%s", last->target.seen_at);
    snprintf(result->generation, sizeof result->generation, "%s", last->window.name);
    snprintf(result->base_generation, sizeof result->base_generation, "%s",
             work.chain[0].window.name);
    result->frame = last->target.frame;
    result->db_pages = last->target.db_pages;
    result->generations = work.chain_count;
out:
    for (size_t i = 0; i < job_count; i++)
        unlink(jobs[i].path);
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
