/*
 * calendar.h: the proleptic Gregorian calendar in closed form (Howard
 * Hinnant's days_from_civil / civil_from_days), day 0 = 1970-01-01, and
 * division that rounds toward minus infinity for times before 1970. Pure:
 * no clock, no time zone. Shared by schedule.c (cron dates) and retention.c
 * (which day, month, ISO week an archive belongs to). Not for time zones or
 * local time: schedule.c handles those.
 */
#ifndef SQLPRODD_CALENDAR_H
#define SQLPRODD_CALENDAR_H

#include <stdint.h>

/* a / b rounded down (toward minus infinity); b != 0. */
int64_t calendar_floor_divide(int64_t a, int64_t b);

/* Days since 1970-01-01 of year-month-day; month 1-12, day 1-31. */
int64_t calendar_days_from_civil(int64_t year, int month, int day);

/* The date of day `days` since 1970-01-01; month 1-12, day 1-31. */
void calendar_civil_from_days(int64_t days, int64_t *year, int *month, int *day);

/* 28 to 31. */
int calendar_days_in_month(int64_t year, int month);

#endif
