/*
 * target_common.c: what the target implementations (target_dir.c,
 * target_s3.c, s3_*.c) share below the factory: the retry clock (backoff
 * with full jitter from the target's tuning, sleeps a stop request cuts
 * short) and listings. It calls nothing in offsite/ above it; the formulas
 * themselves are core/io.c's. Not for dispatch (target.c) nor transports.
 */
#include "offsite/target_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Short enough that SIGTERM ends a backoff "within seconds", as SPEC.md asks. */
#define TARGET_SLEEP_SLICE_MS 100

int64_t target_retry_delay_ms(const struct target_tuning *tuning, int retry)
{
    /* Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"):
     * many agents retrying one endpoint spread out instead of colliding. */
    return io_backoff(tuning->base_delay_ms, tuning->max_delay_ms, retry - 1, IO_JITTER_FULL);
}

int target_retry_sleep(int64_t milliseconds, const struct io_context *io)
{
    return io_sleep_ms(milliseconds, TARGET_SLEEP_SLICE_MS, io ? io->stop : NULL);
}

int target_listing_add(struct target_listing *listing, const char *key, int64_t size,
                       time_t modified, struct error *err)
{
    size_t length = strlen(key);
    if (length >= sizeof listing->objects[0].key)
        return error_set(err, -ENAMETOOLONG, "key too long (%zu bytes) in listing", length);
    /* Grow by doubling: listings of tens of thousands of keys stay cheap. */
    if ((listing->count & (listing->count - 1)) == 0) {
        size_t capacity = listing->count ? listing->count * 2 : 16;
        struct target_object *grown = realloc(listing->objects, capacity * sizeof *grown);
        if (!grown)
            return error_set(err, -ENOMEM, "out of memory listing objects");
        listing->objects = grown;
    }
    struct target_object *object = &listing->objects[listing->count++];
    memcpy(object->key, key, length + 1);
    object->size = size;
    object->modified = modified;
    return 0;
}

void target_listing_free(struct target_listing *listing)
{
    free(listing->objects);
    listing->objects = NULL;
    listing->count = 0;
}
