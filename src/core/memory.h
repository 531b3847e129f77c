/*
 * memory.h: how the process asks glibc's allocator to give memory back.
 *
 * The agent's heap is small and bursty: about 1 MiB between jobs, a few
 * MiB while it ships a segment, 8 MiB of 1-2 MiB blocks while it compresses.
 * Left to its defaults, glibc keeps what a burst took: a freed block of
 * 128 KiB or more raises its mmap threshold to that size, so every later
 * block of the burst comes from a heap that is never trimmed, and each
 * thread that allocated gets its own arena holding its own high-water mark.
 * Measured (bench/replicate.py --target s3, 1000 tx/s): 50 MiB of RSS a
 * minute into the run against 24 MiB with the policy below, for the same
 * live heap.
 */
#ifndef SQLPRODD_MEMORY_H
#define SQLPRODD_MEMORY_H

/* Blocks of at least this size are mapped on their own and unmapped when
 * freed, whatever size was freed before: the agent's large buffers (archive
 * blocks, upload and read buffers) go back to the kernel with the job. */
#define MEMORY_MMAP_THRESHOLD (128 * 1024)

/* At most this many malloc arenas: every thread shares them, so a thread's
 * burst is reused by the next one instead of held apart. The agent's threads
 * allocate little between their syscalls; contention is not measurable. */
#define MEMORY_ARENA_MAX 2

/* Applies the two settings above, before any thread starts. An operator's
 * own glibc setting (MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD_, or either
 * in GLIBC_TUNABLES) wins over ours. */
void memory_policy_apply(void);

#endif
