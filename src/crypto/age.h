/*
 * age.h: files in the age v1 format (age-encryption.org/v1, c2sp.org/age),
 * readable by the age tool (`age -d -i key.txt`), and files the age tool made
 * (`age -r age1...`), with X25519 recipients.
 *
 * What it is for: keys (parse, print, generate, identity files as age-keygen
 * writes them), and streaming encryption and decryption with bounded memory
 * (two 64 KiB chunks, whatever the file size). Every primitive is OpenSSL 3's
 * EVP: X25519, HKDF-SHA-256, HMAC-SHA-256, ChaCha20-Poly1305, RAND_bytes.
 *
 * What it is not for: passphrase (scrypt), SSH, post-quantum (mlkem768x25519)
 * or plugin recipients, and the ASCII armor (age -a): each is refused with a
 * message naming it. No file I/O but reading and writing identity files: the
 * caller moves the bytes (archive, upload, restore) and names the object.
 */
#ifndef SQLPRODD_AGE_H
#define SQLPRODD_AGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/error.h"

#define AGE_CHUNK_SIZE     65536 /* plaintext bytes per STREAM chunk */
#define AGE_TAG_SIZE       16    /* Poly1305 tag after each chunk */
#define AGE_KEY_SIZE       32    /* X25519 secret and public keys */
#define AGE_RECIPIENT_TEXT 63    /* "age1" + 58 characters + NUL */
#define AGE_IDENTITY_TEXT  75    /* "AGE-SECRET-KEY-1" + 58 characters + NUL */

/* A public key: what backing up needs. */
struct age_recipient {
    unsigned char public_key[AGE_KEY_SIZE];
};

/* A secret key and its public key: what restoring needs. Wipe with
 * age_identity_wipe when done. */
struct age_identity {
    unsigned char secret_key[AGE_KEY_SIZE];
    unsigned char public_key[AGE_KEY_SIZE];
};

/* ---- keys ---------------------------------------------------------------- */

/* "age1..." -> recipient. Other kinds of public keys (age1pq1..., age1tag1...,
 * plugin recipients, "ssh-ed25519 ...", "ssh-rsa ...") are refused by name. */
int age_recipient_parse(const char *text, struct age_recipient *recipient, struct error *err);
void age_recipient_format(const struct age_recipient *recipient, char out[AGE_RECIPIENT_TEXT]);

/* "AGE-SECRET-KEY-1..." -> identity (its public key computed). The message
 * never repeats the secret text. */
int age_identity_parse(const char *text, struct age_identity *identity, struct error *err);
void age_identity_format(const struct age_identity *identity, char out[AGE_IDENTITY_TEXT]);
void age_identity_recipient(const struct age_identity *identity, struct age_recipient *recipient);
int age_identity_generate(struct age_identity *identity, struct error *err);
void age_identity_wipe(struct age_identity *identity);

/*
 * An identity file in age's format: one AGE-SECRET-KEY-1 a line, '#'
 * comments and empty lines ignored, LF or CRLF. `name` is the path for
 * messages ("key.txt:3: ..."). *identities is malloc'd (wipe and free it
 * with age_identities_free); at least one identity on success.
 */
int age_identities_parse(const char *text, size_t size, const char *name,
                         struct age_identity **identities, size_t *count, struct error *err);
int age_identities_read(const char *path, struct age_identity **identities, size_t *count,
                        struct error *err);
void age_identities_free(struct age_identity *identities, size_t count);

/* The text age-keygen writes: "# created: ...", "# public key: age1...", the
 * key. `created` is a parameter so that the text is reproducible. */
int age_identity_file_text(const struct age_identity *identity, time_t created, char *out,
                           size_t out_size);
/* Writes that text to a new file (never over an existing one), mode 0600,
 * fsync'd. */
int age_identity_file_write(const char *path, const struct age_identity *identity, time_t created,
                            struct error *err);

/* ---- encryption ---------------------------------------------------------- */

/* Receives the output in order; a non-zero return (with err filled) stops
 * the stream and is returned by the call that fed it. */
typedef int (*age_sink_fn)(void *context, const unsigned char *data, size_t size,
                           struct error *err);

struct age_encryptor;

/*
 * A new file to `count` (>= 1) recipients: a fresh file key and nonce, the
 * header written and MAC'd. Output goes to `sink` (may be NULL when only
 * age_encrypt_chunk is used).
 */
int age_encryptor_new(const struct age_recipient *recipients, size_t count, age_sink_fn sink,
                      void *context, struct age_encryptor **encryptor, struct error *err);
/* Feeds plaintext; whole chunks go to the sink as they fill. */
int age_encrypt_update(struct age_encryptor *encryptor, const void *data, size_t size,
                       struct error *err);
/* Writes the final chunk. The file is complete only after this returns 0. */
int age_encrypt_finish(struct age_encryptor *encryptor, struct error *err);
void age_encryptor_free(struct age_encryptor *encryptor);

/*
 * For parallel encryption: the file is age_encryptor_prefix (header and
 * payload nonce) followed by every chunk in index order. Chunk `index` holds
 * plaintext bytes [index * 64 KiB, ...): exactly AGE_CHUNK_SIZE bytes unless
 * `last`, and never empty unless it is chunk 0 and last (the empty file).
 * `out` receives size + AGE_TAG_SIZE bytes. Safe to call from several threads
 * at once on one encryptor (not mixed with update/finish).
 */
const unsigned char *age_encryptor_prefix(const struct age_encryptor *encryptor, size_t *size);
int age_encrypt_chunk(const struct age_encryptor *encryptor, uint64_t index, bool last,
                      const unsigned char *plaintext, size_t size, unsigned char *out,
                      struct error *err);

/* ---- decryption ---------------------------------------------------------- */

/* Why a decryption failed, for callers that act on it (and for the tests of
 * the published vectors); the message in struct error is for people. */
enum age_fault {
    AGE_FAULT_NONE = 0,
    AGE_FAULT_HEADER,      /* not an age v1 file, or a malformed header */
    AGE_FAULT_ARMORED,     /* ASCII armor (age -a), which we do not read */
    AGE_FAULT_UNSUPPORTED, /* no X25519 stanza; names the types found */
    AGE_FAULT_NO_MATCH,    /* X25519 stanzas, none for our identities */
    AGE_FAULT_HEADER_MAC,  /* header altered after it was written */
    AGE_FAULT_PAYLOAD,     /* a chunk fails authentication (names it) */
    AGE_FAULT_TRUNCATED,   /* the data ends before the final chunk */
};

struct age_decryptor;

/*
 * Decrypts with any of `count` identities (copied). `object` names the file
 * or object in every message. Plaintext goes to `sink` one chunk at a time,
 * and only after that chunk's tag has been verified.
 *
 * On any error from update or finish, the file is not valid: everything the
 * sink received must be discarded (the message says so). A file that is cut
 * short is only detected by finish, which must be called.
 */
int age_decryptor_new(const struct age_identity *identities, size_t count, const char *object,
                      age_sink_fn sink, void *context, struct age_decryptor **decryptor,
                      struct error *err);
int age_decrypt_update(struct age_decryptor *decryptor, const void *data, size_t size,
                       struct error *err);
int age_decrypt_finish(struct age_decryptor *decryptor, struct error *err);
enum age_fault age_decryptor_fault(const struct age_decryptor *decryptor);
void age_decryptor_free(struct age_decryptor *decryptor);

#endif
