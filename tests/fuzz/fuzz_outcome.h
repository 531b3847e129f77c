/*
 * fuzz_outcome.h: how far an input got, for the seed check.
 *
 * Each harness calls fuzz_outcome() once per input with one word that says
 * which code the input reached ("refused", "fires", "listing" ...). It prints
 * nothing unless SQLPRODD_FUZZ_TRACE is set, so fuzzing speed is unchanged.
 * tests/fuzz/run replays the hand-written seeds with the trace on and fails
 * when a seed's outcome is not the word its file name starts with
 * ("fires.dst-berlin-spring" must print "fires"): a seed that the parser
 * refuses before the code it was written for is caught, not silently kept.
 *
 * Not for: coverage (libFuzzer measures it); not a harness (no fuzz_*.c).
 */
#ifndef SQLPRODD_FUZZ_OUTCOME_H
#define SQLPRODD_FUZZ_OUTCOME_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

/* Whether outcomes are printed: a harness may skip work done only for them. */
static inline bool fuzz_tracing(void)
{
    static int tracing = -1;
    if (tracing < 0)
        tracing = getenv("SQLPRODD_FUZZ_TRACE") != NULL;
    return tracing;
}

static inline void fuzz_outcome(const char *word)
{
    if (fuzz_tracing())
        fprintf(stderr, "fuzz-outcome: %s\n", word);
}

#endif
