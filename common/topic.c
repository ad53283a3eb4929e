/*
 * topic.c — Kafka topic names <prefix>.<site>.<tier>, their parsing, and the
 * consumer's subscription regex (see topic.h).
 *
 * Sites and tiers never contain dots, so the last two dot-separated parts of
 * a topic are always site and tier and the prefix may itself contain dots
 * ("acme.invsync"). The prefix is restricted to Kafka's legal topic
 * characters [A-Za-z0-9._-]; in the regex every regex metacharacter of the
 * prefix is escaped anyway, so the regex matches the literal prefix whatever
 * the caller passes.
 */
#include <stdio.h>
#include <string.h>

#include "topic.h"

#define TOPIC_PART_MAX 64

static int part_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* Part validity over the n bytes at s. */
static int part_valid_n(const char *s, size_t n) {
    size_t i;
    if (n == 0 || n > TOPIC_PART_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        if (!part_char(s[i]))
            return 0;
    }
    return 1;
}

int is_topic_part_valid(const char *s) {
    return s && part_valid_n(s, strlen(s));
}

/* A prefix is 1..IS_TOPIC_MAX chars of Kafka's topic alphabet [A-Za-z0-9._-]. */
static int prefix_valid(const char *p) {
    size_t i, n;
    if (!p)
        return 0;
    n = strlen(p);
    if (n == 0 || n > IS_TOPIC_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        if (!part_char(p[i]) && p[i] != '.')
            return 0;
    }
    return 1;
}

int is_topic_name(char *buf, size_t buf_size, const char *prefix, const char *site,
                  const char *tier) {
    int n;
    if (!buf || !prefix_valid(prefix) || !is_topic_part_valid(site) || !is_topic_part_valid(tier))
        return -1;
    n = snprintf(buf, buf_size, "%s.%s.%s", prefix, site, tier);
    if (n < 0 || (size_t)n >= buf_size || n > IS_TOPIC_MAX)
        return -1;
    return n;
}

static is_err_t copy_part(char *dst, size_t dst_size, const char *src, size_t n) {
    if (!dst || n >= dst_size)
        return IS_ERR_OVERFLOW;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return IS_OK;
}

is_err_t is_topic_parse(const char *topic, const char *prefix, char *site, size_t site_size,
                        char *tier, size_t tier_size) {
    size_t plen;
    const char *rest, *dot;
    is_err_t rc;
    if (!topic || !prefix_valid(prefix))
        return IS_ERR_INVALID;
    plen = strlen(prefix);
    if (strncmp(topic, prefix, plen) != 0 || topic[plen] != '.')
        return IS_ERR_INVALID;
    rest = topic + plen + 1;
    dot = strchr(rest, '.');
    if (!dot || !part_valid_n(rest, (size_t)(dot - rest)) || !is_topic_part_valid(dot + 1))
        return IS_ERR_INVALID;
    rc = copy_part(site, site_size, rest, (size_t)(dot - rest));
    if (rc != IS_OK)
        return rc;
    return copy_part(tier, tier_size, dot + 1, strlen(dot + 1));
}

/* Appends to a bounded buffer; remembers overflow instead of failing each call. */
typedef struct re_buf {
    char *p;
    size_t size, len;
    int overflow;
} re_buf_t;

static void re_put(re_buf_t *b, const char *s, size_t n) {
    if (b->overflow || n >= b->size - b->len) {
        b->overflow = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void re_puts(re_buf_t *b, const char *s) {
    re_put(b, s, strlen(s));
}

int is_topic_regex(char *buf, size_t buf_size, const char *prefix, const char *sites_re,
                   const char *const *tiers, size_t n_tiers) {
    re_buf_t b = {buf, buf_size, 0, 0};
    const char *p;
    size_t i;

    if (!buf || buf_size == 0)
        return -1;
    buf[0] = '\0';
    if (!prefix || !*prefix || !tiers || n_tiers == 0 || (sites_re && !*sites_re))
        return -1;
    /* Tier names are [A-Za-z0-9_-]: no metacharacters, nothing to escape. */
    for (i = 0; i < n_tiers; i++) {
        if (!is_topic_part_valid(tiers[i]))
            return -1;
    }
    re_puts(&b, "^");
    for (p = prefix; *p; p++) {
        if (strchr("\\^$.|?*+()[]{}", *p))
            re_put(&b, "\\", 1);
        re_put(&b, p, 1);
    }
    re_puts(&b, "\\.");
    if (sites_re) {
        /* Grouped so an alternation ("A|B") stays inside the site position. */
        re_puts(&b, "(");
        re_puts(&b, sites_re);
        re_puts(&b, ")");
    } else {
        re_puts(&b, "[^.]+");
    }
    re_puts(&b, "\\.(");
    for (i = 0; i < n_tiers; i++) {
        if (i)
            re_puts(&b, "|");
        re_puts(&b, tiers[i]);
    }
    re_puts(&b, ")$");
    if (b.overflow) {
        buf[0] = '\0';
        return -1;
    }
    return (int)b.len;
}
