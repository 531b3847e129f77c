/*
 * target_internal.h: what the factory (target.c) and the implementations of
 * target.h (target_dir.c, target_s3.c and the s3_*.c below it) share: the
 * target structure and its operations, and the helpers of target_common.c.
 * Calls point one way: target.c -> target_dir.c, target_s3.c -> s3_*.c ->
 * target_common.c -> core. Not for callers of targets.
 */
#ifndef SQLPRODD_TARGET_INTERNAL_H
#define SQLPRODD_TARGET_INTERNAL_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "offsite/target.h"

struct target_operations {
    int (*put_source)(struct target *target, const char *key, const struct target_source *source,
                      const char *sha256_hex, char stored_sha256[IO_SHA256_HEX],
                      const struct io_context *io, struct error *err);
    /* Bytes [offset, offset + length) of `key`, or all of it when length < 0
     * (offset 0): target_get_file and target_get_range. A whole object's
     * SHA-256, of the bytes written to `path`, goes to `sha256_hex` when it
     * is not NULL. */
    int (*get)(struct target *target, const char *key, int64_t offset, int64_t length,
               const char *path, char sha256_hex[IO_SHA256_HEX], const struct io_context *io,
               struct error *err);
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

/* Below here: target_common.c, the helpers the implementations share. It
 * calls nothing above it, so target.c (the factory) sits on top. */

/* The wait before retry number `retry` (1, 2, ...): exponential backoff with
 * full jitter, a random value in [0, min(max_delay, base_delay * 2^(retry-1))]. */
int64_t target_retry_delay_ms(const struct target_tuning *tuning, int retry);

/* Sleeps before a retry; -ECANCELED as soon as io->stop is set, within
 * TARGET_SLEEP_SLICE_MS. */
int target_retry_sleep(int64_t milliseconds, const struct io_context *io);

/* Adds one object to a listing (growing it). */
int target_listing_add(struct target_listing *listing, const char *key, int64_t size,
                       time_t modified, struct error *err);

/* A local file as a target_source: one descriptor serves every reader
 * (pread). target_file_open opens `path` read-only; target_file_wrap takes
 * an open descriptor of `size` bytes, which stays the caller's. */
struct target_file {
    int fd;
    bool owned;
    const char *path;
    int64_t offset; /* where the source starts in the file (a range of it) */
};
int target_file_open(const char *path, struct target_file *file, struct target_source *source,
                     struct error *err);
void target_file_wrap(int fd, const char *path, int64_t size, struct target_file *file,
                      struct target_source *source);
void target_file_close(struct target_file *file);

#endif
