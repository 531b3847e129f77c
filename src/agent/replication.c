/*
 * replication.c: the replication thread (replication.h).
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

#include "core/io.h"
#include "core/log.h"
#include "replicate/shipper.h"

struct replicated {
    const struct database_config *db;
    struct replica *replica; /* NULL until it opens */
    int64_t due_ms;
    char last_error[1024]; /* logged once until it changes */
};

struct agent_replication {
    const struct config *config;
    pthread_t thread;
    volatile sig_atomic_t stop;
    struct replicated *databases;
    size_t count;
};

static int64_t replication_now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void replication_report(struct replicated *item, int rc, const struct error *err)
{
    if (rc == 0) {
        if (item->last_error[0])
            log_event(LOG_NOTICE, item->db->name, "replicate", "shipping again");
        item->last_error[0] = '\0';
        return;
    }
    if (strcmp(item->last_error, err->message) != 0)
        log_event(rc == -EBUSY ? LOG_WARNING : LOG_ERR, item->db->name, "replicate", "%s",
                  err->message);
    snprintf(item->last_error, sizeof item->last_error, "%s", err->message);
}

static void *replication_run(void *argument)
{
    struct agent_replication *replication = argument;
    while (!replication->stop) {
        int64_t now = replication_now_ms(), next = now + 1000;
        for (size_t i = 0; i < replication->count && !replication->stop; i++) {
            struct replicated *item = &replication->databases[i];
            struct error err = {0};
            int rc = 0;
            if (now < item->due_ms) {
                if (item->due_ms < next)
                    next = item->due_ms;
                continue;
            }
            rc = replica_check_database(item->db, &err);
            if (rc == 0 && !item->replica)
                rc = replica_open(item->db, replication->config->state_dir, &replication->stop,
                                  &item->replica, &err);
            /* A database out of WAL mode still gets its round: the shipper
             * counts that break once and uploads what is queued. */
            if (item->replica && (rc == 0 || rc == -EINVAL)) {
                int round = replica_round(item->replica, replication_now_ms(), false, &err);
                if (round != 0)
                    rc = round;
            }
            replication_report(item, rc, &err);
            item->due_ms = now + item->db->replicate.interval_seconds * 1000;
            if (item->due_ms < next)
                next = item->due_ms;
        }
        int64_t wait = next - replication_now_ms();
        if (wait > 0)
            io_sleep_ms(wait, 50, &replication->stop);
    }
    for (size_t i = 0; i < replication->count; i++)
        replica_close(replication->databases[i].replica);
    return NULL;
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
    int rc = io_thread_start(&replication->thread, replication_run, replication);
    if (rc != 0) {
        free(replication->databases);
        free(replication);
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
    pthread_join(replication->thread, NULL);
    free(replication->databases);
    free(replication);
}
