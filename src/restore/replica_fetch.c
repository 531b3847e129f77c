/*
 * replica_fetch.c: the downloads of a point-in-time restore
 * (replica_internal.h), a few in flight, each streamed to a temp file
 * beside the output and checked against its SHA-256 and size; objects that
 * compaction packed are cut out of their pack (replica_objects.h). Used by
 * the plan (replica.c) and the apply (replica_apply.c) alike, and calls
 * neither.
 */
#include "restore/replica_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "core/io.h"
#include "offsite/target.h"

#define REPLICA_DEFAULT_PARALLEL 4

struct replica_pool {
    const struct target_config *target;
    const volatile sig_atomic_t *stop;
    const volatile sig_atomic_t *abandoned; /* the work's: nothing more is wanted */
    struct replica_job *jobs;
    size_t count, next;
    volatile sig_atomic_t failed; /* also the targets' stop: one failure ends the rest */
    pthread_mutex_t mutex;
};

void replica_temp_path(struct replica_work *work, const char *what, char out[PATH_MAX])
{
    snprintf(out, PATH_MAX, "%s%u-%s%s", work->temp, work->temp_serial++, what, FS_TEMP_SUFFIX);
}

/* A segment's key, or its sidecar's (suffix ".wal.json"): built when
 * needed, so that a generation's many segments cost a few numbers each. */
const char *replica_segment_key(const struct replica_work *work, const struct replica_generation *g,
                                const struct replica_segment *s, const char *suffix,
                                char out[FORMAT_KEY_SIZE])
{
    char name[32];
    format_segment_name(s->start, s->end, name);
    snprintf(out, FORMAT_KEY_SIZE, "%s%s/wal/%s%s", work->prefix, g->window.name, name, suffix);
    return out;
}

/* ---- parallel downloads: a few in flight, each streamed to a file ---- */

/* The download at job->path against its manifest; `hashed`: its SHA-256,
 * taken as the download wrote it ("" or NULL: read and hash it here). */
static int replica_check_file(struct replica_job *job, const char *hashed)
{
    if (!job->sha256)
        return 0;
    int fd = open(job->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return error_set(&job->err, -errno, "%s: %s", job->path, strerror(errno));
    struct stat st;
    char hex[IO_SHA256_HEX];
    int rc = fstat(fd, &st) == 0 ? 0 : -errno;
    if (rc == 0 && hashed && hashed[0])
        snprintf(hex, sizeof hex, "%s", hashed);
    else if (rc == 0)
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
        } else if ((pool->stop && *pool->stop) || *pool->abandoned) {
            job->rc = error_set(&job->err, -ECANCELED, "stopped by a signal");
        } else {
            char hashed[IO_SHA256_HEX] = "";
            unlink(job->path);
            job->rc = target_get_file_hashed(target, job->key, job->path, hashed, NULL, &job->err);
            job->loose_fetched = job->rc == 0;
            if (job->rc == 0)
                job->rc = replica_check_file(job, hashed);
        }
        /* Not found: compaction may have packed it since the listing; the
         * main thread looks for it in the packs once the others are done. */
        if (job->rc != 0 && job->rc != -ENOENT)
            pool->failed = 1;
    }
    target_close(target);
    return NULL;
}

int replica_fetch_all(struct replica_work *work, struct replica_job *jobs, size_t count,
                      struct error *err)
{
    int parallel = work->request->parallel > 0 ? work->request->parallel : REPLICA_DEFAULT_PARALLEL;
    if ((size_t)parallel > count)
        parallel = (int)count;
    struct replica_pool pool = {.target = work->request->target,
                                .stop = work->request->stop,
                                .abandoned = &work->abandoned,
                                .jobs = jobs,
                                .count = count};
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
            if (rc == 0 && (rc = replica_check_file(&jobs[i], NULL)) != 0)
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
            job->rc = replica_check_file(job, NULL);
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

int replica_get_text(struct target *target, const char *key, const char *temp_path, char **text,
                     size_t *size, struct error *err)
{
    unlink(temp_path);
    int rc = target_get_file(target, key, temp_path, NULL, err);
    if (rc == 0)
        rc = fs_read_file(temp_path, text, size, err);
    unlink(temp_path);
    return rc;
}
