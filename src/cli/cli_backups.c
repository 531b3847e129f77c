/*
 * cli_backups.c: `sqlprodd backups [DB] [--remote] [--json]`, the backups
 * kept locally (from the manifests on disk) or on the database's target
 * (from a listing), and with --remote the restorable windows of the WAL
 * replica (its index.json): one window per chain of generations that
 * starts from a base file, a break between two windows unless the base was
 * a scheduled snapshot.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "archive/catalog.h"
#include "cli/cli.h"
#include "offsite/remote.h"
#include "offsite/target.h"
#include "core/units.h"
#include "restore/replica.h"

static void print_local(const struct database_config *db, const struct backup_list *list, json_t *json)
{
    for (size_t i = 0; i < list->count; i++) {
        const struct manifest *m = &list->items[i].manifest;
        if (json) {
            json_t *item = json_object();
            json_object_set_new(item, "database", json_string(db->name));
            json_object_set_new(item, "id", json_string(list->items[i].id));
            json_object_set_new(item, "location", json_string("local"));
            json_object_set_new(item, "archive", json_string(list->items[i].archive_path));
            json_object_set_new(item, "archive_bytes", json_integer(m->archive_bytes));
            json_object_set_new(item, "database_bytes", json_integer(m->database_bytes));
            json_object_set_new(item, "sha256", json_string(m->archive_sha256));
            json_object_set_new(item, "verified", json_boolean(m->verified));
            json_object_set_new(item, "verification", json_string(m->verify_method));
            json_object_set_new(item, "encrypted_to",
                                m->encrypted ? json_string(m->recipients) : json_null());
            json_array_append_new(json, item);
            continue;
        }
        char archive[32], database[32];
        units_format_size(m->archive_bytes, archive, sizeof archive);
        units_format_size(m->database_bytes, database, sizeof database);
        printf("%-16s %-17s %12s %13s  %-10s %s%s%s\n", db->name, list->items[i].id, archive,
               database, m->verified ? "verified" : "UNVERIFIED", list->items[i].archive_path,
               m->encrypted ? "  encrypted to " : "", m->encrypted ? m->recipients : "");
    }
}

/* An encrypted backup's recipients, from its manifest: the key it needs. */
static void remote_recipients(struct target *target, const struct remote_backup *b, char *out,
                              size_t size)
{
    struct manifest manifest;
    struct error err = {0};
    const char *directory = getenv("TMPDIR");
    size_t length = strlen(b->archive_key);
    out[0] = '\0';
    if (!b->has_manifest || length < 4 || strcmp(b->archive_key + length - 4, ".age") != 0)
        return;
    if (remote_read_manifest(target, b, directory && *directory ? directory : "/tmp", &manifest,
                             &err) != 0)
        snprintf(out, size, "? (%s)", err.message);
    else
        snprintf(out, size, "%s", manifest.recipients);
}

static void print_remote(const struct database_config *db, struct target *target,
                         const struct remote_list *list, json_t *json)
{
    for (size_t i = 0; i < list->count; i++) {
        const struct remote_backup *b = &list->items[i];
        char recipients[2600];
        remote_recipients(target, b, recipients, sizeof recipients);
        if (json) {
            json_t *item = json_object();
            json_object_set_new(item, "database", json_string(db->name));
            json_object_set_new(item, "id", json_string(b->id));
            json_object_set_new(item, "location", json_string("remote"));
            json_object_set_new(item, "target", json_string(db->upload.target->name));
            json_object_set_new(item, "key", json_string(b->archive_key));
            json_object_set_new(item, "archive_bytes", json_integer(b->archive_bytes));
            json_object_set_new(item, "has_manifest", json_boolean(b->has_manifest));
            json_object_set_new(item, "encrypted_to",
                                recipients[0] ? json_string(recipients) : json_null());
            json_array_append_new(json, item);
            continue;
        }
        char archive[32];
        units_format_size(b->archive_bytes, archive, sizeof archive);
        printf("%-16s %-17s %12s  %-11s %s:%s%s%s\n", db->name, b->id, archive,
               b->has_manifest ? "complete" : "NO MANIFEST", db->upload.target->name, b->archive_key,
               recipients[0] ? "  encrypted to " : "", recipients);
    }
}

/* The replica's target: where `restore --at` reads from. */
static const struct target_config *replica_target_of(const struct database_config *db)
{
    return db->replicate.target;
}

/* The keys a window's generations are sealed to, each once, in order ("A,
 * then B" after a rotation); "" when none is sealed. */
static void window_sealed_to(const struct replica_windows *windows, size_t first, size_t end,
                             char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = first; i < end; i++) {
        const char *keys = windows->items[i].sealed_to;
        bool again = false;
        for (size_t j = first; j < i && !again; j++)
            again = strcmp(windows->items[j].sealed_to, keys) == 0;
        if (!keys[0] || again || used >= size)
            continue;
        int n = snprintf(out + used, size - used, "%s%s", used ? ", then " : "", keys);
        used += n > 0 ? (size_t)n : 0;
    }
}

/* One window: generations [first, end) of `windows`, a chain that starts
 * with a base file (or with the oldest generation kept). */
static void print_window(const struct database_config *db, const struct replica_windows *windows,
                         size_t first, size_t end, json_t *json)
{
    const struct replica_window *a = &windows->items[first], *z = &windows->items[end - 1];
    char sealed_to[2600];
    window_sealed_to(windows, first, end, sealed_to, sizeof sealed_to);
    /* A scheduled base (snapshot_every) starts a chain too, but loses
     * nothing: every commit before it is in the chain before. */
    bool broken = first > 0 && !a->snapshot;
    if (json) {
        json_t *item = json_object(), *names = json_array();
        for (size_t i = first; i < end; i++)
            json_array_append_new(names, json_string(windows->items[i].name));
        json_object_set_new(item, "database", json_string(db->name));
        json_object_set_new(item, "location", json_string("replica"));
        json_object_set_new(item, "target", json_string(replica_target_of(db)->name));
        json_object_set_new(item, "first_seen_at", json_string(a->first_seen_at));
        json_object_set_new(item, "last_seen_at", json_string(z->last_seen_at));
        json_object_set_new(item, "generations", names);
        json_object_set_new(item, "base", json_string(a->name));
        json_object_set_new(item, "break_before", json_boolean(broken));
        json_object_set_new(item, "encrypted_to",
                            sealed_to[0] ? json_string(sealed_to) : json_null());
        json_array_append_new(json, item);
        return;
    }
    if (broken)
        printf("%-16s BREAK: nothing restorable after %s until %s (generation %s starts from a "
               "new base)\n",
               db->name, windows->items[first - 1].last_seen_at, a->first_seen_at, a->name);
    char names[96];
    if (end - first == 1)
        snprintf(names, sizeof names, "%s", a->name);
    else
        snprintf(names, sizeof names, "%s..%s", a->name, z->name);
    printf("%-16s replica window %s .. %s  generations %s, restore --at any time in it%s%s\n",
           db->name, a->first_seen_at, z->last_seen_at, names,
           sealed_to[0] ? "  encrypted to " : "", sealed_to);
}

/* -ENOENT (nothing shipped yet) is said, not counted as a failure: a
 * replica is empty until the agent's first round. */
static int print_replica(const struct database_config *db, json_t *json, struct error *err)
{
    struct replica_windows windows = {0};
    char temp[PATH_MAX];
    const char *directory = getenv("TMPDIR");
    snprintf(temp, sizeof temp, "%s/sqlprodd-backups-%ld", directory && *directory ? directory : "/tmp",
             (long)getpid());
    int rc = replica_list_windows(replica_target_of(db), db->name, &cli_stop, temp, &windows, err);
    if (rc == -ENOENT) {
        if (!json)
            printf("%-16s replica: none restorable yet: %s\n", db->name, err->message);
        return 0;
    }
    if (rc != 0)
        return rc;
    size_t first = 0;
    for (size_t i = 1; i <= windows.count; i++)
        if (i == windows.count || windows.items[i].starts_chain) {
            print_window(db, &windows, first, i, json);
            first = i;
        }
    replica_windows_free(&windows);
    return 0;
}

int cli_backups(const struct config *config, int argc, char **argv)
{
    static const struct option options[] = {
        {"json", no_argument, NULL, 'j'}, {"remote", no_argument, NULL, 'r'}, {NULL, 0, NULL, 0}};
    bool remote = false;
    json_t *json = NULL;
    int option;
    optind = 0; /* 0, not 1: glibc then also resets its internal state */
    while ((option = getopt_long(argc, argv, "jr", options, NULL)) != -1) {
        if (option == 'j' && !json)
            json = json_array();
        else if (option == 'r')
            remote = true;
        else if (option != 'j') {
            fprintf(stderr, "usage: sqlprodd backups [DB] [--remote] [--json]\n");
            json_decref(json);
            return CLI_USAGE;
        }
    }
    const struct database_config *only = NULL;
    if (argc - optind > 1 || (argc - optind == 1 && !(only = cli_select_database(config, argv[optind])))) {
        if (argc - optind > 1)
            fprintf(stderr, "usage: sqlprodd backups [DB] [--remote] [--json]\n");
        json_decref(json);
        return CLI_USAGE;
    }
    /* Each column named for what it holds: the archive's size, the size of
     * the database it restores to, and where the archive is. */
    if (!json && remote)
        printf("%-16s %-17s %12s  %-11s %s\n", "DATABASE", "BACKUP", "ARCHIVE SIZE", "STATE",
               "LOCATION");
    else if (!json)
        printf("%-16s %-17s %12s %13s  %-10s %s\n", "DATABASE", "BACKUP", "ARCHIVE SIZE",
               "DATABASE SIZE", "STATE", "PATH");
    int failures = 0;
    for (size_t i = 0; i < config->database_count; i++) {
        const struct database_config *db = &config->databases[i];
        struct error err = {0};
        if (only && db != only)
            continue;
        if (remote) {
            struct remote_list list = {0};
            if (!db->upload.target && replica_target_of(db)) {
                if (print_replica(db, json, &err) != 0) {
                    fprintf(stderr, "sqlprodd: %s: replica: %s\n", db->name, err.message);
                    failures++;
                }
                continue;
            }
            if (!db->upload.target) {
                if (only) {
                    fprintf(stderr, "sqlprodd: %s has no upload target and no replicate target\n", db->name);
                    failures++;
                }
                continue;
            }
            struct target *target = NULL;
            int rc = target_open(db->upload.target, &target, &err);
            target_set_stop(target, &cli_stop);
            if (rc == 0)
                rc = remote_list_backups(target, db->name, &list, &err);
            if (rc != 0) {
                target_close(target);
                fprintf(stderr, "sqlprodd: %s: %s\n", db->name, err.message);
                failures++;
                continue;
            }
            print_remote(db, target, &list, json);
            target_close(target);
            remote_list_free(&list);
            if (replica_target_of(db) && print_replica(db, json, &err) != 0) {
                fprintf(stderr, "sqlprodd: %s: replica: %s\n", db->name, err.message);
                failures++;
            }
        } else {
            struct backup_list list;
            if (catalog_list_local(db, &list, &err) != 0) {
                fprintf(stderr, "sqlprodd: %s: %s\n", db->name, err.message);
                failures++;
                continue;
            }
            print_local(db, &list, json);
            catalog_free(&list);
        }
    }
    if (json) {
        json_dumpf(json, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        json_decref(json);
    }
    return failures ? CLI_FAILED : CLI_OK;
}
