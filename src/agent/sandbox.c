/*
 * sandbox.c: the agent's check of its own write access (see sandbox.h).
 * Not a guess from the unit file: access(2) from inside the sandbox answers
 * EROFS for a path ProtectSystem= made read-only and EACCES for one the
 * user may not write, which need different fixes.
 */
#include "agent/sandbox.h"

#include <errno.h>
#include <libgen.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void sandbox_user(char *out, size_t out_size)
{
    struct passwd *entry = getpwuid(geteuid());
    if (entry)
        snprintf(out, out_size, "user %s", entry->pw_name);
    else
        snprintf(out, out_size, "uid %u", (unsigned)geteuid());
}

static int sandbox_add(struct sandbox_report *report, const char *database, const char *path,
                       const char *purpose, int error_number)
{
    for (size_t i = 0; i < report->count; i++)
        if (strcmp(report->problems[i].path, path) == 0)
            return 0; /* one line per path, however many databases share it */
    struct sandbox_problem *grown =
        realloc(report->problems, (report->count + 1) * sizeof *report->problems);
    if (!grown)
        return -ENOMEM;
    report->problems = grown;
    struct sandbox_problem *problem = &report->problems[report->count++];
    memset(problem, 0, sizeof *problem);
    problem->database = database;
    snprintf(problem->path, sizeof problem->path, "%s", path);
    char user[300];
    sandbox_user(user, sizeof user);
    switch (error_number) {
    case EROFS:
        snprintf(problem->fix, sizeof problem->fix, "ReadWritePaths=%s", path);
        snprintf(problem->message, sizeof problem->message,
                 "%s is read-only here (the service's sandbox, ProtectSystem=strict), but %s: "
                 "add the line '%s' under [Service] in a drop-in (systemctl edit sqlprodd), "
                 "then systemctl restart sqlprodd",
                 path, purpose, problem->fix);
        break;
    case EACCES:
    case EPERM:
        snprintf(problem->fix, sizeof problem->fix, "grant %s write access to %s", user, path);
        snprintf(problem->message, sizeof problem->message,
                 "%s may not write %s, but %s: %s (sqlprodd(8), \"Granting access to a "
                 "database\")",
                 user, path, purpose, problem->fix);
        break;
    case ENOENT:
        snprintf(problem->fix, sizeof problem->fix, "create %s", path);
        snprintf(problem->message, sizeof problem->message,
                 "%s does not exist here (or the service's sandbox hides it: ProtectHome=yes "
                 "hides /home, /root and /run/user), but %s",
                 path, purpose);
        break;
    default:
        snprintf(problem->fix, sizeof problem->fix, "check %s", path);
        snprintf(problem->message, sizeof problem->message, "cannot check %s (%s), but %s", path,
                 strerror(error_number), purpose);
    }
    return 0;
}

/* Checks that `path` can be written (and entered, for a directory). A path
 * that does not exist yet is created by the agent: its nearest existing
 * parent must then be writable. 1 when a problem was added. */
static int sandbox_need(struct sandbox_report *report, const char *database, const char *path,
                        const char *purpose)
{
    char existing[4096];
    snprintf(existing, sizeof existing, "%s", path);
    while (access(existing, F_OK) != 0 && errno == ENOENT && strcmp(existing, "/") != 0) {
        char *slash = strrchr(existing, '/');
        if (!slash)
            break;
        if (slash == existing)
            slash[1] = '\0';
        else
            *slash = '\0';
    }
    if (access(existing, W_OK | X_OK) == 0 || (errno == EACCES && access(existing, W_OK) == 0))
        return 0; /* a writable file needs no X_OK */
    int rc = sandbox_add(report, database, existing, purpose, errno);
    return rc < 0 ? rc : 1;
}

static int sandbox_need_directory_of(struct sandbox_report *report, const char *database,
                                     const char *file, const char *purpose)
{
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", file);
    return sandbox_need(report, database, dirname(copy), purpose);
}

/* The backup job writes DIR/NAME, creating it in DIR the first time. */
static int sandbox_need_backup_dir(struct sandbox_report *report, const struct database_config *db)
{
    char own[4200];
    snprintf(own, sizeof own, "%s/%s", db->backup.dir, db->name);
    if (access(own, F_OK) == 0)
        return sandbox_need(report, db->name, own, "the backup job writes its archives there");
    return sandbox_need(report, db->name, db->backup.dir,
                        "the backup job creates its directory there");
}

int sandbox_check(const struct config *config, struct sandbox_report *report)
{
    int rc = 0;
    memset(report, 0, sizeof *report);
    rc = sandbox_need(report, NULL, config->state_dir, "the agent keeps its state there");
    if (rc >= 0 && config->metrics_textfile)
        rc = sandbox_need_directory_of(report, NULL, config->metrics_textfile,
                                       "metrics.textfile is rewritten there");
    for (size_t i = 0; rc >= 0 && i < config->database_count; i++) {
        const struct database_config *db = &config->databases[i];
        /* SQLite creates and removes -wal and -shm beside the database;
         * checkpoint, vacuum and analyze write the file itself (checked
         * only when its directory is fine: one fix covers both). */
        rc = sandbox_need_directory_of(report, db->name, db->path,
                                       "checkpoint and vacuum write the database, its -wal and "
                                       "-shm files there");
        if (rc == 0 && access(db->path, F_OK) == 0)
            rc = sandbox_need(report, db->name, db->path, "checkpoint and vacuum write it");
        if (rc >= 0 && db->backup.schedule.kind != SCHEDULE_NONE)
            rc = sandbox_need_backup_dir(report, db);
        const struct target_config *target = db->upload.target;
        if (rc >= 0 && target && target->type == TARGET_DIR && target->path)
            rc = sandbox_need(report, db->name, target->path,
                              "uploads to this dir target are written there");
    }
    if (rc < 0) {
        sandbox_report_free(report);
        return rc;
    }
    return (int)report->count;
}

void sandbox_report_free(struct sandbox_report *report)
{
    free(report->problems);
    report->problems = NULL;
    report->count = 0;
}
