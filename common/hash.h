/*
 * hash.h — SHA-256 helpers (OpenSSL libcrypto, already a dependency of
 * librdkafka). Used for the policy version, movement content fingerprints,
 * deterministic posting ids and the audit hash chain.
 */
#ifndef INVSYNC_HASH_H
#define INVSYNC_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define IS_SHA256_LEN     32
#define IS_SHA256_HEX_LEN 64 /* without the NUL */

typedef struct is_sha256 {
    void *ctx; /* EVP_MD_CTX */
} is_sha256_t;

/* Incremental hashing. init returns IS_ERR_NOMEM if OpenSSL cannot allocate. */
is_err_t is_sha256_init(is_sha256_t *h) IS_MUST_CHECK;
void is_sha256_update(is_sha256_t *h, const void *data, size_t len);
/* Writes 32 bytes and releases the context. */
void is_sha256_final(is_sha256_t *h, uint8_t out[IS_SHA256_LEN]);

/* One-shot digest of a buffer. */
void is_sha256(const void *data, size_t len, uint8_t out[IS_SHA256_LEN]);
/* Lowercase hex of n bytes into hex (needs 2n+1 bytes). */
void is_hex(const uint8_t *bytes, size_t n, char *hex);
/* SHA-256 of a whole file as 64 hex chars + NUL. */
is_err_t is_sha256_file_hex(const char *path, char hex[IS_SHA256_HEX_LEN + 1], char *errstr,
                            size_t errstr_size) IS_MUST_CHECK;

#endif
