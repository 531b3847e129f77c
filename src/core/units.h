/*
 * units.h: sizes ("16MB") and durations ("15m") as operators write them in
 * sqlprodd.conf, and the reverse for status output. Pure: no I/O, no clock.
 */
#ifndef SQLPRODD_UNITS_H
#define SQLPRODD_UNITS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* "512B", "64KB", "16MB", "2GB" (powers of 1024; "B" may be omitted for a
 * plain byte count like "4096"). Returns 0, or -EINVAL with `why` filled
 * ("unknown unit 'MiB' (write MB: sizes here are powers of 1024)").
 * Overflow is -ERANGE.
 * Also: "TB"; units in any case; blanks around and between number and unit;
 * a decimal fraction only when it is an exact number of bytes ("1.5MB" yes,
 * "0.1KB" no). Rejected: negative, empty, trailing text, "MiB" (the message
 * says to write "MB"). `why` is a short phrase meant to follow
 * "FILE:LINE: key: "; `why` may be NULL. *bytes is set only on success. */
int units_parse_size(const char *text, int64_t *bytes, char *why, size_t why_size);

/* "90s", "15m", "6h", "1d", "2w" -> seconds (> 0). Same error convention.
 * Units may be combined, largest first and each once ("1h30m", "1d 12h");
 * units are lowercase only, so "1M" can never be mistaken for a month.
 * Rejected: "0s", "", a bare number ("missing unit ..."), unknown units,
 * negative values, fractions ("1.5h": write "1h30m"). */
int units_parse_duration(const char *text, int64_t *seconds, char *why, size_t why_size);

/* 4404019 -> "4.2 MiB"; 512 -> "512 B". Writes at most out_size bytes.
 * From 1 KiB up: one decimal, rounded half up, IEC names up to EiB
 * (1048575 -> "1.0 MiB"); negative values keep their sign. */
void units_format_size(int64_t bytes, char *out, size_t out_size);

/* 750 -> "12m30s", 93784 -> "1d2h", 42 -> "42s".
 * The two largest units, truncated, zero parts dropped (3600 -> "1h",
 * 86460 -> "1d"); days are the largest unit (1209600 -> "14d"); 0 -> "0s";
 * negative values keep their sign. The result parses back with
 * units_parse_duration() when it has a single unit or no truncation. */
void units_format_duration(int64_t seconds, char *out, size_t out_size);

/* A moment as an absolute UTC time that stays true when read later (unlike
 * "12s ago"): "06:12:03 UTC" on the same UTC day as `now`, else
 * "2026-12-01 06:12:03 UTC". `now` is a parameter: this stays pure. */
void units_format_clock(time_t t, time_t now, char *out, size_t out_size);

#endif
