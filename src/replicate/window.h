/*
 * window.h: which generations of a replica the retention window keeps.
 *
 * A restore to an instant T replays the generation whose commits reach T,
 * on top of the chain of generations it continues (base.json "from"), back
 * to the one with a base file. To restore to any instant of the last
 * `window`, the oldest generation that must stay is therefore the start of
 * the chain that holds the instant now - window; everything numbered below
 * it is needed by no instant of the window (sqlprodd-format(5), RETENTION).
 */
#ifndef SQLPRODD_REPLICATE_WINDOW_H
#define SQLPRODD_REPLICATE_WINDOW_H

#include <stddef.h>
#include <stdint.h>

#include "db/state.h"

/* The oldest generation to keep, of `generations` (oldest first, as
 * state_replica_generations lists them), at `now_ms`; 0 when none may go.
 * A generation with no commit seen yet (first_seen_at_ms 0) never decides,
 * and the newest generation is always kept. */
uint32_t replica_window_keep_from(const struct state_replica_generation *generations, size_t count,
                                  int64_t now_ms, int64_t window_ms);

#endif
