/*
 * progress.c: the terminal progress bar (see progress.h).
 */
#include "report/progress.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

void progress_begin(struct progress *progress, bool enabled, const char *label)
{
    progress->enabled = enabled && isatty(STDERR_FILENO);
    snprintf(progress->label, sizeof progress->label, "%s", label);
    progress->last_permille = -1;
}

void progress_update(void *context, int64_t done, int64_t total)
{
    struct progress *progress = context;
    if (!progress || !progress->enabled || total <= 0)
        return;
    int permille = (int)(done * 1000 / total);
    if (permille == progress->last_permille)
        return;
    progress->last_permille = permille;
    char bar[31];
    int filled = permille * 30 / 1000;
    memset(bar, '#', (size_t)filled);
    memset(bar + filled, '.', (size_t)(30 - filled));
    bar[30] = '\0';
    fprintf(stderr, "\r%-24s [%s] %5.1f%% %lld/%lld MiB", progress->label, bar, permille / 10.0,
            (long long)(done >> 20), (long long)(total >> 20));
    fflush(stderr);
}

void progress_end(struct progress *progress)
{
    if (progress->enabled && progress->last_permille >= 0) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
}
