/*
 * hash.c — thin wrapper over OpenSSL's EVP SHA-256.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/opensslv.h>

#include "hash.h"

/*
 * The SHA-256 implementation, looked up once. With OpenSSL 3, passing
 * EVP_sha256() makes every EVP_DigestInit_ex fetch the implementation from
 * the provider again (a locked lookup of ~10k instructions, more than hashing
 * an audit row); an explicitly fetched EVP_MD skips that.
 */
static const EVP_MD *fetched;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void fetch_sha256(void) {
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
    fetched = EVP_MD_fetch(NULL, "SHA256", NULL); /* kept for the process's life */
#endif
}

static const EVP_MD *sha256_md(void) {
    pthread_once(&fetch_once, fetch_sha256);
    return fetched ? fetched : EVP_sha256();
}

is_err_t is_sha256_init(is_sha256_t *h) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return IS_ERR_NOMEM;
    if (EVP_DigestInit_ex(ctx, sha256_md(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return IS_ERR_NOMEM;
    }
    h->ctx = ctx;
    return IS_OK;
}

void is_sha256_update(is_sha256_t *h, const void *data, size_t len) {
    EVP_DigestUpdate((EVP_MD_CTX *)h->ctx, data, len);
}

void is_sha256_final(is_sha256_t *h, uint8_t out[IS_SHA256_LEN]) {
    unsigned int n = 0;
    EVP_DigestFinal_ex((EVP_MD_CTX *)h->ctx, out, &n);
    EVP_MD_CTX_free((EVP_MD_CTX *)h->ctx);
    h->ctx = NULL;
}

void is_sha256(const void *data, size_t len, uint8_t out[IS_SHA256_LEN]) {
    unsigned int n = 0;
    EVP_Digest(data, len, out, &n, sha256_md(), NULL);
}

void is_hex(const uint8_t *bytes, size_t n, char *hex) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        hex[2 * i] = digits[bytes[i] >> 4];
        hex[2 * i + 1] = digits[bytes[i] & 0xf];
    }
    hex[2 * n] = '\0';
}

is_err_t is_sha256_file_hex(const char *path, char hex[IS_SHA256_HEX_LEN + 1], char *errstr,
                            size_t errstr_size) {
    uint8_t buf[8192], digest[IS_SHA256_LEN];
    is_sha256_t h;
    size_t n;
    FILE *f = fopen(path, "rb");
    if (!f) {
        is_errf(errstr, errstr_size, "cannot open '%s': %s", path, strerror(errno));
        return IS_ERR_IO;
    }
    if (is_sha256_init(&h) != IS_OK) {
        fclose(f);
        return IS_ERR_NOMEM;
    }
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        is_sha256_update(&h, buf, n);
    int failed = ferror(f);
    fclose(f);
    is_sha256_final(&h, digest);
    if (failed) {
        is_errf(errstr, errstr_size, "cannot read '%s'", path);
        return IS_ERR_IO;
    }
    is_hex(digest, IS_SHA256_LEN, hex);
    return IS_OK;
}
