/*
 * target.c: the one front door to off-site targets (see target.h): the
 * factory that opens a target by type, dispatch, and the key checks every
 * target shares. It sits above the implementations and calls down only. Not
 * for any transport (target_dir.c, target_s3.c) nor for what they share
 * (target_common.c).
 */
#include "offsite/target_internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

void target_tuning_default(struct target_tuning *tuning)
{
    *tuning = (struct target_tuning){
        .attempts = 6,
        .base_delay_ms = 500,
        .max_delay_ms = 30000,
        .connect_timeout_ms = 15000,
        .stall_timeout_ms = 60000,
        .parallel_parts = 4,
    };
}

void target_set_tuning(struct target *target, const struct target_tuning *tuning)
{
    target->tuning = *tuning;
    if (target->tuning.attempts < 1)
        target->tuning.attempts = 1;
    if (target->tuning.parallel_parts < 1)
        target->tuning.parallel_parts = 1;
    if (target->tuning.base_delay_ms < 0)
        target->tuning.base_delay_ms = 0;
    if (target->tuning.max_delay_ms < target->tuning.base_delay_ms)
        target->tuning.max_delay_ms = target->tuning.base_delay_ms;
}

void target_set_stop(struct target *target, const volatile sig_atomic_t *stop)
{
    if (target)
        target->stop = stop;
}

/* Keys are NAME/FILE as remote.h builds them; refuse anything that could
 * climb out of a dir target or that S3 tools handle badly. */
static int target_check_key(const struct target *target, const char *key, struct error *err)
{
    size_t length = key ? strlen(key) : 0;
    if (length == 0 || length >= sizeof((struct target_object *)0)->key)
        return error_set(err, -EINVAL, "%s: key must be 1 to %zu bytes", target->description,
                         sizeof((struct target_object *)0)->key - 1);
    if (key[0] == '/' || key[length - 1] == '/')
        return error_set(err, -EINVAL, "%s: key '%s' must not start or end with '/'",
                         target->description, key);
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return error_set(err, -EINVAL, "%s: key '%s' holds a control character",
                             target->description, key);
    for (const char *segment = key; segment; segment = strchr(segment, '/')) {
        if (*segment == '/')
            segment++;
        size_t size = strcspn(segment, "/");
        if (size == 0 || (size == 1 && segment[0] == '.') ||
            (size == 2 && segment[0] == '.' && segment[1] == '.'))
            return error_set(err, -EINVAL, "%s: key '%s' has an empty, '.' or '..' path segment",
                             target->description, key);
    }
    return 0;
}

int target_open(const struct target_config *config, struct target **out, struct error *err)
{
    *out = NULL;
    struct target *target = calloc(1, sizeof *target);
    if (!target)
        return error_set(err, -ENOMEM, "target %s: out of memory", config->name);
    target_tuning_default(&target->tuning);
    int rc;
    switch (config->type) {
    case TARGET_DIR: rc = target_dir_open(config, target, err); break;
    case TARGET_S3: rc = target_s3_open(config, target, err); break;
    default: rc = error_set(err, -EINVAL, "target %s: unknown type", config->name); break;
    }
    if (rc != 0) {
        free(target);
        return rc;
    }
    *out = target;
    return 0;
}

int target_remove_temp_files(struct target *target, const char *directory_key, struct error *err)
{
    int rc = target_check_key(target, directory_key, err);
    if (rc != 0 || !target->operations->remove_temp_files)
        return rc;
    return target->operations->remove_temp_files(target, directory_key, err);
}

void target_close(struct target *target)
{
    if (!target)
        return;
    if (target->operations && target->operations->close)
        target->operations->close(target);
    free(target);
}

int target_put_source(struct target *target, const char *key, const struct target_source *source,
                      const char *sha256_hex, char stored_sha256[IO_SHA256_HEX],
                      const struct io_context *io, struct error *err)
{
    char ignored[IO_SHA256_HEX];
    int rc = target_check_key(target, key, err);
    if (rc != 0)
        return rc;
    if (io_stopped(io))
        return error_set(err, -ECANCELED, "%s: upload of %s cancelled", target->description, key);
    return target->operations->put_source(target, key, source, sha256_hex,
                                          stored_sha256 ? stored_sha256 : ignored, io, err);
}

int target_put_file(struct target *target, const char *key, const char *path,
                    const char *sha256_hex, const struct io_context *io, struct error *err)
{
    struct target_file file;
    struct target_source source;
    int rc = target_file_open(path, &file, &source, err);
    if (rc != 0)
        return rc;
    rc = target_put_source(target, key, &source, sha256_hex, NULL, io, err);
    target_file_close(&file);
    return rc;
}

/* Objects downloaded by this process, for `restore` to say how many it read
 * (issue 17 bounds how many a restore to any instant may read). */
static atomic_long target_gets;

long target_objects_read(void)
{
    return atomic_load_explicit(&target_gets, memory_order_relaxed);
}

/* Whole (length < 0) or a range, counted as one object read. */
static int target_get(struct target *target, const char *key, int64_t offset, int64_t length,
                      const char *path, char sha256_hex[IO_SHA256_HEX], const struct io_context *io,
                      struct error *err)
{
    int rc = target_check_key(target, key, err);
    if (rc != 0)
        return rc;
    if (io_stopped(io))
        return error_set(err, -ECANCELED, "%s: download of %s cancelled", target->description, key);
    rc = target->operations->get(target, key, offset, length, path, sha256_hex, io, err);
    if (rc == 0)
        atomic_fetch_add_explicit(&target_gets, 1, memory_order_relaxed);
    return rc;
}

int target_get_file(struct target *target, const char *key, const char *path,
                    const struct io_context *io, struct error *err)
{
    return target_get(target, key, 0, -1, path, NULL, io, err);
}

int target_get_file_hashed(struct target *target, const char *key, const char *path,
                           char sha256_hex[IO_SHA256_HEX], const struct io_context *io,
                           struct error *err)
{
    return target_get(target, key, 0, -1, path, sha256_hex, io, err);
}

int target_get_range(struct target *target, const char *key, int64_t offset, int64_t length,
                     const char *path, const struct io_context *io, struct error *err)
{
    if (offset < 0 || length <= 0 || offset > INT64_MAX - length)
        return error_set(err, -EINVAL, "%s: bytes %lld+%lld of %s: not a range",
                         target->description, (long long)offset, (long long)length, key);
    return target_get(target, key, offset, length, path, NULL, io, err);
}

int target_list(struct target *target, const char *prefix, struct target_listing *out,
                struct error *err)
{
    out->objects = NULL;
    out->count = 0;
    int rc = target->operations->list(target, prefix ? prefix : "", out, err);
    if (rc != 0)
        target_listing_free(out);
    return rc;
}

int target_delete(struct target *target, const char *key, struct error *err)
{
    int rc = target_check_key(target, key, err);
    if (rc != 0)
        return rc;
    return target->operations->delete_object(target, key, err);
}

const char *target_describe(const struct target *target)
{
    return target->description;
}
