/*
 * cli_reload.c: `sqlprodd reload`, what `systemctl reload sqlprodd` runs
 * (ExecReload=). Validates the configuration file first, as `nginx -t` does
 * before nginx is signalled, so that a bad file makes the reload fail
 * visibly (exit 2, FILE:LINE on stderr, hence in the journal), then sends
 * SIGHUP to the agent with kill(2): nothing outside the package is needed
 * (the unit used /bin/kill, which a minimal system lacks).
 *
 * The agent is told even when the file is refused: it checks the file
 * again, keeps its running configuration and says "RELOAD REFUSED" in its
 * status line, so `systemctl status` tells the same story as the exit code.
 *
 * Not for: applying the configuration (the agent does, agent.c).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/lock.h"

static int cli_reload_parse_pid(int argc, char **argv, long *pid)
{
    *pid = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--pid") == 0 && i + 1 < argc) {
            char *end = NULL;
            errno = 0;
            long value = strtol(argv[++i], &end, 10);
            if (errno != 0 || !end || *end != '\0' || value <= 1) {
                fprintf(stderr, "sqlprodd: reload: --pid %s is not a process id\n", argv[i]);
                return -EINVAL;
            }
            *pid = value;
        } else {
            fprintf(stderr,
                    "sqlprodd: reload: unexpected argument '%s' (usage: sqlprodd "
                    "reload [--pid PID])\n",
                    argv[i]);
            return -EINVAL;
        }
    }
    return 0;
}

/* The agent's pid: --pid (systemd passes $MAINPID), else the agent lock of
 * the configuration's state_dir. 0 with a message when there is none. */
static long cli_reload_find_agent(const struct config *config, long given)
{
    if (given > 0)
        return given;
    if (!config) {
        fprintf(stderr, "sqlprodd: reload: the agent was not told (without a valid "
                        "configuration its state_dir is unknown: pass --pid)\n");
        return 0;
    }
    struct agent_probe probe;
    lock_agent_probe(config->state_dir, &probe);
    if (probe.presence == AGENT_UNKNOWN) {
        fprintf(stderr, "sqlprodd: reload: %s\n", probe.problem);
        return 0;
    }
    if (probe.presence != AGENT_RUNNING || probe.pid <= 0) {
        fprintf(stderr, "sqlprodd: reload: no agent runs on state_dir %s: nothing to reload\n",
                config->state_dir);
        return 0;
    }
    return probe.pid;
}

int cli_reload(const struct config *config, int argc, char **argv)
{
    long given;
    if (cli_reload_parse_pid(argc, argv, &given) != 0)
        return CLI_USAGE;
    long pid = cli_reload_find_agent(config, given);
    if (pid > 0 && kill((pid_t)pid, SIGHUP) != 0) {
        fprintf(stderr, "sqlprodd: reload: cannot signal the agent (pid %ld): %s\n", pid,
                strerror(errno));
        pid = 0;
    }
    if (!config) {
        /* main() printed the FILE:LINE errors. */
        fprintf(stderr,
                "sqlprodd: reload refused: the agent keeps its previous "
                "configuration%s\n",
                pid > 0 ? " and says so in its status" : "");
        return CLI_USAGE;
    }
    if (pid <= 0)
        return CLI_FAILED;
    printf("sqlprodd: %s is valid; the agent (pid %ld) reloads it\n", config->file, pid);
    return CLI_OK;
}
