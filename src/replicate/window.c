/*
 * window.c: which generations of a replica the retention window keeps
 * (window.h).
 */
#include "replicate/window.h"

uint32_t replica_window_keep_from(const struct state_replica_generation *generations, size_t count,
                                  int64_t now_ms, int64_t window_ms)
{
    if (count < 2 || window_ms <= 0 || now_ms - window_ms <= 0)
        return 0;
    int64_t oldest_instant = now_ms - window_ms;
    /* The generation that holds the oldest instant: the newest one whose
     * first commit is at or before it (an instant after its last commit and
     * before the next generation's first restores to its last commit). */
    size_t holder = count;
    for (size_t i = 0; i < count; i++)
        if (generations[i].first_seen_at_ms > 0 && generations[i].first_seen_at_ms <= oldest_instant)
            holder = i;
    if (holder == count)
        return 0;
    /* Back along "from" to the generation with the base file. */
    size_t start = holder;
    while (generations[start].base_from != 0) {
        size_t from = start;
        while (from > 0 && generations[from].generation != generations[start].base_from)
            from--;
        if (generations[from].generation != generations[start].base_from)
            break; /* its chain start is gone already: keep what is left of it */
        start = from;
    }
    return start == 0 ? 0 : generations[start].generation;
}
