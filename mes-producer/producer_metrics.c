/*
 * producer_metrics.c — atomic counters with a bounded site label set.
 *
 * A site slot is published once and never changes: readers scan the
 * published slots without a lock (acquire on `ready`), and only a new site
 * takes the mutex to claim a slot, re-scanning first so two threads never
 * claim the same name twice.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "producer_metrics.h"
#include "topic.h"

#define SITE_NAME_MAX 65 /* is_topic_part_valid: at most 64 chars */
#define SLOT_OTHER    PRODUCER_METRICS_MAX_SITES
#define SLOT_INVALID  (PRODUCER_METRICS_MAX_SITES + 1)
#define N_SLOTS       (PRODUCER_METRICS_MAX_SITES + 2)
#define HTTP_MIN      100
#define HTTP_MAX      599

typedef struct site_slot {
    atomic_int ready; /* 1 once name is written */
    char name[SITE_NAME_MAX];
    atomic_uint_fast64_t count[PRODUCER_OUTCOME__COUNT];
} site_slot_t;

struct producer_metrics {
    pthread_mutex_t claim_mu; /* only to claim a new site slot */
    site_slot_t slots[N_SLOTS];
    atomic_uint_fast64_t http[HTTP_MAX - HTTP_MIN + 1];
    atomic_uint_fast64_t delivery_errors;
    atomic_uint_fast64_t heartbeats_sent;
    atomic_uint_fast64_t pruned;
    atomic_int_fast64_t heartbeat_interval_ms;
    atomic_int kafka_state;
    pthread_mutex_t missing_mu; /* guards the missing-topic list */
    producer_missing_topic_t missing[PRODUCER_METRICS_MAX_MISSING];
    size_t n_missing;            /* entries listed in missing[] */
    atomic_size_t missing_total; /* the gauge: may exceed n_missing */
};

producer_metrics_t *producer_metrics_new(void) {
    producer_metrics_t *pm = calloc(1, sizeof(*pm));
    size_t i, j;
    if (!pm)
        return NULL;
    pthread_mutex_init(&pm->claim_mu, NULL);
    pthread_mutex_init(&pm->missing_mu, NULL);
    atomic_init(&pm->missing_total, 0);
    for (i = 0; i < N_SLOTS; i++) {
        atomic_init(&pm->slots[i].ready, 0);
        for (j = 0; j < PRODUCER_OUTCOME__COUNT; j++)
            atomic_init(&pm->slots[i].count[j], 0);
    }
    for (i = 0; i < sizeof(pm->http) / sizeof(pm->http[0]); i++)
        atomic_init(&pm->http[i], 0);
    atomic_init(&pm->delivery_errors, 0);
    atomic_init(&pm->heartbeats_sent, 0);
    atomic_init(&pm->pruned, 0);
    atomic_init(&pm->heartbeat_interval_ms, 0);
    atomic_init(&pm->kafka_state, PRODUCER_KAFKA_UNKNOWN);
    snprintf(pm->slots[SLOT_OTHER].name, SITE_NAME_MAX, "_other");
    snprintf(pm->slots[SLOT_INVALID].name, SITE_NAME_MAX, "_invalid");
    atomic_store(&pm->slots[SLOT_OTHER].ready, 1);
    atomic_store(&pm->slots[SLOT_INVALID].ready, 1);
    return pm;
}

void producer_metrics_destroy(producer_metrics_t *pm) {
    if (!pm)
        return;
    pthread_mutex_destroy(&pm->claim_mu);
    pthread_mutex_destroy(&pm->missing_mu);
    free(pm);
}

/* Index of site's published slot, or -1. */
static int find_slot(producer_metrics_t *pm, const char *site) {
    int i;
    for (i = 0; i < PRODUCER_METRICS_MAX_SITES; i++) {
        if (!atomic_load_explicit(&pm->slots[i].ready, memory_order_acquire))
            return -1; /* slots are claimed in order: the rest are empty */
        if (strcmp(pm->slots[i].name, site) == 0)
            return i;
    }
    return -1;
}

static int slot_for(producer_metrics_t *pm, const char *site) {
    int i;
    if (!site || !is_topic_part_valid(site))
        return SLOT_INVALID;
    i = find_slot(pm, site);
    if (i >= 0)
        return i;
    pthread_mutex_lock(&pm->claim_mu);
    for (i = 0; i < PRODUCER_METRICS_MAX_SITES; i++) {
        site_slot_t *s = &pm->slots[i];
        if (!atomic_load_explicit(&s->ready, memory_order_acquire)) {
            snprintf(s->name, SITE_NAME_MAX, "%s", site);
            atomic_store_explicit(&s->ready, 1, memory_order_release);
            break;
        }
        if (strcmp(s->name, site) == 0)
            break;
    }
    pthread_mutex_unlock(&pm->claim_mu);
    return i < PRODUCER_METRICS_MAX_SITES ? i : SLOT_OTHER;
}

void producer_metrics_movements(producer_metrics_t *pm, const char *site,
                                producer_outcome_t outcome, uint64_t n) {
    int slot;
    if (!pm || n == 0 || outcome < 0 || outcome >= PRODUCER_OUTCOME__COUNT)
        return;
    if (outcome != PRODUCER_OUTCOME_REJECTED) {
        slot = slot_for(pm, site);
    } else {
        /* A refusal never claims a slot: sites nobody may write (a 403), a
         * lot number in the site field, would otherwise fill the slots for
         * good and push the real sites into _other. */
        slot = !site || !is_topic_part_valid(site) ? SLOT_INVALID : find_slot(pm, site);
        if (slot < 0)
            slot = SLOT_OTHER;
    }
    atomic_fetch_add(&pm->slots[slot].count[outcome], n);
}

void producer_metrics_http(producer_metrics_t *pm, int status) {
    if (!pm || status < HTTP_MIN || status > HTTP_MAX)
        return;
    atomic_fetch_add(&pm->http[status - HTTP_MIN], 1);
}

void producer_metrics_delivery_error(producer_metrics_t *pm) {
    if (pm)
        atomic_fetch_add(&pm->delivery_errors, 1);
}

void producer_metrics_heartbeat_sent(producer_metrics_t *pm) {
    if (pm)
        atomic_fetch_add(&pm->heartbeats_sent, 1);
}

void producer_metrics_pruned(producer_metrics_t *pm, int64_t n) {
    if (pm && n > 0)
        atomic_fetch_add(&pm->pruned, (uint_fast64_t)n);
}

void producer_metrics_set_heartbeat_interval(producer_metrics_t *pm, int64_t ms) {
    if (pm)
        atomic_store(&pm->heartbeat_interval_ms, ms);
}

void producer_metrics_set_kafka(producer_metrics_t *pm, producer_kafka_state_t st) {
    if (pm)
        atomic_store(&pm->kafka_state, (int)st);
}

producer_kafka_state_t producer_metrics_kafka(const producer_metrics_t *pm) {
    if (!pm)
        return PRODUCER_KAFKA_UNKNOWN;
    return (producer_kafka_state_t)atomic_load(&((producer_metrics_t *)pm)->kafka_state);
}

void producer_metrics_set_topics_missing(producer_metrics_t *pm, const producer_missing_topic_t *v,
                                         size_t n, size_t total) {
    if (!pm)
        return;
    if (n > PRODUCER_METRICS_MAX_MISSING)
        n = PRODUCER_METRICS_MAX_MISSING;
    pthread_mutex_lock(&pm->missing_mu);
    if (n)
        memcpy(pm->missing, v, n * sizeof(*v));
    pm->n_missing = n;
    atomic_store(&pm->missing_total, total);
    pthread_mutex_unlock(&pm->missing_mu);
}

size_t producer_metrics_topics_missing(producer_metrics_t *pm, producer_missing_topic_t *out,
                                       size_t max, size_t *n_out) {
    size_t n, total;
    *n_out = 0;
    if (!pm)
        return 0;
    pthread_mutex_lock(&pm->missing_mu);
    n = pm->n_missing < max ? pm->n_missing : max;
    if (n)
        memcpy(out, pm->missing, n * sizeof(*out));
    total = atomic_load(&pm->missing_total);
    pthread_mutex_unlock(&pm->missing_mu);
    *n_out = n;
    return total;
}

const char *producer_kafka_state_name(producer_kafka_state_t st) {
    switch (st) {
    case PRODUCER_KAFKA_CONNECTED:
        return "connected";
    case PRODUCER_KAFKA_UNREACHABLE:
        return "unreachable";
    default:
        return "unknown";
    }
}

char *producer_metrics_render(const producer_metrics_t *cpm, uint64_t backlog,
                              double oldest_unsent_age_s, outbox_t *outbox, size_t *len) {
    static const char *const outcome_names[PRODUCER_OUTCOME__COUNT] = {"accepted", "duplicate",
                                                                       "rejected"};
    producer_metrics_t *pm = (producer_metrics_t *)cpm; /* atomics loads need non-const */
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    int i, o;

    if (!f)
        return NULL;
    if (!pm)
        goto gauges;
    fputs("# HELP invsync_movements_total Movements received, by site and outcome.\n"
          "# TYPE invsync_movements_total counter\n",
          f);
    for (i = 0; i < N_SLOTS; i++) {
        site_slot_t *s = &pm->slots[i];
        if (!atomic_load_explicit(&s->ready, memory_order_acquire))
            continue;
        for (o = 0; o < PRODUCER_OUTCOME__COUNT; o++) {
            uint64_t v = atomic_load(&s->count[o]);
            if (v == 0 && i >= PRODUCER_METRICS_MAX_SITES)
                continue; /* the overflow labels only once used */
            fprintf(f, "invsync_movements_total{site=\"%s\",outcome=\"%s\"} %llu\n", s->name,
                    outcome_names[o], (unsigned long long)v);
        }
    }
    fputs("# HELP invsync_http_requests_total Requests answered by the handlers, by status.\n"
          "# TYPE invsync_http_requests_total counter\n",
          f);
    for (i = 0; i <= HTTP_MAX - HTTP_MIN; i++) {
        uint64_t v = atomic_load(&pm->http[i]);
        if (v)
            fprintf(f, "invsync_http_requests_total{code=\"%d\"} %llu\n", i + HTTP_MIN,
                    (unsigned long long)v);
    }
gauges:
    fprintf(f,
            "# HELP invsync_outbox_backlog Accepted movements not yet delivered to Kafka.\n"
            "# TYPE invsync_outbox_backlog gauge\n"
            "invsync_outbox_backlog %llu\n"
            "# HELP invsync_outbox_oldest_unsent_age_seconds Age of the oldest undelivered "
            "movement (0 when none).\n"
            "# TYPE invsync_outbox_oldest_unsent_age_seconds gauge\n"
            "invsync_outbox_oldest_unsent_age_seconds %.3f\n"
            "# HELP invsync_kafka_delivery_errors_total Failed Kafka deliveries (retried).\n"
            "# TYPE invsync_kafka_delivery_errors_total counter\n"
            "invsync_kafka_delivery_errors_total %llu\n"
            "# HELP invsync_kafka_up 1 when Kafka answered last, 0 when unreachable or unknown.\n"
            "# TYPE invsync_kafka_up gauge\n"
            "invsync_kafka_up %d\n"
            "# HELP invsync_kafka_topics_missing Topics with movements waiting for them that the "
            "broker does not have (create them: README 'Adding a site').\n"
            "# TYPE invsync_kafka_topics_missing gauge\n"
            "invsync_kafka_topics_missing %zu\n"
            "# HELP invsync_outbox_pruned_total Delivered movements deleted by outbox.retention.\n"
            "# TYPE invsync_outbox_pruned_total counter\n"
            "invsync_outbox_pruned_total %llu\n"
            "# HELP invsync_heartbeats_sent_total Site heartbeats delivered to Kafka.\n"
            "# TYPE invsync_heartbeats_sent_total counter\n"
            "invsync_heartbeats_sent_total %llu\n"
            "# HELP invsync_heartbeat_interval_seconds Configured heartbeat period per site.\n"
            "# TYPE invsync_heartbeat_interval_seconds gauge\n"
            "invsync_heartbeat_interval_seconds %.3f\n",
            (unsigned long long)backlog, oldest_unsent_age_s,
            (unsigned long long)(pm ? atomic_load(&pm->delivery_errors) : 0),
            producer_metrics_kafka(pm) == PRODUCER_KAFKA_CONNECTED ? 1 : 0,
            pm ? atomic_load(&pm->missing_total) : (size_t)0,
            (unsigned long long)(pm ? atomic_load(&pm->pruned) : 0),
            (unsigned long long)(pm ? atomic_load(&pm->heartbeats_sent) : 0),
            pm ? (double)atomic_load(&pm->heartbeat_interval_ms) / 1000.0 : 0.0);
    char ckpt[512];
    if (outbox && outbox_checkpoint_metrics(outbox, ckpt, sizeof(ckpt)))
        fputs(ckpt, f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    *len = size;
    return buf;
}
