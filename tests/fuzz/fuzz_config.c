/*
 * fuzz_config.c: libFuzzer harness for the configuration parser
 * (config_load: libconfig syntax, then every validation rule).
 *
 * Not for: @include. An input that names another file would make the run
 * depend on the machine's files (and "/dev/zero" never ends), so inputs
 * containing "include" are skipped; the include path is covered by the unit
 * tests. The text goes through a memfd so no file is left behind.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config/config.h"
#include "fuzz_outcome.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64 * 1024 || memmem(data, size, "include", 7) != NULL) {
        fuzz_outcome("skipped");
        return 0;
    }
    int fd = memfd_create("fuzz-config", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    if (size > 0 && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    lseek(fd, 0, SEEK_SET);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    struct config *config = NULL;
    struct config_diagnostics diag;
    int rc = config_load(path, &config, &diag);
    fuzz_outcome(rc == 0 ? "accepted" : "refused");
    if (rc == 0) {
        /* Walk what was accepted, as the agent would. */
        for (size_t i = 0; i < config->database_count; i++)
            (void)config_find_database(config, config->databases[i].name);
        config_free(config);
    }
    for (size_t i = 0; i < diag.count; i++)
        (void)strlen(diag.lines[i]);
    config_diagnostics_free(&diag);
    close(fd);
    return 0;
}
