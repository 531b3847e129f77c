/*
 * test_chain.c: the chain of backups (archive/chain.h): which deletions and
 * alterations chain_check reports, and the records of retention's deletions
 * as JSON.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "archive/chain.h"

#define SHA_A "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

/* Four backups an hour apart, each linked to the one before. */
struct fixture {
    struct manifest manifests[4];
    char ids[4][32];
    char objects[4][64];
    struct chain_member members[4];
};

static void make_chain(struct fixture *f)
{
    memset(f, 0, sizeof *f);
    for (int i = 0; i < 4; i++) {
        struct manifest *m = &f->manifests[i];
        strcpy(m->database, "app");
        m->created = 1764748800 + i * 3600;
        manifest_format_stamp(m->created, f->ids[i]);
        snprintf(m->archive, sizeof m->archive, "app-%s.db.gz", f->ids[i]);
        strcpy(m->archive_sha256, SHA_A);
        m->archive_sha256[0] = (char)('0' + i); /* each backup holds something else */
        m->database_bytes = 4096 * (i + 1);
        m->page_size = 4096;
        m->page_count = i + 1;
        strcpy(m->verify_method, "quick_check");
        strcpy(m->verify_result, "ok");
        m->verified = true;
        if (i > 0) {
            strcpy(m->previous_backup, f->ids[i - 1]);
            strcpy(m->previous_sha256, f->manifests[i - 1].chain_sha256);
        }
        manifest_chain_hash(m, m->chain_sha256);
        snprintf(f->objects[i], sizeof f->objects[i], "app/%s.json", m->archive);
        f->members[i] = (struct chain_member){f->ids[i], m, f->objects[i]};
    }
}

struct findings {
    int count;
    char objects[8][64];
    char messages[8][1024];
};

static void collect(void *context, const char *object, const char *message)
{
    struct findings *found = context;
    if (found->count < 8) {
        snprintf(found->objects[found->count], sizeof found->objects[0], "%s", object);
        snprintf(found->messages[found->count], sizeof found->messages[0], "%s", message);
    }
    found->count++;
}

static void an_intact_chain_has_no_problem(void **state)
{
    (void)state;
    struct fixture f;
    struct findings found = {0};
    make_chain(&f);
    assert_int_equal(chain_check(f.members, 4, NULL, 0, collect, &found), 0);
    assert_int_equal(found.count, 0);
}

static void a_backup_deleted_from_the_middle_is_named(void **state)
{
    (void)state;
    struct fixture f;
    struct findings found = {0};
    make_chain(&f);
    struct chain_member kept[3] = {f.members[0], f.members[2], f.members[3]};
    assert_int_equal(chain_check(kept, 3, NULL, 0, collect, &found), 1);
    assert_non_null(strstr(found.messages[0], f.ids[1]));
    assert_non_null(strstr(found.messages[0], "is missing"));
    assert_string_equal(found.objects[0], f.objects[2]); /* the one that links to it */
}

static void retentions_record_explains_a_deletion(void **state)
{
    (void)state;
    struct fixture f;
    struct findings found = {0};
    struct chain_record record;
    make_chain(&f);
    chain_record_for(&f.manifests[1], f.ids[1], CHAIN_REASON_RETENTION, 1764800000, &record);
    struct chain_member kept[3] = {f.members[0], f.members[2], f.members[3]};
    assert_int_equal(chain_check(kept, 3, &record, 1, collect, &found), 0);

    /* A record that does not match the link is no explanation. */
    record.chain_sha256[0] = record.chain_sha256[0] == 'a' ? 'b' : 'a';
    assert_int_equal(chain_check(kept, 3, &record, 1, collect, &found), 1);
    assert_non_null(strstr(found.messages[0], "recorded as deleted"));
}

static void an_altered_manifest_is_named_twice(void **state)
{
    (void)state;
    struct fixture f;
    struct findings found = {0};
    make_chain(&f);
    f.manifests[1].database_bytes += 4096; /* its chain hash no longer fits */
    assert_int_equal(chain_check(f.members, 4, NULL, 0, collect, &found), 2);
    for (int i = 0; i < 2; i++)
        assert_string_equal(found.objects[i], f.objects[1]);
}

static void a_manifest_recomputed_after_alteration_still_breaks_the_next_link(void **state)
{
    (void)state;
    struct fixture f;
    struct findings found = {0};
    make_chain(&f);
    f.manifests[1].page_count = 99;
    manifest_chain_hash(&f.manifests[1], f.manifests[1].chain_sha256);
    assert_int_equal(chain_check(f.members, 4, NULL, 0, collect, &found), 1);
    assert_non_null(strstr(found.messages[0], "is not the one backup"));
    assert_string_equal(found.objects[0], f.objects[1]);
}

static void manifests_from_before_chains_are_no_problem(void **state)
{
    (void)state;
    struct fixture f;
    struct findings found = {0};
    make_chain(&f);
    for (int i = 0; i < 2; i++) {
        f.manifests[i].chain_sha256[0] = '\0';
        f.manifests[i].previous_backup[0] = '\0';
        f.manifests[i].previous_sha256[0] = '\0';
    }
    /* The first backup of this version links to the hash of the old
     * manifest's fields, as backup.c computes it. */
    manifest_chain_hash(&f.manifests[1], f.manifests[2].previous_sha256);
    manifest_chain_hash(&f.manifests[2], f.manifests[2].chain_sha256);
    strcpy(f.manifests[3].previous_sha256, f.manifests[2].chain_sha256);
    manifest_chain_hash(&f.manifests[3], f.manifests[3].chain_sha256);
    assert_int_equal(chain_check(f.members, 4, NULL, 0, collect, &found), 0);
}

static void records_round_trip_as_json(void **state)
{
    (void)state;
    struct fixture f;
    struct chain_record record, back;
    struct error err = {0};
    char *json = NULL;
    make_chain(&f);
    chain_record_for(&f.manifests[2], f.ids[2], CHAIN_REASON_NOT_UPLOADED, 1764800000, &record);
    assert_int_equal(chain_record_to_json(&record, &json, &err), 0);
    assert_int_equal(chain_record_from_json(json, strlen(json), &back, &err), 0);
    assert_string_equal(back.backup, f.ids[2]);
    assert_string_equal(back.chain_sha256, f.manifests[2].chain_sha256);
    assert_string_equal(back.reason, "not uploaded");
    assert_int_equal(back.at, 1764800000);
    free(json);

    const char *bad[] = {
        "{}",
        "{\"format\":2,\"database\":\"app\",\"backup\":\"20261203T080000Z\",\"chain_sha256\":\"" SHA_A
        "\",\"at\":\"2026-12-03T08:00:00Z\",\"reason\":\"retention\"}",
        "{\"format\":1,\"database\":\"app\",\"backup\":\"../x\",\"chain_sha256\":\"" SHA_A
        "\",\"at\":\"2026-12-03T08:00:00Z\",\"reason\":\"retention\"}",
        "{\"format\":1,\"database\":\"app\",\"backup\":\"20261203T080000Z\",\"chain_sha256\":\"zz\","
        "\"at\":\"2026-12-03T08:00:00Z\",\"reason\":\"retention\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_not_equal(chain_record_from_json(bad[i], strlen(bad[i]), &back, &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(an_intact_chain_has_no_problem),
        cmocka_unit_test(a_backup_deleted_from_the_middle_is_named),
        cmocka_unit_test(retentions_record_explains_a_deletion),
        cmocka_unit_test(an_altered_manifest_is_named_twice),
        cmocka_unit_test(a_manifest_recomputed_after_alteration_still_breaks_the_next_link),
        cmocka_unit_test(manifests_from_before_chains_are_no_problem),
        cmocka_unit_test(records_round_trip_as_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
