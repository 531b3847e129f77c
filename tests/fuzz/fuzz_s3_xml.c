/*
 * fuzz_s3_xml.c: libFuzzer harness for the XML S3 answers with
 * (error documents, CreateMultipartUpload, ListObjectsV2 pages): whatever a
 * hostile or broken endpoint sends must be refused or parsed, never crash.
 *
 * Not for: HTTP itself (tests/s3/test_target_s3_faults.c).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "fuzz_outcome.h"
#include "offsite/s3.h"
#include "offsite/target.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 256 * 1024) {
        fuzz_outcome("skipped");
        return 0;
    }
    const char *xml = (const char *)data;
    /* The outcome names every parser that accepted the input: "listing",
     * "error+listing", or "refused". */
    char outcome[64] = "";
    struct s3_error_document document;
    if (s3_xml_parse_error(xml, size, &document) == 0) {
        strcat(outcome, "+error");
        if (!memchr(document.code, '\0', sizeof document.code) ||
            !memchr(document.message, '\0', sizeof document.message) ||
            !memchr(document.region, '\0', sizeof document.region))
            abort();
    }
    char upload_id[256];
    if (s3_xml_parse_upload_id(xml, size, upload_id, sizeof upload_id) == 0) {
        strcat(outcome, "+upload_id");
        if (!memchr(upload_id, '\0', sizeof upload_id))
            abort();
    }
    struct target_listing listing = {0};
    struct error err = {0};
    bool truncated = false;
    char *next_token = NULL;
    if (s3_xml_parse_listing(xml, size, "db/", &listing, &truncated, &next_token, &err) == 0)
        strcat(outcome, "+listing");
    fuzz_outcome(outcome[0] ? outcome + 1 : "refused");
    free(next_token);
    target_listing_free(&listing);
    return 0;
}
