/*
 * replication.h: the agent's two replication threads, for every database
 * with `replicate`: the reader runs a shipper round (replicate/shipper.h)
 * every interval and watches for a waiting application checkpoint between
 * rounds (every 20 ms); the uploader drains the queue (replicate/uploader.h)
 * as soon as the reader queued something, retrying a failing target with
 * backoff. Two threads so that a slow target never delays the reading that
 * stamps each commit's time.
 *
 * Why a thread of its own and not a job kind on the workers: a round is due
 * every second or so, and must not wait behind a backup or a slow upload
 * holding both workers, nor fill the job history with a row per second.
 * The workers and the job lock stay for jobs; this thread owns only the
 * replication state of its databases. Databases without `replicate` cost
 * nothing; an idle one costs a stat of its -wal per interval.
 *
 * Not for deciding what a round does (shipper.c) nor for reporting (the
 * state database holds what status and metrics show).
 */
#ifndef SQLPRODD_AGENT_REPLICATION_H
#define SQLPRODD_AGENT_REPLICATION_H

#include "config/config.h"

struct agent_replication;

/* Starts the thread when at least one database replicates (*out NULL
 * otherwise). Databases not in WAL mode are reported with the config's
 * FILE:LINE and retried each interval. The config must outlive the thread. */
int agent_replication_start(const struct config *config, struct agent_replication **out);
/* Stops the thread (a round in progress ends soon) and frees it. NULL is fine. */
void agent_replication_stop(struct agent_replication *replication);

#endif
