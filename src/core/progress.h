/*
 * progress.h: a one-line progress bar on a terminal for one-off commands,
 * the usual receiver of an io_context's progress (core/io.h). Silent when
 * stderr is not a terminal (systemd, pipes, tests). In core, beside io.c,
 * so that jobs and the CLI use it without calling up into report/.
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
/* An io_progress_fn: context is a struct progress. */
void progress_update(void *context, int64_t done, int64_t total);
void progress_end(struct progress *progress);

#endif
