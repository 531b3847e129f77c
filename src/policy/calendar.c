/*
 * calendar.c: dates from day numbers and back (see calendar.h). The
 * formulas are H. Hinnant's, "chrono-Compatible Low-Level Date Algorithms":
 * a year is counted from March, so the leap day falls at its end.
 */
#include "policy/calendar.h"

#include <assert.h>
#include <stdbool.h>

int64_t calendar_floor_divide(int64_t a, int64_t b)
{
    assert(b != 0);
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

int64_t calendar_days_from_civil(int64_t year, int month, int day)
{
    assert(month >= 1 && month <= 12);
    year -= month <= 2;
    int64_t era = calendar_floor_divide(year, 400);
    int64_t year_of_era = year - era * 400;
    int64_t day_of_year = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
    int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

void calendar_civil_from_days(int64_t days, int64_t *year, int *month, int *day)
{
    days += 719468;
    int64_t era = calendar_floor_divide(days, 146097);
    int64_t day_of_era = days - era * 146097;
    int64_t year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
    int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    int64_t shifted_month = (5 * day_of_year + 2) / 153; /* March = 0 */
    *day = (int)(day_of_year - (153 * shifted_month + 2) / 5 + 1);
    *month = (int)(shifted_month < 10 ? shifted_month + 3 : shifted_month - 9);
    *year = year_of_era + era * 400 + (*month <= 2);
}

int calendar_days_in_month(int64_t year, int month)
{
    static const int lengths[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    assert(month >= 1 && month <= 12);
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : lengths[month - 1];
}
