/*
 * log.h — the one logger: JSON lines on stderr.
 *
 * {"ts":"2026-11-29T23:34:59.123Z","level":"info","service":"mes-producer",
 *  "msg":"movement accepted","movement_id":"MV-1","site":"PLANT1"}
 *
 * The logger is configured once in main() (service name, level) before any
 * thread starts, and is read-only afterwards: the one piece of process-wide
 * state besides the signal flag, because threading a logger through every
 * call would only add noise. Each line is written with a single write(2),
 * so lines from different threads never interleave. Never log tokens.
 */
#ifndef INVSYNC_LOG_H
#define INVSYNC_LOG_H

#include <stdint.h>

#include "error.h"

typedef enum is_log_level {
    IS_LOG_DEBUG = 0,
    IS_LOG_INFO = 1,
    IS_LOG_WARN = 2,
    IS_LOG_ERROR = 3,
} is_log_level_t;

/* Call once from main before starting threads. */
void is_log_init(const char *service, is_log_level_t level);
/* "debug"|"info"|"warn"|"error" → level; IS_ERR_INVALID otherwise. */
is_err_t is_log_level_parse(const char *name, is_log_level_t *out) IS_MUST_CHECK;
/* True when a line at this level would be written: check before formatting. */
int is_log_enabled(is_log_level_t level);

/*
 * Write one line. After msg come key/value string pairs, terminated by NULL:
 *   is_log(IS_LOG_INFO, "movement accepted", "movement_id", id, "site", s, NULL);
 * A NULL value is written as JSON null. Values are escaped properly.
 */
void is_log(is_log_level_t level, const char *msg, ...);
/* printf-style message with no extra fields. */
void is_logf(is_log_level_t level, const char *fmt, ...) IS_PRINTF(2, 3);

/*
 * A repeated line at most once per every_ms: a failure that hits every
 * movement (thousands waiting for one topic) would otherwise write one
 * line each, each retry. is_log_limit_pass() says whether to log now; when
 * it does, *held is how many were held back since the last logged one (to
 * add as a field). Start from a zeroed struct; times in ms (monotonic).
 * Not thread-safe: one limiter per thread.
 */
typedef struct is_log_limit {
    int64_t last_ms; /* 0: nothing logged yet */
    unsigned long long held;
} is_log_limit_t;
int is_log_limit_pass(is_log_limit_t *l, int64_t now_ms, int64_t every_ms,
                      unsigned long long *held);

/*
 * librdkafka log callback (set with rd_kafka_conf_set_log_cb). Maps syslog
 * levels to ours and writes {"msg":..., "facility":..., "kafka":name}. It
 * only formats and writes; it never calls back into librdkafka.
 */
struct rd_kafka_s;
void is_log_rdkafka_cb(const struct rd_kafka_s *rk, int level, const char *fac, const char *buf);

#endif
