/*
 * admin.h — operator actions and traceability queries, shared by the CLI
 * (erp-consumer pause|resume|flush|failed|trace|audit) and the token-
 * protected HTTP admin API. Every action needs who (`by`) and why
 * (`reason`) and is recorded in the audit trail by the store.
 *
 * @locality any thread, with its own store_t.
 */
#ifndef INVSYNC_ADMIN_H
#define INVSYNC_ADMIN_H

#include <jansson.h>

#include "store.h"

typedef enum admin_action {
    ADMIN_PAUSE,
    ADMIN_RESUME,
    ADMIN_FLUSH,
    ADMIN_RETRY, /* a failed posting */
    ADMIN_SKIP,  /* a failed posting */
} admin_action_t;

typedef struct admin_request {
    admin_action_t action;
    const char *site;          /* pause/resume/flush; required, "*" = all */
    const char *tier;          /* pause/resume/flush; "*" = all, NULL or "" = "*" */
    const char *posting_id;    /* retry/skip */
    const char *by;            /* required, not only white space */
    const char *reason;        /* required, not only white space */
    const is_policy_t *policy; /* pause/resume/flush: the tiers a tier may be and sites
                                  known besides those heard from; NULL = no such sites, and
                                  the tiers the store has seen (tier_activity, unposted
                                  movements) */
} admin_request_t;

/*
 * Validate and perform. Returns a JSON result ({"ok":true,...}) or NULL with
 * *status (400 bad request, 404 nothing to do, 500) and errstr. Every text
 * of the request is refused (400) when it holds a control character
 * (admin_text_invalid), naming the field.
 *
 * Pause, resume and flush name a known site or "*", and a tier of the policy
 * (see `policy`) or "*"; names match exactly (case included). A known site is
 * one the store has heard from (the sites table: every site a heartbeat or
 * movement came from) or one `policy` names (under `sites:` or in a rule), so
 * a new site can be paused before it sends anything. An unknown name is 400
 * with the valid ones listed, for a site both sources. Resume skips that check when the exact pause
 * row exists, so a pause stored before the check (or for a site or tier since gone) can always be
 * lifted.
 */
json_t *admin_perform(store_t *s, const admin_request_t *req, int64_t now_ms, int *status,
                      char *errstr, size_t errstr_size);

/* {"failed":[{posting_id, site, tier, lot, attempts, error, movements:[...], updated_at}]} */
json_t *admin_failed_list(store_t *s, char *errstr, size_t errstr_size);

/* Which ERP document holds a movement: {movement_id, state, tier, posting_id, document,
 * chunk, ...}; of a posting cut into chunks (max_lines), the chunk's own document. */
json_t *admin_trace_movement(store_t *s, const char *movement_id, char *errstr, size_t errstr_size);
/* Which movements made an ERP document: {document, postings:[{posting_id, chunk, lines,
 * movements}]}; a chunk's document lists that chunk's movements only. */
json_t *admin_trace_document(store_t *s, const char *document, char *errstr, size_t errstr_size);

/* {"ok":bool, "rows":n, "first_bad_row":id, "error":...} */
json_t *admin_audit_verify(store_t *s);

/*
 * 1 when value (may be NULL) holds a control character (a byte below 0x20,
 * or 0x7f), with errstr naming `what` (the option or field, e.g. "--by") and
 * the byte; else 0. Operator text goes into the audit trail, whose hash
 * joins fields with 0x1f unescaped: a field holding that byte could make two
 * different rows hash alike, so such text is refused before it is stored.
 */
int admin_text_invalid(const char *what, const char *value, char *errstr, size_t errstr_size);

/* Parse "pause"/"resume"/"flush"/"retry"/"skip"; -1 when unknown. */
int admin_action_parse(const char *name);

#endif
