/*
 * fuzz_manifest.c: libFuzzer harness for manifest parsing (the .db.gz.json
 * beside each archive, local or fetched from a target): a manifest that
 * parses must serialise and parse back to the same fields.
 *
 * Not for: reading files (manifest_read is a thin wrapper).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fuzz_outcome.h"
#include "archive/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 256 * 1024) {
        fuzz_outcome("skipped");
        return 0;
    }
    struct manifest *first = calloc(2, sizeof *first);
    struct error err = {0};
    char *json = NULL;
    if (!first)
        return 0;
    if (manifest_from_json((const char *)data, size, &first[0], &err) != 0) {
        if (!err.message[0])
            abort(); /* a refusal always says why */
        fuzz_outcome("refused");
        goto out;
    }
    fuzz_outcome("accepted");
    if (manifest_to_json(&first[0], &json, &err) != 0)
        goto out;
    if (manifest_from_json(json, strlen(json), &first[1], &err) != 0)
        abort(); /* what we write, we read back */
    if (strcmp(first[0].database, first[1].database) != 0 ||
        strcmp(first[0].archive, first[1].archive) != 0 ||
        strcmp(first[0].archive_sha256, first[1].archive_sha256) != 0 ||
        first[0].created != first[1].created || first[0].archive_bytes != first[1].archive_bytes)
        abort();
out:
    free(json);
    free(first);
    return 0;
}
