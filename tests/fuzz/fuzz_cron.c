/*
 * fuzz_cron.c: libFuzzer harness for the schedule parser (5-field cron,
 * @aliases) and the next-due arithmetic on whatever it accepts.
 *
 * Not for: `every` durations (fuzz_units.c).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "schedule.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    /* The first 4 bytes pick the "now" the schedule is evaluated at. */
    uint32_t seconds = 0;
    if (size >= 4) {
        memcpy(&seconds, data, 4);
        data += 4;
        size -= 4;
    }
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct schedule schedule = {.kind = SCHEDULE_CRON};
    char why[256];
    if (sched_parse_cron(text, &schedule.cron, why, sizeof why) == 0) {
        time_t now = (time_t)1700000000 + (time_t)(seconds % (20u * 365u * 86400u));
        time_t next = sched_cron_next(&schedule.cron, now);
        if (next != (time_t)-1 && next <= now)
            abort(); /* the next run is always in the future */
        char never[256] = "";
        if (!sched_cron_can_fire(&schedule.cron, never, sizeof never) &&
            (next != (time_t)-1 || never[0] == '\0'))
            abort(); /* "never fires" is never contradicted by the calendar, and says why */
        (void)sched_next_due(&schedule, now - 3600, now);
        char described[128];
        sched_describe(&schedule, described, sizeof described);
    } else if (strlen(why) == 0) {
        abort(); /* a refusal always says why */
    }
    free(text);
    return 0;
}
