/*
 * main.c: the command line. Parses the global options, loads and validates
 * the configuration, dispatches to a command and maps its result to the exit
 * status (0 success, 1 a job or check failed, 2 usage or configuration).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/agent.h"
#include "cli/cli.h"
#include "config/config.h"
#include "core/log.h"
#include "core/memory.h"
#include "jobs/job.h"
#include "report/notify.h"

/* Every command, in the order `--help` lists them, the default first: the
 * one place that names them, so that usage, dispatch and "unknown command"
 * cannot disagree. `run` has no function here: it owns the configuration (a
 * reload replaces it), so main() hands it over separately. A NULL name
 * stands for the job commands, one per job kind. */
struct command {
    const char *name;
    const char *arguments;
    int (*run)(const struct config *config, int argc, char **argv);
};

static const struct command commands[] = {
    {"run", "", NULL},
    {"check", "", cli_check},
    {"reload", " [--pid PID]", cli_reload},
    {"status", " [--json] [DB]", cli_status},
    {NULL, " [DB]", NULL},
    {"backups", " [DB] [--remote] [--json]", cli_backups},
    {"restore",
     " DB --to PATH [--backup ID|--at TIME] [--from local|remote] [--identity FILE] [--force]",
     cli_restore},
    {"verify", " [DB] [--local|--remote] [--data] [--json] [--identity FILE]", cli_verify},
};

#define COMMAND_COUNT (sizeof commands / sizeof commands[0])

static void print_usage(FILE *out)
{
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        fputs(i == 0 ? "usage: sqlprodd [-c FILE] " : "       sqlprodd [-c FILE] ", out);
        if (i == 0) {
            fprintf(out, "[%s]", commands[i].name); /* the default command */
        } else if (commands[i].name) {
            fputs(commands[i].name, out);
        } else {
            for (int kind = 0; kind < JOB_KIND_COUNT; kind++)
                fprintf(out, "%s%s", kind ? "|" : "", job_name((enum job_kind)kind));
        }
        fprintf(out, "%s\n", commands[i].arguments);
    }
    fputs("       sqlprodd --version | --help\n"
          "\n"
          "  -c FILE   configuration file (default $SQLPRODD_CONFIG, else " CONFIG_DEFAULT_PATH
          ")\n"
          "\n"
          "Exit status: 0 success, 1 a job or check failed, 2 usage or configuration error.\n"
          "See sqlprodd(8) and sqlprodd.conf(5).\n",
          out);
}

/* The entry for `name`, or NULL when sqlprodd has no such command. */
static const struct command *command_find(const char *name)
{
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        if (commands[i].name ? strcmp(commands[i].name, name) == 0 : job_kind_from_name(name) >= 0)
            return &commands[i];
    }
    return NULL;
}

static void handle_stop_signal(int signal_number)
{
    (void)signal_number;
    cli_stop = 1;
}

/* Loads the configuration; on mistakes prints each with its FILE:LINE and,
 * for `run`, tells systemd why the agent did not start. NULL then. */
static struct config *main_load_config(const char *config_path, const char *command)
{
    struct config *config = NULL;
    struct config_diagnostics diagnostics = {0};
    if (config_load(config_path, &config, &diagnostics) == 0) {
        config_diagnostics_free(&diagnostics);
        log_set_level(config->log_level);
        return config;
    }
    for (size_t i = 0; i < diagnostics.count; i++)
        fprintf(stderr, "%s\n", diagnostics.lines[i]);
    fprintf(stderr, "sqlprodd: %s: %zu error%s in the configuration\n", config_path,
            diagnostics.count, diagnostics.count == 1 ? "" : "s");
    if (strcmp(command, "run") == 0) {
        /* Under systemd, `systemctl status` should say why it did not start. */
        char status[1200];
        snprintf(status, sizeof status, "not started: %zu error%s in %s, first: %s",
                 diagnostics.count, diagnostics.count == 1 ? "" : "s", config_path,
                 diagnostics.count ? diagnostics.lines[0] : "unknown");
        notify_failure(status, EINVAL);
    }
    config_diagnostics_free(&diagnostics);
    return NULL;
}

/* A one-off command: SIGINT and SIGTERM ask its jobs to stop cleanly. */
static int main_run_command(const struct command *entry, struct config *config, const char *command,
                            int argc, char **argv)
{
    struct sigaction action = {.sa_handler = handle_stop_signal};
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    signal(SIGPIPE, SIG_IGN);

    int status =
        entry->run ? entry->run(config, argc, argv) : cli_run_job(config, command, argc, argv);
    config_free(config);
    return status;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = getenv("SQLPRODD_CONFIG");
    if (!config_path || !*config_path)
        config_path = CONFIG_DEFAULT_PATH;

    /* Archives, manifests and state hold the whole database: private by default. */
    umask(077);
    memory_policy_apply(); /* before the first thread, and the first large block */
    log_init();

    int option;
    /* "+": stop at the command, whose own options follow it. */
    while ((option = getopt_long(argc, argv, "+c:hV", options, NULL)) != -1) {
        switch (option) {
        case 'c': config_path = optarg; break;
        case 'h': print_usage(stdout); return CLI_OK;
        case 'V': printf("sqlprodd %s\n", SQLPRODD_VERSION); return CLI_OK;
        default: print_usage(stderr); return CLI_USAGE;
        }
    }
    const char *command = optind < argc ? argv[optind] : "run";
    int command_argc = optind < argc ? argc - optind : 1;
    char *run_argv[] = {"run", NULL};
    char **command_argv = optind < argc ? argv + optind : run_argv;

    if (strcmp(command, "help") == 0) {
        print_usage(stdout);
        return CLI_OK;
    }
    const struct command *entry = command_find(command);
    if (!entry) {
        fprintf(stderr, "sqlprodd: unknown command '%s'\n", command);
        print_usage(stderr);
        return CLI_USAGE;
    }

    struct config *config = main_load_config(config_path, command);
    if (!config) /* reload still signals: the agent then shows the refusal */
        return entry->run == cli_reload ? cli_reload(NULL, command_argc, command_argv) : CLI_USAGE;
    if (entry == &commands[0]) { /* run */
        if (command_argc > 1) {
            fprintf(stderr, "sqlprodd: run takes no arguments\n");
            config_free(config);
            return CLI_USAGE;
        }
        return agent_run(config, config_path) == 0 ? CLI_OK : CLI_FAILED;
    }
    return main_run_command(entry, config, command, command_argc, command_argv);
}
