/*
 * cli_verify.c: `sqlprodd verify [DB] [--local|--remote] [--data] [--json]
 * [--identity FILE]`: re-reads what the backups and the replica of each
 * database are made of (restore/verify.h) and says, object by object, what
 * is wrong; exit status 1 on any problem.
 *
 * Without --local or --remote, both sides: the backup directory, and the
 * upload target and the replica when the database has them. Problems and
 * notes are printed as they are found, then one summary line per side.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/units.h"
#include "restore/identity.h"
#include "restore/verify.h"

#define VERIFY_USAGE                                                                               \
    "usage: sqlprodd verify [DB] [--local|--remote] [--data] [--json] [--identity FILE]\n"

/* Where the findings of one side go: printed, or gathered for --json. */
struct verify_output {
    const char *database;
    const char *side;
    json_t *problems, *notes; /* --json */
};

static void verify_print(void *context, bool problem, const char *object, const char *message)
{
    struct verify_output *out = context;
    if (out->problems) {
        json_t *item = json_pack("{s:s, s:s}", "object", object, "message", message);
        json_array_append_new(problem ? out->problems : out->notes, item);
        return;
    }
    printf("%-16s %-8s %s %s: %s\n", out->database, out->side, problem ? "PROBLEM" : "note",
           object, message);
    fflush(stdout);
}

static void verify_summary(const char *database, const char *side, const struct verify_tally *t,
                           const char *failure, json_t *json, struct verify_output *out)
{
    char read[32];
    units_format_size(t->bytes_read, read, sizeof read);
    if (json) {
        json_t *item = json_pack(
            "{s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}", "database", database,
            "side", side, "ok", t->problems == 0 && !failure, "backups", (json_int_t)t->backups,
            "deletion_records", (json_int_t)t->records, "replica_windows", (json_int_t)t->windows,
            "replica_segments", (json_int_t)t->segments, "objects", (json_int_t)t->objects,
            "bytes_read", (json_int_t)t->bytes_read, "problems", out->problems, "notes",
            out->notes);
        if (failure)
            json_object_set_new(item, "error", json_string(failure));
        json_array_append_new(json, item);
        return;
    }
    if (failure) {
        printf("%-16s %-8s FAILED: %s\n", database, side, failure);
        return;
    }
    if (strcmp(side, "replica") == 0)
        printf("%-16s %-8s %zu window%s, %zu segment%s, %zu objects, %s read back: ", database,
               side, t->windows, t->windows == 1 ? "" : "s", t->segments,
               t->segments == 1 ? "" : "s", t->objects, read);
    else
        printf("%-16s %-8s %zu backup%s, %zu deletion record%s, %zu objects, %s read back: ",
               database, side, t->backups, t->backups == 1 ? "" : "s", t->records,
               t->records == 1 ? "" : "s", t->objects, read);
    if (t->problems)
        printf("%zu PROBLEM%s\n", t->problems, t->problems == 1 ? "" : "S");
    else
        printf("ok%s\n", t->notes ? " (see the notes)" : "");
}

/* One side of one database; returns its problems (a side that could not be
 * checked counts as one). */
static size_t verify_side(const struct database_config *db, const char *side,
                          const struct verify_options *options, json_t *json)
{
    struct verify_tally tally = {0};
    struct verify_output out = {.database = db->name, .side = side};
    struct verify_sink sink = {verify_print, &out};
    struct error err = {0};
    if (json) {
        out.problems = json_array();
        out.notes = json_array();
    }
    int rc = strcmp(side, "replica") == 0
                 ? verify_replica(db, options, &sink, &tally, &err)
                 : verify_backups(db, strcmp(side, "remote") == 0, options, &sink, &tally, &err);
    /* A replica not shipped yet is no problem of the replica. */
    bool nothing_yet = rc == -ENOENT && strcmp(side, "replica") == 0;
    if (nothing_yet) {
        verify_print(&out, false, "replica", err.message);
        tally.notes++;
    }
    verify_summary(db->name, side, &tally, rc != 0 && !nothing_yet ? err.message : NULL, json,
                   &out);
    if (!json) {
        json_decref(out.problems);
        json_decref(out.notes);
    }
    return tally.problems + (rc != 0 && !nothing_yet ? 1 : 0);
}

static const char *verify_temp_directory(void)
{
    const char *directory = getenv("TMPDIR");
    return directory && *directory ? directory : "/var/tmp";
}

int cli_verify(const struct config *config, int argc, char **argv)
{
    static const struct option long_options[] = {{"local", no_argument, NULL, 'l'},
                                            {"remote", no_argument, NULL, 'r'},
                                            {"data", no_argument, NULL, 'd'},
                                            {"json", no_argument, NULL, 'j'},
                                            {"identity", required_argument, NULL, 'i'},
                                            {NULL, 0, NULL, 0}};
    bool local = false, remote = false, data = false, as_json = false;
    const char *identity = NULL;
    int option;
    optind = 0; /* 0, not 1: glibc then also resets its internal state */
    while ((option = getopt_long(argc, argv, "lrdji:", long_options, NULL)) != -1) {
        switch (option) {
        case 'l': local = true; break;
        case 'r': remote = true; break;
        case 'd': data = true; break;
        case 'j': as_json = true; break;
        case 'i': identity = optarg; break;
        default: fputs(VERIFY_USAGE, stderr); return CLI_USAGE;
        }
    }
    const struct database_config *only = NULL;
    if (argc - optind > 1 || (local && remote)) {
        fputs(VERIFY_USAGE, stderr);
        return CLI_USAGE;
    }
    if (argc - optind == 1 && !(only = cli_select_database(config, argv[optind])))
        return CLI_USAGE;
    if (!local && !remote)
        local = remote = true;
    if (only && !local && !only->upload.target && !only->replicate.target) {
        fprintf(stderr, "sqlprodd: verify: %s has no upload target and no replicate target\n",
                only->name);
        return CLI_USAGE;
    }
    /* Downloads and the replica's scratch file go there: say so once, not
     * once per object. */
    const char *temp = verify_temp_directory();
    if (remote && access(temp, W_OK | X_OK) != 0) {
        fprintf(stderr,
                "sqlprodd: verify: cannot write temp files to %s (%s): set TMPDIR to a "
                "writable directory\n",
                temp, strerror(errno));
        return CLI_USAGE;
    }
    json_t *json = as_json ? json_array() : NULL;
    size_t problems = 0;
    for (size_t i = 0; i < config->database_count && !cli_stop; i++) {
        const struct database_config *db = &config->databases[i];
        if (only && db != only)
            continue;
        struct identity_keys keys = {0};
        struct error err = {0};
        if (data && identity_keys_load(db, identity, &keys, &err) != 0) {
            fprintf(stderr, "sqlprodd: verify %s: %s\n", db->name, err.message);
            problems++;
            continue;
        }
        struct verify_options options = {.data = data,
                                         .keys = identity_keys_view(&keys),
                                         .stop = &cli_stop,
                                         .temp_directory = verify_temp_directory()};
        if (local)
            problems += verify_side(db, "local", &options, json);
        if (remote && db->upload.target)
            problems += verify_side(db, "remote", &options, json);
        if (remote && db->replicate.target)
            problems += verify_side(db, "replica", &options, json);
        identity_keys_free(&keys);
    }
    if (json) {
        json_dumpf(json, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        json_decref(json);
    }
    if (cli_stop) {
        fprintf(stderr, "sqlprodd: verify: stopped by a signal\n");
        return CLI_FAILED;
    }
    return problems ? CLI_FAILED : CLI_OK;
}
