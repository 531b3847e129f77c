/*
 * fuzz_units.c: libFuzzer harness for sizes ("16MB") and durations
 * ("1h30m"): parse, and for accepted values format and parse back.
 *
 * Not for: cron (fuzz_cron.c).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_outcome.h"
#include "core/units.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1024) {
        fuzz_outcome("skipped");
        return 0;
    }
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char why[256], formatted[64];
    int64_t value = 0;
    bool size_ok = false, duration_ok = false;
    if (units_parse_size(text, &value, why, sizeof why) == 0) {
        size_ok = true;
        if (value < 0)
            abort();
        units_format_size(value, formatted, sizeof formatted);
    } else if (!why[0]) {
        abort();
    }
    if (units_parse_duration(text, &value, why, sizeof why) == 0) {
        duration_ok = true;
        if (value <= 0)
            abort();
        units_format_duration(value, formatted, sizeof formatted);
        /* A formatted duration always parses again. */
        int64_t again = 0;
        if (units_parse_duration(formatted, &again, why, sizeof why) != 0 || again <= 0)
            abort();
    } else if (!why[0]) {
        abort();
    }
    fuzz_outcome(size_ok && duration_ok ? "size+duration"
                 : size_ok              ? "size"
                 : duration_ok          ? "duration"
                                        : "refused");
    free(text);
    return 0;
}
