/*
 * age_speed.c: a minimal age command over src/crypto/age.c for
 * bench/age_speed.py, which builds it against the core library:
 *
 *   age_speed keygen KEYFILE                 (prints the recipient)
 *   age_speed encrypt RECIPIENT < in > out
 *   age_speed decrypt KEYFILE < in > out
 *
 * A benchmark driver, not a tool operators use: sqlprodd itself encrypts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crypto/age.h"

static int write_out(void *context, const unsigned char *data, size_t size, struct error *err)
{
    (void)context;
    while (size > 0) {
        ssize_t n = write(1, data, size);
        if (n < 0)
            return error_set(err, -5, "write failed");
        data += n;
        size -= (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static unsigned char piece[1 << 20];
    struct error err = {0};
    ssize_t n;
    int rc = 0;
    if (argc != 3) {
        fprintf(stderr, "usage: age_speed keygen|encrypt|decrypt ARG\n");
        return 2;
    }
    if (strcmp(argv[1], "keygen") == 0) {
        struct age_identity identity;
        struct age_recipient recipient;
        char text[AGE_RECIPIENT_TEXT];
        if ((rc = age_identity_generate(&identity, &err)) == 0 &&
            (rc = age_identity_file_write(argv[2], &identity, time(NULL), &err)) == 0) {
            age_identity_recipient(&identity, &recipient);
            age_recipient_format(&recipient, text);
            printf("%s\n", text);
        }
    } else if (strcmp(argv[1], "encrypt") == 0) {
        struct age_recipient recipient;
        struct age_encryptor *e = NULL;
        if ((rc = age_recipient_parse(argv[2], &recipient, &err)) == 0 &&
            (rc = age_encryptor_new(&recipient, 1, write_out, NULL, &e, &err)) == 0) {
            while (rc == 0 && (n = read(0, piece, sizeof piece)) > 0)
                rc = age_encrypt_update(e, piece, (size_t)n, &err);
            if (rc == 0)
                rc = age_encrypt_finish(e, &err);
        }
        age_encryptor_free(e);
    } else if (strcmp(argv[1], "decrypt") == 0) {
        struct age_identity *identities = NULL;
        size_t count = 0;
        struct age_decryptor *d = NULL;
        if ((rc = age_identities_read(argv[2], &identities, &count, &err)) == 0 &&
            (rc = age_decryptor_new(identities, count, "stdin", write_out, NULL, &d, &err)) == 0) {
            while (rc == 0 && (n = read(0, piece, sizeof piece)) > 0)
                rc = age_decrypt_update(d, piece, (size_t)n, &err);
            if (rc == 0)
                rc = age_decrypt_finish(d, &err);
        }
        age_decryptor_free(d);
        age_identities_free(identities, count);
    } else {
        fprintf(stderr, "usage: age_speed keygen|encrypt|decrypt ARG\n");
        return 2;
    }
    if (rc != 0)
        fprintf(stderr, "age_speed: %s\n", err.message);
    return rc != 0;
}
