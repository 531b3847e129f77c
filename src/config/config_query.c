/*
 * config_query.c: the questions other modules ask of a loaded configuration
 * (config.h). Kept apart from the parser so that the parser's files can use
 * them without calling back into config.c.
 */
#include "config/config.h"

#include <string.h>

const struct database_config *config_find_database(const struct config *config, const char *name)
{
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
