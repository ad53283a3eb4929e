/*
 * log.c — the one logger: JSON lines on stderr (see log.h).
 *
 * A line is built in a fixed stack buffer (LOG_LINE_MAX, 16 KiB) and written
 * with one write(2), so lines from different threads never interleave and
 * logging never allocates. Strings are escaped by hand to the JSON grammar:
 * '"', '\\' and every control character below 0x20 are escaped, and bytes that
 * are not valid UTF-8 become U+FFFD, so each line is valid JSON whatever the
 * input (the MES can send us anything). A line that would not fit is cut at
 * a character boundary and gets "truncated":true, still valid JSON.
 *
 * Load: a few lines per movement at info level; the level check comes before
 * any formatting so debug logging costs one comparison when disabled.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "duration.h"
#include "log.h"
#include "utf8.h"

#define LOG_LINE_MAX 16384
#define LOG_MSG_MAX  8192 /* is_logf's formatted message */
/* Room always kept for: closing quote, ,"truncated":true and }\n. */
#define LOG_RESERVE 32

/* Set once in main before threads start; read-only afterwards (see log.h). */
static char g_service[64] = "invsync";
static is_log_level_t g_level = IS_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

typedef struct log_buf {
    char data[LOG_LINE_MAX];
    size_t len;
    int truncated;
} log_buf_t;

void is_log_init(const char *service, is_log_level_t level) {
    snprintf(g_service, sizeof(g_service), "%s", service ? service : "invsync");
    if (level < IS_LOG_DEBUG)
        level = IS_LOG_DEBUG;
    if (level > IS_LOG_ERROR)
        level = IS_LOG_ERROR;
    g_level = level;
}

is_err_t is_log_level_parse(const char *name, is_log_level_t *out) {
    int i;
    if (!name || !out)
        return IS_ERR_INVALID;
    for (i = 0; i <= IS_LOG_ERROR; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (is_log_level_t)i;
            return IS_OK;
        }
    }
    return IS_ERR_INVALID;
}

int is_log_enabled(is_log_level_t level) {
    return level >= g_level;
}

/* Append raw bytes if they fit before the reserve; 0 when they do not. */
static int put(log_buf_t *b, const char *s, size_t n) {
    if (b->len > LOG_LINE_MAX - LOG_RESERVE || n > LOG_LINE_MAX - LOG_RESERVE - b->len)
        return 0;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 1;
}

static int put_str(log_buf_t *b, const char *s) {
    return put(b, s, strlen(s));
}

/*
 * Append s as a JSON string. With partial set, a string that does not fit is
 * cut at a character boundary, closed, and the line marked truncated; without
 * it, nothing is kept and 0 is returned (the caller rolls back).
 */
static int put_json_string(log_buf_t *b, const char *s, int partial) {
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    if (!put(b, "\"", 1))
        return 0;
    while (n > 0) {
        char esc[8];
        const char *out = esc;
        size_t olen = 2, clen = 1;
        switch (*p) {
        case '"':
            esc[0] = '\\', esc[1] = '"';
            break;
        case '\\':
            esc[0] = '\\', esc[1] = '\\';
            break;
        case '\n':
            esc[0] = '\\', esc[1] = 'n';
            break;
        case '\r':
            esc[0] = '\\', esc[1] = 'r';
            break;
        case '\t':
            esc[0] = '\\', esc[1] = 't';
            break;
        case '\b':
            esc[0] = '\\', esc[1] = 'b';
            break;
        case '\f':
            esc[0] = '\\', esc[1] = 'f';
            break;
        default:
            if (*p < 0x20 || *p == 0x7F) {
                snprintf(esc, sizeof(esc), "\\u%04x", *p);
                olen = 6;
            } else {
                clen = is_utf8_char_len(p, n);
                if (clen == 0) {
                    out = "\\ufffd";
                    olen = 6;
                    clen = 1;
                } else {
                    out = (const char *)p;
                    olen = clen;
                }
            }
            break;
        }
        if (!put(b, out, olen)) {
            if (!partial)
                return 0;
            b->truncated = 1;
            break;
        }
        p += clen;
        n -= clen;
    }
    /* The reserve guarantees room for the closing quote. */
    b->data[b->len++] = '"';
    return 1;
}

/* Append ,"key":"val" (val NULL → null) whole, or mark the line truncated. */
static void put_field(log_buf_t *b, const char *key, const char *val) {
    size_t save = b->len;
    if (b->truncated)
        return;
    if (put(b, ",", 1) && put_json_string(b, key ? key : "", 0) && put(b, ":", 1) &&
        (val ? put_json_string(b, val, 1) : put_str(b, "null")))
        return;
    b->len = save;
    b->truncated = 1;
}

static void write_all(const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report it */
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Build and write one line: the fixed fields, msg, then the key/value pairs. */
static void log_line(is_log_level_t level, const char *msg, int msg_truncated, va_list ap) {
    log_buf_t b;
    char ts[IS_RFC3339_LEN];
    const char *key;
    size_t save;

    b.len = 0;
    b.truncated = 0;
    is_format_rfc3339(is_clock_now_ms(NULL), ts);
    put_str(&b, "{\"ts\":\"");
    put_str(&b, ts);
    put_str(&b, "\",\"level\":\"");
    put_str(&b, level_names[level]);
    put_str(&b, "\"");
    put_field(&b, "service", g_service);
    /* A message too long for the line still appears, cut; the fields go. */
    save = b.len;
    if (!(put_str(&b, ",\"msg\":") && put_json_string(&b, msg ? msg : "", 1))) {
        b.len = save; /* unreachable in practice: the fixed fields are short */
        b.truncated = 1;
    }
    b.truncated |= msg_truncated;
    for (key = va_arg(ap, const char *); key; key = va_arg(ap, const char *)) {
        const char *val = va_arg(ap, const char *);
        put_field(&b, key, val);
    }
    if (b.truncated) {
        static const char marker[] = ",\"truncated\":true";
        memcpy(b.data + b.len, marker, sizeof(marker) - 1);
        b.len += sizeof(marker) - 1;
    }
    b.data[b.len++] = '}';
    b.data[b.len++] = '\n';
    write_all(b.data, b.len);
}

static is_log_level_t clamp(is_log_level_t level) {
    if (level < IS_LOG_DEBUG)
        return IS_LOG_DEBUG;
    if (level > IS_LOG_ERROR)
        return IS_LOG_ERROR;
    return level;
}

void is_log(is_log_level_t level, const char *msg, ...) {
    va_list ap;
    level = clamp(level);
    if (!is_log_enabled(level))
        return;
    va_start(ap, msg);
    log_line(level, msg, 0, ap);
    va_end(ap);
}

/* Calls log_line with no fields: a va_list needs a variadic frame. */
static void log_plain(is_log_level_t level, const char *msg, int truncated, ...) {
    va_list ap;
    va_start(ap, truncated);
    log_line(level, msg, truncated, ap);
    va_end(ap);
}

void is_logf(is_log_level_t level, const char *fmt, ...) {
    char msg[LOG_MSG_MAX];
    va_list ap;
    int n;
    level = clamp(level);
    if (!is_log_enabled(level))
        return;
    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        msg[0] = '\0';
    log_plain(level, msg, n >= (int)sizeof(msg), (const char *)NULL);
}

void is_log_rdkafka_cb(const struct rd_kafka_s *rk, int level, const char *fac, const char *buf) {
    is_log_level_t l;
    if (level <= 3)
        l = IS_LOG_ERROR; /* emerg, alert, crit, err */
    else if (level == 4)
        l = IS_LOG_WARN;
    else if (level <= 6)
        l = IS_LOG_INFO; /* notice, info */
    else
        l = IS_LOG_DEBUG;
    if (!is_log_enabled(l))
        return;
    /* rd_kafka_name() only reads an immutable field: safe on librdkafka's threads. */
    is_log(l, buf, "facility", fac, "kafka", rk ? rd_kafka_name(rk) : NULL, (const char *)NULL);
}

int is_log_limit_pass(is_log_limit_t *l, int64_t now_ms, int64_t every_ms,
                      unsigned long long *held) {
    if (l->last_ms != 0 && now_ms - l->last_ms < every_ms) {
        l->held++;
        return 0;
    }
    if (held)
        *held = l->held;
    l->held = 0;
    l->last_ms = now_ms ? now_ms : 1;
    return 1;
}
