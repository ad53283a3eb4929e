/*
 * replay.h — read the tier topics by time range, for investigations
 * (`erp-consumer replay`, and `genealogy --from/--to`).
 *
 * The reader is a consumer of its own: a throwaway group.id
 * ("invsync-replay-<pid>-<ms>"), partitions assigned by hand
 * (rd_kafka_assign, never subscribe: the production group is not joined
 * and nothing is rebalanced), enable.auto.commit=false and no offset ever
 * stored or committed. The kafka.* settings of the consumer's config
 * (bootstrap, TLS, SASL) are reused; group.id, group.instance.id and the
 * commit settings are overridden.
 *
 * Topics are <prefix>.<site>.<tier> from the cluster's metadata (the dlq
 * topics excluded), narrowed by site and tier. Each partition is read from
 * rd_kafka_offsets_for_times(from) to the high watermark seen at the start
 * (messages produced while replaying are not waited for), delivering the
 * messages whose timestamp is in [from, to]. Message timestamps are the
 * producer's CreateTime, the movement's accepted time, so a partition is
 * not in timestamp order: a movement published again (mes-producer
 * republish) lands at the end of the log with its old time, which is why
 * the read does not stop at the first message after `to`.
 *
 * Retention: when a partition's first offset at or after `from` is its log
 * start offset and that is not 0, older messages were deleted; if the
 * first message kept is later than `from`, the range reaches into deleted
 * data and info->retention_earliest_ms says from when data exists.
 *
 * @locality the calling thread; one reader at a time per call.
 */
#ifndef INVSYNC_REPLAY_H
#define INVSYNC_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "consumer_config.h"
#include "error.h"
#include "movement.h"

typedef struct replay_filter {
    const char *site, *tier;               /* topic level (NULL: all) */
    const char *material, *lot, *order_id; /* movement level (NULL: all) */
    int type;                              /* Invsync__V1__MovementType, 0: all */
} replay_filter_t;

/* 1 when m passes the movement-level filters (material, lot, order, type). */
int replay_filter_match(const replay_filter_t *f, const is_movement_t *m);

typedef enum replay_kind {
    REPLAY_MOVEMENT = 0, /* m decoded (not validated) */
    REPLAY_HEARTBEAT,    /* a producer heartbeat (content-type header) */
    REPLAY_UNDECODABLE,  /* the value is not a Movement */
} replay_kind_t;

typedef struct replay_msg {
    replay_kind_t kind;
    const char *topic;
    const char *site, *tier; /* from the topic name */
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms;
    const is_movement_t *m; /* REPLAY_MOVEMENT; valid during the callback only */
    const void *payload;    /* the raw value, valid during the callback only */
    size_t payload_len;
} replay_msg_t;

/* Return non-zero to stop reading (replay_read then returns IS_ERR_INVALID). */
typedef int (*replay_cb)(void *opaque, const replay_msg_t *msg);

typedef struct replay_info {
    size_t topics, partitions;     /* selected */
    size_t messages;               /* delivered to the callback */
    size_t outside_range;          /* read, timestamp outside [from, to]: not delivered */
    int retention_gap;             /* the range starts before the oldest data kept */
    int64_t retention_earliest_ms; /* retention_gap: timestamp of the oldest message kept */
    size_t partitions_with_data;   /* selected partitions holding messages at the start */
    size_t partitions_older;       /* of those, holding only messages older than `from` */
    int64_t next_after_ms;         /* earliest timestamp read after `to`; 0: none read */
} replay_info_t;

/*
 * Why a replay found nothing to show, for stderr: one line (no newline)
 * into buf from what the reader learnt (info), the topic selection (prefix,
 * f) and the timeline's counts of messages and movements delivered in
 * range. It names the range and the topics and says which case it is: the
 * topics hold nothing; everything is older than `from`; the next message
 * is at <time>; only heartbeats; or movements that no filter matched.
 */
void replay_empty_hint(const replay_info_t *info, const char *prefix, const replay_filter_t *f,
                       int64_t from_ms, int64_t to_ms, size_t read, size_t movements, char *buf,
                       size_t size);

/*
 * What a retention gap (info->retention_gap) means, for stderr: one line
 * (no newline) into buf. "data before <time> is no longer in Kafka
 * (retention)" when the oldest message kept is known, or, when a partition
 * was emptied entirely (no message kept, so no time to name), "some
 * partitions no longer hold any data (retention deleted all of it)".
 */
void replay_retention_hint(const replay_info_t *info, char *buf, size_t size);

/*
 * Check a range against the clock: IS_ERR_INVALID with a message naming
 * both times when to < from, or when from is after now (entirely in the
 * future).
 */
is_err_t replay_check_range(int64_t from_ms, int64_t to_ms, int64_t now_ms, char *errstr,
                            size_t errstr_size) IS_MUST_CHECK;

/*
 * Read [from_ms, to_ms] of the selected topics, calling cb for every
 * message in range (per partition in offset order, partitions interleaved).
 * Errors: IS_ERR_INVALID (range, see above), IS_ERR_NOT_FOUND (no topic
 * matches: "no topics for site 'X'"), IS_ERR_KAFKA (unreachable, or a
 * cluster that cannot look offsets up by time, such as the embedded mock),
 * each with errstr saying what.
 */
is_err_t replay_read(const consumer_config_t *cfg, const char *prefix, int64_t from_ms,
                     int64_t to_ms, const replay_filter_t *filter, replay_cb cb, void *opaque,
                     replay_info_t *info, char *errstr, size_t errstr_size) IS_MUST_CHECK;

/*
 * `erp-consumer replay --config F --from T1 --to T2 [--site S] [--tier T]
 * [--material M] [--lot L] [--order O] [--type TYPE] [--format jsonl|csv]
 * [--summary FILE] [--apply --by WHO --reason WHY]`; argv[0] is "replay".
 * Exit: 0 ok; 2 bad arguments, bad range or no such topics; 3 the range
 * reaches before the data Kafka still keeps (what exists is still shown
 * and applied); 1 Kafka, the store or the ERP failed.
 */
int replay_cli(int argc, char **argv);

#endif
