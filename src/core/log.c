/*
 * log.c: the agent's log lines, on stderr or, under journald, as journal
 * entries with structured fields. Not for command output (status, backups):
 * that goes to stdout from the commands themselves.
 */
#include "core/log.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <time.h>
#include <unistd.h>

static int log_level = LOG_INFO;
static int log_to_journal;

/* JOURNAL_STREAM is "DEV:INODE" of the stream journald gave us; only trust it
 * when stderr really is that stream, as sd-daemon(3) recommends. */
static int stderr_is_journal(void)
{
    const char *stream = getenv("JOURNAL_STREAM");
    unsigned long long device, inode;
    struct stat st;
    if (!stream || sscanf(stream, "%llu:%llu", &device, &inode) != 2)
        return 0;
    if (fstat(STDERR_FILENO, &st) != 0)
        return 0;
    return st.st_dev == (dev_t)device && st.st_ino == (ino_t)inode;
}

void log_init(void)
{
    log_to_journal = stderr_is_journal();
}

void log_set_level(int priority)
{
    log_level = priority;
}

int log_get_level(void)
{
    return log_level;
}

int log_level_from_name(const char *name)
{
    static const struct {
        const char *name;
        int priority;
    } levels[] = {
        {"debug", LOG_DEBUG},     {"info", LOG_INFO},   {"notice", LOG_NOTICE},
        {"warning", LOG_WARNING}, {"error", LOG_ERR},
    };
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (strcasecmp(name, levels[i].name) == 0)
            return levels[i].priority;
    return -1;
}

static const char *priority_word(int priority)
{
    switch (priority) {
    case LOG_EMERG:
    case LOG_ALERT:
    case LOG_CRIT:
    case LOG_ERR: return "error";
    case LOG_WARNING: return "warning";
    case LOG_NOTICE: return "notice";
    case LOG_INFO: return "info";
    default: return "debug";
    }
}

/*
 * One journal entry: the line as MESSAGE= plus the database and the job as
 * fields of their own, so that `journalctl -u sqlprodd SQLPRODD_DATABASE=app
 * SQLPRODD_JOB=backup` selects them. Sent over journald's native socket,
 * which keeps the priority and attributes the entry to the service's unit
 * as the stderr stream does. Negative when journald cannot be reached.
 */
static int log_send_to_journal(int priority, const char *database, const char *job,
                               const char *message)
{
    char priority_field[32], database_field[320], job_field[64];
    struct iovec fields[6];
    int count = 0;
    snprintf(priority_field, sizeof priority_field, "PRIORITY=%d", priority);
    fields[count++] = (struct iovec){(void *)"SYSLOG_IDENTIFIER=sqlprodd", 26};
    fields[count++] = (struct iovec){priority_field, strlen(priority_field)};
    if (database) {
        snprintf(database_field, sizeof database_field, "SQLPRODD_DATABASE=%s", database);
        fields[count++] = (struct iovec){database_field, strlen(database_field)};
    }
    if (job) {
        snprintf(job_field, sizeof job_field, "SQLPRODD_JOB=%s", job);
        fields[count++] = (struct iovec){job_field, strlen(job_field)};
    }
    char message_field[2100];
    int length = snprintf(message_field, sizeof message_field, "MESSAGE=%s", message);
    if (length < 0)
        return -1;
    if ((size_t)length >= sizeof message_field)
        length = (int)sizeof message_field - 1;
    fields[count++] = (struct iovec){message_field, (size_t)length};
    assert(count <= (int)(sizeof fields / sizeof fields[0]));
    return sd_journal_sendv(fields, count);
}

void log_event(int priority, const char *database, const char *job, const char *format, ...)
{
    if (priority > log_level)
        return;
    char line[2048];
    size_t used = 0;
    size_t prefix = 0; /* "<N>" or the timestamp and level, before the message */
    if (log_to_journal) {
        used = prefix = (size_t)snprintf(line, sizeof line, "<%d>", priority);
    } else {
        char stamp[32];
        struct tm tm;
        time_t now = time(NULL);
        strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S%z", localtime_r(&now, &tm));
        used = (size_t)snprintf(line, sizeof line, "%s %s: ", stamp, priority_word(priority));
    }
    if (database && used < sizeof line)
        used += (size_t)snprintf(line + used, sizeof line - used, "%s: ", database);
    if (job && used < sizeof line)
        used += (size_t)snprintf(line + used, sizeof line - used, "%s: ", job);
    if (used < sizeof line) {
        va_list args;
        va_start(args, format);
        used += (size_t)vsnprintf(line + used, sizeof line - used, format, args);
        va_end(args);
    }
    if (used >= sizeof line - 1)
        used = sizeof line - 2;
    /* One line per event: a message must not smuggle in a second line. */
    for (size_t i = 0; i < used; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    if (log_to_journal) {
        line[used] = '\0';
        if (log_send_to_journal(priority, database, job, line + prefix) >= 0)
            return;
        /* journald's socket is not reachable: the stream still is. */
    }
    line[used++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, used);
    (void)ignored;
}
