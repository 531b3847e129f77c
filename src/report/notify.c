/*
 * notify.c: sd_notify(3) messages, through libsystemd so the socket
 * protocol (abstract sockets, credentials) is systemd's own.
 */
#include "report/notify.h"

#include <stdio.h>
#include <systemd/sd-daemon.h>
#include <time.h>

void notify_ready(const char *status)
{
    sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void notify_status(const char *status)
{
    sd_notifyf(0, "STATUS=%s", status);
}

void notify_reloading(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    /* MONOTONIC_USEC lets systemd 253+ (Type=notify-reload) match the reload. */
    sd_notifyf(0, "RELOADING=1\nSTATUS=reloading configuration\nMONOTONIC_USEC=%llu",
               (unsigned long long)now.tv_sec * 1000000ULL + (unsigned long long)now.tv_nsec / 1000);
}

void notify_stopping(const char *status)
{
    sd_notifyf(0, "STOPPING=1\nSTATUS=%s", status);
}

void notify_failure(const char *status, int error_number)
{
    sd_notifyf(0, "STATUS=%s\nERRNO=%d", status, error_number);
}

void notify_watchdog(void)
{
    sd_notify(0, "WATCHDOG=1");
}

uint64_t notify_watchdog_interval(void)
{
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0)
        return 0;
    /* A quarter: the agent promises a ping at most half of WATCHDOG_USEC
     * apart, and a loop turn on a busy host may take part of the margin. */
    return usec / 4;
}
