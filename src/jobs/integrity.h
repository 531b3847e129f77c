/*
 * integrity.h: the database's integrity verdict. A full integrity_check
 * reads every page, so it runs once per health.integrity_every, and where
 * the database is backed up it runs on a backup copy: VACUUM INTO copies
 * the b-trees as they are (an index that misses rows misses them in the
 * copy too), so checking the copy checks the source at that moment without
 * a read transaction held on the live database, which would keep its WAL
 * from being checkpointed for as long as the check runs. Elsewhere
 * health.c checks the database itself.
 */
#ifndef SQLPRODD_INTEGRITY_H
#define SQLPRODD_INTEGRITY_H

#include <stdbool.h>
#include <time.h>

#include "jobs/job.h"

/* Whose full check gives the verdict. */
enum integrity_side {
    INTEGRITY_ON_BACKUP_COPY,
    INTEGRITY_ON_DATABASE,
};

/* Backups are scheduled, so their copies carry the full check. */
bool integrity_checked_by_backups(const struct database_config *db);

/* Whether `side` should run the full check now: its interval has passed
 * since the last one (of either side). The health job checks the database
 * itself only when no backup is scheduled, or when scheduled backups have
 * left the verdict over two intervals old (failing before their check).
 * Never without a state database or with integrity_every = 0. */
bool integrity_check_due(const struct job_context *context, enum integrity_side side,
                         time_t now);

/* The stored problem, "integrity_check of ... found corruption (...)". */
#define INTEGRITY_PROBLEM_SIZE 1024

/* Stores what a full check found at `at`: the time it passed, or the
 * problem (`found`, SQLite's words) as the database's standing verdict
 * until a later full check passes. `problem` (NULL: not wanted) receives
 * the stored verdict, "" when it passed. */
void integrity_record(struct job_context *context, enum integrity_side side, time_t at, bool ok,
                      const char *found, char problem[INTEGRITY_PROBLEM_SIZE]);

#endif
