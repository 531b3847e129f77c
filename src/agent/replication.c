/*
 * replication.c: the replication threads (replication.h).
 */
#include "agent/replication.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "core/file_watch.h"
#include "core/io.h"
#include "core/log.h"
#include "db/database.h"
#include "offsite/target_pool.h"
#include "replicate/compactor.h"
#include "replicate/shipper.h"
#include "replicate/uploader.h"

/* How often, between rounds, the reader looks for an application's
 * checkpoint waiting for its pin (replica_watch): the longest such a
 * checkpoint (and the application's writers behind it) waits for us. */
#define WATCH_EVERY_MS 20
/* The reader's longest sleep with every database quiet: only a safety
 * net, the file events and the scheduled bases wake it. */
#define READER_LONGEST_SLEEP_MS (3600 * 1000)
/* The uploader's next look when retention is due at once (or failed):
 * a busy-loop guard, not a poll. */
#define UPLOAD_IDLE_MS 1000
/* Retry of a failing target: 1 s doubling to 60 s. */
#define UPLOAD_RETRY_BASE_MS 1000
#define UPLOAD_RETRY_MAX_MS  60000
/* A thread's target (target_pool.h) unused this long is closed: longer than
 * S3 keeps an idle connection (about 20 s), so nothing worth keeping goes,
 * and a hundred idle databases hold no curl handle and no socket. */
#define TARGET_REST_MS (30 * 1000)

struct problem {
    char last[1024]; /* logged once until it changes */
};

struct replicated {
    const struct database_config *db;
    struct replica *replica;           /* reader thread; NULL until it opens */
    struct replica_uploader *uploader; /* upload thread; NULL until it opens */
    struct replica_compactor *compactor; /* compaction thread; NULL until it opens */
    int64_t due_ms, upload_due_ms, compact_due_ms;
    int upload_failures, compact_failures;
    bool compact_wanted; /* guarded by `lock`: objects were put since its last turn */
    bool compact_recovered; /* what a kill of an earlier agent left is given up */
    bool watched; /* its files are in `files` */
    bool quiet;   /* replica_quiet, and no file event since: no round, no watch */
    struct problem reading, uploading, compacting;
};

struct agent_replication {
    const struct config *config;
    pthread_t reader, upload, compact;
    bool reader_started, upload_started, compact_started;
    volatile sig_atomic_t stop;
    pthread_mutex_t lock;        /* guards `queued`, `compact_queued`, compact_wanted */
    pthread_cond_t wake;         /* the reader queued something */
    pthread_cond_t compact_wake; /* the uploader put something */
    bool queued, compact_queued;
    struct replicated *databases;
    size_t count;
    struct file_watch *files; /* NULL without inotify: every database is looked at */
    /* One state.db connection per thread, opened at its first need and
     * shared by every database's shipper or uploader on that thread. */
    struct state *reader_state, *upload_state;
    /* Likewise one pool of targets per thread: the databases that ship to
     * one target share its connection. */
    struct target_pool *upload_targets, *compact_targets;
    bool files_failed;        /* a wait failed: as without inotify from then on */
};

static int64_t replication_now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void replication_report(struct replicated *item, struct problem *problem, const char *what,
                               int rc, const struct error *err)
{
    if (rc == 0) {
        if (problem->last[0])
            log_event(LOG_NOTICE, item->db->name, "replicate", "%s again", what);
        problem->last[0] = '\0';
        return;
    }
    if (strcmp(problem->last, err->message) != 0)
        log_event(rc == -EBUSY ? LOG_WARNING : LOG_ERR, item->db->name, "replicate", "%s",
                  err->message);
    snprintf(problem->last, sizeof problem->last, "%s", err->message);
}

/* The calling thread's state.db connection (`slot`), opened at its first
 * need. 0 or -errno. */
static int thread_state(struct agent_replication *replication, struct state **slot,
                        struct error *err)
{
    return *slot ? 0 : state_open(replication->config->state_dir, slot, err);
}

/* The calling thread's target pool (`slot`), made at its first need. */
static int thread_targets(struct agent_replication *replication, struct target_pool **slot,
                          struct error *err)
{
    if (*slot)
        return 0;
    int rc = target_pool_new(TARGET_REST_MS, &replication->stop, slot);
    return rc < 0 ? error_set(err, rc, "out of memory") : 0;
}

/* Closes the pool's targets that rest; `next` brought forward to when the
 * next one will. */
static void rest_targets(struct target_pool *pool, int64_t *next)
{
    int64_t in = pool ? target_pool_rest(pool) : INT64_MAX;
    int64_t at = in == INT64_MAX ? INT64_MAX : replication_now_ms() + in;
    if (at < *next)
        *next = at;
}

static void wake_uploader(struct agent_replication *replication)
{
    pthread_mutex_lock(&replication->lock);
    replication->queued = true;
    pthread_cond_signal(&replication->wake);
    pthread_mutex_unlock(&replication->lock);
}

/* One database's turn on the reader thread: a round when due, else a
 * watch; nothing while it is quiet. When it wants its next turn. */
static int64_t reader_turn(struct agent_replication *replication, struct replicated *item,
                           int64_t now)
{
    struct error err = {0};
    int rc = 0;
    /* Nothing to do until a file changes: an unchanged database needs no
     * round, and no scheduled base either (the next change brings it). */
    if (item->quiet)
        return now + READER_LONGEST_SLEEP_MS;
    if (now < item->due_ms) {
        if (!item->replica)
            return item->due_ms;
        rc = replica_watch(item->replica, now, &err);
        if (rc != 0)
            replication_report(item, &item->reading, "shipping", rc, &err);
        return now + WATCH_EVERY_MS < item->due_ms ? now + WATCH_EVERY_MS : item->due_ms;
    }
    /* The full check (an SQLite connection) once, before the replica opens;
     * then only stats, so that an idle database costs no more (the round
     * reads the journal mode from the file header). A database out of WAL
     * mode (-EINVAL) still gets its round, also right after a start: the
     * shipper counts that break once and shows it. */
    rc = item->replica ? database_refuse_special_files(item->db->path, &err)
                       : replica_check_database(item->db, &err);
    if ((rc == 0 || rc == -EINVAL) && !item->replica) {
        struct error open_err = {0};
        int opened = thread_state(replication, &replication->reader_state, &open_err);
        if (opened == 0)
            opened =
                replica_open(item->db, replication->config->state_dir, replication->reader_state,
                             &replication->stop, &item->replica, &open_err);
        if (opened < 0) {
            rc = opened;
            err = open_err;
        }
    }
    if (item->replica && (rc == 0 || rc == -EINVAL)) {
        int round = replica_round(item->replica, replication_now_ms(), false, &err);
        if (round != 0)
            rc = round;
        wake_uploader(replication);
    }
    replication_report(item, &item->reading, "shipping", rc, &err);
    item->due_ms = now + item->db->replicate.interval_seconds * 1000;
    /* Any event from here on ends the quiet (on_file_event): a write made
     * after this round's look is never slept through. */
    item->quiet = rc == 0 && item->watched && replica_quiet(item->replica);
    if (item->quiet)
        return now + READER_LONGEST_SLEEP_MS;
    return item->replica && now + WATCH_EVERY_MS < item->due_ms ? now + WATCH_EVERY_MS
                                                                : item->due_ms;
}

static void on_file_event(void *context, size_t tag)
{
    struct agent_replication *replication = context;
    replication->databases[tag].quiet = false;
}

/* Until `next`, the stop, or (when a database is quiet) one of its files
 * changing. A file event wakes the loop at most once per WATCH_EVERY_MS,
 * so that a busy database beside a quiet one costs no more than before. */
static void reader_wait(struct agent_replication *replication, int64_t next, int64_t *listen_from)
{
    int64_t now = replication_now_ms();
    if (!replication->files || replication->files_failed) {
        if (next > now)
            io_sleep_ms(next - now, WATCH_EVERY_MS, &replication->stop);
        return;
    }
    bool any_quiet = false;
    for (size_t i = 0; i < replication->count; i++)
        any_quiet = any_quiet || replication->databases[i].quiet;
    bool listen = any_quiet && now >= *listen_from;
    if (any_quiet && !listen && *listen_from < next)
        next = *listen_from;
    int rc = file_watch_wait(replication->files, next > now ? next - now : 0, listen,
                             on_file_event, replication);
    if (rc < 0) {
        /* Unexpected: look at every database from now on, as without inotify. */
        log_event(LOG_WARNING, NULL, "replicate",
                  "watching the database files failed (%s): every database is looked at each "
                  "interval from now on",
                  strerror(-rc));
        replication->files_failed = true; /* closed by replication_free */
        for (size_t i = 0; i < replication->count; i++)
            replication->databases[i].watched = replication->databases[i].quiet = false;
        return;
    }
    if (listen && replication_now_ms() < next)
        *listen_from = replication_now_ms() + WATCH_EVERY_MS;
}

/* Reads, stamps and spools; never waits for a target (uploader.h). */
static void *reader_run(void *argument)
{
    struct agent_replication *replication = argument;
    int64_t listen_from = 0;
    while (!replication->stop) {
        int64_t now = replication_now_ms(), next = now + READER_LONGEST_SLEEP_MS;
        for (size_t i = 0; i < replication->count && !replication->stop; i++) {
            int64_t due = reader_turn(replication, &replication->databases[i], now);
            if (due < next)
                next = due;
        }
        if (!replication->stop)
            reader_wait(replication, next, &listen_from);
    }
    for (size_t i = 0; i < replication->count; i++)
        replica_close(replication->databases[i].replica);
    state_close(replication->reader_state);
    return NULL;
}

/* Clears a wake-up flag (`queued`, `compact_queued`) under the lock. */
static void replication_clear(struct agent_replication *replication, bool *flag)
{
    pthread_mutex_lock(&replication->lock);
    *flag = false;
    pthread_mutex_unlock(&replication->lock);
}

/* Sleeps until *flag is set (its condition signalled), a stop, or `next`
 * (INT64_MAX: no time, only a signal). agent_replication_stop sets the
 * flag, then broadcasts under the lock: no slices are needed to see it. */
static void replication_sleep(struct agent_replication *replication, pthread_cond_t *wake,
                              bool *flag, int64_t next)
{
    pthread_mutex_lock(&replication->lock);
    while (!*flag && !replication->stop && (next == INT64_MAX || replication_now_ms() < next)) {
        if (next == INT64_MAX) {
            pthread_cond_wait(wake, &replication->lock);
            continue;
        }
        struct timespec deadline = {.tv_sec = next / 1000,
                                    .tv_nsec = (long)(next % 1000) * 1000000};
        pthread_cond_timedwait(wake, &replication->lock, &deadline);
    }
    pthread_mutex_unlock(&replication->lock);
}

static int64_t upload_turn(struct agent_replication *replication, struct replicated *item,
                           int64_t now)
{
    struct error err = {0};
    int rc = 0, uploaded = 0;
    if (now < item->upload_due_ms)
        return item->upload_due_ms;
    if (!item->uploader &&
        (rc = thread_state(replication, &replication->upload_state, &err)) == 0 &&
        (rc = thread_targets(replication, &replication->upload_targets, &err)) == 0)
        rc = replica_uploader_open(item->db, replication->config->state_dir,
                                   replication->upload_state, replication->upload_targets,
                                   &replication->stop, &item->uploader, &err);
    if (rc == 0)
        rc = replica_upload(item->uploader, now, &uploaded, &err);
    if (uploaded > 0 && replica_compacts(item->db)) {
        pthread_mutex_lock(&replication->lock);
        item->compact_wanted = replication->compact_queued = true;
        pthread_cond_signal(&replication->compact_wake);
        pthread_mutex_unlock(&replication->lock);
    }
    if (replication->stop)
        return now;
    replication_report(item, &item->uploading, "uploading", rc, &err);
    if (rc < 0) {
        item->upload_failures++;
        item->upload_due_ms = now + io_backoff(UPLOAD_RETRY_BASE_MS, UPLOAD_RETRY_MAX_MS,
                                               item->upload_failures - 1, IO_JITTER_EQUAL);
    } else {
        item->upload_failures = 0;
        item->upload_due_ms = now;
    }
    if (item->upload_due_ms > now)
        return item->upload_due_ms;
    /* Nothing more queued: the reader wakes us when it queues; until then
     * only retention has a time. */
    int64_t next = item->uploader ? replica_uploader_next_ms(item->uploader, now) : now;
    return next > now ? next : now + UPLOAD_IDLE_MS;
}

/* Puts what the reader queued, each database in turn, retrying a failing
 * target with backoff; woken by the reader after each round. */
static void *upload_run(void *argument)
{
    struct agent_replication *replication = argument;
    while (!replication->stop) {
        int64_t now = replication_now_ms(), next = now + READER_LONGEST_SLEEP_MS;
        replication_clear(replication, &replication->queued);
        for (size_t i = 0; i < replication->count && !replication->stop; i++) {
            int64_t due = upload_turn(replication, &replication->databases[i], now);
            if (due < next)
                next = due;
        }
        rest_targets(replication->upload_targets, &next);
        /* Until woken by the reader, the next retry, or a stop. */
        replication_sleep(replication, &replication->wake, &replication->queued, next);
    }
    for (size_t i = 0; i < replication->count; i++)
        replica_uploader_close(replication->databases[i].uploader);
    target_pool_free(replication->upload_targets);
    state_close(replication->upload_state);
    return NULL;
}

/* One database's compaction: when the uploader put something, or to
 * retry a failure. When it wants its next turn (INT64_MAX: when woken). */
static int64_t compact_turn(struct agent_replication *replication, struct replicated *item,
                            int64_t now)
{
    struct error err = {0};
    int rc = 0, packs = 0;
    pthread_mutex_lock(&replication->lock);
    bool wanted = item->compact_wanted;
    item->compact_wanted = false;
    pthread_mutex_unlock(&replication->lock);
    if (!wanted && (item->compact_failures == 0 || now < item->compact_due_ms))
        return item->compact_failures ? item->compact_due_ms : INT64_MAX;
    if (!item->compactor &&
        (rc = thread_targets(replication, &replication->compact_targets, &err)) == 0)
        rc = replica_compactor_open(item->db, replication->config->state_dir,
                                    replication->compact_targets, &replication->stop,
                                    &item->compactor, &err);
    if (rc == 0 && !item->compact_recovered) {
        rc = replica_compactor_recover(item->compactor, &err);
        item->compact_recovered = rc == 0;
    }
    if (rc == 0)
        rc = replica_compact(item->compactor, &packs, &err);
    /* Closed between turns: ten thousand databases keep no connection
     * open for a merge that comes once in a while. What a kill left half
     * done is given up at the first turn, after the first upload. */
    replica_compactor_close(item->compactor);
    item->compactor = NULL;
    if (replication->stop)
        return now;
    replication_report(item, &item->compacting, "compacting", rc, &err);
    if (rc < 0) {
        item->compact_failures++;
        item->compact_due_ms = now + io_backoff(UPLOAD_RETRY_BASE_MS, UPLOAD_RETRY_MAX_MS,
                                                item->compact_failures - 1, IO_JITTER_EQUAL);
        return item->compact_due_ms;
    }
    item->compact_failures = 0;
    return INT64_MAX;
}

/* Packs what the uploader put (compactor.h), each database in turn, on a
 * thread of its own: a merge of many megabytes never delays the upload of
 * the next segment. Sleeps until the uploader puts something. */
static void *compact_run(void *argument)
{
    struct agent_replication *replication = argument;
    while (!replication->stop) {
        int64_t now = replication_now_ms(), next = INT64_MAX;
        replication_clear(replication, &replication->compact_queued);
        for (size_t i = 0; i < replication->count && !replication->stop; i++) {
            if (!replica_compacts(replication->databases[i].db))
                continue;
            int64_t due = compact_turn(replication, &replication->databases[i], now);
            if (due < next)
                next = due;
        }
        rest_targets(replication->compact_targets, &next);
        /* Until woken by the uploader, a retry, or a stop. */
        replication_sleep(replication, &replication->compact_wake, &replication->compact_queued,
                          next);
    }
    for (size_t i = 0; i < replication->count; i++)
        replica_compactor_close(replication->databases[i].compactor);
    target_pool_free(replication->compact_targets);
    return NULL;
}

static void replication_free(struct agent_replication *replication)
{
    file_watch_close(replication->files);
    pthread_cond_destroy(&replication->compact_wake);
    pthread_cond_destroy(&replication->wake);
    pthread_mutex_destroy(&replication->lock);
    free(replication->databases);
    free(replication);
}

int agent_replication_start(const struct config *config, struct agent_replication **out)
{
    *out = NULL;
    size_t count = 0;
    for (size_t i = 0; i < config->database_count; i++)
        count += config->databases[i].replicate.target != NULL;
    if (count == 0)
        return 0;
    struct agent_replication *replication = calloc(1, sizeof *replication);
    if (!replication || !(replication->databases = calloc(count, sizeof(struct replicated)))) {
        free(replication);
        return -ENOMEM;
    }
    replication->config = config;
    pthread_mutex_init(&replication->lock, NULL);
    /* The condition's clock is CLOCK_REALTIME, the clock of the deadlines. */
    pthread_cond_init(&replication->wake, NULL);
    pthread_cond_init(&replication->compact_wake, NULL);
    for (size_t i = 0; i < config->database_count; i++) {
        const struct database_config *db = &config->databases[i];
        if (!db->replicate.target)
            continue;
        struct error err = {0};
        /* At start, in the words of `check`: FILE:LINE: key: what is wrong. */
        if (replica_check_database(db, &err) < 0)
            log_event(LOG_ERR, db->name, "replicate", "%s", err.message);
        replication->databases[replication->count++].db = db;
    }
    /* Quiet databases are left alone until a file changes: without
     * inotify (or with its limit reached) they are looked at as before. */
    int watch_rc = file_watch_open(&replication->files);
    for (size_t i = 0; watch_rc == 0 && i < replication->count; i++) {
        struct replicated *item = &replication->databases[i];
        int added = file_watch_add(replication->files, item->db->path, i);
        item->watched = added == 0;
        if (added < 0)
            log_event(LOG_WARNING, item->db->name, "replicate",
                      "cannot watch %s for changes (%s%s): it is looked at every %llds even "
                      "when nothing is written",
                      item->db->path, strerror(-added),
                      added == -ENOSPC ? "; raise fs.inotify.max_user_watches" : "",
                      (long long)item->db->replicate.interval_seconds);
    }
    if (watch_rc < 0)
        log_event(LOG_WARNING, NULL, "replicate",
                  "no inotify (%s): every replicated database is looked at each interval, "
                  "idle or not",
                  strerror(-watch_rc));
    int rc = io_thread_start(&replication->reader, reader_run, replication);
    replication->reader_started = rc == 0;
    if (rc == 0) {
        rc = io_thread_start(&replication->upload, upload_run, replication);
        replication->upload_started = rc == 0;
    }
    if (rc == 0) {
        rc = io_thread_start(&replication->compact, compact_run, replication);
        replication->compact_started = rc == 0;
    }
    if (rc != 0) {
        agent_replication_stop(replication);
        return rc;
    }
    *out = replication;
    return 0;
}

void agent_replication_stop(struct agent_replication *replication)
{
    if (!replication)
        return;
    replication->stop = 1;
    pthread_mutex_lock(&replication->lock);
    pthread_cond_broadcast(&replication->wake);
    pthread_cond_broadcast(&replication->compact_wake);
    pthread_mutex_unlock(&replication->lock);
    if (replication->files)
        file_watch_wake(replication->files);
    if (replication->reader_started)
        pthread_join(replication->reader, NULL);
    if (replication->upload_started)
        pthread_join(replication->upload, NULL);
    if (replication->compact_started)
        pthread_join(replication->compact, NULL);
    replication_free(replication);
}
