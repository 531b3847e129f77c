/*
 * test_replica_window.c: which generations the retention window keeps, on
 * generations written out by hand: two chains of two (a base file, then a
 * generation continuing it), a break between them, a generation with no
 * commit yet. The oldest instant of the window must stay restorable: the
 * chain that holds it is kept whole, back to its base file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "replicate/window.h"

/* g1 base 1000..2000, g2 from g1 2000..3000, break, g3 base 3500..4000,
 * g4 from g3 4000..5000, g5 from g4 with no commit yet. */
static const struct state_replica_generation chains[] = {
    {.generation = 1, .base_from = 0, .first_seen_at_ms = 1000, .last_seen_at_ms = 2000},
    {.generation = 2, .base_from = 1, .first_seen_at_ms = 2000, .last_seen_at_ms = 3000},
    {.generation = 3, .base_from = 0, .first_seen_at_ms = 3500, .last_seen_at_ms = 4000},
    {.generation = 4, .base_from = 3, .first_seen_at_ms = 4000, .last_seen_at_ms = 5000},
    {.generation = 5, .base_from = 4, .first_seen_at_ms = 0, .last_seen_at_ms = 0},
};
#define CHAINS (sizeof chains / sizeof chains[0])

static uint32_t keep_from_when_oldest_instant_is(int64_t oldest)
{
    int64_t now = 10000;
    return replica_window_keep_from(chains, CHAINS, now, now - oldest);
}

static void the_chain_holding_the_oldest_instant_is_kept_whole(void **state)
{
    (void)state;
    /* In g4: its chain starts at g3, whose base file it needs. */
    assert_int_equal(keep_from_when_oldest_instant_is(4500), 3);
    /* In g3, and on g3's first commit exactly. */
    assert_int_equal(keep_from_when_oldest_instant_is(3700), 3);
    assert_int_equal(keep_from_when_oldest_instant_is(3500), 3);
    /* In g2: the first chain, g1 included, is still needed. */
    assert_int_equal(keep_from_when_oldest_instant_is(2500), 0);
}

static void an_instant_in_the_break_restores_to_the_chain_before_it(void **state)
{
    (void)state;
    /* 3200 is after g2's last commit and before g3's first: a restore
     * there gives g2's last commit, so the first chain stays. */
    assert_int_equal(keep_from_when_oldest_instant_is(3200), 0);
    assert_int_equal(keep_from_when_oldest_instant_is(3499), 0);
}

static void nothing_goes_while_the_window_reaches_past_the_first_commit(void **state)
{
    (void)state;
    assert_int_equal(keep_from_when_oldest_instant_is(500), 0);
    assert_int_equal(replica_window_keep_from(chains, CHAINS, 10000, 0), 0);
    assert_int_equal(replica_window_keep_from(chains, 1, 10000, 10), 0);
    assert_int_equal(replica_window_keep_from(chains, 0, 10000, 10), 0);
}

static void the_newest_generation_stays_however_old_its_commits(void **state)
{
    (void)state;
    /* Every commit is older than the window: the newest chain stays, the
     * generation with no commit yet does not decide. */
    assert_int_equal(keep_from_when_oldest_instant_is(9000), 3);
    struct state_replica_generation idle[] = {
        {.generation = 7, .base_from = 0, .first_seen_at_ms = 100, .last_seen_at_ms = 200},
        {.generation = 8, .base_from = 0, .first_seen_at_ms = 300, .last_seen_at_ms = 300},
    };
    assert_int_equal(replica_window_keep_from(idle, 2, 100000, 1000), 8);
}

static void a_chain_whose_start_is_gone_keeps_what_is_left(void **state)
{
    (void)state;
    /* g3 was forgotten already (say, by an older window): g4 cannot go
     * back further than itself. */
    struct state_replica_generation left[] = {
        {.generation = 4, .base_from = 3, .first_seen_at_ms = 4000, .last_seen_at_ms = 5000},
        {.generation = 6, .base_from = 0, .first_seen_at_ms = 6000, .last_seen_at_ms = 7000},
        {.generation = 7, .base_from = 6, .first_seen_at_ms = 7000, .last_seen_at_ms = 8000},
    };
    assert_int_equal(replica_window_keep_from(left, 3, 10000, 10000 - 7500), 6);
    assert_int_equal(replica_window_keep_from(left, 3, 10000, 10000 - 4500), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(the_chain_holding_the_oldest_instant_is_kept_whole),
        cmocka_unit_test(an_instant_in_the_break_restores_to_the_chain_before_it),
        cmocka_unit_test(nothing_goes_while_the_window_reaches_past_the_first_commit),
        cmocka_unit_test(the_newest_generation_stays_however_old_its_commits),
        cmocka_unit_test(a_chain_whose_start_is_gone_keeps_what_is_left),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
