/*
 * config_query.c: the questions other modules ask of a loaded configuration
 * (config.h). Kept apart from the parser so that the parser's files can use
 * them without calling back into config.c.
 */
#include "config/config.h"
#include "config/config_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int compare_database_names(const void *left, const void *right, void *config)
{
    const struct database_config *databases = ((const struct config *)config)->databases;
    return strcmp(databases[*(const size_t *)left].name, databases[*(const size_t *)right].name);
}

int config_order_databases(struct config *config)
{
    free(config->database_order);
    config->database_order = calloc(config->database_count + 1, sizeof *config->database_order);
    if (!config->database_order)
        return -ENOMEM;
    for (size_t i = 0; i < config->database_count; i++)
        config->database_order[i] = i;
    qsort_r(config->database_order, config->database_count, sizeof *config->database_order,
            compare_database_names, config);
    return 0;
}

const struct database_config *config_find_database(const struct config *config, const char *name)
{
    if (config && name && config->database_order) {
        size_t low = 0, high = config->database_count;
        while (low < high) {
            size_t middle = low + (high - low) / 2;
            const struct database_config *candidate =
                &config->databases[config->database_order[middle]];
            int order = strcmp(candidate->name, name);
            if (order == 0)
                return candidate;
            if (order < 0)
                low = middle + 1;
            else
                high = middle;
        }
        return NULL;
    }
    for (size_t i = 0; config && name && i < config->database_count; i++)
        if (config->databases[i].name && strcmp(config->databases[i].name, name) == 0)
            return &config->databases[i];
    return NULL;
}

const struct target_config *config_find_target(const struct config *config, const char *name)
{
    for (size_t i = 0; config && name && i < config->target_count; i++)
        if (config->targets[i].name && strcmp(config->targets[i].name, name) == 0)
            return &config->targets[i];
    return NULL;
}

size_t config_hash_bytes(const void *data, size_t size, size_t seed)
{
    size_t hash = seed ^ 2166136261u;
    for (const unsigned char *c = data; size--; c++)
        hash = (hash ^ *c) * 16777619u;
    return hash;
}
