/*
 * log.h: one line per event on stderr, naming the database and the job.
 *
 * Priorities are syslog's (LOG_ERR .. LOG_DEBUG). When stderr is connected to
 * journald (JOURNAL_STREAM names it) each event is a journal entry of its own
 * (sd_journal_send) with PRIORITY= and the fields SQLPRODD_DATABASE= and
 * SQLPRODD_JOB= when the event names them; should journald's socket be
 * unreachable, a line starting with "<N>" on the stream instead. Otherwise
 * lines carry a timestamp and a level word. Thread-safe: one write(2) or one
 * sd_journal_sendv() per event.
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
