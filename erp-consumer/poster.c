/*
 * poster.c — the posting loop (see poster.h).
 *
 * Load: up to poster.batch postings per cycle; two store transactions per
 * cycle plus one ERP batch call; two cycles in hand at most (the pipeline). Real-time tiers post
 * one movement per posting.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "duration.h"
#include "log.h"
#include "netting.h"
#include "poster.h"
#include "store.h"
#include "uom.h"

struct poster {
    const consumer_config_t *cfg;
    const is_policy_t *policy;
    dlq_t *dlq;
    consumer_stats_t *stats;
    store_t *store;
    erp_t *erp;
    pthread_t thread;
    int started;
    int recovered;
    atomic_int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int woken; /* guarded by mu */
    /* The pipeline (poster_main / erp_main), guarded by pmu. */
    pthread_t erp_thread;
    pthread_mutex_t pmu;
    pthread_cond_t pcv;
    struct cycle *inflight; /* handed to the ERP thread */
    int inflight_done;      /* ... and posted: to be recorded */
    int erp_stop;
    uint64_t rng; /* xorshift state for jitter */
    /* Fault injection for the reliability suite (INVSYNC_TEST_CRASH_AFTER_POSTS=N):
     * after N accepted ERP posts, die before recording them — the crash window
     * between "the ERP has it" and "the store knows". 0 = off. */
    long crash_after;
    long posted_total;
    uom_table_t *uom; /* NULL: units pass through */
    /* store.retention (prune_step): a tick deletes up to PRUNE_BATCHES batches,
     * one per cycle, so that posting goes on between them. */
    int64_t next_prune;   /* monotonic ms of the next tick; 0 = at the first cycle */
    int pruning;          /* a tick is in progress */
    int prune_batches;    /* batches run in this tick */
    int64_t prune_cutoff; /* this tick's cutoff (ms UTC) */
    int64_t prune_after;  /* this tick's cursor (movements.id) */
    int64_t prune_total;  /* rows deleted in this tick */
};

is_err_t poster_new(const consumer_config_t *cfg, const is_policy_t *policy, dlq_t *dlq,
                    consumer_stats_t *stats, poster_t **out, char *errstr, size_t errstr_size) {
    is_err_t rc;
    poster_t *p = calloc(1, sizeof(*p));
    *out = NULL;
    if (!p)
        return IS_ERR_NOMEM;
    p->cfg = cfg;
    p->policy = policy;
    p->dlq = dlq;
    p->stats = stats;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_mutex_init(&p->pmu, NULL);
    pthread_cond_init(&p->pcv, NULL);
    p->rng = (uint64_t)is_monotonic_ms() * 0x9E3779B97F4A7C15ull | 1;
    const char *crash = getenv("INVSYNC_TEST_CRASH_AFTER_POSTS");
    int64_t n = 0;
    if (crash && is_parse_int64(crash, 1, 1000000000, &n) == IS_OK) {
        p->crash_after = (long)n;
        is_log(IS_LOG_WARN, "fault injection armed: crash after ERP posts",
               "INVSYNC_TEST_CRASH_AFTER_POSTS", crash, NULL);
    }
    rc = store_open(cfg->store_path, consumer_config_store_sync(cfg), &p->store, errstr,
                    errstr_size);
    if (rc != IS_OK)
        goto err;
    store_set_shared(p->store, cfg->consume_mode && strcmp(cfg->consume_mode, "group") == 0);
    /* Unset is INT64_MAX whatever time_ordered_ids_from_ms holds (a config
     * built without consumer_config_load has 0 there, the epoch). */
    int ids_set = cfg->time_ordered_ids_from && *cfg->time_ordered_ids_from;
    rc = store_pin_time_ordered_ids_from(p->store,
                                         ids_set ? cfg->time_ordered_ids_from_ms : INT64_MAX,
                                         is_clock_now_ms(NULL), errstr, errstr_size);
    if (rc != IS_OK)
        goto err;
    if (ids_set) {
        /* Every instance posting to one ERP must log the same value here. */
        is_log(IS_LOG_INFO, "time-ordered posting ids for movements accepted from",
               "poster.time_ordered_ids_from", cfg->time_ordered_ids_from, NULL);
    }
    rc = erp_open(&cfg->erp, &p->erp, errstr, errstr_size);
    if (rc != IS_OK)
        goto err;
    if (cfg->uom_path && *cfg->uom_path) {
        rc = uom_load(cfg->uom_path, &p->uom, errstr, errstr_size);
        if (rc != IS_OK)
            goto err;
    }
    *out = p;
    return IS_OK;
err:
    poster_destroy(p);
    return rc;
}

void poster_destroy(poster_t *p) {
    if (!p)
        return;
    if (p->started)
        poster_stop(p);
    erp_close(p->erp);
    uom_free(p->uom);
    store_close(p->store);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->pmu);
    pthread_cond_destroy(&p->pcv);
    free(p);
}

void poster_wake(void *opaque) {
    poster_t *p = opaque;
    pthread_mutex_lock(&p->mu);
    p->woken = 1;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Exponential backoff with jitter: base·2^(attempt-1), capped, times [0.5, 1). */
static int64_t backoff_ms(poster_t *p, int attempt) {
    int64_t d = p->cfg->retry_base_ms;
    for (int i = 1; i < attempt && d < p->cfg->retry_max_ms; i++)
        d *= 2;
    if (d > p->cfg->retry_max_ms)
        d = p->cfg->retry_max_ms;
    p->rng ^= p->rng << 13;
    p->rng ^= p->rng >> 7;
    p->rng ^= p->rng << 17;
    return d / 2 + (int64_t)(p->rng % (uint64_t)(d / 2 + 1));
}

/* Ask the ERP about postings a crash left in flight; record what it says. */
static is_err_t recover_inflight(poster_t *p, int64_t now_ms) {
    store_posting_list_t l = {0};
    store_result_t *res = NULL;
    erp_result_t *er = NULL;
    char errstr[512];
    is_err_t rc = store_fetch_inflight(p->store, &l, errstr, sizeof(errstr));
    if (rc != IS_OK)
        goto out;
    if (l.n == 0)
        goto out;
    res = calloc(l.n, sizeof(*res));
    er = calloc(l.n, sizeof(*er));
    if (!res || !er) {
        rc = IS_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < l.n; i++) {
        const char *id = l.items[i].posting_id, *why;
        is_err_t lr = erp_lookup_reference(p->erp, id, &er[i]);
        if (lr == IS_OK) {
            res[i].outcome = STORE_POSTED;
            res[i].document = er[i].document;
            is_log(IS_LOG_INFO, "in-flight posting found in the ERP", "posting_id", id, "document",
                   er[i].document, NULL);
            continue;
        }
        if (lr == IS_ERR_NOT_FOUND) {
            /* Cut into chunks (max_lines), it is booked as <id>-1 ... -n: a
             * crash between chunks leaves some of them booked. */
            char ref[64];
            erp_chunk_reference(ref, sizeof(ref), id, 1);
            lr = erp_lookup_reference(p->erp, ref, &er[i]);
        }
        /* Posted again under the same reference(s): the ERP's idempotency
         * key keeps what it has from doubling. Not in the ERP at all: it is
         * judged again as a fresh posting would be (STORE_NOT_IN_ERP_...). */
        why = lr == IS_OK              ? STORE_PARTLY_IN_ERP_AFTER_RESTART
              : lr == IS_ERR_NOT_FOUND ? STORE_NOT_IN_ERP_AFTER_RESTART
                                       : "ERP lookup failed after restart";
        res[i].outcome = STORE_RETRY;
        res[i].error = why;
        res[i].next_at_ms =
            lr == IS_OK || lr == IS_ERR_NOT_FOUND ? now_ms : now_ms + backoff_ms(p, 1);
        is_log(IS_LOG_INFO, "in-flight posting will be posted again", "posting_id", id, "reason",
               why, NULL);
    }
    rc = store_record_results(p->store, &l, res, now_ms, errstr, sizeof(errstr));
    if (rc == IS_OK)
        atomic_fetch_add(&p->stats->recovered, (long long)l.n);
out:
    if (rc != IS_OK)
        is_log(IS_LOG_ERROR, "cannot recover in-flight postings", "error", errstr, NULL);
    free(res);
    free(er);
    store_posting_list_release(&l);
    return rc;
}

/* Dead-letter every movement of a permanently failed posting: refused by the
 * ERP (answer), or never sent (local: the reason is `answer`, or sp->invalid). */
static void dead_letter(poster_t *p, const store_posting_t *sp, const char *answer, int local) {
    char errstr[256], error[704]; /* "not posted: " + an invalid reason (640) */
    if (sp->invalid || local) {
        snprintf(error, sizeof(error), "not posted: %s", sp->invalid ? sp->invalid : answer);
        answer = NULL; /* the ERP was not asked */
    } else {
        snprintf(error, sizeof(error), "ERP refused posting %s", sp->posting_id);
    }
    for (size_t i = 0; i < sp->n; i++) {
        size_t len = invsync__v1__movement__get_packed_size(sp->m[i]);
        uint8_t *buf = malloc(len ? len : 1);
        char key[IS_LOT_KEY_MAX];
        if (!buf)
            continue;
        invsync__v1__movement__pack(sp->m[i], buf);
        int klen = is_movement_lot_key(sp->m[i], key, sizeof(key));
        dlq_letter_t l = {
            .site = sp->site,
            .key = key,
            .key_len = klen > 0 ? (size_t)klen : 0,
            .value = buf,
            .value_len = len,
            .error = error,
            .erp_answer = answer,
            .source_topic = sp->origin[i].topic,
            .source_partition = sp->origin[i].partition,
            .source_offset = sp->origin[i].offset,
            .movement_id = sp->m[i]->movement_id,
        };
        if (dlq_publish(p->dlq, &l, errstr, sizeof(errstr)) != IS_OK) {
            atomic_fetch_add(&p->stats->dlq_errors, 1);
            is_log(IS_LOG_ERROR, "cannot dead-letter", "movement_id", sp->m[i]->movement_id,
                   "error", errstr, NULL);
        }
        free(buf);
    }
}

/*
 * What a posting posted in chunks tells the store besides its result: each
 * chunk's document and the chunk of each of its movements (trace names the
 * chunk that holds a movement, store migration 10). Owned by its cycle:
 * recorded after the netting it was read from is gone.
 */
typedef struct chunked {
    store_chunk_t *chunks;    /* n_chunks, documents in docs */
    char (*docs)[64];         /* chunk k+1's document */
    uint32_t *movement_chunk; /* per movement of the posting: 1..n_chunks, 0 = none */
    size_t n_chunks;
} chunked_t;

static void chunked_release(chunked_t *c) {
    free(c->chunks);
    free(c->docs);
    free(c->movement_chunk);
    memset(c, 0, sizeof(*c));
}

/* A posting ready for the ERP: ERP units applied, movements netted into lines. */
typedef struct prepared {
    netting_t nt;
    size_t n_chunks; /* > 1: posted chunk by chunk (max_lines) */
    int decided;     /* outcome known for this cycle */
    int local;       /* failed before the ERP was asked (units, netting) */
} prepared_t;

/* Apply ERP units and netting. IS_OK, or the error for the posting (message in er). */
static is_err_t prepare(poster_t *p, store_posting_t *sp, prepared_t *pr, erp_result_t *er) {
    is_err_t rc;
    pr->local = 1; /* until it is ready: a failure here is ours, not the ERP's */
    if (sp->invalid) {
        /* Never sent: a permanent failure like an ERP refusal (dead letter, lot held). */
        snprintf(er->message, sizeof(er->message), "%s", sp->invalid);
        return IS_ERR_PERMANENT;
    }
    for (size_t i = 0; p->uom && i < sp->n; i++) {
        rc = uom_convert(p->uom, sp->m[i], er->message, sizeof(er->message));
        if (rc != IS_OK)
            return rc;
    }
    rc = netting_build(sp->m, sp->n, sp->net, &pr->nt);
    if (rc != IS_OK) {
        snprintf(er->message, sizeof(er->message), "cannot net the posting: %s", is_err_str(rc));
        return rc == IS_ERR_OVERFLOW ? IS_ERR_PERMANENT : IS_ERR_RETRYABLE;
    }
    size_t chunk = sp->max_lines ? sp->max_lines : pr->nt.n_lines;
    pr->n_chunks = chunk ? (pr->nt.n_lines + chunk - 1) / chunk : 0;
    pr->local = 0;
    return IS_OK;
}

static erp_posting_t erp_posting_of(const store_posting_t *sp, const erp_line_t *lines, size_t n,
                                    const char *ref, int64_t now_ms) {
    erp_posting_t ep = {
        .posting_id = ref,
        .site = sp->site,
        .tier = sp->tier,
        .policy_version = sp->m[0]->policy_version,
        .posting_time = now_ms,
        .lines = lines,
        .n_lines = n,
    };
    return ep;
}

/*
 * Time and count the postings of one ERP call (n of them, outcomes rcs).
 * res (NULL: all were sent): a posting with not_attempted set was held behind
 * a failure of its lot and never reached the ERP; it is not counted, and the
 * call's time is shared among the postings sent.
 */
static void observe(poster_t *p, const struct timespec *t0, size_t n, const is_err_t *rcs,
                    const erp_result_t *res) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long long us =
        (long long)(t1.tv_sec - t0->tv_sec) * 1000000 + (t1.tv_nsec - t0->tv_nsec) / 1000;
    size_t sent = 0;
    for (size_t i = 0; i < n; i++)
        sent += !(res && res[i].not_attempted);
    atomic_fetch_add(&p->stats->erp_calls, (long long)sent);
    atomic_fetch_add(&p->stats->erp_call_us, us);
    for (size_t i = 0; i < n; i++)
        if (!(res && res[i].not_attempted))
            stats_observe_erp(p->stats,
                              rcs[i] == IS_OK              ? STATS_POSTED
                              : rcs[i] == IS_ERR_PERMANENT ? STATS_FAILED
                                                           : STATS_RETRY,
                              us / (long long)sent);
}

/*
 * Post a large posting chunk by chunk (max_lines), in order. Each chunk has
 * its own reference (<posting_id>-<k>), so re-posting after a failure or a
 * crash is idempotent chunk by chunk.
 */
/* A movement id of a line and the index of its movement in the posting:
 * netting's lines point at the movements' own movement_id strings. */
typedef struct id_index {
    const char *id;
    size_t j;
} id_index_t;

static int id_index_cmp(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)((const id_index_t *)a)->id,
              y = (uintptr_t)((const id_index_t *)b)->id;
    return x < y ? -1 : x > y;
}

/* Fill ch (documents already in ch->docs): each chunk's lines and the chunk
 * of each movement. 0 on out of memory. */
static int chunked_map(const store_posting_t *sp, const prepared_t *pr, chunked_t *ch) {
    size_t chunk = sp->max_lines;
    id_index_t *idx = malloc((sp->n ? sp->n : 1) * sizeof(*idx));
    ch->chunks = calloc(ch->n_chunks, sizeof(*ch->chunks));
    ch->movement_chunk = calloc(sp->n ? sp->n : 1, sizeof(*ch->movement_chunk));
    if (!idx || !ch->chunks || !ch->movement_chunk) {
        free(idx);
        return 0;
    }
    for (size_t j = 0; j < sp->n; j++)
        idx[j] = (id_index_t){sp->m[j]->movement_id, j};
    qsort(idx, sp->n, sizeof(*idx), id_index_cmp);
    for (size_t l = 0; l < pr->nt.n_lines; l++) {
        const erp_line_t *line = &pr->nt.lines[l];
        size_t k = l / chunk;
        ch->chunks[k].document = ch->docs[k];
        ch->chunks[k].lines++;
        for (size_t i = 0; i < line->n_movement_ids; i++) {
            id_index_t key = {line->movement_ids[i], 0};
            const id_index_t *hit = bsearch(&key, idx, sp->n, sizeof(*idx), id_index_cmp);
            if (hit)
                ch->movement_chunk[hit->j] = (uint32_t)(k + 1);
        }
    }
    free(idx);
    return 1;
}

static is_err_t post_chunked(poster_t *p, const store_posting_t *sp, const prepared_t *pr,
                             int64_t now_ms, erp_result_t *er, chunked_t *ch) {
    size_t chunk = sp->max_lines;
    char first_doc[64] = "";
    is_err_t rc = IS_OK;
    chunked_release(ch);
    ch->n_chunks = pr->n_chunks;
    ch->docs = calloc(pr->n_chunks, sizeof(*ch->docs));
    if (!ch->docs) {
        snprintf(er->message, sizeof(er->message), "out of memory");
        return IS_ERR_RETRYABLE;
    }
    for (size_t k = 0; k < pr->n_chunks; k++) {
        char ref[64];
        struct timespec t0;
        erp_chunk_reference(ref, sizeof(ref), sp->posting_id, k + 1);
        size_t from = k * chunk,
               count = pr->nt.n_lines - from < chunk ? pr->nt.n_lines - from : chunk;
        erp_posting_t ep = erp_posting_of(sp, &pr->nt.lines[from], count, ref, now_ms);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        rc = erp_post(p->erp, &ep, er);
        observe(p, &t0, 1, &rc, NULL);
        if (rc != IS_OK)
            break;
        snprintf(ch->docs[k], sizeof(ch->docs[k]), "%s", er->document);
        if (k == 0)
            snprintf(first_doc, sizeof(first_doc), "%s", er->document);
    }
    if (rc == IS_OK && !chunked_map(sp, pr, ch)) {
        /* Booked, but which chunk holds what cannot be recorded: retried,
         * the same references give back the same documents (the ERP's
         * idempotency), recorded then. */
        snprintf(er->message, sizeof(er->message), "out of memory recording the chunks");
        rc = IS_ERR_RETRYABLE;
    }
    if (rc != IS_OK) {
        chunked_release(ch);
        return rc;
    }
    erp_chunked_document(er->document, sizeof(er->document), first_doc, pr->n_chunks);
    return rc;
}

/* Record what happened to posting i (logging, counters, dead letters). */
static void decide(poster_t *p, store_posting_t *sp, prepared_t *pr, is_err_t rc, erp_result_t *er,
                   store_result_t *res, int64_t now_ms) {
    pr->decided = 1;
    if (rc == IS_OK) {
        if (p->crash_after && ++p->posted_total >= p->crash_after) {
            is_log(IS_LOG_WARN, "fault injection: crashing after the ERP accepted a posting",
                   "posting_id", sp->posting_id, NULL);
            _exit(86);
        }
        res->outcome = STORE_POSTED;
        res->document = er->document;
        res->lines = (int)pr->nt.n_lines;
        atomic_fetch_add(&p->stats->posted, 1);
        atomic_store(&p->stats->last_posted_ms, now_ms);
        if (is_log_enabled(IS_LOG_DEBUG))
            is_log(IS_LOG_DEBUG, "posted", "posting_id", sp->posting_id, "movement_id",
                   sp->m[0]->movement_id, "document", er->document, NULL);
    } else if (rc == IS_ERR_PERMANENT) {
        res->outcome = STORE_FAILED;
        res->error = er->message;
        atomic_fetch_add(&p->stats->failed, 1);
        if (sp->invalid)
            is_log(IS_LOG_ERROR, "posting invalid, not sent to the ERP; lot held", "posting_id",
                   sp->posting_id, "movement_id", sp->m[0]->movement_id, "lot", sp->lot_key,
                   "reason", sp->invalid, NULL);
        else if (pr->local)
            is_log(IS_LOG_ERROR, "posting cannot be sent to the ERP; lot held", "posting_id",
                   sp->posting_id, "movement_id", sp->m[0]->movement_id, "lot", sp->lot_key,
                   "reason", er->message, NULL);
        else
            is_log(IS_LOG_ERROR, "ERP refused posting; lot held", "posting_id", sp->posting_id,
                   "movement_id", sp->m[0]->movement_id, "lot", sp->lot_key, "erp_answer",
                   er->message, NULL);
        dead_letter(p, sp, er->message, pr->local);
    } else {
        res->outcome = STORE_RETRY;
        res->error = er->message;
        int64_t wait = backoff_ms(p, sp->attempts + 1);
        /* The ERP's Retry-After (a 429's, a 503's) up to retry.max: sooner
         * would only be refused again, and adds load it asked to be spared. */
        if (er->retry_after_ms > wait)
            wait = er->retry_after_ms < p->cfg->retry_max_ms ? er->retry_after_ms
                                                             : p->cfg->retry_max_ms;
        res->next_at_ms = now_ms + wait;
        atomic_fetch_add(&p->stats->retried, 1);
        is_log(IS_LOG_WARN, "ERP posting failed; will retry", "posting_id", sp->posting_id,
               "movement_id", sp->m[0]->movement_id, "error", er->message, NULL);
    }
}

/*
 * Post a cycle's postings. The store returns a lot's postings consecutively
 * and in acceptance order. Each round sends, for every lot, its consecutive
 * undecided postings in one batch call, ordered by lot (order_key): the ERP
 * applies them in order and, once one fails, does not attempt the lot's
 * later ones, which go back to the queue (REQUEUE). A posting split into
 * chunks (max_lines) goes on its own, in its turn. In the usual case — no
 * chunked postings — a cycle is one round: one durable ERP write.
 */
static int post_all(poster_t *p, store_posting_list_t *l, store_result_t *res, erp_result_t *er,
                    chunked_t *ch, int64_t now_ms) {
    prepared_t *pr = calloc(l->n, sizeof(*pr));
    erp_posting_t *batch = calloc(l->n, sizeof(*batch));
    erp_result_t *bres = calloc(l->n, sizeof(*bres));
    is_err_t *brc = calloc(l->n, sizeof(*brc));
    size_t *bidx = calloc(l->n, sizeof(*bidx));
    int handled = 0;
    if (!pr || !batch || !bres || !brc || !bidx) {
        handled = IS_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < l->n; i++) {
        store_posting_t *sp = &l->items[i];
        if (sp->cancel) {
            res[i].outcome = STORE_CANCELLED;
            pr[i].decided = 1;
            is_log(IS_LOG_INFO, "reversal inside the window: neither posted", "lot", sp->lot_key,
                   "movement_id", sp->m[0]->movement_id, NULL);
            continue;
        }
        is_err_t rc = prepare(p, sp, &pr[i], &er[i]);
        if (rc != IS_OK) {
            decide(p, sp, &pr[i], rc, &er[i], &res[i], now_ms);
            handled++;
        } else if (pr[i].nt.n_lines == 0) {
            /* Everything netted to zero: nothing for the ERP, the movements are still traced. */
            snprintf(er[i].document, sizeof(er[i].document), "netted-to-zero");
            decide(p, sp, &pr[i], IS_OK, &er[i], &res[i], now_ms);
            handled++;
        }
    }
    for (;;) {
        size_t nb = 0;
        const char *lot = NULL;
        int blocked = 0, wait = 0, in_batch = 0;
        for (size_t i = 0; i < l->n; i++) {
            store_posting_t *sp = &l->items[i];
            if (sp->cancel)
                continue;
            if (!lot || strcmp(lot, sp->lot_key) != 0) {
                lot = sp->lot_key; /* a new lot's run */
                blocked = wait = in_batch = 0;
            }
            if (pr[i].decided) {
                if (res[i].outcome != STORE_POSTED)
                    blocked = 1; /* keep the lot's order behind a failure */
                continue;
            }
            if (blocked || atomic_load(&p->stop)) {
                res[i].outcome = STORE_REQUEUE;
                pr[i].decided = 1;
                continue;
            }
            if (wait)
                continue; /* behind a posting of this lot still in this round's batch */
            if (pr[i].n_chunks > 1) {
                if (in_batch) {
                    wait = 1; /* after the batch has settled this lot's earlier postings */
                    continue;
                }
                is_err_t rc = post_chunked(p, sp, &pr[i], now_ms, &er[i], &ch[i]);
                decide(p, sp, &pr[i], rc, &er[i], &res[i], now_ms);
                if (rc == IS_OK) {
                    res[i].chunks = ch[i].chunks;
                    res[i].n_chunks = ch[i].n_chunks;
                    res[i].movement_chunk = ch[i].movement_chunk;
                }
                handled++;
                blocked = rc != IS_OK;
                continue;
            }
            batch[nb] =
                erp_posting_of(sp, pr[i].nt.lines, pr[i].nt.n_lines, sp->posting_id, now_ms);
            batch[nb].order_key = sp->lot_key;
            memset(&bres[nb], 0, sizeof(bres[nb]));
            bidx[nb++] = i;
            in_batch = 1;
        }
        if (nb == 0)
            break;
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        erp_post_batch(p->erp, batch, nb, bres, brc);
        observe(p, &t0, nb, brc, bres);
        for (size_t b = 0; b < nb; b++) {
            size_t i = bidx[b];
            if (bres[b].not_attempted) {
                res[i].outcome = STORE_REQUEUE; /* held behind a failure of its lot */
                pr[i].decided = 1;
                continue;
            }
            er[i] = bres[b];
            decide(p, &l->items[i], &pr[i], brc[b], &er[i], &res[i], now_ms);
            handled++;
        }
    }
out:
    for (size_t i = 0; pr && i < l->n; i++)
        netting_release(&pr[i].nt);
    free(pr);
    free(batch);
    free(bres);
    free(brc);
    free(bidx);
    return handled;
}

/*
 * A cycle: the postings store_fetch_due returned, marked `posting`, and what
 * the ERP answered. Taken and recorded on the store thread; posted on the
 * ERP thread (or all on one thread: poster_run_once).
 */
typedef struct cycle {
    store_posting_list_t l;
    store_result_t *res;
    erp_result_t *er;
    chunked_t *ch; /* per posting: its chunks when posted in chunks */
    int64_t now_ms;
    int handled; /* post_all: postings decided, or a negative is_err_t */
} cycle_t;

static void cycle_free(cycle_t *c) {
    if (!c)
        return;
    for (size_t i = 0; c->ch && i < c->l.n; i++)
        chunked_release(&c->ch[i]);
    free(c->ch);
    free(c->res);
    free(c->er);
    store_posting_list_release(&c->l);
    free(c);
}

/* A batch is one transaction on the poster's store thread, which posts
 * nothing while it runs: 500 rows take ~30 ms (a delete with the row's
 * indexes costs ~58 us), 5,000 took ~290 ms, which real-time postings
 * waiting behind it felt. Up to 100,000 rows a tick. */
#define PRUNE_BATCH   500
#define PRUNE_BATCHES 200 /* per tick: a backlog of old rows goes over several minutes */

/*
 * store.retention: at start and every store.prune_interval, delete finished
 * movements accepted longer ago than the retention (store_prune), one batch
 * per poster cycle so that postings are taken between the batches. A tick
 * ends when a batch reaches the young rows or after PRUNE_BATCHES batches;
 * the next tick starts over from the first row (rows kept because they were
 * not finished yet are looked at again).
 */
static void prune_step(poster_t *p, int64_t now_ms) {
    char errstr[256];
    int64_t n = 0;
    int done = 0;
    if (p->cfg->store_retention_ms <= 0)
        return;
    if (!p->pruning) {
        if (is_monotonic_ms() < p->next_prune)
            return;
        p->pruning = 1;
        p->prune_batches = 0;
        p->prune_after = 0;
        p->prune_total = 0;
        p->prune_cutoff = now_ms - p->cfg->store_retention_ms;
    }
    if (store_prune(p->store, p->prune_cutoff, PRUNE_BATCH, &p->prune_after, &n, &done, errstr,
                    sizeof(errstr)) != IS_OK) {
        is_log(IS_LOG_ERROR, "cannot apply store.retention", "error", errstr, NULL);
        done = 1; /* tried again next tick */
    }
    p->prune_total += n;
    atomic_fetch_add(&p->stats->pruned, (long long)n);
    if (!done && ++p->prune_batches < PRUNE_BATCHES)
        return;
    p->pruning = 0;
    p->next_prune = is_monotonic_ms() + p->cfg->prune_interval_ms;
    if (p->prune_total > 0) {
        char rows[24], horizon[IS_RFC3339_LEN];
        snprintf(rows, sizeof(rows), "%lld", (long long)p->prune_total);
        is_format_rfc3339(p->prune_cutoff, horizon);
        is_log(IS_LOG_INFO, "deleted finished movements past store.retention", "rows", rows,
               "pruned_before", horizon, NULL);
    }
}

/* Recovery (once), gap skips, fetch and mark. *out: the cycle, or NULL when
 * nothing is due. Returns postings taken, 0, or a negative is_err_t. */
static int cycle_take(poster_t *p, int64_t now_ms, cycle_t **out) {
    char errstr[512];
    is_err_t rc;
    cycle_t *c = NULL;

    *out = NULL;
    if (!p->recovered) {
        if (recover_inflight(p, now_ms) != IS_OK)
            return IS_ERR_RETRYABLE;
        p->recovered = 1;
    }
    /* Sequence gaps that cannot close (see store_skip_gaps): only once caught up. */
    /* A gap is skipped only when its later movement was received gap_timeout
     * before a moment by which everything then in Kafka had been consumed. */
    long long through = atomic_load(&p->stats->caught_up_since_ms);
    if (through) {
        int skipped = 0;
        int64_t lost = 0;
        if (store_skip_gaps(p->store, through, p->cfg->gap_timeout_ms,
                            atomic_load(&p->stats->assigned_since_ms), &skipped, &lost, errstr,
                            sizeof(errstr)) != IS_OK) {
            is_log(IS_LOG_ERROR, "cannot skip sequence gaps", "error", errstr, NULL);
        } else if (skipped) {
            /* Movements the producer accepted that this consumer never got:
             * retention, an offset reset, another instance. Loud on purpose. */
            atomic_fetch_add(&p->stats->sequences_skipped, (long long)lost);
            is_logf(IS_LOG_ERROR,
                    "gave up on %lld movement(s) in %d sequence gap(s) that did not close while "
                    "fully caught up: they never reached this consumer (audit action "
                    "sequence-gap-skipped names the producer, site and range)",
                    (long long)lost, skipped);
        }
    }
    prune_step(p, now_ms);
    c = calloc(1, sizeof(*c));
    if (!c) {
        rc = IS_ERR_NOMEM;
        snprintf(errstr, sizeof(errstr), "out of memory");
        goto fail;
    }
    c->now_ms = now_ms;
    rc = store_fetch_due(p->store, p->policy, now_ms, (size_t)p->cfg->poster_batch, &c->l, errstr,
                         sizeof(errstr));
    if (rc != IS_OK)
        goto fail;
    if (c->l.n == 0) {
        cycle_free(c);
        return 0;
    }
    c->res = calloc(c->l.n, sizeof(*c->res));
    c->er = calloc(c->l.n, sizeof(*c->er));
    c->ch = calloc(c->l.n, sizeof(*c->ch));
    if (!c->res || !c->er || !c->ch) {
        rc = IS_ERR_NOMEM;
        snprintf(errstr, sizeof(errstr), "out of memory");
        goto fail;
    }
    rc = store_mark_posting(p->store, &c->l, now_ms, errstr, sizeof(errstr));
    if (rc != IS_OK)
        goto fail;
    *out = c;
    return (int)c->l.n;
fail:
    is_log(IS_LOG_ERROR, "poster cycle failed", "error", errstr, NULL);
    cycle_free(c);
    return rc;
}

/* Post the cycle; dead letters are in Kafka before this returns. */
static void cycle_post(poster_t *p, cycle_t *c) {
    c->handled = post_all(p, &c->l, c->res, c->er, c->ch, c->now_ms);
    if (c->handled < 0)
        return;
    /* Dead letters must be in Kafka before the failure is recorded as handled. */
    for (size_t i = 0; i < c->l.n; i++) {
        if (c->res[i].outcome == STORE_FAILED) {
            if (dlq_flush(p->dlq, 10000) != IS_OK)
                atomic_fetch_add(&p->stats->dlq_errors, 1);
            break;
        }
    }
}

/* Record the outcomes. Returns postings handled or a negative is_err_t. */
static int cycle_record(poster_t *p, cycle_t *c) {
    char errstr[512];
    if (c->handled < 0) {
        /* postings stay `posting`: resolved by lookup on the next start */
        is_log(IS_LOG_ERROR, "poster cycle failed", "error", "out of memory", NULL);
        return c->handled;
    }
    is_err_t rc = store_record_results(p->store, &c->l, c->res, c->now_ms, errstr, sizeof(errstr));
    if (rc != IS_OK) {
        /* postings stay `posting`: resolved by lookup on the next start */
        is_log(IS_LOG_ERROR, "poster cycle failed", "error", errstr, NULL);
        return rc;
    }
    return c->handled;
}

int poster_run_once(poster_t *p, int64_t now_ms) {
    cycle_t *c = NULL;
    int n = cycle_take(p, now_ms, &c);
    if (n <= 0)
        return n;
    cycle_post(p, c);
    n = cycle_record(p, c);
    cycle_free(c);
    return n;
}

/*
 * The pipeline. The store thread (poster_main) takes cycle k+1 — fetch and
 * mark — while the ERP thread (erp_main) posts cycle k, then records k while
 * k+1 is being posted: the store's work and the ERP's run on two cores
 * instead of one after the other. Nothing about a lot changes: cycle k's
 * postings are `posting` in the store before k+1 is fetched, so their lots
 * are held until k is recorded (the next posting of a lot always sees the
 * outcome of the one before), and a crash leaves at most two cycles in
 * `posting`, resolved by ERP lookup at start as before.
 *
 * Hand over `next` (NULL: none) once the ERP thread has finished the cycle
 * it has; returns that finished cycle (NULL if there was none).
 */
static cycle_t *pipeline_swap(poster_t *p, cycle_t *next) {
    pthread_mutex_lock(&p->pmu);
    while (p->inflight && !p->inflight_done)
        pthread_cond_wait(&p->pcv, &p->pmu);
    cycle_t *finished = p->inflight;
    p->inflight = next;
    p->inflight_done = 0;
    if (next)
        pthread_cond_broadcast(&p->pcv);
    pthread_mutex_unlock(&p->pmu);
    return finished;
}

static void *erp_main(void *arg) {
    poster_t *p = arg;
    pthread_mutex_lock(&p->pmu);
    for (;;) {
        while (!(p->inflight && !p->inflight_done) && !p->erp_stop)
            pthread_cond_wait(&p->pcv, &p->pmu);
        if (!(p->inflight && !p->inflight_done))
            break; /* stopping, nothing in hand */
        cycle_t *c = p->inflight;
        pthread_mutex_unlock(&p->pmu);
        cycle_post(p, c);
        pthread_mutex_lock(&p->pmu);
        p->inflight_done = 1;
        pthread_cond_broadcast(&p->pcv);
    }
    pthread_mutex_unlock(&p->pmu);
    return NULL;
}

static void *poster_main(void *arg) {
    poster_t *p = arg;
    while (!atomic_load(&p->stop)) {
        cycle_t *next = NULL;
        int n = cycle_take(p, is_clock_now_ms(NULL), &next);
        cycle_t *finished = pipeline_swap(p, next);
        if (finished) {
            cycle_record(p, finished);
            cycle_free(finished);
        }
        if (n > 0 || finished || p->pruning)
            continue; /* a prune tick in progress: its next batch at once */
        /* Nothing due and nothing in flight (a failed cycle is retried after
         * the idle wait): wait to be woken, at most poster.idle. */
        pthread_mutex_lock(&p->mu);
        if (!p->woken && !atomic_load(&p->stop)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t ns = ts.tv_nsec + (p->cfg->poster_idle_ms % 1000) * 1000000;
            ts.tv_sec += p->cfg->poster_idle_ms / 1000 + ns / 1000000000;
            ts.tv_nsec = ns % 1000000000;
            pthread_cond_timedwait(&p->cv, &p->mu, &ts);
        }
        p->woken = 0;
        pthread_mutex_unlock(&p->mu);
    }
    /* Stopping: record what the ERP thread has in hand (its undecided postings
     * go back to the queue, see post_all). */
    cycle_t *finished = pipeline_swap(p, NULL);
    if (finished) {
        cycle_record(p, finished);
        cycle_free(finished);
    }
    return NULL;
}

is_err_t poster_start(poster_t *p) {
    if (pthread_create(&p->erp_thread, NULL, erp_main, p) != 0)
        return IS_ERR_NOMEM;
    if (pthread_create(&p->thread, NULL, poster_main, p) != 0) {
        pthread_mutex_lock(&p->pmu);
        p->erp_stop = 1;
        pthread_cond_broadcast(&p->pcv);
        pthread_mutex_unlock(&p->pmu);
        pthread_join(p->erp_thread, NULL);
        return IS_ERR_NOMEM;
    }
    p->started = 1;
    return IS_OK;
}

void poster_stop(poster_t *p) {
    if (!p->started)
        return;
    atomic_store(&p->stop, 1);
    poster_wake(p);
    pthread_join(p->thread, NULL); /* records the cycle in flight first */
    pthread_mutex_lock(&p->pmu);
    p->erp_stop = 1;
    pthread_cond_broadcast(&p->pcv);
    pthread_mutex_unlock(&p->pmu);
    pthread_join(p->erp_thread, NULL);
    p->started = 0;
}
