/*
 * progress.h: a one-line progress bar on a terminal for one-off commands.
 * Silent when stderr is not a terminal (systemd, pipes, tests).
 */
#ifndef SQLPRODD_PROGRESS_H
#define SQLPRODD_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct progress {
    bool enabled;
    char label[64];
    int last_permille;
};

void progress_begin(struct progress *progress, bool enabled, const char *label);
/* An io_progress_fn (core/io.h): context is a struct progress. */
void progress_update(void *context, int64_t done, int64_t total);
void progress_end(struct progress *progress);

#endif
