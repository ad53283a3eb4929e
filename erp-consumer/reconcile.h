/*
 * reconcile.h — MES on-hand against ERP on-hand, with every difference
 * explained before it is called drift (`erp-consumer reconcile`).
 *
 * Rows are keyed by (site, material, lot, location, stock status, uom).
 * Quantities are exact decimals (decimal.h); rows with the same key are
 * summed. A third input is what is still *pending* in the consumer: the
 * stock effects (movement.h) of movements the store holds but the ERP does
 * not have yet. Each key whose MES and ERP quantities differ becomes one
 * difference, classified in this order (the first that fits wins):
 *
 *   pending      MES = ERP + pending: movements still queued, in flight,
 *                waiting to retry or failed in the consumer explain it
 *                exactly. Every later check uses ERP + pending.
 *   sign         ERP = -MES (MES non-zero): posted with the wrong sign.
 *   uom          ERP = MES × f or MES = ERP × f for a known factor f of the
 *                row's unit (a quantity posted in the wrong unit), or the
 *                two sides hold the same key in two different units whose
 *                quantities convert exactly (then one difference, erp_uom
 *                says the ERP's unit).
 *   status       the same quantity sits in another stock status of the same
 *                lot and location on the other side (MES +q in BLOCKED, ERP
 *                +q in UNRESTRICTED: a quarantine not applied). Both keys of
 *                the pair are reported.
 *                Units that differ only in case ("ea" / "EA") are the same
 *                unit spelled two ways: one key, compared as one unit; equal
 *                quantities are a uom difference (the spelling is reported,
 *                nothing is hidden), different ones go through the checks
 *                above as one key.
 *   missing-lot  the lot (site, material, lot) has no non-zero row at all on
 *                one side.
 *   unexplained  everything else. Listed first. This includes every non-zero
 *                MES row of a site nobody knows (reconcile_set_known_sites):
 *                not a missing lot but a site code the consumer never heard
 *                from and the ERP has no stock at, i.e. a typo in the export
 *                or a plant not connected; reconcile_unknown_site lists them.
 *
 * Unit factors: built in are KG→G, G→MG, T→KG, L→ML (1000), M→CM (100),
 * M→MM (1000), CM→MM (10) and DZ→EA (12); reconcile_add_factor adds more,
 * optionally for one material only.
 *
 * Input files (reconcile_load_file): CSV with a header naming at least the
 * columns site,material,lot,location,stock_status,uom,quantity (any order,
 * extra columns ignored), one row per line; fields may be double-quoted
 * ("" is a quote inside); blank lines and lines starting with '#' are
 * skipped; LF, CRLF and CR-only line ends and a UTF-8 BOM are accepted; an
 * empty stock_status means UNRESTRICTED. A file whose first non-blank
 * character is '[' is read as a JSON array of objects with the same keys (the
 * output of `erp-consumer on-hand` and of `mes-sim`'s --expected file); one
 * starting with '{' (a JSON object, JSON lines) is refused, naming the CSV
 * header. Unquoted fields are trimmed. A quantity may carry any number of
 * trailing zeros after the point ("54.000000000000000000000" is 54); a
 * non-zero digit beyond 18 places is refused. Factor files: header
 * from_uom,to_uom,factor[,material] meaning 1 from_uom = factor to_uom.
 *
 * When the consumer converts units before posting (uom.conversions, uom.h),
 * the ERP holds ERP units: MES and pending quantities are converted the same
 * way before comparing (reconcile_add_conversion), so only real unit
 * mistakes remain.
 *
 * Load: everything in memory, sorted once; fine for a plant's few hundred
 * thousand stock rows. Single-threaded; a reconcile_t belongs to its caller.
 */
#ifndef INVSYNC_RECONCILE_H
#define INVSYNC_RECONCILE_H

#include <stddef.h>
#include <stdio.h>

#include "decimal.h"
#include "error.h"
#include "movement.h"

typedef enum reconcile_class {
    RECONCILE_UNEXPLAINED = 0, /* first: what needs a human */
    RECONCILE_PENDING,
    RECONCILE_SIGN,
    RECONCILE_UOM,
    RECONCILE_STATUS,
    RECONCILE_MISSING_LOT,
    RECONCILE__COUNT
} reconcile_class_t;

typedef enum reconcile_side {
    RECONCILE_MES = 0,
    RECONCILE_ERP = 1,
} reconcile_side_t;

/* What else reconcile_load_file reads. */
#define RECONCILE_FILE_FACTORS     (-1) /* from_uom,to_uom,factor[,material] */
#define RECONCILE_FILE_CONVERSIONS (-2) /* the consumer's uom.conversions (uom.h) */

/* "unexplained", "pending", "sign", "uom", "status", "missing-lot". */
const char *reconcile_class_name(reconcile_class_t c);

typedef struct reconcile_diff {
    reconcile_class_t cls;
    const char *site, *material, *lot, *location; /* owned by the reconcile_t */
    int status;                                   /* Invsync__V1__StockStatus */
    const char *uom;                              /* the MES unit (the ERP's if MES has no row) */
    const char *erp_uom;                          /* the ERP unit; differs from uom only for uom */
    is_decimal_t mes;                             /* MES quantity (0 when absent) */
    is_decimal_t erp;                             /* ERP quantity as reported (in erp_uom) */
    is_decimal_t pending;                         /* still pending in the consumer */
    is_decimal_t difference;                      /* mes - erp, in uom (two units: mes) */
    char explanation[320];                        /* one sentence for a human */
} reconcile_diff_t;

typedef struct reconcile reconcile_t;

is_err_t reconcile_new(reconcile_t **out) IS_MUST_CHECK;
void reconcile_free(reconcile_t *r); /* NULL is a no-op */

/* Only rows of this site take part (NULL: all). Set before adding rows. */
void reconcile_set_site(reconcile_t *r, const char *site);

/*
 * The sites the consumer has heard from (the store's sites). Calling this,
 * even with n == 0, turns the unknown-site check of reconcile_run on: a MES
 * row whose site is neither here nor among the ERP rows read (before the site
 * filter) is unexplained. Without it no site is checked. IS_ERR_NOMEM.
 */
is_err_t reconcile_set_known_sites(reconcile_t *r, const char *const *sites,
                                   size_t n) IS_MUST_CHECK;

/* The i-th distinct site among the rows read for a side, before the site filter; NULL past the
 * end. */
const char *reconcile_site_seen(const reconcile_t *r, reconcile_side_t side, size_t i);

/* One on-hand row of a side. status 0 means UNRESTRICTED. IS_ERR_NOMEM. */
is_err_t reconcile_add_row(reconcile_t *r, reconcile_side_t side, const char *site,
                           const char *material, const char *lot, const char *location, int status,
                           const char *uom, is_decimal_t qty) IS_MUST_CHECK;

/*
 * A movement the ERP does not have yet (state names it: queued, posting,
 * retry, failed): its stock effects become pending quantities.
 * IS_ERR_INVALID when it has no effects (no quantity, unknown type).
 */
is_err_t reconcile_add_pending(reconcile_t *r, const is_movement_t *m,
                               const char *state) IS_MUST_CHECK;

/* 1 from_uom = factor to_uom (material NULL or "*": every material). */
is_err_t reconcile_add_factor(reconcile_t *r, const char *material, const char *from_uom,
                              const char *to_uom, is_decimal_t factor) IS_MUST_CHECK;

/*
 * A conversion the consumer applies before posting (uom.conversions): MES
 * and pending rows in mes_uom are compared as factor × quantity in erp_uom
 * (a row for the material wins over one for every material). It is a known
 * factor for the uom class too.
 */
is_err_t reconcile_add_conversion(reconcile_t *r, const char *material, const char *mes_uom,
                                  const char *erp_uom, is_decimal_t factor) IS_MUST_CHECK;

/*
 * Read a side's rows, or RECONCILE_FILE_FACTORS / _CONVERSIONS, from a file
 * (see above; a conversions file may have no header, as uom.h allows). Errors name the file, the
 * line and what is wrong: IS_ERR_INVALID for bad content, IS_ERR_IO when the file cannot be read.
 */
is_err_t reconcile_load_file(reconcile_t *r, int side, const char *path, char *errstr,
                             size_t errstr_size) IS_MUST_CHECK;

/*
 * Refuse to compare an empty snapshot (after the site filter) with a side that
 * has rows: a header-only or truncated export would make every lot of the
 * other side a missing-lot and the run look clean. mes_name names the MES
 * file, erp_name the ERP file (NULL: the ERP came from the adapter, whose
 * empty answer is not refused). Both sides empty is IS_OK: nothing to compare,
 * nothing wrong. IS_ERR_INVALID with errstr naming the file otherwise.
 */
is_err_t reconcile_check_inputs(const reconcile_t *r, const char *mes_name, const char *erp_name,
                                char *errstr, size_t errstr_size) IS_MUST_CHECK;

/*
 * Compare and classify (see above). May be called once, after all rows.
 * Differences come sorted: unexplained first, then by class, then by key.
 */
is_err_t reconcile_run(reconcile_t *r, char *errstr, size_t errstr_size) IS_MUST_CHECK;

size_t reconcile_count(const reconcile_t *r);
const reconcile_diff_t *reconcile_diff(const reconcile_t *r, size_t i);
/* Keys that agree, and rows read per side (after the site filter). */
size_t reconcile_matched(const reconcile_t *r);
size_t reconcile_rows(const reconcile_t *r, reconcile_side_t side);
/* After reconcile_run: the i-th site (sorted) of MES rows unknown to the consumer and the ERP,
 * with how many MES rows it had; NULL past the end. */
const char *reconcile_unknown_site(const reconcile_t *r, size_t i, size_t *mes_rows);
/* Per class: differences and the sum of |difference| (for uom rows in two units: |mes|). */
void reconcile_summary(const reconcile_t *r, reconcile_class_t c, size_t *count,
                       is_decimal_t *abs_quantity);

/* Output after reconcile_run: the JSON document, the CSV (header + one line per difference),
 * the human summary (one line per class) and the node_exporter textfile. */
int reconcile_write_json(const reconcile_t *r, FILE *f);
int reconcile_write_csv(const reconcile_t *r, FILE *f);
void reconcile_write_summary(const reconcile_t *r, FILE *f);
/* Written to path.tmp then renamed over path, so a scraper never sees half a file. */
is_err_t reconcile_write_metrics(const reconcile_t *r, const char *path, int64_t now_ms,
                                 char *errstr, size_t errstr_size) IS_MUST_CHECK;

/*
 * `erp-consumer reconcile --config F --mes FILE [--erp FILE] [--site S]
 * [--format json|csv] [--uom-factors FILE] [--metrics-file FILE]`.
 * argv[0] is "reconcile". Exit status: 0 no unexplained drift, 3
 * unexplained drift found (rows of an unknown site included), 2 bad
 * arguments or input (an empty MES snapshot against a non-empty ERP, a
 * --site neither the store nor the ERP knows), 1 the store or the ERP could
 * not be read.
 */
int reconcile_cli(int argc, char **argv);

#endif
