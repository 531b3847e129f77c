/*
 * openers.c: processes that have a file open, from /proc; see openers.h.
 */
#include "restore/openers.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool openers_is_pid(const char *name)
{
    if (!*name)
        return false;
    for (const char *c = name; *c; c++)
        if (!isdigit((unsigned char)*c))
            return false;
    return true;
}

static void openers_command(pid_t pid, char *out, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    FILE *file = fopen(path, "r");
    out[0] = '\0';
    if (file) {
        if (fgets(out, (int)size, file))
            out[strcspn(out, "\n")] = '\0';
        fclose(file);
    }
    if (!out[0])
        snprintf(out, size, "?");
}

/* Whether process `pid` has one of the files open: -EACCES when we may not
 * look, 0 when it does not (or is gone), 1 when it does. */
static int openers_scan_process(pid_t pid, const struct stat *files, size_t file_count)
{
    char directory[64], link[96];
    snprintf(directory, sizeof directory, "/proc/%d/fd", (int)pid);
    DIR *fds = opendir(directory);
    if (!fds)
        return errno == EACCES || errno == EPERM ? -EACCES : 0;
    int found = 0;
    struct dirent *entry;
    while (!found && (entry = readdir(fds))) {
        if (!openers_is_pid(entry->d_name))
            continue;
        struct stat st;
        snprintf(link, sizeof link, "%s/%s", directory, entry->d_name);
        /* stat follows the magic link to the open file without opening it. */
        if (stat(link, &st) != 0)
            continue;
        for (size_t i = 0; i < file_count && !found; i++)
            found = st.st_dev == files[i].st_dev && st.st_ino == files[i].st_ino;
    }
    closedir(fds);
    return found;
}

int openers_find(const struct stat *files, size_t file_count, struct opener_list *list,
                 struct error *err)
{
    memset(list, 0, sizeof *list);
    DIR *proc = opendir("/proc");
    if (!proc)
        return error_set(err, -errno, "cannot list processes in /proc: %s", strerror(errno));
    pid_t self = getpid();
    struct dirent *entry;
    while ((entry = readdir(proc))) {
        if (!openers_is_pid(entry->d_name))
            continue;
        pid_t pid = (pid_t)strtol(entry->d_name, NULL, 10);
        if (pid == self)
            continue;
        int found = openers_scan_process(pid, files, file_count);
        if (found == -EACCES) {
            list->unreadable++;
        } else if (found > 0) {
            if (list->count < OPENERS_LISTED) {
                list->items[list->count].pid = pid;
                openers_command(pid, list->items[list->count].command,
                                sizeof list->items[list->count].command);
            }
            list->count++;
        }
    }
    closedir(proc);
    return 0;
}

void openers_describe(const struct opener_list *list, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < list->count && i < OPENERS_LISTED && used < size; i++) {
        int n = snprintf(out + used, size - used, "%spid %d (%s)", i ? ", " : "",
                         (int)list->items[i].pid, list->items[i].command);
        if (n > 0)
            used += (size_t)n;
    }
    if (list->count > OPENERS_LISTED && used < size)
        snprintf(out + used, size - used, " and %zu more", list->count - OPENERS_LISTED);
}
