/*
 * log.h: one line per event on stderr, naming the database and the job.
 *
 * Priorities are syslog's (LOG_ERR .. LOG_DEBUG). When stderr is connected to
 * journald (JOURNAL_STREAM is set) each line starts with "<N>" so the journal
 * keeps the priority; otherwise lines carry a timestamp and a level word.
 * Thread-safe: one write(2) per line.
 */
#ifndef SQLPRODD_LOG_H
#define SQLPRODD_LOG_H

#include <syslog.h>

void log_init(void);
void log_set_level(int priority);
int log_get_level(void);

/* "debug" | "info" | "notice" | "warning" | "error" -> LOG_*; -1 if unknown. */
int log_level_from_name(const char *name);

/* database and job may be NULL for agent-wide events. */
void log_event(int priority, const char *database, const char *job, const char *format, ...)
    __attribute__((format(printf, 4, 5)));

#endif
