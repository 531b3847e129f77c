/*
 * target_internal.h: what target.c shares with the implementations of
 * target.h (target_dir.c, target_s3.c). Not for callers of targets.
 */
#ifndef SQLPRODD_TARGET_INTERNAL_H
#define SQLPRODD_TARGET_INTERNAL_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "offsite/target.h"

struct target_operations {
    int (*put_file)(struct target *target, const char *key, const char *path,
                    const char *sha256_hex, const struct archive_io *io, struct error *err);
    int (*get_file)(struct target *target, const char *key, const char *path,
                    const struct archive_io *io, struct error *err);
    int (*list)(struct target *target, const char *prefix, struct target_listing *out,
                struct error *err);
    int (*delete_object)(struct target *target, const char *key, struct error *err);
    /* NULL when an interrupted put_file leaves nothing under a name. */
    int (*remove_temp_files)(struct target *target, const char *directory_key, struct error *err);
    void (*close)(struct target *target);
};

struct target {
    const struct target_operations *operations;
    struct target_tuning tuning;
    char description[PATH_MAX + 64];
    void *implementation;              /* struct dir_target, struct s3_client */
    const volatile sig_atomic_t *stop; /* target_set_stop(); NULL: never */
};

int target_dir_open(const struct target_config *config, struct target *target, struct error *err);
int target_s3_open(const struct target_config *config, struct target *target, struct error *err);

/* True once io->stop is set. */
bool target_stopped(const struct archive_io *io);

/* Sleeps `milliseconds` in short slices; -ECANCELED as soon as io->stop is set. */
int target_sleep(int64_t milliseconds, const struct archive_io *io);

/* The wait before retry number `retry` (1, 2, ...): exponential backoff with
 * full jitter, a random value in [0, min(max_delay, base_delay * 2^(retry-1))]. */
int64_t target_backoff_ms(const struct target_tuning *tuning, int retry);

/* Adds one object to a listing (growing it). */
int target_listing_add(struct target_listing *listing, const char *key, int64_t size,
                       time_t modified, struct error *err);

void target_report_progress(const struct archive_io *io, int64_t done, int64_t total);

#endif
