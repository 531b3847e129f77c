/*
 * age_primitives.c: the EVP calls behind age, each wrapped once so that age.c
 * reads like the specification. No primitive is implemented here: only
 * OpenSSL's, with age's parameters.
 */
#include "crypto/age_internal.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <string.h>

int age_hkdf(const unsigned char *ikm, size_t ikm_size, const unsigned char *salt, size_t salt_size,
             const char *info, unsigned char out[32], struct error *err)
{
    int rc = error_set(err, -EIO, "HKDF-SHA-256 failed in OpenSSL");
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    if (!ctx)
        goto out;
    OSSL_PARAM params[5], *p = params;
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_size);
    /* An empty salt is HKDF's default (a zero block), which OpenSSL wants
     * left out rather than given with length 0. */
    if (salt_size > 0)
        *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_size);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, strlen(info));
    *p = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(ctx, out, 32, params) == 1)
        rc = 0;
out:
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    if (rc == 0)
        error_clear(err);
    return rc;
}

int age_x25519_public(const unsigned char secret[32], unsigned char public_key[32],
                      struct error *err)
{
    EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, secret, 32);
    size_t size = 32;
    int rc = 0;
    if (!key || EVP_PKEY_get_raw_public_key(key, public_key, &size) != 1 || size != 32)
        rc = error_set(err, -EIO, "X25519 public key computation failed in OpenSSL");
    EVP_PKEY_free(key);
    return rc;
}

int age_x25519(const unsigned char secret[32], const unsigned char peer[32],
               unsigned char shared[32], struct error *err)
{
    int rc = error_set(err, -EIO, "X25519 failed in OpenSSL");
    EVP_PKEY *own = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, secret, 32);
    EVP_PKEY *other = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32);
    EVP_PKEY_CTX *ctx = own ? EVP_PKEY_CTX_new(own, NULL) : NULL;
    size_t size = 32;
    if (!other || !ctx || EVP_PKEY_derive_init(ctx) != 1)
        goto out;
    /* OpenSSL's X25519 refuses to derive an all-zero secret (RFC 7748
     * section 6.1); that is the only way set_peer/derive fail on valid
     * 32-byte inputs, so the failure is the low-order point age forbids. */
    if (EVP_PKEY_derive_set_peer(ctx, other) != 1 || EVP_PKEY_derive(ctx, shared, &size) != 1 ||
        size != 32) {
        rc = error_set(err, -EDOM, "the X25519 share is a low-order point");
        goto out;
    }
    static const unsigned char zero[32];
    if (CRYPTO_memcmp(shared, zero, 32) == 0) {
        rc = error_set(err, -EDOM, "the X25519 share is a low-order point");
        goto out;
    }
    rc = 0;
    error_clear(err);
out:
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(other);
    EVP_PKEY_free(own);
    return rc;
}

static int age_aead(EVP_CIPHER_CTX *ctx, bool seal, const unsigned char key[32],
                    const unsigned char nonce[12], const unsigned char *in, size_t size,
                    unsigned char *out, struct error *err)
{
    EVP_CIPHER_CTX *own = NULL;
    int rc = error_set(err, -EIO, "ChaCha20-Poly1305 failed in OpenSSL");
    if (!ctx && !(ctx = own = EVP_CIPHER_CTX_new()))
        goto out;
    if (!seal && size < 16) {
        rc = error_set(err, -EBADMSG, "shorter than its authentication tag");
        goto out;
    }
    size_t text = seal ? size : size - 16;
    int length = 0;
    if (EVP_CipherInit_ex(ctx, EVP_chacha20_poly1305(), NULL, key, nonce, seal) != 1)
        goto out;
    if (!seal && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, (void *)(in + text)) != 1)
        goto out;
    if (text > 0 && EVP_CipherUpdate(ctx, out, &length, in, (int)text) != 1)
        goto out;
    int final = 0;
    if (EVP_CipherFinal_ex(ctx, out + length, &final) != 1) {
        if (!seal) {
            OPENSSL_cleanse(out, text);
            rc = error_set(err, -EBADMSG, "fails authentication");
        }
        goto out;
    }
    if (seal && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, out + text) != 1)
        goto out;
    rc = 0;
    error_clear(err);
out:
    EVP_CIPHER_CTX_free(own);
    return rc;
}

int age_aead_seal(EVP_CIPHER_CTX *ctx, const unsigned char key[32], const unsigned char nonce[12],
                  const unsigned char *in, size_t size, unsigned char *out, struct error *err)
{
    return age_aead(ctx, true, key, nonce, in, size, out, err);
}

int age_aead_open(EVP_CIPHER_CTX *ctx, const unsigned char key[32], const unsigned char nonce[12],
                  const unsigned char *in, size_t size, unsigned char *out, struct error *err)
{
    return age_aead(ctx, false, key, nonce, in, size, out, err);
}

size_t age_base64_size(size_t size)
{
    return (size * 4 + 2) / 3;
}

void age_base64_encode(const unsigned char *in, size_t size, char *out)
{
    /* EVP_EncodeBlock pads with '=', which age leaves out. */
    int length = EVP_EncodeBlock((unsigned char *)out, in, (int)size);
    while (length > 0 && out[length - 1] == '=')
        out[--length] = '\0';
}

bool age_base64_decode(const char *in, size_t length, unsigned char *out, size_t out_size,
                       size_t *size)
{
    if (length % 4 == 1 || length > 4096)
        return false;
    for (size_t i = 0; i < length; i++) {
        char c = in[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return false;
    }
    size_t decoded = length / 4 * 3 + (length % 4 ? length % 4 - 1 : 0);
    if (decoded > out_size)
        return false;
    char padded[4100];
    unsigned char bytes[3075];
    memcpy(padded, in, length);
    size_t padded_length = length;
    while (padded_length % 4)
        padded[padded_length++] = '=';
    if (padded_length > 0 &&
        EVP_DecodeBlock(bytes, (const unsigned char *)padded, (int)padded_length) < 0)
        return false;
    /* Canonical: encoding the bytes back gives the same text, so the bits
     * that fall off the last character were zero. */
    char again[4100];
    age_base64_encode(bytes, decoded, again);
    if (strlen(again) != length || memcmp(again, in, length) != 0)
        return false;
    memcpy(out, bytes, decoded);
    *size = decoded;
    return true;
}
