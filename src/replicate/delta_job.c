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

struct delta_job {
    pthread_t thread;
    struct delta_pages pages;
    char database[256];
    char plain[PATH_MAX], data[PATH_MAX], manifest[PATH_MAX];
    char data_key[FORMAT_KEY_SIZE], manifest_key[FORMAT_KEY_SIZE];
    struct sealed_recipients recipients;
    struct format_delta record;
    volatile sig_atomic_t stop;
    atomic_bool done;
    int rc;
    struct error err;
};

static void delta_job_remove_files(struct delta_job *job)
{
    unlink(job->plain);
    unlink(job->data);
    unlink(job->manifest);
}

static int delta_job_build(struct delta_job *job)
{
    struct error *err = &job->err;
    uint64_t pages = 0;
    int rc = delta_write_plain(&job->pages, job->plain, &job->stop, &pages, err);
    /* The span's images are read: their disk goes back before compressing. */
    delta_pages_free(&job->pages);
    if (rc != 0)
        return rc;
    struct archive_options options = {.recipients = job->recipients.items,
                                      .recipient_count = job->recipients.count};
    struct io_context io = {.stop = &job->stop, .background = true};
    struct archive_result result = {0};
    unlink(job->data);
    rc = archive_compress_format(job->plain, job->data, ARCHIVE_GZIP, DELTA_GZIP_LEVEL, &io,
                                 &options, &result, err);
    unlink(job->plain);
    if (rc != 0)
        return rc;
    job->record.pages = pages;
    job->record.size = (uint64_t)result.output_bytes;
    memcpy(job->record.sha256, result.sha256, sizeof job->record.sha256);
    char *json = format_delta_encode(&job->record, err);
    if (!json)
        return err->code ? err->code : -EINVAL;
    rc = fs_write_file_atomically(job->manifest, json, strlen(json), 0600, err);
    free(json);
    return rc;
}

static void *delta_job_run(void *argument)
{
    struct delta_job *job = argument;
    job->rc = delta_job_build(job);
    if (job->rc != 0)
        delta_job_remove_files(job);
    atomic_store(&job->done, true);
    return NULL;
}

int delta_job_start(struct delta_job **out, struct delta_pages *pages, const char *spool,
                    const char *database, struct sealed_recipients recipients, int64_t now_ms,
                    struct error *err)
{
    *out = NULL;
    struct delta_job *job = calloc(1, sizeof *job);
    if (!job) {
        delta_pages_free(pages);
        return error_set(err, -ENOMEM, "out of memory");
    }
    job->pages = *pages;
    *pages = (struct delta_pages){.fd = -1};
    job->recipients = recipients;
    snprintf(job->database, sizeof job->database, "%s", database);
    char name[FORMAT_DELTA_NAME_SIZE];
    const struct delta_pages *p = &job->pages;
    format_delta_name(p->first_generation, p->last_generation, name);
    bool sealed = recipients.count > 0;
    const char *suffix = sealed ? ".pages.gz" SEALED_SUFFIX : ".pages.gz";
    int rc = 0;
    if (snprintf(job->plain, sizeof job->plain, "%s/%s", spool, DELTA_SPOOL_PLAIN) >=
            (int)sizeof job->plain ||
        snprintf(job->data, sizeof job->data, "%s/%s%s", spool, name, suffix) >=
            (int)sizeof job->data ||
        snprintf(job->manifest, sizeof job->manifest, "%s/%s.pages.json", spool, name) >=
            (int)sizeof job->manifest)
        rc = error_set(err, -ENAMETOOLONG, "%s: spool path too long", spool);
    if (rc == 0)
        rc = format_delta_key(job->data_key, sizeof job->data_key, database, p->first_generation,
                              p->last_generation, suffix, err);
    if (rc == 0)
        rc = format_delta_key(job->manifest_key, sizeof job->manifest_key, database,
                              p->first_generation, p->last_generation, ".pages.json", err);
    job->record = (struct format_delta){.first_generation = p->first_generation,
                                        .last_generation = p->last_generation,
                                        .page_size = p->page_size,
                                        .db_pages = p->db_pages,
                                        .wal_bytes = p->wal_bytes,
                                        .built_at_ms = now_ms};
    replica_seal_describe(&recipients, &job->record.encryption);
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

int delta_job_finish(struct delta_job *job, struct state_replica_object objects[2],
                     struct format_delta *out, struct error *err)
{
    pthread_join(job->thread, NULL);
    int rc = job->rc;
    if (rc != 0) {
        error_set(err, rc, "%s", job->err.message);
    } else {
        uint32_t last = job->record.last_generation; /* queued as B's: retention's order */
        objects[0] = (struct state_replica_object){.generation = last};
        objects[1] = (struct state_replica_object){.generation = last};
        snprintf(objects[0].key, sizeof objects[0].key, "%s", job->data_key);
        snprintf(objects[0].path, sizeof objects[0].path, "%s", job->data);
        snprintf(objects[1].key, sizeof objects[1].key, "%s", job->manifest_key);
        snprintf(objects[1].path, sizeof objects[1].path, "%s", job->manifest);
        *out = job->record;
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
    delta_pages_free(&job->pages);
    free(job);
}
