/*
 * erp_sqlite.h — the embedded ERP ledger behind the "sqlite" adapter, with
 * the extra calls the ERP simulator (test/tools/erp-sim.c) and the tests need.
 *
 * The ledger keeps material documents (numbered "4900000001", …) with their
 * lines, the source movement ids of every line, the stock effects each
 * document applied, and on-hand per (site, material, lot, location, stock
 * status, uom) as integer units at a fixed scale of 6 decimals. A posting is
 * applied in one transaction: all of it or nothing.
 *
 * Ledger rules worth knowing: on-hand is booked at the line movement's site
 * (the posting's site when the movement has none), so one posting may carry
 * several sites (opening stock); doc_movements links a line's movement_ids,
 * or its movement's movement_id when it has no ids, or nothing when both are
 * empty — opening stock should post that way so that "distinct movements in
 * doc_movements" stays "movements posted"; quantities must be > 0 (signed,
 * non-zero for ADJUSTMENT and its REVERSAL) and exact at 6 decimals.
 *
 * Through erp.h (erp_open with adapter "sqlite") it is an ordinary adapter.
 * The typed calls below are the same operations on an erp_sqlite_t, plus
 * forensic helpers. Threads: an erp_sqlite_t is used by one thread at a
 * time; callers that share one (the simulator) serialize with a mutex.
 */
#ifndef INVSYNC_ERP_SQLITE_H
#define INVSYNC_ERP_SQLITE_H

#include <stddef.h>

#include "erp.h"

#define ERP_SQLITE_SCALE 6 /* on-hand is stored as integer units of 10^-6 */

typedef struct erp_sqlite erp_sqlite_t;

/*
 * Open (creating, migrating) the ledger at path with synchronous=FULL.
 * allow_negative: accept postings that drive on-hand below zero.
 * On error *out is NULL, errstr names the path, IS_ERR_DB / IS_ERR_NOMEM.
 */
is_err_t erp_sqlite_open_path(const char *path, int allow_negative, erp_sqlite_t **out,
                              char *errstr, size_t errstr_size) IS_MUST_CHECK;
void erp_sqlite_close(erp_sqlite_t *l); /* NULL is a no-op */

/* SQLite busy timeout (default 5 s); tests lower it to provoke SQLITE_BUSY. */
void erp_sqlite_set_busy_timeout(erp_sqlite_t *l, int ms);

/*
 * Post (the erp.h contract). *replayed (may be NULL) is set to 1 when
 * posting_id was already posted and result->document is that document,
 * 0 when this call created the document. Errors: IS_ERR_PERMANENT (bad
 * posting, more than 6 decimals, insufficient stock; nothing changed),
 * IS_ERR_RETRYABLE (SQLite busy/locked or another SQLite failure).
 */
is_err_t erp_sqlite_post(erp_sqlite_t *l, const erp_posting_t *p, erp_result_t *result,
                         int *replayed) IS_MUST_CHECK;
/*
 * Post several postings in one transaction (one durable write): each keeps
 * its own outcome in rcs[i]/results[i] (a refused one is rolled back to its
 * savepoint, the others stay) and its own idempotency. If the final commit
 * fails, every posting reported OK becomes IS_ERR_RETRYABLE.
 */
void erp_sqlite_post_batch(erp_sqlite_t *l, const erp_posting_t *ps, size_t n,
                           erp_result_t *results, is_err_t *rcs);
is_err_t erp_sqlite_lookup(erp_sqlite_t *l, const char *posting_id,
                           erp_result_t *result) IS_MUST_CHECK;
is_err_t erp_sqlite_query_on_hand(erp_sqlite_t *l, const char *site, erp_on_hand_cb cb,
                                  void *opaque, char *errstr, size_t errstr_size) IS_MUST_CHECK;

/*
 * Which document holds movement_id? IS_OK with doc (the earliest document),
 * IS_ERR_NOT_FOUND, or IS_ERR_CONFLICT when the movement is in more than one
 * document — a double posting; doc is still the earliest. *n_documents
 * (may be NULL) receives how many documents hold it. IS_ERR_RETRYABLE on a
 * SQLite failure.
 */
is_err_t erp_sqlite_document_of(erp_sqlite_t *l, const char *movement_id, char *doc,
                                size_t doc_size, size_t *n_documents) IS_MUST_CHECK;

/*
 * Forget a posting as if it never reached the ERP (tests of a lost interface
 * day): its on-hand effects are reversed (even below zero) and its document,
 * lines and movement links are removed, in one transaction. doc (may be
 * NULL) receives the removed document number. IS_ERR_NOT_FOUND when
 * posting_id is unknown.
 */
is_err_t erp_sqlite_delete_posting(erp_sqlite_t *l, const char *posting_id, char *doc,
                                   size_t doc_size) IS_MUST_CHECK;

#endif
