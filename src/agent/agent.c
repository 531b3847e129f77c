/*
 * agent.c: the run loop (see agent.h). Not the jobs themselves (src/jobs/),
 * nor how the status line or metrics are worded (src/report/).
 */
#include "agent/agent.h"
#include "agent/agenda.h"
#include "agent/replication.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "config/config_paths.h"
#include "core/fsutil.h"
#include "core/io.h"
#include "jobs/job.h"
#include "jobs/plan.h"
#include "core/lock.h"
#include "core/log.h"
#include "report/http.h"
#include "report/metrics.h"
#include "report/notify.h"
#include "report/summary.h"
#include "agent/discovery.h"
#include "agent/sandbox.h"
#include "db/state.h"

/* When a job could not take the database lock (a one-off holds it). */
#define AGENT_RETRY_LOCKED_SECONDS 30
/* How long after a change in a glob entry's directory it is looked at. */
#define AGENT_REDISCOVER_DELAY_USEC 500000

struct work_item {
    size_t database;
    enum job_kind kind;
    struct job_result result;
    struct work_item *next;
};

struct agent {
    struct config *config;
    const char *config_path;
    struct state *state; /* the loop's own connection */
    struct agenda_database *databases;
    size_t database_count;
    struct config *pending_config; /* a reload waiting for running jobs to finish */
    bool pending_discovered;       /* it only follows a glob entry's directory: failed
                                      jobs are not retried at once, as on SIGHUP */

    /* Worker pool: `queue` holds jobs to run, `finished` their results. */
    pthread_t *workers;
    int worker_count;
    int running;
    pthread_mutex_t mutex;
    pthread_cond_t work_ready;
    struct work_item *queue, *queue_tail, *finished;
    bool shutting_down;
    int wake_pipe[2]; /* workers write a byte when a job finishes */
    struct http_server *http; /* metrics.listen; reads agent->config */
    struct agent_replication *replication; /* reads agent->config too */
    struct discovery *discovery;           /* glob entries' directories; reads agent->config */
    /* STATUS= and the textfile read every database's state: after a job
     * they are written again no sooner than ten times what writing them
     * last took, so that they cost at most a tenth of the loop's time
     * however many databases (ten thousand jobs in a row made ten thousand
     * such reads); with a few databases that is a few milliseconds, at once
     * for an operator (agent_flush_reports). */
    bool reports_stale;
    uint64_t reports_next_usec;
    uint64_t rediscover_at_usec;           /* monotonic; 0: no change seen */
    volatile sig_atomic_t stop;
    /* Shown before the summary in STATUS= until they no longer hold: the
     * last reload refused (cleared by a good one), and the first path the
     * sandbox keeps the agent from writing (checked at start and reload). */
    char reload_refused[1024];
    char access_problem[1200];
};

/* With retry_failed (at start-up and after a reload), a job whose last run
 * did not succeed is due now rather than at its next slot, hours away for
 * vacuum: the restart or reload may be what fixed it, and the status line
 * should not show the old reason until then. */
static time_t agent_compute_due(struct agent *agent, const struct database_config *db,
                                enum job_kind kind, time_t now, bool retry_failed)
{
    const struct schedule *schedule = job_schedule(db, kind);
    if (schedule->kind == SCHEDULE_NONE)
        return (time_t)-1;
    struct job_record record = {0};
    struct error err = {0};
    if (state_get_job(agent->state, db->name, job_name(kind), &record, &err) != 0)
        log_event(LOG_WARNING, db->name, job_name(kind), "%s", err.message);
    if (retry_failed && record.last_started != 0 && record.last_outcome != JOB_OUTCOME_OK)
        return now;
    return sched_next_due(schedule, record.last_started, now);
}

static int agent_build_databases(struct agent *agent, time_t now, bool retry_failed)
{
    struct agenda_database *databases = calloc(agent->config->database_count + 1, sizeof *databases);
    if (!databases)
        return -ENOMEM;
    for (size_t i = 0; i < agent->config->database_count; i++) {
        databases[i].config = &agent->config->databases[i];
        for (int kind = 0; kind < JOB_KIND_COUNT; kind++)
            databases[i].next_due[kind] =
                agent_compute_due(agent, databases[i].config, kind, now, retry_failed);
    }
    free(agent->databases);
    agent->databases = databases;
    agent->database_count = agent->config->database_count;
    return 0;
}

static void *agent_worker(void *argument)
{
    struct agent *agent = argument;
    struct state *state = NULL;
    struct error err = {0};
    if (state_open(agent->config->state_dir, &state, &err) != 0)
        log_event(LOG_ERR, NULL, NULL, "worker cannot open state: %s", err.message);

    pthread_mutex_lock(&agent->mutex);
    for (;;) {
        while (!agent->queue && !agent->shutting_down)
            pthread_cond_wait(&agent->work_ready, &agent->mutex);
        if (!agent->queue)
            break;
        struct work_item *item = agent->queue;
        agent->queue = item->next;
        if (!agent->queue)
            agent->queue_tail = NULL;
        struct job_context context = {
            .config = agent->config,
            .database = agent->databases[item->database].config,
            .state = state,
            .stop = &agent->stop,
            .who = "sqlprodd run",
        };
        pthread_mutex_unlock(&agent->mutex);

        job_execute(item->kind, &context, &item->result);

        pthread_mutex_lock(&agent->mutex);
        item->next = agent->finished;
        agent->finished = item;
        ssize_t ignored = write(agent->wake_pipe[1], "x", 1);
        (void)ignored;
    }
    pthread_mutex_unlock(&agent->mutex);
    state_close(state);
    return NULL;
}

static int agent_start_workers(struct agent *agent)
{
    agent->worker_count = agent->config->workers > 0 ? agent->config->workers : 1;
    agent->workers = calloc((size_t)agent->worker_count, sizeof *agent->workers);
    if (!agent->workers)
        return -ENOMEM;
    for (int i = 0; i < agent->worker_count; i++) {
        int rc = io_thread_start(&agent->workers[i], agent_worker, agent);
        if (rc != 0) {
            agent->worker_count = i;
            return rc;
        }
    }
    return 0;
}

static void agent_stop_workers(struct agent *agent)
{
    pthread_mutex_lock(&agent->mutex);
    agent->shutting_down = true;
    pthread_cond_broadcast(&agent->work_ready);
    pthread_mutex_unlock(&agent->mutex);
    for (int i = 0; i < agent->worker_count; i++)
        pthread_join(agent->workers[i], NULL);
    free(agent->workers);
    agent->workers = NULL;
    while (agent->finished) {
        struct work_item *item = agent->finished;
        agent->finished = item->next;
        free(item);
    }
}

static void agent_dispatch(struct agent *agent, time_t now)
{
    if (agent->pending_config || agent->stop)
        return;
    for (size_t i = 0; i < agent->database_count && agent->running < agent->worker_count; i++) {
        struct agenda_database *db = &agent->databases[i];
        if (db->busy)
            continue;
        int kind = agenda_pick_job(db, now);
        if (kind < 0)
            continue;
        struct work_item *item = calloc(1, sizeof *item);
        if (!item)
            return;
        item->database = i;
        item->kind = (enum job_kind)kind;
        db->busy = true;
        db->next_due[kind] = (time_t)-1; /* recomputed when it finishes */
        agent->running++;
        pthread_mutex_lock(&agent->mutex);
        if (agent->queue_tail)
            agent->queue_tail->next = item;
        else
            agent->queue = item;
        agent->queue_tail = item;
        pthread_cond_signal(&agent->work_ready);
        pthread_mutex_unlock(&agent->mutex);
    }
}

/* The STATUS= line, with "next" taken from the agent's own due times. */
/* STATUS=: what the operator must act on first, then the summary. */
static void agent_status_line(struct agent *agent, char *line, size_t size)
{
    size_t used = 0;
    const char *notes[] = {agent->reload_refused, agent->access_problem};
    for (size_t i = 0; i < sizeof notes / sizeof notes[0]; i++) {
        if (notes[i][0] && used < size)
            used += (size_t)snprintf(line + used, size - used, "%s | ", notes[i]);
    }
    if (used >= size)
        return;
    /* "next" is what this agent will start next, not a recomputation. */
    struct summary_next next = {.due = (time_t)-1};
    size_t database;
    enum job_kind kind;
    if (agenda_next(agent->databases, agent->database_count, &database, &kind, &next.due)) {
        next.database = agent->databases[database].config->name;
        next.job = job_name(kind);
    }
    summary_status_line(agent->config, agent->state, &next, line + used, size - used);
}

/* Logs each path the agent cannot write from where it runs, with its fix,
 * and keeps the first for the status line. */
static void agent_check_sandbox(struct agent *agent)
{
    struct sandbox_report report;
    int problems = sandbox_check(agent->config, &report);
    agent->access_problem[0] = '\0';
    if (problems < 0) {
        log_event(LOG_WARNING, NULL, "sandbox", "cannot check access: %s", strerror(-problems));
        return;
    }
    for (size_t i = 0; i < report.count; i++)
        log_event(LOG_ERR, report.problems[i].database, "sandbox", "%s",
                  report.problems[i].message);
    if (report.count > 0) {
        const struct sandbox_problem *first = &report.problems[0];
        snprintf(agent->access_problem, sizeof agent->access_problem,
                 "NO ACCESS%s%s: %s%s", first->database ? " for " : "",
                 first->database ? first->database : "", first->fix,
                 report.count > 1 ? " (and more: journalctl -u sqlprodd)" : "");
    }
    sandbox_report_free(&report);
}

static uint64_t agent_monotonic_usec(void);

static void agent_update_reports(struct agent *agent)
{
    uint64_t started = agent_monotonic_usec();
    char line[2048];
    agent_status_line(agent, line, sizeof line);
    notify_status(line);
    if (agent->config->metrics_textfile) {
        struct error err = {0};
        if (metrics_write_textfile(agent->config, agent->state, &err) != 0)
            log_event(LOG_WARNING, NULL, "metrics", "%s", err.message);
    }
    uint64_t ended = agent_monotonic_usec();
    agent->reports_stale = false;
    agent->reports_next_usec = ended + (ended - started) * 10;
}

/* After a job: now if the last update is long enough ago, else later. */
static void agent_flush_reports(struct agent *agent)
{
    if (agent->reports_stale && agent_monotonic_usec() >= agent->reports_next_usec)
        agent_update_reports(agent);
}

static void agent_collect(struct agent *agent)
{
    char drain[64];
    while (read(agent->wake_pipe[0], drain, sizeof drain) > 0) {
    }
    pthread_mutex_lock(&agent->mutex);
    struct work_item *finished = agent->finished;
    agent->finished = NULL;
    pthread_mutex_unlock(&agent->mutex);

    time_t now = time(NULL);
    while (finished) {
        struct work_item *item = finished;
        finished = item->next;
        struct agenda_database *db = &agent->databases[item->database];
        db->busy = false;
        agent->running--;
        if (item->result.skipped)
            db->next_due[item->kind] = now + AGENT_RETRY_LOCKED_SECONDS;
        else
            db->next_due[item->kind] =
                agent_compute_due(agent, db->config, item->kind, now, false);
        /* What follows a job as a job of its own (jobs/plan.c). */
        for (int kind = 0; kind < JOB_KIND_COUNT; kind++)
            if (plan_makes_due(item->kind, &item->result, db->config, (enum job_kind)kind))
                db->next_due[kind] = now;
        free(item);
    }
    agent->reports_stale = true;
    agent_flush_reports(agent);
}

static void agent_clean_up_after_crash(struct agent *agent)
{
    /* Everything directly in state_dir is ours (one agent per state_dir),
     * so every temp file there is a leftover of a killed run. */
    struct error state_err = {0};
    int removed = fs_remove_temp_files(agent->config->state_dir, &state_err);
    if (removed < 0)
        log_event(LOG_WARNING, NULL, NULL, "%s", state_err.message);
    else if (removed > 0)
        log_event(LOG_NOTICE, NULL, NULL, "removed %d temp file%s left by an interrupted run in %s",
                  removed, removed == 1 ? "" : "s", agent->config->state_dir);
    for (size_t i = 0; i < agent->database_count; i++) {
        const struct database_config *db = agent->databases[i].config;
        struct error err = {0};
        struct database_lock lock;
        /* A one-off backup holding the lock may be between its rename and its
         * manifest: its files are not leftovers. */
        if (lock_acquire(&lock, agent->config->state_dir, db->name, "sqlprodd run (clean-up)",
                         false, NULL, NULL, 0, &err) != 0)
            continue;
        removed = job_clean_backup_directory(db, &err);
        if (removed < 0)
            log_event(LOG_WARNING, db->name, NULL, "%s", err.message);
        if (job_clean_target(db, &err) < 0)
            log_event(LOG_WARNING, db->name, NULL, "%s", err.message);
        removed = job_clean_drill_directory(agent->config, db, &err);
        if (removed < 0)
            log_event(LOG_WARNING, db->name, NULL, "%s", err.message);
        else if (removed > 0)
            log_event(LOG_NOTICE, db->name, NULL,
                      "removed %d file%s left by an interrupted restore drill", removed,
                      removed == 1 ? "" : "s");
        lock_release(&lock);
    }
}

/* Off unless metrics.listen is set. A port that cannot be bound is logged,
 * not fatal: monitoring must not take the backups down with it. */
static void agent_start_http(struct agent *agent)
{
    struct error err = {0};
    if (!agent->config->metrics_listen)
        return;
    if (http_start(agent->config, &agent->http, &err) != 0)
        log_event(LOG_ERR, NULL, "http", "%s", err.message);
    else
        log_event(LOG_INFO, NULL, "http", "serving /metrics and /health on %s",
                  agent->config->metrics_listen);
}

/* What each glob entry found and passed over, once per load. */
static void agent_log_globs(const struct config *config)
{
    for (size_t i = 0; i < config->glob_count; i++) {
        const struct config_glob *glob = &config->globs[i];
        log_event(LOG_INFO, NULL, "discovery", "%s: %zu database%s", glob->pattern,
                  glob->databases, glob->databases == 1 ? "" : "s");
        for (size_t k = 0; k < glob->skipped_count; k++)
            log_event(LOG_WARNING, NULL, "discovery", "skipped %s", glob->skipped[k]);
    }
}

static void agent_apply_reload(struct agent *agent)
{
    if (!agent->pending_config || agent->running > 0)
        return;
    /* Workers hold pointers into the config: swap only while none runs. */
    agent_stop_workers(agent);
    http_stop(agent->http); /* it reads the config too */
    agent->http = NULL;
    agent_replication_stop(agent->replication);
    agent->replication = NULL;
    discovery_close(agent->discovery);
    agent->discovery = NULL;
    config_free(agent->config);
    agent->config = agent->pending_config;
    agent->pending_config = NULL;
    agent->shutting_down = false;
    log_set_level(agent->config->log_level);
    agent_build_databases(agent, time(NULL), !agent->pending_discovered);
    agent_start_workers(agent);
    agent_start_http(agent);
    if (agent_replication_start(agent->config, &agent->replication) != 0)
        log_event(LOG_ERR, NULL, "replicate", "cannot start the replication thread");
    agent->discovery = discovery_open(agent->config);
    agent_log_globs(agent->config);
    log_event(LOG_NOTICE, NULL, NULL, "configuration reloaded: %zu database%s",
              agent->database_count, agent->database_count == 1 ? "" : "s");
    agent->reload_refused[0] = '\0';
    agent_check_sandbox(agent);
    char line[2048];
    agent_status_line(agent, line, sizeof line);
    notify_ready(line);
}

static void agent_note_refused_reload(struct agent *agent, const char *first_error)
{
    char stamp[16];
    struct tm tm;
    time_t now = time(NULL);
    strftime(stamp, sizeof stamp, "%H:%M:%S", gmtime_r(&now, &tm));
    snprintf(agent->reload_refused, sizeof agent->reload_refused,
             "RELOAD REFUSED at %s UTC, previous configuration still running: %s", stamp,
             first_error);
}

/* A loaded configuration replaces the running one once no job runs, if
 * it can keep the running state_dir. */
static void agent_take_config(struct agent *agent, struct config *fresh, bool discovered)
{
    struct config_diagnostics diagnostics = {0};
    if (strcmp(fresh->state_dir, agent->config->state_dir) != 0)
        log_event(LOG_WARNING, NULL, "reload", "state_dir changed: takes effect after a restart");
    free(fresh->state_dir);
    fresh->state_dir = strdup(agent->config->state_dir);
    /* The new paths were checked against the new state_dir; the one kept
     * running must not overlap them either. */
    if (!fresh->state_dir || config_paths_check(fresh, &diagnostics) != 0) {
        for (size_t i = 0; i < diagnostics.count; i++)
            log_event(LOG_ERR, NULL, "reload", "%s (state_dir of the running agent)",
                      diagnostics.lines[i]);
        log_event(LOG_ERR, NULL, "reload",
                  "new configuration refused; still running the previous one");
        agent_note_refused_reload(agent, diagnostics.count ? diagnostics.lines[0]
                                                           : "state_dir cannot be kept");
        config_diagnostics_free(&diagnostics);
        config_free(fresh);
        char line[2048];
        agent_status_line(agent, line, sizeof line);
        notify_ready(line);
        return;
    }
    /* A SIGHUP still waiting keeps its retry of failed jobs. */
    bool waiting_sighup = agent->pending_config && !agent->pending_discovered;
    config_free(agent->pending_config);
    agent->pending_config = fresh;
    agent->pending_discovered = discovered && !waiting_sighup;
    agent_apply_reload(agent);
}

/* Loads the configuration file; NULL after logging why not. */
static struct config *agent_load_config(struct agent *agent, const char *refused_because)
{
    struct config *fresh = NULL;
    struct config_diagnostics diagnostics = {0};
    if (config_load(agent->config_path, &fresh, &diagnostics) == 0) {
        config_diagnostics_free(&diagnostics);
        return fresh;
    }
    for (size_t i = 0; i < diagnostics.count; i++)
        log_event(LOG_ERR, NULL, "reload", "%s", diagnostics.lines[i]);
    log_event(LOG_ERR, NULL, "reload", "%s (%zu error%s); still running the previous one",
              refused_because, diagnostics.count, diagnostics.count == 1 ? "" : "s");
    agent_note_refused_reload(agent, diagnostics.count ? diagnostics.lines[0] : "unreadable");
    config_diagnostics_free(&diagnostics);
    return NULL;
}

static void agent_reload(struct agent *agent)
{
    notify_reloading();
    log_event(LOG_NOTICE, NULL, NULL, "SIGHUP: reloading %s", agent->config_path);
    struct config *fresh = agent_load_config(agent, "new configuration refused");
    if (fresh) {
        agent_take_config(agent, fresh, false);
        return;
    }
    char line[2048];
    agent_status_line(agent, line, sizeof line);
    notify_ready(line);
}

/* Whether two configurations give the same databases, in the same order. */
static bool agent_same_databases(const struct config *a, const struct config *b,
                                 size_t *added, size_t *removed)
{
    *added = *removed = 0;
    for (size_t i = 0; i < b->database_count; i++)
        if (!config_find_database(a, b->databases[i].name))
            (*added)++;
    for (size_t i = 0; i < a->database_count; i++)
        if (!config_find_database(b, a->databases[i].name))
            (*removed)++;
    if (a->database_count != b->database_count || *added || *removed)
        return false;
    for (size_t i = 0; i < a->database_count; i++)
        if (strcmp(a->databases[i].name, b->databases[i].name) != 0 ||
            strcmp(a->databases[i].path, b->databases[i].path) != 0)
            return false;
    return true;
}

/* A glob entry's directory changed: the configuration file is read again
 * and applied when the databases it gives are not the ones running. */
static void agent_rediscover(struct agent *agent)
{
    struct config *fresh =
        agent_load_config(agent, "a glob entry's directory changed, but the configuration "
                                 "cannot be read again");
    if (!fresh)
        return;
    size_t added, removed;
    const struct config *running = agent->pending_config ? agent->pending_config : agent->config;
    if (agent_same_databases(running, fresh, &added, &removed)) {
        log_event(LOG_DEBUG, NULL, "discovery", "no database added or removed");
        config_free(fresh);
        return;
    }
    notify_reloading();
    log_event(LOG_NOTICE, NULL, "discovery",
              "databases found by glob entries changed (%zu added, %zu gone): reloading %s",
              added, removed, agent->config_path);
    agent_take_config(agent, fresh, true);
}

static int agent_open_signals(sigset_t *mask)
{
    sigemptyset(mask);
    sigaddset(mask, SIGHUP);
    sigaddset(mask, SIGTERM);
    sigaddset(mask, SIGINT);
    /* Blocked before any thread starts, so only the loop's signalfd sees them. */
    if (pthread_sigmask(SIG_BLOCK, mask, NULL) != 0)
        return -errno;
    signal(SIGPIPE, SIG_IGN);
    int fd = signalfd(-1, mask, SFD_CLOEXEC | SFD_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

/* On stop, jobs not yet started are forgotten: their schedules run them
 * again after the restart. */
static void agent_drop_queued(struct agent *agent)
{
    pthread_mutex_lock(&agent->mutex);
    while (agent->queue) {
        struct work_item *item = agent->queue;
        agent->queue = item->next;
        agent->databases[item->database].busy = false;
        agent->running--;
        free(item);
    }
    agent->queue_tail = NULL;
    pthread_mutex_unlock(&agent->mutex);
}

static void agent_handle_signals(struct agent *agent, int signal_fd)
{
    struct signalfd_siginfo info;
    while (read(signal_fd, &info, sizeof info) == (ssize_t)sizeof info) {
        if (info.ssi_signo == SIGHUP) {
            agent_reload(agent);
        } else if (!agent->stop) {
            agent->stop = 1;
            agent_drop_queued(agent);
            log_event(LOG_NOTICE, NULL, NULL, "%s: stopping, aborting %d running job%s",
                      info.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT", agent->running,
                      agent->running == 1 ? "" : "s");
            notify_stopping("stopping");
        }
    }
}

/* Start-up: the agent lock, state, signals, workers, the clean-up of what a
 * crash left, READY=1. Returns the signalfd, or -1 (logged and told to
 * systemd) when the agent cannot run. */
static int agent_start(struct agent *agent, struct database_lock *agent_lock)
{
    struct error err = {0};
    sigset_t mask;
    char who[4200];
    /* One agent per state_dir, and the lock `status` tests to say it runs. */
    snprintf(who, sizeof who, "sqlprodd run -c %s", agent->config_path);
    if (lock_agent_acquire(agent_lock, agent->config->state_dir, who, &err) != 0 ||
        state_open(agent->config->state_dir, &agent->state, &err) != 0) {
        log_event(LOG_ERR, NULL, NULL, "%s", err.message);
        notify_failure(err.message, -err.code);
        return -1;
    }
    int signal_fd = agent_open_signals(&mask);
    if (signal_fd < 0 || pipe2(agent->wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        log_event(LOG_ERR, NULL, NULL, "cannot set up signals: %s", strerror(errno));
        notify_failure("cannot set up signals", errno);
        if (signal_fd >= 0)
            close(signal_fd);
        return -1;
    }
    if (agent_build_databases(agent, time(NULL), true) != 0 || agent_start_workers(agent) != 0) {
        log_event(LOG_ERR, NULL, NULL, "out of memory or threads");
        notify_failure("cannot start worker threads", ENOMEM);
        close(signal_fd);
        return -1;
    }
    agent_clean_up_after_crash(agent);
    agent_check_sandbox(agent);

    char line[2048];
    agent_status_line(agent, line, sizeof line);
    log_event(LOG_NOTICE, NULL, NULL, "sqlprodd %s started: %zu database%s, %d worker%s, config %s",
              SQLPRODD_VERSION, agent->database_count, agent->database_count == 1 ? "" : "s",
              agent->worker_count, agent->worker_count == 1 ? "" : "s", agent->config_path);
    notify_ready(line);
    agent_update_reports(agent);
    agent_start_http(agent);
    if (agent_replication_start(agent->config, &agent->replication) != 0)
        log_event(LOG_ERR, NULL, "replicate", "cannot start the replication thread");
    agent->discovery = discovery_open(agent->config);
    agent_log_globs(agent->config);
    return signal_fd;
}



/*
 * The watchdog: WATCHDOG=1 from the loop itself, so that only a hung loop
 * (not a long job on a worker) misses it. systemd allows WATCHDOG_USEC
 * between two pings; the agent promises at most half of it, whatever the
 * loop was doing. So the ping is due every quarter (period_usec), and the
 * poll() timeout counts down to that deadline rather than restarting a full
 * period at every wake-up: a wake-up just before the deadline used to push
 * the next ping almost a whole period further.
 */
struct agent_watchdog {
    uint64_t period_usec; /* 0: no watchdog */
    uint64_t next_usec;   /* CLOCK_MONOTONIC time the next ping is due */
};

static uint64_t agent_monotonic_usec(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000ULL + (uint64_t)now.tv_nsec / 1000;
}

static void agent_ping_watchdog_when_due(struct agent_watchdog *watchdog, bool force)
{
    if (!watchdog->period_usec)
        return;
    uint64_t now = agent_monotonic_usec();
    if (!force && now < watchdog->next_usec)
        return;
    notify_watchdog();
    watchdog->next_usec = now + watchdog->period_usec;
}

/* Milliseconds until the next ping is due (rounded up), -1 without a watchdog. */
static int agent_watchdog_timeout_ms(const struct agent_watchdog *watchdog)
{
    if (!watchdog->period_usec)
        return -1;
    uint64_t now = agent_monotonic_usec();
    if (now >= watchdog->next_usec)
        return 0;
    uint64_t wait_ms = (watchdog->next_usec - now + 999) / 1000;
    return wait_ms > INT32_MAX ? INT32_MAX : (int)wait_ms;
}

/* Shortens poll(2)'s timeout (ms, < 0: none) to end by `deadline_usec`. */
static void agent_wake_by(int *timeout, uint64_t deadline_usec, uint64_t now_usec)
{
    int until = deadline_usec > now_usec ? (int)((deadline_usec - now_usec + 999) / 1000) : 0;
    if (*timeout < 0 || *timeout > until)
        *timeout = until;
}

/* The loop: start what is due, sleep in poll(2) until the next due time, a
 * signal or a finished job, until stopped and every job has ended. */
static int agent_loop(struct agent *agent, int signal_fd)
{
    struct agent_watchdog watchdog = {.period_usec = notify_watchdog_interval()};
    agent_ping_watchdog_when_due(&watchdog, true);
    while (!agent->stop || agent->running > 0) {
        time_t now = time(NULL);
        agent_dispatch(agent, now);
        bool can_start = !agent->pending_config && agent->running < agent->worker_count;
        int timeout = agent->stop ? 1000
                                  : agenda_sleep_ms(agent->databases, agent->database_count,
                                                    can_start, now);
        int until_ping = agent_watchdog_timeout_ms(&watchdog);
        if (until_ping >= 0 && (timeout < 0 || timeout > until_ping))
            timeout = until_ping;
        /* A change in a glob entry's directory is acted on a moment later,
         * so that a batch of new files makes one reload, not one each. */
        uint64_t now_usec = agent_monotonic_usec();
        if (agent->rediscover_at_usec && !agent->stop)
            agent_wake_by(&timeout, agent->rediscover_at_usec, now_usec);
        if (agent->reports_stale)
            agent_wake_by(&timeout, agent->reports_next_usec, now_usec);
        struct pollfd fds[3] = {{.fd = signal_fd, .events = POLLIN},
                                {.fd = agent->wake_pipe[0], .events = POLLIN},
                                {.fd = discovery_fd(agent->discovery), .events = POLLIN}};
        int ready = poll(fds, 3, timeout);
        if (ready < 0 && errno != EINTR) {
            log_event(LOG_ERR, NULL, NULL, "poll: %s", strerror(errno));
            return -1;
        }
        /* Before the turn's work (a reload, the reports after a job), which
         * may take a while on a busy host, and again after it. */
        agent_ping_watchdog_when_due(&watchdog, false);
        if (fds[0].revents & POLLIN)
            agent_handle_signals(agent, signal_fd);
        if (fds[1].revents & POLLIN)
            agent_collect(agent);
        if ((fds[2].revents & POLLIN) && discovery_read(agent->discovery) &&
            !agent->rediscover_at_usec)
            agent->rediscover_at_usec = agent_monotonic_usec() + AGENT_REDISCOVER_DELAY_USEC;
        if (agent->rediscover_at_usec && agent_monotonic_usec() >= agent->rediscover_at_usec &&
            !agent->stop) {
            agent->rediscover_at_usec = 0;
            agent_rediscover(agent);
        }
        agent_flush_reports(agent);
        agent_apply_reload(agent);
        agent_ping_watchdog_when_due(&watchdog, false);
    }
    if (agent->reports_stale) /* the last jobs' results in the textfile */
        agent_update_reports(agent);
    return 0;
}

static void agent_finish(struct agent *agent, int signal_fd, struct database_lock *agent_lock)
{
    http_stop(agent->http);
    agent_replication_stop(agent->replication);
    discovery_close(agent->discovery);
    agent_stop_workers(agent);
    while (agent->queue) {
        struct work_item *item = agent->queue;
        agent->queue = item->next;
        free(item);
    }
    if (signal_fd >= 0)
        close(signal_fd);
    if (agent->wake_pipe[0] >= 0) {
        close(agent->wake_pipe[0]);
        close(agent->wake_pipe[1]);
    }
    state_close(agent->state);
    lock_agent_release(agent_lock);
    free(agent->databases);
    config_free(agent->pending_config);
    config_free(agent->config);
    pthread_mutex_destroy(&agent->mutex);
    pthread_cond_destroy(&agent->work_ready);
}

int agent_run(struct config *config, const char *config_path)
{
    struct agent agent = {.config = config, .config_path = config_path, .wake_pipe = {-1, -1}};
    struct database_lock agent_lock = {.fd = -1};
    int status = 1;
    pthread_mutex_init(&agent.mutex, NULL);
    pthread_cond_init(&agent.work_ready, NULL);

    log_set_level(config->log_level);
    int signal_fd = agent_start(&agent, &agent_lock);
    if (signal_fd >= 0) {
        /* A failed poll ends the loop; the stop is still clean. */
        agent_loop(&agent, signal_fd);
        status = 0;
        log_event(LOG_NOTICE, NULL, NULL, "stopped");
    }
    agent_finish(&agent, signal_fd, &agent_lock);
    return status;
}
