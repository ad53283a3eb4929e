/*
 * topic.h — Kafka topic naming: <prefix>.<site>.<tier> and <prefix>.<site>.dlq.
 *
 * Sites and tiers are restricted to [A-Za-z0-9_-] (no dots), so a topic name
 * splits unambiguously.
 */
#ifndef INVSYNC_TOPIC_H
#define INVSYNC_TOPIC_H

#include <stddef.h>

#include "error.h"

#define IS_TOPIC_MAX 249 /* Kafka's limit */
#define IS_TOPIC_DLQ "dlq"

/* 1 when s is 1..64 chars of [A-Za-z0-9_-]. */
int is_topic_part_valid(const char *s);
/* Writes "<prefix>.<site>.<tier>"; returns length or -1 if invalid/too long. */
int is_topic_name(char *buf, size_t buf_size, const char *prefix, const char *site,
                  const char *tier);
/* Splits a topic into site and tier; IS_ERR_INVALID when it is not ours. */
is_err_t is_topic_parse(const char *topic, const char *prefix, char *site, size_t site_size,
                        char *tier, size_t tier_size) IS_MUST_CHECK;
/*
 * librdkafka subscription regex "^<prefix>\.[^.]+\.(t1|t2|...)$" (prefix
 * dots escaped); sites_re, if non-NULL, replaces "[^.]+" to restrict the
 * sites an instance owns. Returns length or -1.
 */
int is_topic_regex(char *buf, size_t buf_size, const char *prefix, const char *sites_re,
                   const char *const *tiers, size_t n_tiers);

#endif
