/*
 * agenda.c: the agent's decisions about time (see agenda.h). Pure: the
 * clock is a parameter.
 */
#include "agent/agenda.h"

#include <stdint.h>

int agenda_pick_job(const struct agenda_database *database, time_t now)
{
    int best = -1;
    for (int kind = 0; kind < JOB_KIND_COUNT; kind++) {
        time_t due = database->next_due[kind];
        if (due == (time_t)-1 || due > now)
            continue;
        if (best < 0 || due < database->next_due[best])
            best = kind;
    }
    return best;
}

int agenda_sleep_ms(const struct agenda_database *databases, size_t count, bool can_start,
                    time_t now)
{
    time_t earliest = (time_t)-1;
    if (!can_start)
        return -1; /* a finishing job wakes the loop */
    for (size_t i = 0; i < count; i++) {
        if (databases[i].busy)
            continue;
        for (int kind = 0; kind < JOB_KIND_COUNT; kind++) {
            time_t due = databases[i].next_due[kind];
            if (due != (time_t)-1 && (earliest == (time_t)-1 || due < earliest))
                earliest = due;
        }
    }
    if (earliest == (time_t)-1)
        return -1;
    if (earliest <= now)
        return 0;
    int64_t seconds = (int64_t)(earliest - now);
    return seconds > 86400 ? 86400 * 1000 : (int)(seconds * 1000);
}

bool agenda_next(const struct agenda_database *databases, size_t count, size_t *database,
                 enum job_kind *kind, time_t *due)
{
    bool found = false;
    for (size_t i = 0; i < count; i++) {
        for (int k = 0; k < JOB_KIND_COUNT; k++) {
            time_t at = databases[i].next_due[k];
            if (at == (time_t)-1 || (found && at >= *due))
                continue;
            found = true;
            *database = i;
            *kind = (enum job_kind)k;
            *due = at;
        }
    }
    return found;
}
