/*
 * topic_watch.h — notices Kafka topics that movements wait for but the
 * broker does not have, and says so.
 *
 * A broker with auto.create.topics.enable=false (most production clusters)
 * answers a produce to a topic nobody created with "unknown topic". With
 * message.timeout.ms=0 the movement then waits in the outbox for good; a new
 * site whose topics were forgotten is otherwise only visible as a growing
 * backlog. The forwarder feeds this module, every few seconds and only while
 * some movement has waited longer than TOPIC_WATCH_STUCK_MS, with the topics
 * that have unsent movements (outbox_unsent_topics); for each one whose
 * oldest movement waits that long it asks the broker (a callback: the
 * forwarder's metadata request for that one topic) whether the topic exists.
 *
 *   missing      WARN "kafka topic missing; movements wait for it" naming
 *                topic, site, tier, waiting movements and the fix, when
 *                first found and again every TOPIC_WATCH_WARN_EVERY_MS
 *                while it lasts
 *   resolved     INFO "kafka topic found; its movements go out" once the
 *                broker has it, or once nothing waits for it any more
 *   an unclear   answer (timeout, another error) keeps the topic's state
 *
 * The count and the first PRODUCER_METRICS_MAX_MISSING topics go to the
 * metrics handle (invsync_kafka_topics_missing, /readyz "topics_missing").
 * At most TOPIC_WATCH_MAX topics are tracked (sites × tiers); beyond that
 * topics are not looked at, and that is logged once.
 *
 * Times are ms since the epoch, from the caller's clock (the outbox's
 * accepted_at is one too). No librdkafka here: the broker is behind the
 * callback, so the rules are unit-tested without one.
 *
 * @locality one thread (the forwarder's) for everything.
 */
#ifndef INVSYNC_TOPIC_WATCH_H
#define INVSYNC_TOPIC_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include "producer_metrics.h"

#define TOPIC_WATCH_STUCK_MS      5000  /* a topic is asked about once a movement waits this long */
#define TOPIC_WATCH_WARN_EVERY_MS 60000 /* the WARN is repeated this often while it lasts */
#define TOPIC_WATCH_MAX           512   /* topics tracked at once */
#define TOPIC_WATCH_FIX           "create the topic: README 'Adding a site'"

typedef struct topic_watch topic_watch_t;

typedef enum topic_watch_answer {
    TOPIC_WATCH_UNCLEAR = -1, /* no answer, or another error: state unchanged */
    TOPIC_WATCH_MISSING = 0,  /* the broker does not have it */
    TOPIC_WATCH_EXISTS = 1,
} topic_watch_answer_t;

/* Ask the broker about one topic. A call may block (the forwarder's: up to 1 s). */
typedef topic_watch_answer_t (*topic_watch_ask_fn)(void *opaque, const char *topic);

/* metrics may be NULL. NULL on ENOMEM. */
topic_watch_t *topic_watch_new(producer_metrics_t *metrics);
/* NULL is a no-op. */
void topic_watch_destroy(topic_watch_t *tw);

/*
 * One check: topic_watch_begin, topic_watch_waiting for every topic with
 * unsent movements (the outbox_topic_fn signature), then topic_watch_end,
 * which asks, logs and publishes. A topic not reported between begin and end
 * has nothing waiting. Returns from end the number of topics found again
 * after being missing in this round (the forwarder then retries their
 * movements at once instead of after its backoff).
 */
void topic_watch_begin(topic_watch_t *tw);
void topic_watch_waiting(void *tw, const char *topic, const char *site, const char *tier,
                         uint64_t waiting, int64_t oldest_accepted_at);
size_t topic_watch_end(topic_watch_t *tw, int64_t now_ms, topic_watch_ask_fn ask, void *opaque);

/* Topics currently known missing. */
size_t topic_watch_missing(const topic_watch_t *tw);

#endif
