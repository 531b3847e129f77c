/*
 * discovery.h: notices that the files a configuration's `glob` entries
 * match have changed, so that the agent looks after a database added to
 * a tenants directory (and lets go of one removed) without a restart.
 *
 * One inotify watch per distinct directory of a pattern, for files
 * created, removed or renamed there; events on names the directory's
 * patterns do not match (a -wal, a -journal) are ignored. The agent reads
 * the configuration again when discovery says so (agent.c), as SIGHUP
 * does, and applies it only when the databases it gives differ. Costs
 * nothing while nothing happens in the directories: the descriptor sits
 * in the agent's poll(2).
 */
#ifndef SQLPRODD_DISCOVERY_H
#define SQLPRODD_DISCOVERY_H

#include <stdbool.h>

#include "config/config.h"

struct discovery;

/* NULL (and nothing to watch) when the configuration has no glob entry.
 * A directory that cannot be watched is logged: its files are found again
 * at the next reload only. */
struct discovery *discovery_open(const struct config *config);
void discovery_close(struct discovery *discovery);

/* The descriptor to poll for POLLIN; -1 for NULL. */
int discovery_fd(const struct discovery *discovery);

/* Reads what is pending; true when a file a pattern matches (or the
 * directory itself) was created, removed or renamed, or events were lost. */
bool discovery_read(struct discovery *discovery);

#endif
