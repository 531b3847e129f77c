/*
 * discovery.c: inotify watches on the directories of `glob` entries (see
 * discovery.h). Not for finding the files (config/config_glob.c) or for
 * reloading (agent.c).
 */
#include "agent/discovery.h"

#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "core/log.h"

#define DISCOVERY_EVENTS                                                                           \
    (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF |       \
     IN_ONLYDIR)

struct discovery_watch {
    int descriptor;
    const struct config_glob *first; /* one of the patterns of this directory */
};

struct discovery {
    int fd;
    const struct config *config;
    struct discovery_watch *watches;
    size_t watch_count;
};

struct discovery *discovery_open(const struct config *config)
{
    if (config->glob_count == 0)
        return NULL;
    struct discovery *discovery = calloc(1, sizeof *discovery);
    if (discovery)
        discovery->watches = calloc(config->glob_count, sizeof *discovery->watches);
    if (!discovery || !discovery->watches) {
        free(discovery);
        log_event(LOG_ERR, NULL, "discovery", "out of memory: new databases are found at the "
                                              "next reload only");
        return NULL;
    }
    discovery->config = config;
    discovery->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (discovery->fd < 0) {
        log_event(LOG_WARNING, NULL, "discovery",
                  "inotify: %s: new databases are found at the next reload (SIGHUP) only",
                  strerror(errno));
        free(discovery->watches);
        free(discovery);
        return NULL;
    }
    for (size_t i = 0; i < config->glob_count; i++) {
        const struct config_glob *glob = &config->globs[i];
        int descriptor = inotify_add_watch(discovery->fd, glob->directory, DISCOVERY_EVENTS);
        if (descriptor < 0) {
            log_event(LOG_WARNING, NULL, "discovery",
                      "cannot watch %s for new databases (%s): they are found at the next "
                      "reload (SIGHUP) only",
                      glob->directory, strerror(errno));
            continue;
        }
        /* Two patterns in one directory share its watch. */
        bool known = false;
        for (size_t w = 0; w < discovery->watch_count; w++)
            known |= discovery->watches[w].descriptor == descriptor;
        if (!known)
            discovery->watches[discovery->watch_count++] =
                (struct discovery_watch){descriptor, glob};
    }
    return discovery;
}

void discovery_close(struct discovery *discovery)
{
    if (!discovery)
        return;
    close(discovery->fd);
    free(discovery->watches);
    free(discovery);
}

int discovery_fd(const struct discovery *discovery)
{
    return discovery ? discovery->fd : -1;
}

/* Whether `file`, in the directory of watch `descriptor`, is one that a
 * pattern of that directory matches. */
static bool discovery_matches(const struct discovery *discovery, int descriptor, const char *file)
{
    const struct config_glob *watched = NULL;
    for (size_t w = 0; w < discovery->watch_count && !watched; w++)
        if (discovery->watches[w].descriptor == descriptor)
            watched = discovery->watches[w].first;
    if (!watched)
        return false;
    const struct config *config = discovery->config;
    for (size_t i = 0; i < config->glob_count; i++) {
        const struct config_glob *glob = &config->globs[i];
        /* FNM_PERIOD: as glob(3), a leading dot is matched only by a dot. */
        if (strcmp(glob->directory, watched->directory) == 0 &&
            fnmatch(glob->file_pattern, file, FNM_PERIOD) == 0)
            return true;
    }
    return false;
}

bool discovery_read(struct discovery *discovery)
{
    if (!discovery)
        return false;
    char buffer[16 * (sizeof(struct inotify_event) + NAME_MAX + 1)]
        __attribute__((aligned(__alignof__(struct inotify_event))));
    bool changed = false;
    for (;;) {
        ssize_t got = read(discovery->fd, buffer, sizeof buffer);
        if (got <= 0)
            return changed;
        for (char *at = buffer; at < buffer + got;) {
            const struct inotify_event *event = (const struct inotify_event *)at;
            at += sizeof *event + event->len;
            if (event->mask & (IN_Q_OVERFLOW | IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED))
                changed = true;
            else if (event->len > 0 && discovery_matches(discovery, event->wd, event->name))
                changed = true;
        }
    }
}
