/*
 * target_pool.h: the targets of one thread, opened at need, shared by every
 * database that thread serves, and closed once unused for a while.
 *
 * A replicating agent's upload thread serves every replicated database in
 * turn. Opening a target per database costs, on S3, a curl handle with its
 * buffers, its connection and, over HTTPS, its TLS session: kept by each of
 * 10,000 tenant databases that is memory and sockets for nothing, since one
 * thread uses one at a time. So the thread keeps one target per target
 * configuration: databases that ship to the same bucket share its
 * connection, and a target nobody used for `rest_ms` (longer than S3 keeps an
 * idle connection open, about 20 s) is closed until the next use.
 *
 * Not thread-safe: one pool per thread. A target got from the pool stays
 * open until the next target_pool_rest call on that thread, no longer: a
 * caller keeps the pointer for the work of one turn only.
 */
#ifndef SQLPRODD_TARGET_POOL_H
#define SQLPRODD_TARGET_POOL_H

#include <signal.h>
#include <stdint.h>

#include "config/config.h"
#include "core/error.h"
#include "offsite/target.h"

struct target_pool;

/* A pool whose targets rest after `rest_ms` unused and give up their
 * requests once *stop is set (target_set_stop). 0 or -ENOMEM. */
int target_pool_new(int64_t rest_ms, const volatile sig_atomic_t *stop, struct target_pool **out);
/* Closes every target. */
void target_pool_free(struct target_pool *pool);

/* The open target of `config`, opened now if it is not; marks it used. 0 or
 * target_open's error. */
int target_pool_get(struct target_pool *pool, const struct target_config *config,
                    struct target **out, struct error *err);

/* Closes the targets unused for rest_ms. Returns the milliseconds until the
 * next one is due to rest, or INT64_MAX when none is open. */
int64_t target_pool_rest(struct target_pool *pool);

/* How many targets are open (for tests and status). */
size_t target_pool_open_count(const struct target_pool *pool);

#endif
