/*
 * cli_check.c: `sqlprodd check`. The configuration is already valid when we
 * get here (main.c loaded it); this checks what the running user can reach:
 * every database (read and write, file and directory, because checkpoints
 * write the -wal and -shm files), every backup directory, the state
 * directory, the metrics file and every target. Each problem is printed as
 * FILE:LINE: key: what is missing and what to do.
 */
#include <errno.h>
#include <stdarg.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "db/database.h"
#include "offsite/target.h"
#include "restore/identity.h"

struct check_report {
    const struct config *config;
    int problems;
};

static void check_problem(struct check_report *report, int line, const char *key,
                          const char *format, ...) __attribute__((format(printf, 4, 5)));

static void check_problem(struct check_report *report, int line, const char *key,
                          const char *format, ...)
{
    va_list args;
    fprintf(stdout, "%s:%d: %s: ", report->config->file, line, key);
    va_start(args, format);
    vfprintf(stdout, format, args);
    va_end(args);
    fputc('\n', stdout);
    report->problems++;
}

static const char *running_user(void)
{
    static char name[64];
    snprintf(name, sizeof name, "uid %d", (int)geteuid());
    return name;
}

/* The nearest existing ancestor of `path` must let us create it. */
static int check_directory_writable(const char *path, char *why, size_t why_size)
{
    char current[4096];
    snprintf(current, sizeof current, "%s", path);
    struct stat st;
    while (stat(current, &st) != 0) {
        if (errno != ENOENT) {
            snprintf(why, why_size, "%s: %s", current, strerror(errno));
            return -1;
        }
        char *slash = strrchr(current, '/');
        if (!slash || slash == current) {
            snprintf(current, sizeof current, "/");
            break;
        }
        *slash = '\0';
    }
    if (stat(current, &st) == 0 && !S_ISDIR(st.st_mode)) {
        snprintf(why, why_size, "%s is not a directory", current);
        return -1;
    }
    if (access(current, W_OK | X_OK) != 0) {
        snprintf(why, why_size, "%s is not writable by %s (%s)", current, running_user(),
                 strerror(errno));
        return -1;
    }
    return 0;
}

static void check_database(struct check_report *report, const struct database_config *db)
{
    char key[300], why[4400], directory[4096];
    snprintf(key, sizeof key, "databases.%s.path", db->name);
    struct error err = {0};
    /* Before any access(): says what is there (a FIFO, a dangling link) and
     * tells "does not exist" from "permission denied". */
    if (database_refuse_special_files(db->path, &err) != 0) {
        check_problem(report, db->line, key, "%s", err.message);
        return;
    }
    if (access(db->path, R_OK | W_OK) != 0) {
        check_problem(report, db->line, key,
                      "%s is not readable and writable by %s (%s): add the user to the file's "
                      "group (or an ACL) and list the directory in ReadWritePaths= (see the "
                      "README, \"Granting access to an application's database\")",
                      db->path, running_user(), strerror(errno));
        return;
    }
    snprintf(directory, sizeof directory, "%s", db->path);
    if (access(dirname(directory), W_OK | X_OK) != 0)
        check_problem(report, db->line, key,
                      "directory %s is not writable by %s: checkpoints need to create the -wal and "
                      "-shm files there",
                      directory, running_user());
    sqlite3 *connection = NULL;
    if (database_open(db, true, &cli_stop, &connection, &err) != 0)
        check_problem(report, db->line, key, "%s", err.message);
    sqlite3_close(connection);

    snprintf(key, sizeof key, "databases.%s.backup.dir", db->name);
    if (db->backup.schedule.kind != SCHEDULE_NONE &&
        check_directory_writable(db->backup.dir, why, sizeof why) != 0)
        check_problem(report, db->line, key, "cannot write backups to %s: %s", db->backup.dir, why);
}

/* An identity in the configuration must open what is encrypted now: one
 * that matches none of the recipients is found here, not on the day of a
 * restore. An identity this user cannot read is restore's business (it
 * runs as root; the agent never reads it). */
static void check_encryption(struct check_report *report, const struct database_config *db)
{
    struct identity_keys keys = {0};
    struct error err = {0};
    char key[300];
    if (db->encrypt.recipient_count == 0 || (!db->encrypt.identity && !db->encrypt.identity_credential))
        return;
    snprintf(key, sizeof key, "databases.%s.encrypt.identity", db->name);
    int rc = identity_keys_load(db, NULL, &keys, &err);
    if (rc == -EACCES || rc == -ENOENT) {
        identity_keys_free(&keys);
        return;
    }
    if (rc != 0) {
        check_problem(report, db->line, key, "%s", err.message);
        return;
    }
    bool opens = false;
    for (size_t i = 0; i < keys.count && !opens; i++) {
        struct age_recipient own;
        age_identity_recipient(&keys.identities[i], &own);
        for (size_t j = 0; j < db->encrypt.recipient_count && !opens; j++)
            opens = memcmp(own.public_key, db->encrypt.recipients[j].public_key, AGE_KEY_SIZE) == 0;
    }
    if (!opens)
        check_problem(report, db->line, key,
                      "%s holds no identity of the recipients: what is encrypted now could not "
                      "be restored with it (age-keygen -y %s prints its public key)",
                      keys.source, db->encrypt.identity ? db->encrypt.identity : "FILE");
    identity_keys_free(&keys);
}

static void check_target(struct check_report *report, const struct target_config *config)
{
    char key[300];
    struct error err = {0};
    struct target *target = NULL;
    struct target_listing listing = {0};
    snprintf(key, sizeof key, "targets.%s", config->name);
    /* A listing under a prefix that holds nothing proves the credentials, the
     * bucket and the network at the cost of one short request, however many
     * backups the target holds. */
    int rc = target_open(config, &target, &err);
    target_set_stop(target, &cli_stop);
    if (rc == 0)
        rc = target_list(target, "sqlprodd-check/", &listing, &err);
    if (rc != 0)
        check_problem(report, config->line, key, "%s", err.message);
    target_listing_free(&listing);
    target_close(target);
}

/*
 * From a shell, `check` sees the file system as the shell does, not as the
 * service does: sqlprodd.service makes everything read-only but its
 * ReadWritePaths= (ProtectSystem=strict). It cannot see that sandbox from
 * outside, so it says so rather than let an OK pass for the agent's; the
 * agent checks from inside at start-up and after each reload. systemd sets
 * INVOCATION_ID in every unit it runs, so its absence means "not a unit".
 */
static void check_note_sandbox(void)
{
    const char *invocation = getenv("INVOCATION_ID");
    if (invocation && *invocation)
        return;
    printf("note: this check ran outside the sandbox of sqlprodd.service, whose file system is "
           "read-only but for its ReadWritePaths=: a directory writable here may not be for the "
           "agent. The agent checks its own access at start-up and after each reload and names "
           "any missing ReadWritePaths= line in `systemctl status sqlprodd` and the journal.\n");
}

/* What each pattern entry found, and every file it passed over: an
 * operator who adds a tenant sees here why it is not looked after. */
static void check_print_globs(const struct config *config)
{
    for (size_t i = 0; i < config->glob_count; i++) {
        const struct config_glob *glob = &config->globs[i];
        printf("%s:%d: glob \"%s\": %zu database%s", config->file, glob->line, glob->pattern,
               glob->databases, glob->databases == 1 ? "" : "s");
        if (glob->skipped_count)
            printf(", %zu file%s skipped:", glob->skipped_count,
                   glob->skipped_count == 1 ? "" : "s");
        printf("\n");
        for (size_t k = 0; k < glob->skipped_count; k++)
            printf("  %s\n", glob->skipped[k]);
    }
}

/* Each target with Object Lock, which an operator cannot take back for the
 * objects written under it (COMPLIANCE: not even the account's root). */
static void check_print_object_locks(const struct config *config)
{
    for (size_t i = 0; i < config->target_count; i++) {
        const struct target_config *target = &config->targets[i];
        if (target->object_lock_days > 0)
            printf("%s:%d: target \"%s\": object_lock %s, %d day%s: every upload is locked "
                   "that long, and remote retention keeps it until then\n",
                   config->file, target->line, target->name,
                   config_object_lock_mode_name(target->object_lock_mode), target->object_lock_days,
                   target->object_lock_days == 1 ? "" : "s");
    }
}

int cli_check(const struct config *config, int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: sqlprodd check\n");
        return CLI_USAGE;
    }
    struct check_report report = {.config = config};
    char why[4400];
    if (check_directory_writable(config->state_dir, why, sizeof why) != 0)
        check_problem(&report, 1, "state_dir", "%s", why);
    if (config->metrics_textfile) {
        char directory[4096];
        snprintf(directory, sizeof directory, "%s", config->metrics_textfile);
        if (check_directory_writable(dirname(directory), why, sizeof why) != 0)
            check_problem(&report, 1, "metrics.textfile", "%s", why);
    }
    for (size_t i = 0; i < config->database_count; i++) {
        check_database(&report, &config->databases[i]);
        check_encryption(&report, &config->databases[i]);
    }
    for (size_t i = 0; i < config->target_count; i++)
        check_target(&report, &config->targets[i]);
    check_print_object_locks(config);
    check_print_globs(config);
    if (report.problems) {
        printf("%s: %d problem%s found\n", config->file, report.problems,
               report.problems == 1 ? "" : "s");
        check_note_sandbox();
        return CLI_FAILED;
    }
    printf("%s: configuration OK: %zu database%s, %zu target%s, all reachable\n", config->file,
           config->database_count, config->database_count == 1 ? "" : "s", config->target_count,
           config->target_count == 1 ? "" : "s");
    check_note_sandbox();
    return CLI_OK;
}
