/*
 * topic_watch.c — the missing-topic rules of topic_watch.h.
 *
 * A flat table of the topics reported in the current round plus those
 * known missing; lookups are linear (a round is a few hundred topics at
 * most, every few seconds, and only while movements wait). Entries that are
 * neither reported nor missing are dropped at the end of each round.
 *
 * Load: one round per forwarder check; the cost is the broker round trips of
 * the topics asked about, which the caller's timeout bounds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "topic_watch.h"

typedef struct tw_topic {
    char topic[IS_TOPIC_MAX + 1];
    char site[65];
    char tier[IS_TIER_NAME_MAX];
    uint64_t waiting;  /* unsent movements reported this round */
    int64_t oldest;    /* accepted_at of the oldest of them, ms */
    int seen;          /* reported since topic_watch_begin */
    int missing;       /* the broker said it does not have it */
    int64_t since;     /* first found missing, ms */
    int64_t last_warn; /* last WARN, ms */
} tw_topic_t;

struct topic_watch {
    producer_metrics_t *metrics;
    tw_topic_t *v;
    size_t n, cap;
    size_t n_missing;
    int overflow_logged; /* the "too many topics" line was written */
};

topic_watch_t *topic_watch_new(producer_metrics_t *metrics) {
    topic_watch_t *tw = calloc(1, sizeof(*tw));
    if (tw)
        tw->metrics = metrics;
    return tw;
}

void topic_watch_destroy(topic_watch_t *tw) {
    if (!tw)
        return;
    free(tw->v);
    free(tw);
}

void topic_watch_begin(topic_watch_t *tw) {
    for (size_t i = 0; i < tw->n; i++) {
        tw->v[i].seen = 0;
        tw->v[i].waiting = 0;
    }
}

static tw_topic_t *find_or_add(topic_watch_t *tw, const char *topic) {
    for (size_t i = 0; i < tw->n; i++)
        if (strcmp(tw->v[i].topic, topic) == 0)
            return &tw->v[i];
    if (tw->n == TOPIC_WATCH_MAX) {
        if (!tw->overflow_logged) {
            char max[24];
            snprintf(max, sizeof(max), "%d", TOPIC_WATCH_MAX);
            is_log(IS_LOG_WARN, "too many topics with waiting movements to check them all",
                   "checked", max, "not_checked", topic, NULL);
            tw->overflow_logged = 1;
        }
        return NULL;
    }
    if (tw->n == tw->cap) {
        size_t cap = tw->cap ? tw->cap * 2 : 16;
        tw_topic_t *nv = realloc(tw->v, cap * sizeof(*nv));
        if (!nv)
            return NULL;
        tw->v = nv;
        tw->cap = cap;
    }
    tw_topic_t *e = &tw->v[tw->n++];
    memset(e, 0, sizeof(*e));
    snprintf(e->topic, sizeof(e->topic), "%s", topic);
    return e;
}

void topic_watch_waiting(void *opaque, const char *topic, const char *site, const char *tier,
                         uint64_t waiting, int64_t oldest_accepted_at) {
    topic_watch_t *tw = opaque;
    tw_topic_t *e = find_or_add(tw, topic);
    if (!e)
        return;
    snprintf(e->site, sizeof(e->site), "%s", site);
    snprintf(e->tier, sizeof(e->tier), "%s", tier);
    e->waiting = waiting;
    e->oldest = oldest_accepted_at;
    e->seen = 1;
}

static void fmt_s(char *buf, size_t size, int64_t ms) {
    snprintf(buf, size, "%lld", (long long)(ms > 0 ? ms / 1000 : 0));
}

static void warn_missing(const tw_topic_t *e, int64_t now) {
    char waiting[24], oldest[24], since[24];
    snprintf(waiting, sizeof(waiting), "%llu", (unsigned long long)e->waiting);
    fmt_s(oldest, sizeof(oldest), now - e->oldest);
    fmt_s(since, sizeof(since), now - e->since);
    is_log(IS_LOG_WARN, "kafka topic missing; movements wait for it", "topic", e->topic, "site",
           e->site, "tier", e->tier, "waiting", waiting, "oldest_waiting_s", oldest,
           "missing_for_s", since, "fix", TOPIC_WATCH_FIX, NULL);
}

static void info_resolved(const tw_topic_t *e, int64_t now, const char *reason) {
    char since[24];
    fmt_s(since, sizeof(since), now - e->since);
    is_log(IS_LOG_INFO, "kafka topic missing no more", "topic", e->topic, "site", e->site, "tier",
           e->tier, "reason", reason, "missing_for_s", since, NULL);
}

/* Hand the missing topics to the metrics handle (gauge and /readyz list). */
static void publish(topic_watch_t *tw) {
    producer_missing_topic_t list[PRODUCER_METRICS_MAX_MISSING];
    size_t n = 0;
    for (size_t i = 0; i < tw->n; i++) {
        const tw_topic_t *e = &tw->v[i];
        if (!e->missing || n == PRODUCER_METRICS_MAX_MISSING)
            continue;
        snprintf(list[n].topic, sizeof(list[n].topic), "%s", e->topic);
        snprintf(list[n].site, sizeof(list[n].site), "%s", e->site);
        snprintf(list[n].tier, sizeof(list[n].tier), "%s", e->tier);
        list[n].waiting = e->waiting;
        list[n].since_ms = e->since;
        n++;
    }
    producer_metrics_set_topics_missing(tw->metrics, list, n, tw->n_missing);
}

size_t topic_watch_end(topic_watch_t *tw, int64_t now, topic_watch_ask_fn ask, void *opaque) {
    size_t back = 0, keep = 0;
    int broker_unclear = 0; /* stop asking after one unanswered call: each may block */

    for (size_t i = 0; i < tw->n; i++) {
        tw_topic_t *e = &tw->v[i];
        if (!e->seen || now - e->oldest < TOPIC_WATCH_STUCK_MS) {
            /* Nothing waits for it, or nothing old: what waited was delivered. */
            if (e->missing) {
                info_resolved(e, now, "its waiting movements were delivered");
                e->missing = 0;
                back++;
            }
        } else if (!broker_unclear) {
            switch (ask(opaque, e->topic)) {
            case TOPIC_WATCH_EXISTS:
                if (e->missing) {
                    info_resolved(e, now, "the broker has it now");
                    e->missing = 0;
                    back++;
                }
                break;
            case TOPIC_WATCH_MISSING:
                if (!e->missing) {
                    e->missing = 1;
                    e->since = now;
                    e->last_warn = now;
                    warn_missing(e, now);
                } else if (now - e->last_warn >= TOPIC_WATCH_WARN_EVERY_MS) {
                    e->last_warn = now;
                    warn_missing(e, now);
                }
                break;
            default:
                broker_unclear = 1;
                break;
            }
        }
        /* Keep what is missing (its state spans rounds); the rest is re-reported. */
        if (e->missing) {
            if (keep != i)
                tw->v[keep] = *e;
            keep++;
        }
    }
    tw->n = keep;
    tw->n_missing = keep;
    publish(tw);
    return back;
}

size_t topic_watch_missing(const topic_watch_t *tw) {
    return tw ? tw->n_missing : 0;
}
