/*
 * movement.h — what a movement means: names, validation, stock effects.
 *
 * The in-memory movement is the protobuf-c generated struct
 * (Invsync__V1__Movement, typedef is_movement_t): one representation from
 * HTTP to ERP, no copying between look-alike structs.
 *
 * Stock effects (the single definition both the ERP ledger and the simulator
 * use), where q is the quantity and "st" a stock status default in brackets:
 *   GOODS_ISSUE  location[from_status|UNRESTRICTED] -= q
 *   COMPLETION   location[to_status|UNRESTRICTED]   += q
 *   SCRAP        location[from_status|UNRESTRICTED] -= q
 *   QUARANTINE   location[from_status|UNRESTRICTED] -= q; location[to_status|BLOCKED] += q
 *   RELEASE      location[from_status|BLOCKED]      -= q; location[to_status|UNRESTRICTED] += q
 *   TRANSFER     location[from_status|UNRESTRICTED] -= q; to_location[same status] += q
 *   ADJUSTMENT   location[to_status|from_status|UNRESTRICTED] += q   (q signed)
 *   REVERSAL     the effects of reversed_type with the same fields, negated
 *                and in reverse order (a REVERSAL carries the original's fields)
 */
#ifndef INVSYNC_MOVEMENT_H
#define INVSYNC_MOVEMENT_H

#include <stddef.h>
#include <stdint.h>

#include "decimal.h"
#include "error.h"
#include "invsync.pb-c.h"

typedef Invsync__V1__Movement is_movement_t;
typedef Invsync__V1__Heartbeat is_heartbeat_t;

#define IS_MOVEMENT_MAX_STR        128                  /* longest id / code field accepted */
#define IS_MOVEMENT_MAX_FUTURE_MS  (24 * 3600 * 1000LL) /* event_time ahead of the clock */
#define IS_MOVEMENT_MIN_EVENT_MS   946684800000LL /* 2000-01-01: event_time before is refused */
#define IS_MOVEMENT_MAX_ATTRS      32
#define IS_MOVEMENT_MAX_ATTR_VALUE 4096 /* longest attribute value (keys: IS_MOVEMENT_MAX_STR) */
/* Largest |quantity| accepted: 12 integer digits. The ERP books quantities as
 * 64-bit integers at 6 decimal places (±9.2e12), and on-hand sums and netting
 * need room above a single movement. */
#define IS_MOVEMENT_MAX_QTY_DIGITS 12
#define IS_LOT_KEY_MAX             (3 * IS_MOVEMENT_MAX_STR + 3)

/* "GOODS_ISSUE" …; "MOVEMENT_TYPE_UNSPECIFIED" for 0; "?" out of range. */
const char *is_movement_type_name(int type);
/* Name → value (exact proto enum name); 0 when unknown. */
int is_movement_type_parse(const char *name);
/* "UNRESTRICTED" / "QUALITY" / "BLOCKED" / "STOCK_STATUS_UNSPECIFIED". */
const char *is_stock_status_name(int status);
int is_stock_status_parse(const char *name);

typedef struct is_field_error {
    char field[48];  /* proto field name, e.g. "quantity" */
    char error[160]; /* lowercase, e.g. "must be greater than zero" */
} is_field_error_t;

typedef struct is_validate_opts {
    uint32_t max_scale; /* most decimal places accepted */
    const char *const
        *refused_sources; /* loop guard: ERP-origin source systems, NULL-terminated, may be NULL */
    /* 1 at ingest (the producer): also refuse quantities of more than
     * IS_MOVEMENT_MAX_QTY_DIGITS integer digits, control characters in
     * strings and attributes with an empty key, a key over
     * IS_MOVEMENT_MAX_STR or a value over IS_MOVEMENT_MAX_ATTR_VALUE. The
     * consumer leaves it 0: a movement an older producer accepted with them
     * is still posted (the ERP judges the quantity). At ingest an
     * event_time, when given, must not be before 1970 either. */
    int ingest;
    /* With ingest: now (ms UTC); an event_time more than
     * IS_MOVEMENT_MAX_FUTURE_MS after it is refused. 0 = not checked. */
    int64_t now_ms;
} is_validate_opts_t;

/*
 * Validate a movement as received from the MES (the producer-stamped fields
 * tier/policy_version/producer_id/sequence/accepted_time are not checked).
 * Writes up to max_errs errors and returns how many were found in total
 * (0 = valid). Rules: required ids (movement_id, source_system, site,
 * material, lot, location, uom) non-empty and ≤ IS_MOVEMENT_MAX_STR; site
 * topic-safe; type set; quantity present, scale ≤ max_scale, > 0 (ADJUSTMENT:
 * ≠ 0); TRANSFER needs to_location ≠ location; GOODS_ISSUE and COMPLETION
 * need order_id; SCRAP needs reason_code; QUARANTINE/RELEASE statuses must
 * differ; REVERSAL needs reverses_movement_id and reversed_type (not
 * REVERSAL); attributes ≤ IS_MOVEMENT_MAX_ATTRS; source_system not refused
 * (compared ignoring case). With opts->ingest also: |quantity| <
 * 10^IS_MOVEMENT_MAX_QTY_DIGITS, no control characters in strings, no to_location
 * but on a TRANSFER (or a REVERSAL of one), no reverses_movement_id or
 * reversed_type but on a REVERSAL, each attribute
 * key non-empty, ≤ IS_MOVEMENT_MAX_STR and given once, each value ≤
 * IS_MOVEMENT_MAX_ATTR_VALUE (a movement always fits a Kafka message).
 */
size_t is_movement_validate(const is_movement_t *m, const is_validate_opts_t *opts,
                            is_field_error_t *errs, size_t max_errs);

/*
 * One text field by the ingest rules of is_movement_validate: "site" by the
 * site rule (letters, digits, '_' and '-', at most 64 characters), any other
 * name as an MES string (at most IS_MOVEMENT_MAX_STR bytes, no control
 * characters; required when `required`). For values that reach the ERP
 * outside a movement (seed-erp's opening stock). 0 if valid; otherwise 1 and
 * the problem (without the field name) in err.
 */
int is_movement_field_invalid(const char *field, const char *value, int required, char *err,
                              size_t err_size);

typedef struct is_stock_effect {
    const char *location; /* points into the movement */
    int status;           /* Invsync__V1__StockStatus, never UNSPECIFIED */
    is_decimal_t delta;   /* signed */
} is_stock_effect_t;

/*
 * The movement's stock effects (see the table above), in order. Returns the
 * count (1..4), or 0 if the movement is invalid (no quantity, unknown type).
 */
size_t is_movement_effects(const is_movement_t *m, is_stock_effect_t out[4]);

/* The stock statuses a movement of `type` moves from and to, defaults
 * applied (QUARANTINE: → BLOCKED, RELEASE: BLOCKED →, otherwise
 * UNRESTRICTED), as is_movement_effects uses them. */
void is_movement_statuses(const is_movement_t *m, int type, int *from, int *to);

/* "<site>/<material>/<lot>" — the Kafka key and the ordering key. Returns
 * length or -1 if it does not fit. Names are joined as they are: two lots
 * whose names join alike (material "RM/1" lot "X", material "RM" lot "1/X")
 * share a key and are ordered and held together, which is conservative;
 * escaping the '/' would change the key of every lot named with one, and a
 * store's backlog keyed the old way would then be ordered apart from it. */
int is_movement_lot_key(const is_movement_t *m, char *buf, size_t buf_size);

/* The first field in which a REVERSAL differs from the movement it reverses. */
typedef struct is_reversal_diff {
    const char *field;                  /* proto name; NULL when the reversal matches */
    char have[IS_MOVEMENT_MAX_STR + 1]; /* the reversal's value as text, "" for none */
    char want[IS_MOVEMENT_MAX_STR + 1]; /* the original's (for reversed_type: its type) */
} is_reversal_diff_t;

/*
 * Does REVERSAL r carry the fields of o, the movement it reverses (a
 * reversal cancels the whole item)? 1 if so; otherwise 0 and d names the
 * first difference, in this order: reversed_type (against o's type), site,
 * material, lot, serial, location, to_location, uom, quantity (by value: 5
 * is 5.000), then from_status and to_status as their effects apply them
 * (an omitted status equals its default). The producer (at ingest) and the
 * consumer (before posting) both judge a reversal with it.
 */
int is_movement_reversal_matches(const is_movement_t *r, const is_movement_t *o,
                                 is_reversal_diff_t *d);

/*
 * is_movement_reversal_matches as the consumer words it: 1 when REVERSAL r
 * matches o; otherwise 0 and buf = "reversal does not match <id>: <field>
 * is <r's>, the original's is <o's>" (the reason a posting of r fails with,
 * and the reason `erp-consumer genealogy` gives for leaving r out).
 */
int is_movement_reversal_check(const is_movement_t *r, const is_movement_t *o, char *buf,
                               size_t size);

/* |q| < 10^IS_MOVEMENT_MAX_QTY_DIGITS: what the ERP can book (the rule
 * is_movement_validate applies to a movement's quantity). */
int is_movement_qty_in_range(is_decimal_t q);

/* Decimal <-> proto Decimal. */
is_decimal_t is_movement_qty(const is_movement_t *m);

/*
 * Content fingerprint of what the MES sent: SHA-256 over the packed movement
 * with the producer-stamped fields (tier, policy_version, producer_id,
 * sequence, accepted_time) cleared. Two submissions with the same id and the
 * same fingerprint are duplicates; a different fingerprint is a conflict.
 */
is_err_t is_movement_fingerprint(const is_movement_t *m, uint8_t out[32]) IS_MUST_CHECK;

#endif
