/*
 * cli_backups.c: `sqlprodd backups [DB] [--remote] [--json]`, the backups
 * kept locally (from the manifests on disk) or on the database's target
 * (from a listing).
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "archive/catalog.h"
#include "cli/cli.h"
#include "offsite/remote.h"
#include "offsite/target.h"
#include "core/units.h"

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
            json_array_append_new(json, item);
            continue;
        }
        char archive[32], database[32];
        units_format_size(m->archive_bytes, archive, sizeof archive);
        units_format_size(m->database_bytes, database, sizeof database);
        printf("%-16s %-17s %12s %13s  %-10s %s\n", db->name, list->items[i].id, archive, database,
               m->verified ? "verified" : "UNVERIFIED", list->items[i].archive_path);
    }
}

static void print_remote(const struct database_config *db, const struct remote_list *list,
                         json_t *json)
{
    for (size_t i = 0; i < list->count; i++) {
        const struct remote_backup *b = &list->items[i];
        if (json) {
            json_t *item = json_object();
            json_object_set_new(item, "database", json_string(db->name));
            json_object_set_new(item, "id", json_string(b->id));
            json_object_set_new(item, "location", json_string("remote"));
            json_object_set_new(item, "target", json_string(db->upload.target->name));
            json_object_set_new(item, "key", json_string(b->archive_key));
            json_object_set_new(item, "archive_bytes", json_integer(b->archive_bytes));
            json_object_set_new(item, "has_manifest", json_boolean(b->has_manifest));
            json_array_append_new(json, item);
            continue;
        }
        char archive[32];
        units_format_size(b->archive_bytes, archive, sizeof archive);
        printf("%-16s %-17s %12s  %-11s %s:%s\n", db->name, b->id, archive,
               b->has_manifest ? "complete" : "NO MANIFEST", db->upload.target->name, b->archive_key);
    }
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
            if (!db->upload.target) {
                if (only) {
                    fprintf(stderr, "sqlprodd: %s has no upload target\n", db->name);
                    failures++;
                }
                continue;
            }
            struct target *target = NULL;
            int rc = target_open(db->upload.target, &target, &err);
            target_set_stop(target, &cli_stop);
            if (rc == 0)
                rc = remote_list_backups(target, db->name, &list, &err);
            target_close(target);
            if (rc != 0) {
                fprintf(stderr, "sqlprodd: %s: %s\n", db->name, err.message);
                failures++;
                continue;
            }
            print_remote(db, &list, json);
            remote_list_free(&list);
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
