/*
 * priority.h: how the agent's own CPU-heavy threads step aside for the
 * application's.
 *
 * Only threads that hold no lock the application can wait on may be
 * lowered (compression, and the check of a backup's private copy): a
 * starved thread that holds the application's write lock would turn a low
 * priority into a long stall. Checkpoints, VACUUM INTO and ANALYZE keep the
 * normal priority for that reason.
 */
#ifndef SQLPRODD_PRIORITY_H
#define SQLPRODD_PRIORITY_H

/* The fallback when SCHED_IDLE is refused (a seccomp filter, say). */
#define PRIORITY_BACKGROUND_NICE 10

/* Lowers the calling thread (not the process) to SCHED_IDLE, so that any
 * runnable application thread preempts it at once, even where the kernel
 * would let a niced thread finish its time slice first. Falls back to nice
 * PRIORITY_BACKGROUND_NICE; when both are refused the thread competes as an
 * equal: slower for the application, never wrong. Irreversible without
 * CAP_SYS_NICE: call it only on a thread that ends with its task. */
void priority_lower_this_thread(void);

#endif
