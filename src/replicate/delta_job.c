/*
 * delta_job.c: a page delta built on its own thread (delta_job.h).
 */
#include "replicate/delta_job.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "archive/archive.h"
#include "core/fsutil.h"
#include "core/io.h"
#include "replicate/seal.h"

#define DELTA_GZIP_LEVEL 6 /* as segments and bases */

/* One delta the job makes: the plain file, then the stored object, then
 * its manifest (written last). */
struct delta_output {
    char data[PATH_MAX], manifest[PATH_MAX];
    char data_key[FORMAT_KEY_SIZE], manifest_key[FORMAT_KEY_SIZE];
    struct format_delta record;
};

struct delta_job {
    pthread_t thread;
    struct delta_pages pages;   /* the closed span */
    struct delta_pages *levels; /* DELTA_LEVELS - 1, the caller's, this thread's while it runs */
    int64_t every_ms, now_ms;
    char spool[PATH_MAX];
    char database[256];
    struct sealed_recipients recipients;
    struct delta_output outputs[DELTA_LEVELS];
    size_t output_count;
    volatile sig_atomic_t stop;
    atomic_bool done;
    int rc;
    struct error err;
};

static void delta_job_remove_files(struct delta_job *job)
{
    char plain[PATH_MAX];
    snprintf(plain, sizeof plain, "%s/%s", job->spool, DELTA_SPOOL_PLAIN);
    unlink(plain);
    for (size_t i = 0; i < job->output_count; i++) {
        unlink(job->outputs[i].data);
        unlink(job->outputs[i].manifest);
    }
}

/* The names of `p`'s delta. */
static int delta_output_names(struct delta_job *job, const struct delta_pages *p,
                              struct delta_output *o, struct error *err)
{
    char name[FORMAT_DELTA_NAME_SIZE];
    format_delta_name(p->first_generation, p->last_generation, name);
    const char *suffix =
        job->recipients.count ? FORMAT_DELTA_PAGES SEALED_SUFFIX : FORMAT_DELTA_PAGES;
    if (snprintf(o->data, sizeof o->data, "%s/%s%s", job->spool, name, suffix) >=
            (int)sizeof o->data ||
        snprintf(o->manifest, sizeof o->manifest, "%s/%s" FORMAT_DELTA_MANIFEST, job->spool,
                 name) >= (int)sizeof o->manifest)
        return error_set(err, -ENAMETOOLONG, "%s: spool path too long", job->spool);
    int rc = format_delta_key(o->data_key, sizeof o->data_key, job->database, p->first_generation,
                              p->last_generation, suffix, err);
    if (rc == 0)
        rc = format_delta_key(o->manifest_key, sizeof o->manifest_key, job->database,
                              p->first_generation, p->last_generation, FORMAT_DELTA_MANIFEST, err);
    return rc;
}

/* `p` as a delta in the spool: plain, compressed and sealed, manifest. */
static int delta_job_make(struct delta_job *job, const struct delta_pages *p)
{
    struct error *err = &job->err;
    struct delta_output *o = &job->outputs[job->output_count];
    char plain[PATH_MAX];
    uint64_t pages = 0;
    memset(o, 0, sizeof *o);
    snprintf(plain, sizeof plain, "%s/%s", job->spool, DELTA_SPOOL_PLAIN);
    int rc = delta_output_names(job, p, o, err);
    if (rc != 0)
        return rc;
    job->output_count++; /* its files are removed on failure from here on */
    o->record = (struct format_delta){.first_generation = p->first_generation,
                                      .last_generation = p->last_generation,
                                      .page_size = p->page_size,
                                      .db_pages = p->db_pages,
                                      .wal_bytes = p->wal_bytes,
                                      .built_at_ms = job->now_ms};
    replica_seal_describe(&job->recipients, &o->record.encryption);
    if ((rc = delta_write_plain(p, plain, &job->stop, &pages, err)) != 0)
        return rc;
    /* One thread: a delta has until the next span closes (delta_every), and
     * the default two held 8 MiB of blocks beside the shipper's: the
     * agent's peak, 31.6 MiB against the 32 MiB target (26.4 with one). */
    struct archive_options options = {.threads = 1,
                                      .recipients = job->recipients.items,
                                      .recipient_count = job->recipients.count};
    struct io_context io = {.stop = &job->stop, .background = true};
    struct archive_result result = {0};
    unlink(o->data);
    rc = archive_compress_format(plain, o->data, ARCHIVE_GZIP, DELTA_GZIP_LEVEL, &io, &options,
                                 &result, err);
    unlink(plain);
    if (rc != 0)
        return rc;
    o->record.pages = pages;
    o->record.size = (uint64_t)result.output_bytes;
    memcpy(o->record.sha256, result.sha256, sizeof o->record.sha256);
    char *json = format_delta_encode(&o->record, err);
    if (!json)
        return err->code ? err->code : -EINVAL;
    rc = fs_write_file_atomically(o->manifest, json, strlen(json), 0600, err);
    free(json);
    return rc;
}

/*
 * The closed span's delta (when worth it), then the span merged into the
 * first level; a level whose reach is due (FACTOR^k spans' time) gets its
 * own delta (unless it is the very range just made) and is merged into the
 * next one up, and starts anew.
 */
static int delta_job_build(struct delta_job *job)
{
    struct error *err = &job->err;
    struct delta_pages *current = &job->pages;
    int64_t reach = job->every_ms;
    uint32_t made_first = 0, made_last = 0;
    for (int level = 0; level < DELTA_LEVELS; level++) {
        if (level > 0) {
            reach *= DELTA_LEVEL_FACTOR;
            current = &job->levels[level - 1];
            if (current->fd < 0 || job->now_ms - current->started_ms < reach)
                break;
        }
        bool same =
            current->first_generation == made_first && current->last_generation == made_last;
        if (delta_pages_worth(current) && !same) {
            int rc = delta_job_make(job, current);
            if (rc != 0)
                return rc;
            made_first = current->first_generation;
            made_last = current->last_generation;
        }
        if (level + 1 < DELTA_LEVELS) {
            char path[PATH_MAX];
            snprintf(path, sizeof path, "%s/%s%d", job->spool, DELTA_SPOOL_LEVEL, level + 2);
            int rc = delta_pages_merge(&job->levels[level], current, path, err);
            if (rc != 0)
                return rc;
        }
        delta_pages_free(current);
    }
    return 0;
}

static void *delta_job_run(void *argument)
{
    struct delta_job *job = argument;
    job->rc = delta_job_build(job);
    if (job->rc != 0) {
        delta_job_remove_files(job);
        /* A level that missed a span must not bridge it. */
        for (int i = 0; i < DELTA_LEVELS - 1; i++)
            delta_pages_free(&job->levels[i]);
    }
    delta_pages_free(&job->pages);
    atomic_store(&job->done, true);
    return NULL;
}

int delta_job_start(struct delta_job **out, struct delta_pages *pages, struct delta_pages *levels,
                    int64_t every_ms, const char *spool, const char *database,
                    struct sealed_recipients recipients, int64_t now_ms, struct error *err)
{
    *out = NULL;
    struct delta_job *job = calloc(1, sizeof *job);
    if (!job) {
        delta_pages_free(pages);
        return error_set(err, -ENOMEM, "out of memory");
    }
    job->pages = *pages;
    *pages = (struct delta_pages){.fd = -1};
    job->levels = levels;
    job->every_ms = every_ms;
    job->now_ms = now_ms;
    job->recipients = recipients;
    snprintf(job->database, sizeof job->database, "%s", database);
    int rc = 0;
    if (snprintf(job->spool, sizeof job->spool, "%s", spool) >= (int)sizeof job->spool)
        rc = error_set(err, -ENAMETOOLONG, "%s: spool path too long", spool);
    if (rc == 0 && (rc = -pthread_create(&job->thread, NULL, delta_job_run, job)) != 0)
        error_set(err, rc, "cannot start the delta's thread: %s", strerror(-rc));
    if (rc != 0) {
        delta_pages_free(&job->pages);
        free(job);
        return rc;
    }
    *out = job;
    return 0;
}

bool delta_job_done(const struct delta_job *job)
{
    return atomic_load(&job->done);
}

int delta_job_finish(struct delta_job *job, struct state_replica_object *objects,
                     size_t *object_count, struct format_delta *records, size_t *record_count,
                     struct error *err)
{
    pthread_join(job->thread, NULL);
    int rc = job->rc;
    *object_count = *record_count = 0;
    if (rc != 0) {
        error_set(err, rc, "%s", job->err.message);
    } else {
        for (size_t i = 0; i < job->output_count; i++) {
            const struct delta_output *o = &job->outputs[i];
            /* Queued as its last generation's: retention's order. */
            uint32_t last = o->record.last_generation;
            struct state_replica_object *data = &objects[(*object_count)++];
            struct state_replica_object *manifest = &objects[(*object_count)++];
            *data = (struct state_replica_object){.generation = last};
            *manifest = (struct state_replica_object){.generation = last};
            snprintf(data->key, sizeof data->key, "%s", o->data_key);
            snprintf(data->path, sizeof data->path, "%s", o->data);
            snprintf(manifest->key, sizeof manifest->key, "%s", o->manifest_key);
            snprintf(manifest->path, sizeof manifest->path, "%s", o->manifest);
            records[(*record_count)++] = o->record;
        }
    }
    free(job);
    return rc;
}

void delta_job_cancel(struct delta_job *job)
{
    if (!job)
        return;
    job->stop = 1;
    pthread_join(job->thread, NULL);
    delta_job_remove_files(job);
    free(job);
}
