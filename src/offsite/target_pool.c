/*
 * target_pool.c: one thread's targets, shared and rested (target_pool.h).
 */
#include "offsite/target_pool.h"

#include <errno.h>
#include <stdlib.h>

#include "core/io.h"

struct pooled {
    const struct target_config *config; /* compared by address: one per [targets] entry */
    struct target *target;              /* NULL while it rests */
    int64_t used_ms;                    /* io_monotonic_ms: a clock step moves no rest */
};

struct target_pool {
    int64_t rest_ms;
    const volatile sig_atomic_t *stop;
    struct pooled *entries;
    size_t count, capacity;
};

int target_pool_new(int64_t rest_ms, const volatile sig_atomic_t *stop, struct target_pool **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return -ENOMEM;
    (*out)->rest_ms = rest_ms;
    (*out)->stop = stop;
    return 0;
}

void target_pool_free(struct target_pool *pool)
{
    if (!pool)
        return;
    for (size_t i = 0; i < pool->count; i++)
        if (pool->entries[i].target)
            target_close(pool->entries[i].target);
    free(pool->entries);
    free(pool);
}

int target_pool_get(struct target_pool *pool, const struct target_config *config,
                    struct target **out, struct error *err)
{
    struct pooled *entry = NULL;
    *out = NULL;
    for (size_t i = 0; i < pool->count && !entry; i++)
        if (pool->entries[i].config == config)
            entry = &pool->entries[i];
    if (!entry) {
        if (pool->count == pool->capacity) {
            size_t capacity = pool->capacity ? pool->capacity * 2 : 4;
            struct pooled *grown = realloc(pool->entries, capacity * sizeof *grown);
            if (!grown)
                return error_set(err, -ENOMEM, "out of memory");
            pool->entries = grown;
            pool->capacity = capacity;
        }
        entry = &pool->entries[pool->count++];
        *entry = (struct pooled){.config = config};
    }
    if (!entry->target) {
        int rc = target_open(config, &entry->target, err);
        if (rc < 0)
            return rc;
        target_set_stop(entry->target, pool->stop);
    }
    entry->used_ms = io_monotonic_ms();
    *out = entry->target;
    return 0;
}

int64_t target_pool_rest(struct target_pool *pool)
{
    int64_t now = io_monotonic_ms(), next = INT64_MAX;
    for (size_t i = 0; i < pool->count; i++) {
        struct pooled *entry = &pool->entries[i];
        if (!entry->target)
            continue;
        int64_t due = entry->used_ms + pool->rest_ms;
        if (now >= due) {
            target_close(entry->target);
            entry->target = NULL;
        } else if (due - now < next) {
            next = due - now;
        }
    }
    return next;
}

size_t target_pool_open_count(const struct target_pool *pool)
{
    size_t open = 0;
    for (size_t i = 0; i < pool->count; i++)
        open += pool->entries[i].target != NULL;
    return open;
}
