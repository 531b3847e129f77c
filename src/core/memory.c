/*
 * memory.c: the allocator policy of memory.h, through mallopt(3).
 */
#include "core/memory.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

/* True when the operator set `name` in the environment, or `tunable` in
 * GLIBC_TUNABLES (glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=...). */
static int operator_set(const char *name, const char *tunable)
{
    const char *tunables = getenv("GLIBC_TUNABLES");
    return getenv(name) != NULL || (tunables && strstr(tunables, tunable) != NULL);
}

void memory_policy_apply(void)
{
#ifdef M_ARENA_MAX /* glibc; other C libraries keep their own policy */
    if (!operator_set("MALLOC_ARENA_MAX", "glibc.malloc.arena_max"))
        mallopt(M_ARENA_MAX, MEMORY_ARENA_MAX);
    /* Setting the threshold also turns off glibc's raising of it. */
    if (!operator_set("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold"))
        mallopt(M_MMAP_THRESHOLD, MEMORY_MMAP_THRESHOLD);
#endif
}
