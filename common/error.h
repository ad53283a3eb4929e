/*
 * error.h — the project's one error enum.
 *
 * Every fallible function returns an is_err_t; IS_OK is 0 and every error is
 * negative. Where a human needs detail the function also fills a caller
 * buffer (`char *errstr, size_t errstr_size`). Errors are classified at the
 * source: IS_ERR_RETRYABLE means "the same call may succeed later" (ERP
 * timeout, 5xx, lock); IS_ERR_PERMANENT means "it will fail the same way
 * again" (validation, unknown material) and leads to a dead-letter.
 */
#ifndef INVSYNC_ERROR_H
#define INVSYNC_ERROR_H

typedef enum is_err {
    IS_OK = 0,
    IS_ERR_NOMEM = -1,      /* allocation failed */
    IS_ERR_INVALID = -2,    /* bad input or argument */
    IS_ERR_IO = -3,         /* file or socket error */
    IS_ERR_DB = -4,         /* SQLite error */
    IS_ERR_CONFIG = -5,     /* bad configuration */
    IS_ERR_NOT_FOUND = -6,  /* no such thing */
    IS_ERR_CONFLICT = -7,   /* same id, different content */
    IS_ERR_RETRYABLE = -8,  /* transient; try again later */
    IS_ERR_PERMANENT = -9,  /* will fail the same way again */
    IS_ERR_KAFKA = -10,     /* librdkafka error */
    IS_ERR_OVERFLOW = -11,  /* value does not fit */
    IS_ERR_DUPLICATE = -12, /* already done (idempotent success) */
    IS_ERR_TOO_LARGE = -13, /* over a configured limit */
    IS_ERR_AUTH = -14,      /* missing or wrong credentials */
    IS_ERR__COUNT = 15      /* number of codes, for tables */
} is_err_t;

/* "IS_ERR_INVALID" — never NULL, "IS_ERR_UNKNOWN" for codes out of range. */
const char *is_err_name(is_err_t err);
/* "bad input or argument" — a short lowercase description, never NULL. */
const char *is_err_str(is_err_t err);

#if defined(__GNUC__)
#define IS_MUST_CHECK   __attribute__((warn_unused_result))
#define IS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define IS_MUST_CHECK
#define IS_PRINTF(f, a)
#endif

/* Fill errstr (if non-NULL) printf-style; always NUL-terminated. */
void is_errf(char *errstr, size_t errstr_size, const char *fmt, ...) IS_PRINTF(3, 4);

#endif
