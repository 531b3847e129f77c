/*
 * test_memory.c: the allocator policy (core/memory.h) on glibc's real
 * malloc, seen the way an operator sees it: the process's resident memory
 * (RssAnon in /proc/self/status) after a burst of archive-sized blocks, and
 * the arenas malloc_info(3) reports after many threads allocated. ASan's
 * allocator replaces glibc's, so tests/CMakeLists.txt builds no ASan variant;
 * the guard below keeps a hand-made ASan build from failing on it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/memory.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#define BLOCK_BYTES (1024 * 1024) /* an archive block */
#define PIN_BYTES   (8 * 1024)    /* past glibc's tcache and fast bins */
#define BURST       16
#define THREADS     8

/* Where the tests keep what they allocate: the compiler may not drop an
 * allocation that lands in a volatile place. */
static void *volatile blocks[BURST], *volatile pins[BURST], *volatile held[THREADS];

static long rss_anon_kib(void)
{
    FILE *status = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    assert_non_null(status);
    while (fgets(line, sizeof line, status))
        if (sscanf(line, "RssAnon: %ld kB", &kib) == 1)
            break;
    fclose(status);
    assert_true(kib >= 0);
    return kib;
}

static int setup(void **state)
{
    (void)state;
    memory_policy_apply();
    return 0;
}

/* A compression's burst: blocks with small allocations between them (as
 * libdeflate's and SQLite's are), then the blocks freed and the small ones
 * kept. glibc's default would serve the burst from a heap after the first
 * freed block raised its mmap threshold, and keep all of it resident. */
static void a_burst_of_blocks_goes_back_to_the_kernel(void **state)
{
    (void)state;
#ifdef UNDER_ASAN
    skip();
#endif
    blocks[0] = malloc(BLOCK_BYTES);
    free(blocks[0]); /* what raises glibc's own threshold */
    long before = rss_anon_kib();
    for (int i = 0; i < BURST; i++) {
        blocks[i] = malloc(BLOCK_BYTES);
        assert_non_null(blocks[i]);
        memset(blocks[i], i + 1, BLOCK_BYTES); /* resident */
        pins[i] = malloc(PIN_BYTES);
        assert_non_null(pins[i]);
        memset(pins[i], i + 1, PIN_BYTES);
    }
    long during = rss_anon_kib();
    for (int i = 0; i < BURST; i++)
        free(blocks[i]);
    long after = rss_anon_kib();
    for (int i = 0; i < BURST; i++)
        free(pins[i]);
    print_message("RssAnon: %ld KiB before, %ld during, %ld after the burst\n", before, during,
                  after);
    assert_true(during - before >= BURST * BLOCK_BYTES / 1024 * 9 / 10);
    /* the pins stay, and less than one block besides */
    assert_true(after - before < (BURST * PIN_BYTES + BLOCK_BYTES) / 1024);
}

static pthread_barrier_t all_allocated;

static void *allocate_and_hold(void *slot)
{
    size_t i = (size_t)(uintptr_t)slot;
    held[i] = malloc(4096);
    memset(held[i], 1, 4096);
    pthread_barrier_wait(&all_allocated); /* every thread holds its block at once */
    free(held[i]);
    return NULL;
}

static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *at = text; (at = strstr(at, needle)) != NULL; at++)
        n++;
    return n;
}

/* Each new thread that allocates gets an arena of its own, up to eight per
 * core, unless the limit says otherwise. */
static void threads_share_at_most_the_arena_limit(void **state)
{
    (void)state;
#ifdef UNDER_ASAN
    skip();
#endif
    pthread_t threads[THREADS];
    pthread_barrier_init(&all_allocated, NULL, THREADS);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, allocate_and_hold, (void *)(uintptr_t)i),
                         0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&all_allocated);

    char *report = NULL;
    size_t length = 0;
    FILE *out = open_memstream(&report, &length);
    assert_non_null(out);
    assert_int_equal(malloc_info(0, out), 0);
    fclose(out);
    int arenas = count(report, "<heap nr=");
    print_message("%d arenas after %d threads\n", arenas, THREADS);
    assert_true(arenas >= 1);
    assert_true(arenas <= MEMORY_ARENA_MAX);
    free(report);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_burst_of_blocks_goes_back_to_the_kernel),
        cmocka_unit_test(threads_share_at_most_the_arena_limit),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
