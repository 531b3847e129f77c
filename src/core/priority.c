/*
 * priority.c: lowering the calling thread's CPU priority (priority.h).
 * Linux applies sched_setscheduler(0, ...) and setpriority(PRIO_PROCESS,
 * tid, ...) to the one calling thread, not to the process.
 */
#include "core/priority.h"

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

void priority_lower_this_thread(void)
{
    struct sched_param parameters = {.sched_priority = 0};
    if (sched_setscheduler(0, SCHED_IDLE, &parameters) != 0)
        setpriority(PRIO_PROCESS, (id_t)gettid(), PRIORITY_BACKGROUND_NICE);
}
