/*
 * api.h — erp-consumer's HTTP surface: /healthz, /readyz, /metrics
 * (Prometheus text), GET /v1/status (JSON).
 *
 * @locality handlers run on libmicrohttpd's threads; they read through their
 * own store connection (serialized by a mutex) and the shared atomic stats.
 */
#ifndef INVSYNC_API_H
#define INVSYNC_API_H

#include <jansson.h>

#include "consumer_config.h"
#include "httpd.h"
#include "policy.h"
#include "stats.h"
#include "store.h"

typedef struct api api_t;

is_err_t api_start(const consumer_config_t *cfg, const is_policy_t *policy, consumer_stats_t *stats,
                   api_t **out, char *errstr, size_t errstr_size) IS_MUST_CHECK;
uint16_t api_port(const api_t *a);
void api_stop(api_t *a); /* NULL is a no-op */

/*
 * The status document (also printed by `erp-consumer status`): counts by
 * movement and posting state, and per (site, tier) the queue depth and the
 * age of the oldest unposted movement against the tier's stale_after.
 * "retention": store.retention (retention_ms, 0 = unset: null) and the store's
 * pruned horizon (null when nothing was ever pruned).
 * stats may be NULL (CLI). Returns a new reference or NULL with errstr.
 */
json_t *api_status_json(store_t *store, const is_policy_t *policy, const consumer_stats_t *stats,
                        int64_t retention_ms, int64_t now_ms, char *errstr, size_t errstr_size);

#endif
