/*
 * notify.h: telling systemd how the agent is (sd_notify(3)). Every function
 * is a no-op when NOTIFY_SOCKET is unset, so the agent runs the same way
 * in a terminal.
 */
#ifndef SQLPRODD_NOTIFY_H
#define SQLPRODD_NOTIFY_H

#include <stdint.h>

void notify_ready(const char *status);
void notify_status(const char *status);
void notify_reloading(void);
void notify_stopping(const char *status);
/* Reports a fatal start-up error: STATUS= and ERRNO=. */
void notify_failure(const char *status, int error_number);
void notify_watchdog(void);
/* How often to send WATCHDOG=1 in microseconds (a quarter of WATCHDOG_USEC,
 * so that pings are never more than half of it apart), 0 if disabled. */
uint64_t notify_watchdog_interval(void);

#endif
