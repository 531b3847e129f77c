/*
 * error.c: filling struct error. Not a logging facility: see log.c.
 */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int error_set(struct error *err, int code, const char *format, ...)
{
    if (err) {
        va_list args;
        va_start(args, format);
        vsnprintf(err->message, sizeof err->message, format, args);
        va_end(args);
        err->code = code;
    }
    return code;
}

int error_prefix(struct error *err, const char *format, ...)
{
    if (!err)
        return 0;
    char prefix[512], old[sizeof err->message];
    va_list args;
    va_start(args, format);
    vsnprintf(prefix, sizeof prefix, format, args);
    va_end(args);
    memcpy(old, err->message, sizeof old);
    snprintf(err->message, sizeof err->message, "%s%s", prefix, old);
    return err->code;
}

void error_clear(struct error *err)
{
    if (err) {
        err->code = 0;
        err->message[0] = '\0';
    }
}
