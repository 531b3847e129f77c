/*
 * format_json.h: the checks and JSON helpers that format.c and
 * format_delta.c share. Not for other modules: format.h is the interface.
 */
#ifndef SQLPRODD_REPLICATE_FORMAT_JSON_H
#define SQLPRODD_REPLICATE_FORMAT_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "replicate/format.h"

bool format_database_name_ok(const char *database);
bool format_page_size_ok(uint32_t page_size);
bool format_sha256_ok(const char *hex);
int format_encryption_check(const struct format_encryption *e, const char *object,
                            struct error *err);

json_t *format_json_u64(uint64_t value);
/* 0, or -ENOMEM (value is freed either way). */
int format_set(json_t *object, const char *key, json_t *value);
int format_set_time(json_t *object, const char *key, int64_t ms);
int format_set_encryption(json_t *root, const struct format_encryption *e);
char *format_dump(json_t *root, struct error *err);

int format_load(const char *text, size_t length, const char *object, json_t **root,
                struct error *err);
int format_get_u64(json_t *root, const char *key, uint64_t max, bool required, uint64_t *out,
                   const char *object, struct error *err);
int format_get_u32(json_t *root, const char *key, bool required, uint32_t *out, const char *object,
                   struct error *err);
int format_get_string(json_t *root, const char *key, bool required, const char **out,
                      const char *object, struct error *err);
int format_get_time(json_t *root, const char *key, bool required, int64_t *ms, const char *object,
                    struct error *err);
int format_get_sha256(json_t *root, char out[65], bool required, const char *object,
                      struct error *err);
int format_get_encryption(json_t *root, struct format_encryption *out, const char *object,
                          struct error *err);

#endif
