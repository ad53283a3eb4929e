/*
 * replay_int.h — what replay_timeline.c, replay_apply.c and replay_cli.c
 * share: the timeline rows of `erp-consumer replay`. Not for other modules.
 *
 * @locality the replay command's thread.
 */
#ifndef INVSYNC_REPLAY_INT_H
#define INVSYNC_REPLAY_INT_H

#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>

#include "consumer_config.h"
#include "policy.h"
#include "replay.h"
#include "store.h"
#include "topic.h"

/*
 * One replayed message. Rows keep the raw value, not the decoded movement
 * (a day of a plant is hundreds of thousands of rows): it is decoded again
 * to print or apply it.
 */
typedef struct row {
    char *topic;   /* owned */
    char site[65]; /* from the topic name */
    char tier[IS_TIER_NAME_MAX];
    int32_t partition;
    int64_t offset, ts; /* Kafka coordinates and timestamp */
    uint8_t *payload;   /* owned copy of the value */
    size_t payload_len;
    int decodable;    /* a Movement (else shown as undecodable) */
    int64_t accepted; /* acceptance time, for ordering */
    char *producer;   /* owned, for ordering */
    uint64_t seq;
    int in_store;
    int dead_lettered; /* not in movements but in dead_letters (undecodable, or unsequenced) */
    char state[16];    /* the store's movement state */
    char posting_id[40];
    char *document;       /* owned or NULL: the posting's ERP document (chunked: "<first>+<n-1>") */
    char *chunk_document; /* owned or NULL: the document of the movement's chunk (max_lines) */
    char *detail;         /* owned or NULL: error, reason or note */
    int64_t netted;       /* other movements in the same posting */
    char *netted_ids;     /* owned or NULL: up to 10 of them */
    char erp_check[8];    /* "", "found", "partial" (some chunks), "missing" */
    char action[32];      /* --apply: "queued", "re-queued", "before-horizon" */
    int requeue;          /* --apply: the first row of a posting the ERP lost */
} replay_row_t;

typedef struct replay_skip replay_skip_t; /* an operator's skip, from the audit trail */

typedef struct timeline {
    const replay_filter_t *filter;
    sqlite3 *db;          /* the consumer's store (not owned) */
    sqlite3_stmt *lookup; /* a movement's store state, by source_system and movement_id */
    sqlite3_stmt *held;   /* the failed postings holding a lot, by lot_key */
    sqlite3_stmt *dead;   /* a dead letter's reason, by topic, partition and offset */
    replay_skip_t *skips; /* every `failed skip` of the audit trail, loaded at the first
                           * skipped row (operator actions: few) */
    size_t n_skips;
    int skips_loaded;
    replay_row_t *rows;
    size_t n, cap;
    size_t read, heartbeats, undecodable, movements, failed_lookups;
    int nomem;
} replay_timeline_t;

/*
 * Prepare t's store statements on db (the consumer's store, which must stay
 * open until replay_timeline_release). On error errstr says why and
 * replay_timeline_release still cleans up.
 */
is_err_t replay_timeline_prepare(replay_timeline_t *t, sqlite3 *db, char *errstr,
                                 size_t errstr_size) IS_MUST_CHECK;
/* replay_cb: one message into the timeline, with what the store made of it: its state
 * and a detail saying why (the ERP's error, the failed posting holding its lot, who
 * skipped it and why, the dead letter's reason). */
int replay_timeline_collect(void *opaque, const replay_msg_t *msg);
/* Free the rows and finalize the statements (not t->db). */
void replay_timeline_release(replay_timeline_t *t);
/* qsort order of rows: acceptance order, then Kafka coordinates. */
int replay_row_cmp(const void *pa, const void *pb);
/* The row's movement (free with invsync__v1__movement__free_unpacked), NULL if undecodable. */
is_movement_t *replay_row_decode(const replay_row_t *r);
/* The CSV header line; one row as a JSON line (csv 0) or a CSV line (csv 1). */
void replay_write_csv_header(FILE *f);
void replay_write_row(FILE *f, const replay_row_t *r, int csv);

typedef struct apply_counts {
    size_t postings_checked, postings_missing, posted_confirmed, posted_missing;
    size_t postings_partial, posted_partial; /* chunked postings only partly in the ERP */
    size_t newly_queued, requeued, requeued_outside, already_known, not_valid, not_owned;
    size_t before_horizon; /* not in the store, accepted before its pruned horizon: not queued */
    int64_t pruned_before; /* that horizon (0: the store was never pruned) */
} replay_apply_counts_t;

typedef struct apply_req {
    const char *by, *reason, *from, *to;
    const replay_filter_t *filter;
    int64_t earliest_ms; /* > 0: Kafka no longer holds data before this (retention) */
} replay_apply_req_t;

/* --check-erp: ask the ERP once per distinct posting of the posted rows; mark every row's
 * erp_check. */
is_err_t replay_check_erp(const consumer_config_t *cfg, replay_row_t *rows, size_t n,
                          replay_apply_counts_t *c, char *errstr, size_t errstr_size) IS_MUST_CHECK;
/* --apply (see replay_apply.c): one audited store transaction; on error nothing changed and
 * *c is zeroed. Every row of the selection lands in one counter: newly_queued, requeued
 * (those in the selection: requeued - requeued_outside), already_known, not_valid (also
 * undecodable rows), not_owned or before_horizon (not in the store and accepted before its
 * pruned horizon: it may have been posted and pruned since, so it is never queued). The audit row's
 * detail holds the whole selection. */
is_err_t replay_apply(const consumer_config_t *cfg, store_t *s, replay_row_t *rows, size_t n,
                      const replay_apply_req_t *req, replay_apply_counts_t *c, char *errstr,
                      size_t errstr_size) IS_MUST_CHECK;

#endif
