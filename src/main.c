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
#include "jobs/job.h"
#include "core/log.h"
#include "report/notify.h"

static void print_usage(FILE *out)
{
    fputs("usage: sqlprodd [-c FILE] [run]\n"
          "       sqlprodd [-c FILE] check\n"
          "       sqlprodd [-c FILE] status [--json] [DB]\n"
          "       sqlprodd [-c FILE] checkpoint|analyze|vacuum|backup|upload|prune|health [DB]\n"
          "       sqlprodd [-c FILE] backups [DB] [--remote] [--json]\n"
          "       sqlprodd [-c FILE] restore DB --to PATH [--backup ID] [--from local|remote] [--force]\n"
          "       sqlprodd --version | --help\n"
          "\n"
          "  -c FILE   configuration file (default $SQLPRODD_CONFIG, else " CONFIG_DEFAULT_PATH ")\n"
          "\n"
          "Exit status: 0 success, 1 a job or check failed, 2 usage or configuration error.\n"
          "See sqlprodd(8) and sqlprodd.conf(5).\n",
          out);
}

static void handle_stop_signal(int signal_number)
{
    (void)signal_number;
    cli_stop = 1;
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

    bool known = strcmp(command, "run") == 0 || strcmp(command, "check") == 0 ||
                 strcmp(command, "status") == 0 || strcmp(command, "backups") == 0 ||
                 strcmp(command, "restore") == 0 || job_kind_from_name(command) >= 0;
    if (strcmp(command, "help") == 0) {
        print_usage(stdout);
        return CLI_OK;
    }
    if (!known) {
        fprintf(stderr, "sqlprodd: unknown command '%s'\n", command);
        print_usage(stderr);
        return CLI_USAGE;
    }

    struct config *config = NULL;
    struct config_diagnostics diagnostics = {0};
    if (config_load(config_path, &config, &diagnostics) != 0) {
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
        return CLI_USAGE;
    }
    config_diagnostics_free(&diagnostics);
    log_set_level(config->log_level);

    if (strcmp(command, "run") == 0) {
        if (command_argc > 1) {
            fprintf(stderr, "sqlprodd: run takes no arguments\n");
            config_free(config);
            return CLI_USAGE;
        }
        return agent_run(config, config_path) == 0 ? CLI_OK : CLI_FAILED;
    }

    struct sigaction action = {.sa_handler = handle_stop_signal};
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    signal(SIGPIPE, SIG_IGN);

    int status;
    if (strcmp(command, "check") == 0)
        status = cli_check(config, command_argc, command_argv);
    else if (strcmp(command, "status") == 0)
        status = cli_status(config, command_argc, command_argv);
    else if (strcmp(command, "backups") == 0)
        status = cli_backups(config, command_argc, command_argv);
    else if (strcmp(command, "restore") == 0)
        status = cli_restore(config, command_argc, command_argv);
    else
        status = cli_run_job(config, command, command_argc, command_argv);
    config_free(config);
    return status;
}
