/*
 * movement.c — what a movement means: enum names (taken from the protobuf-c
 * enum descriptors, so the .proto is the only table), validation of a
 * movement as the MES sends it, its stock effects (the single definition the
 * ERP ledger and the simulator share), the Kafka/ordering lot key and the
 * content fingerprint used to tell a duplicate submission from a conflict.
 * Everything here is pure and allocation-free except the fingerprint, which
 * may allocate a small array to put the attributes in a canonical order.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "duration.h"
#include "hash.h"
#include "movement.h"

#define SITE_MAX_LEN 64

/* ---- names ------------------------------------------------------------- */

static const char *enum_name(const ProtobufCEnumDescriptor *d, int value) {
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, value);
    return v ? v->name : "?";
}

static int enum_parse(const ProtobufCEnumDescriptor *d, const char *name) {
    const ProtobufCEnumValue *v;
    if (!name)
        return 0;
    v = protobuf_c_enum_descriptor_get_value_by_name(d, name);
    return v ? v->value : 0;
}

static int enum_known(const ProtobufCEnumDescriptor *d, int value) {
    return protobuf_c_enum_descriptor_get_value(d, value) != NULL;
}

const char *is_movement_type_name(int type) {
    return enum_name(&invsync__v1__movement_type__descriptor, type);
}

int is_movement_type_parse(const char *name) {
    return enum_parse(&invsync__v1__movement_type__descriptor, name);
}

const char *is_stock_status_name(int status) {
    return enum_name(&invsync__v1__stock_status__descriptor, status);
}

int is_stock_status_parse(const char *name) {
    return enum_parse(&invsync__v1__stock_status__descriptor, name);
}

/* ---- validation -------------------------------------------------------- */

typedef struct verrs {
    is_field_error_t *errs;
    size_t max; /* capacity of errs */
    size_t n;   /* errors found, may exceed max */
    int ingest; /* is_validate_opts_t.ingest */
} verrs_t;

static void add_err(verrs_t *v, const char *field, const char *fmt, ...) IS_PRINTF(3, 4);

static void add_err(verrs_t *v, const char *field, const char *fmt, ...) {
    if (v->errs && v->n < v->max) {
        is_field_error_t *e = &v->errs[v->n];
        va_list ap;
        snprintf(e->field, sizeof e->field, "%s", field);
        va_start(ap, fmt);
        vsnprintf(e->error, sizeof e->error, fmt, ap);
        va_end(ap);
    }
    v->n++;
}

/* Hand-built structs may carry NULL where protobuf-c would put "". */
static const char *str(const char *s) {
    return s ? s : "";
}

/* The code point of a zero-width or bidirectional formatting character
 * starting at s (UTF-8), or 0. */
static unsigned invisible_at(const char *s, size_t left) {
    const unsigned char *u = (const unsigned char *)s;
    unsigned cp;
    if (left < 3 || !((u[0] == 0xe2 && (u[1] == 0x80 || u[1] == 0x81)) ||
                      (u[0] == 0xef && u[1] == 0xbb && u[2] == 0xbf)))
        return 0;
    if (u[2] < 0x80 || u[2] > 0xbf)
        return 0;
    cp = ((u[0] & 0x0fu) << 12) | ((u[1] & 0x3fu) << 6) | (u[2] & 0x3fu);
    if ((cp >= 0x200b && cp <= 0x200f) || (cp >= 0x202a && cp <= 0x202e) ||
        (cp >= 0x2060 && cp <= 0x2064) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff)
        return cp;
    return 0;
}

/* Length limit for every MES-sent string; "is required" when required and
 * empty; no control characters (a tab or line break inside a lot or an id is
 * a data error that would otherwise reach the ERP and the reports). */
static void check_str(verrs_t *v, const char *field, const char *s, int required) {
    size_t len = strlen(str(s));
    if (required && len == 0) {
        add_err(v, field, "is required");
    } else if (len > IS_MOVEMENT_MAX_STR) {
        add_err(v, field, "is longer than %d bytes", IS_MOVEMENT_MAX_STR);
    } else if (v->ingest) {
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c < 0x20 || c == 0x7f) {
                add_err(v, field, "must not contain control characters (0x%02x at byte %zu)", c, i);
                return;
            }
            /* U+0080..U+009F (NEL and the other C1 controls), encoded C2 80..C2 9F */
            if (c == 0xc2 && i + 1 < len && (unsigned char)s[i + 1] >= 0x80 &&
                (unsigned char)s[i + 1] <= 0x9f) {
                add_err(v, field, "must not contain control characters (U+%04X at byte %zu)",
                        (unsigned)(unsigned char)s[i + 1], i);
                return;
            }
            /* U+2028 LINE SEPARATOR, U+2029 PARAGRAPH SEPARATOR (E2 80 A8/A9): line
             * breaks to Unicode-aware readers (Python's splitlines, as NEL is). */
            if (c == 0xe2 && i + 2 < len && (unsigned char)s[i + 1] == 0x80 &&
                ((unsigned char)s[i + 2] == 0xa8 || (unsigned char)s[i + 2] == 0xa9)) {
                add_err(v, field, "must not contain line breaks (U+%04X at byte %zu)",
                        0x2028u + ((unsigned char)s[i + 2] - 0xa8u), i);
                return;
            }
            /* Zero-width and bidirectional controls: "LOT\u200B1" or an RLO
             * makes two codes that look alike (U+200B..U+200F, U+202A..U+202E,
             * U+2060..U+2064, U+2066..U+2069, U+FEFF). */
            unsigned cp = invisible_at(s + i, len - i);
            if (cp) {
                add_err(v, field,
                        "must not contain invisible or bidirectional characters (U+%04X at byte "
                        "%zu)",
                        cp, i);
                return;
            }
        }
        /* "LOT-1 " and "LOT-1" would be two lots in the ERP: an id or code
         * never begins or ends with a space (nor a no-break space, C2 A0). */
        if (len > 0 &&
            (s[0] == ' ' || s[len - 1] == ' ' ||
             (len >= 2 && ((unsigned char)s[0] == 0xc2 && (unsigned char)s[1] == 0xa0)) ||
             (len >= 2 && (unsigned char)s[len - 2] == 0xc2 && (unsigned char)s[len - 1] == 0xa0)))
            add_err(v, field, "must not begin or end with a space");
    }
}

static void check_site(verrs_t *v, const char *site) {
    size_t len = strlen(str(site));
    if (len == 0) {
        add_err(v, "site", "is required");
        return;
    }
    if (len > SITE_MAX_LEN) {
        add_err(v, "site", "is longer than %d characters", SITE_MAX_LEN);
        return;
    }
    for (size_t i = 0; i < len; i++) {
        char c = site[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-')) {
            add_err(v, "site", "must contain only letters, digits, '_' and '-'");
            return;
        }
    }
}

/* |units / 10^scale| < 10^IS_MOVEMENT_MAX_QTY_DIGITS (scale ≤ 18). */
static int qty_in_range(int64_t units, uint32_t scale) {
    int64_t pow10 = 1;
    for (uint32_t i = 0; i < scale && i < 18; i++)
        pow10 *= 10;
    int64_t whole = units / pow10; /* truncates toward zero */
    int64_t limit = 1;
    for (int i = 0; i < IS_MOVEMENT_MAX_QTY_DIGITS; i++)
        limit *= 10;
    return whole > -limit && whole < limit;
}

int is_movement_qty_in_range(is_decimal_t q) {
    return q.scale <= 18 && qty_in_range(q.units, q.scale);
}

int is_movement_field_invalid(const char *field, const char *value, int required, char *err,
                              size_t err_size) {
    is_field_error_t e;
    verrs_t v = {&e, 1, 0, 1};
    if (strcmp(field, "site") == 0)
        check_site(&v, value);
    else
        check_str(&v, field, value, required);
    if (v.n == 0)
        return 0;
    snprintf(err, err_size, "%s", e.error);
    return 1;
}

/* The type whose rules apply: a REVERSAL carries its original's fields. */
static int rule_type(const is_movement_t *m) {
    if (m->type == INVSYNC__V1__MOVEMENT_TYPE__REVERSAL &&
        m->reversed_type != INVSYNC__V1__MOVEMENT_TYPE__REVERSAL &&
        enum_known(&invsync__v1__movement_type__descriptor, (int)m->reversed_type))
        return (int)m->reversed_type;
    return (int)m->type;
}

static int default_from(int type) {
    return type == INVSYNC__V1__MOVEMENT_TYPE__RELEASE ? INVSYNC__V1__STOCK_STATUS__BLOCKED
                                                       : INVSYNC__V1__STOCK_STATUS__UNRESTRICTED;
}

static int default_to(int type) {
    return type == INVSYNC__V1__MOVEMENT_TYPE__QUARANTINE ? INVSYNC__V1__STOCK_STATUS__BLOCKED
                                                          : INVSYNC__V1__STOCK_STATUS__UNRESTRICTED;
}

static void check_status(verrs_t *v, const char *field, int status) {
    if (!enum_known(&invsync__v1__stock_status__descriptor, status))
        add_err(v, field, "unknown value %d", status);
}

/*
 * Rules as listed in movement.h, checked in .proto field order so the first
 * error is the first field a reader would look at. A REVERSAL is checked by
 * the type-specific rules of its reversed_type (it carries that movement's
 * fields, and its effects are computed from them).
 */
size_t is_movement_validate(const is_movement_t *m, const is_validate_opts_t *opts,
                            is_field_error_t *errs, size_t max_errs) {
    verrs_t v = {errs, max_errs, 0, opts ? opts->ingest : 0};
    uint32_t max_scale = opts ? opts->max_scale : IS_DECIMAL_MAX_SCALE;
    const int type = (int)m->type;
    const int rt = rule_type(m);
    const int is_reversal = type == INVSYNC__V1__MOVEMENT_TYPE__REVERSAL;
    /* Fields of another type are refused only when the type is known. */
    const int type_known = type != INVSYNC__V1__MOVEMENT_TYPE__MOVEMENT_TYPE_UNSPECIFIED &&
                           enum_known(&invsync__v1__movement_type__descriptor, type);

    if (max_scale > IS_DECIMAL_MAX_SCALE)
        max_scale = IS_DECIMAL_MAX_SCALE;

    check_str(&v, "movement_id", m->movement_id, 1);
    check_str(&v, "source_system", m->source_system, 1);
    if (opts && opts->refused_sources) {
        for (const char *const *r = opts->refused_sources; *r; r++) {
            if (strcasecmp(*r, str(m->source_system)) == 0) {
                add_err(&v, "source_system",
                        "source system '%.64s' is an ERP-origin system (loop guard)", *r);
                break;
            }
        }
    }
    check_site(&v, m->site);
    if (type == INVSYNC__V1__MOVEMENT_TYPE__MOVEMENT_TYPE_UNSPECIFIED)
        add_err(&v, "type", "is required");
    else if (!enum_known(&invsync__v1__movement_type__descriptor, type))
        add_err(&v, "type", "unknown value %d", type);
    check_str(&v, "material", m->material, 1);
    check_str(&v, "lot", m->lot, 1);
    check_str(&v, "serial", m->serial, 0);
    check_str(&v, "location", m->location, 1);
    if (rt == INVSYNC__V1__MOVEMENT_TYPE__TRANSFER) {
        check_str(&v, "to_location", m->to_location, 1);
        if (*str(m->to_location) && strcmp(str(m->to_location), str(m->location)) == 0)
            add_err(&v, "to_location", "must differ from location");
    } else {
        check_str(&v, "to_location", m->to_location, 0);
        /* A to_location the type does not use would still reach the ERP (and
         * the netting key): the MES meant another type, or sent a stale field. */
        if (v.ingest && type_known && rt != INVSYNC__V1__MOVEMENT_TYPE__REVERSAL &&
            *str(m->to_location))
            add_err(&v, "to_location", "only for TRANSFER, not for %s%s",
                    is_reversal ? "a REVERSAL of " : "", is_movement_type_name(rt));
    }
    if (!m->quantity) {
        add_err(&v, "quantity", "is required");
    } else if (m->quantity->scale > max_scale) {
        add_err(&v, "quantity", "has more than %u decimal places", (unsigned)max_scale);
    } else if (v.ingest && !qty_in_range(m->quantity->units, m->quantity->scale)) {
        add_err(&v, "quantity", "is out of range: at most %d digits before the decimal point",
                IS_MOVEMENT_MAX_QTY_DIGITS);
    } else if (rt == INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT) {
        if (m->quantity->units == 0)
            add_err(&v, "quantity", "must not be zero");
    } else if (m->quantity->units <= 0) {
        add_err(&v, "quantity", "must be greater than zero");
    }
    check_str(&v, "uom", m->uom, 1);
    check_str(&v, "order_id", m->order_id,
              rt == INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE ||
                  rt == INVSYNC__V1__MOVEMENT_TYPE__COMPLETION);
    check_str(&v, "operation", m->operation, 0);
    check_status(&v, "from_status", (int)m->from_status);
    check_status(&v, "to_status", (int)m->to_status);
    if ((rt == INVSYNC__V1__MOVEMENT_TYPE__QUARANTINE ||
         rt == INVSYNC__V1__MOVEMENT_TYPE__RELEASE) &&
        enum_known(&invsync__v1__stock_status__descriptor, (int)m->from_status) &&
        enum_known(&invsync__v1__stock_status__descriptor, (int)m->to_status)) {
        int from = m->from_status ? (int)m->from_status : default_from(rt);
        int to = m->to_status ? (int)m->to_status : default_to(rt);
        if (from == to)
            add_err(&v, "to_status", "must differ from from_status (both %s)",
                    is_stock_status_name(to));
        /* The type says which way the stock goes: the ERP's movement type
         * (e.g. SAP 344 / 343) follows it, so the statuses must agree. */
        else if (v.ingest && rt == INVSYNC__V1__MOVEMENT_TYPE__QUARANTINE &&
                 to == INVSYNC__V1__STOCK_STATUS__UNRESTRICTED)
            add_err(&v, "to_status",
                    "must not be UNRESTRICTED for a QUARANTINE (that is a RELEASE)");
        else if (v.ingest && rt == INVSYNC__V1__MOVEMENT_TYPE__RELEASE &&
                 from == INVSYNC__V1__STOCK_STATUS__UNRESTRICTED)
            add_err(&v, "from_status",
                    "must not be UNRESTRICTED for a RELEASE (that is a QUARANTINE)");
    }
    check_str(&v, "reason_code", m->reason_code, rt == INVSYNC__V1__MOVEMENT_TYPE__SCRAP);
    check_str(&v, "reverses_movement_id", m->reverses_movement_id, is_reversal);
    if (is_reversal && *str(m->reverses_movement_id) &&
        strcmp(str(m->reverses_movement_id), str(m->movement_id)) == 0)
        add_err(&v, "reverses_movement_id", "must differ from movement_id");
    else if (v.ingest && type_known && !is_reversal && *str(m->reverses_movement_id))
        add_err(&v, "reverses_movement_id", "only for REVERSAL, not for %s",
                is_movement_type_name(type));
    if (v.ingest && type_known && !is_reversal && m->reversed_type != 0)
        add_err(&v, "reversed_type", "only for REVERSAL, not for %s", is_movement_type_name(type));
    if (is_reversal) {
        int r = (int)m->reversed_type;
        if (r == INVSYNC__V1__MOVEMENT_TYPE__MOVEMENT_TYPE_UNSPECIFIED)
            add_err(&v, "reversed_type", "is required");
        else if (r == INVSYNC__V1__MOVEMENT_TYPE__REVERSAL)
            add_err(&v, "reversed_type", "must not be REVERSAL");
        else if (!enum_known(&invsync__v1__movement_type__descriptor, r))
            add_err(&v, "reversed_type", "unknown value %d", r);
    }
    /* event_time is optional (0 = not given); given, it is a time on the
     * floor: not before the epoch, not days ahead of this clock (a year typed
     * wrong, local time sent as epoch ms). */
    if (v.ingest && m->event_time < 0) {
        add_err(&v, "event_time", "is before 1970-01-01");
    } else if (v.ingest && m->event_time > 0 && m->event_time < IS_MOVEMENT_MIN_EVENT_MS) {
        /* 1970-01-21 is today's epoch seconds read as milliseconds: an MES
         * that sends seconds would otherwise see every movement accepted and
         * then refused by the ERP for a posting date in a closed period. */
        char t[IS_RFC3339_LEN];
        is_format_rfc3339(m->event_time, t);
        add_err(&v, "event_time",
                "%s is before 2000-01-01 (on the wire event_time is milliseconds since the "
                "epoch, not seconds)",
                t);
    } else if (v.ingest && opts && opts->now_ms > 0 &&
               m->event_time > opts->now_ms + IS_MOVEMENT_MAX_FUTURE_MS) {
        char t[IS_RFC3339_LEN];
        is_format_rfc3339(m->event_time, t);
        add_err(&v, "event_time", "%s is more than 24 hours ahead of this producer's clock", t);
    }
    if (m->n_attributes > IS_MOVEMENT_MAX_ATTRS)
        add_err(&v, "attributes", "has more than %d entries", IS_MOVEMENT_MAX_ATTRS);
    for (size_t i = 0; v.ingest && i < m->n_attributes && i < IS_MOVEMENT_MAX_ATTRS; i++) {
        const char *k = m->attributes[i] ? str(m->attributes[i]->key) : "";
        const char *val = m->attributes[i] ? str(m->attributes[i]->value) : "";
        size_t klen = strlen(k), vlen = strlen(val);
        if (klen == 0)
            add_err(&v, "attributes", "has an empty key");
        else if (klen > IS_MOVEMENT_MAX_STR)
            add_err(&v, "attributes", "key '%.32s...' is longer than %d bytes", k,
                    IS_MOVEMENT_MAX_STR);
        else if (vlen > IS_MOVEMENT_MAX_ATTR_VALUE)
            add_err(&v, "attributes", "value of '%.64s' is longer than %d bytes (%zu)", k,
                    IS_MOVEMENT_MAX_ATTR_VALUE, vlen);
        /* A map has one value per key; protobuf's wire can repeat an entry
         * (JSON cannot: duplicate keys are malformed). Which one counts would
         * differ between readers, and the fingerprint would take {a:1,a:2}
         * and {a:2,a:1} for the same content. */
        for (size_t j = 0; j < i; j++) {
            if (m->attributes[j] && strcmp(str(m->attributes[j]->key), k) == 0) {
                add_err(&v, "attributes", "key '%.64s' is given more than once", k);
                break;
            }
        }
    }
    return v.n;
}

/* ---- stock effects ----------------------------------------------------- */

static is_stock_effect_t effect(const char *location, int status, is_decimal_t delta) {
    is_stock_effect_t e = {location, status, delta};
    return e;
}

/* Effects of a non-REVERSAL type per the table in movement.h; 0 if unknown. */
static size_t base_effects(const is_movement_t *m, int type, is_decimal_t q,
                           is_stock_effect_t out[4]) {
    const char *loc = str(m->location);
    const int from = m->from_status ? (int)m->from_status : default_from(type);
    const int to = m->to_status ? (int)m->to_status : default_to(type);
    is_decimal_t neg = {0, 0};
    /* Only an INT64_MIN quantity cannot be negated; types that need -q fail then. */
    const int neg_ok = is_decimal_negate(q, &neg) == IS_OK;

    switch (type) {
    case INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE:
    case INVSYNC__V1__MOVEMENT_TYPE__SCRAP:
        if (!neg_ok)
            return 0;
        out[0] = effect(loc, from, neg);
        return 1;
    case INVSYNC__V1__MOVEMENT_TYPE__COMPLETION:
        out[0] = effect(loc, to, q);
        return 1;
    case INVSYNC__V1__MOVEMENT_TYPE__QUARANTINE:
    case INVSYNC__V1__MOVEMENT_TYPE__RELEASE:
        if (!neg_ok)
            return 0;
        out[0] = effect(loc, from, neg);
        out[1] = effect(loc, to, q);
        return 2;
    case INVSYNC__V1__MOVEMENT_TYPE__TRANSFER:
        if (!neg_ok)
            return 0;
        out[0] = effect(loc, from, neg);
        out[1] = effect(str(m->to_location), from, q);
        return 2;
    case INVSYNC__V1__MOVEMENT_TYPE__ADJUSTMENT:
        out[0] = effect(loc, m->to_status ? (int)m->to_status : from, q);
        return 1;
    default:
        return 0;
    }
}

void is_movement_statuses(const is_movement_t *m, int type, int *from, int *to) {
    *from = m->from_status ? (int)m->from_status : default_from(type);
    *to = m->to_status ? (int)m->to_status : default_to(type);
}

size_t is_movement_effects(const is_movement_t *m, is_stock_effect_t out[4]) {
    is_stock_effect_t tmp[4];
    size_t n;
    is_decimal_t q;

    if (!m->quantity || m->quantity->scale > IS_DECIMAL_MAX_SCALE ||
        !enum_known(&invsync__v1__stock_status__descriptor, (int)m->from_status) ||
        !enum_known(&invsync__v1__stock_status__descriptor, (int)m->to_status))
        return 0;
    q = is_movement_qty(m);
    if (m->type != INVSYNC__V1__MOVEMENT_TYPE__REVERSAL)
        return base_effects(m, (int)m->type, q, out);
    if (m->reversed_type == INVSYNC__V1__MOVEMENT_TYPE__REVERSAL)
        return 0;
    n = base_effects(m, (int)m->reversed_type, q, tmp);
    for (size_t i = 0; i < n; i++) {
        out[i] = tmp[n - 1 - i];
        if (is_decimal_negate(tmp[n - 1 - i].delta, &out[i].delta) != IS_OK)
            return 0;
    }
    return n;
}

/* ---- a REVERSAL against its original ------------------------------------ */

static int differ(is_reversal_diff_t *d, const char *field, const char *have, const char *want) {
    d->field = field;
    snprintf(d->have, sizeof d->have, "%s", have ? have : "");
    snprintf(d->want, sizeof d->want, "%s", want ? want : "");
    return 0;
}

int is_movement_reversal_matches(const is_movement_t *r, const is_movement_t *o,
                                 is_reversal_diff_t *d) {
    const struct {
        const char *field, *have, *want;
    } strs[] = {
        {"site", r->site, o->site},
        {"material", r->material, o->material},
        {"lot", r->lot, o->lot},
        {"serial", r->serial, o->serial},
        {"location", r->location, o->location},
        {"to_location", r->to_location, o->to_location},
        {"uom", r->uom, o->uom},
    };
    d->field = NULL;
    d->have[0] = d->want[0] = '\0';
    if (r->reversed_type != o->type)
        return differ(d, "reversed_type", is_movement_type_name((int)r->reversed_type),
                      is_movement_type_name((int)o->type));
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if (strcmp(str(strs[i].have), str(strs[i].want)) != 0)
            return differ(d, strs[i].field, strs[i].have, strs[i].want);
    is_decimal_t rq = is_movement_qty(r), oq = is_movement_qty(o);
    if (!r->quantity != !o->quantity || is_decimal_cmp(rq, oq) != 0) {
        char a[IS_DECIMAL_STRLEN] = "", b[IS_DECIMAL_STRLEN] = "";
        if (r->quantity)
            is_decimal_format(rq, a, sizeof a);
        if (o->quantity)
            is_decimal_format(oq, b, sizeof b);
        return differ(d, "quantity", a, b);
    }
    /* Same type, locations and quantity: the effects can differ only in
     * status. Compare them as applied (the reversal read as its original). */
    is_movement_t as_orig = *r;
    is_stock_effect_t re[4], oe[4];
    as_orig.type = o->type;
    size_t nr = is_movement_effects(&as_orig, re), no = is_movement_effects(o, oe), k = 0;
    for (; nr == no && k < no; k++)
        if (re[k].status != oe[k].status)
            break;
    if (nr == no && k == no)
        return 1;
    int from_r, to_r, from_o, to_o;
    is_movement_statuses(r, (int)o->type, &from_r, &to_r);
    is_movement_statuses(o, (int)o->type, &from_o, &to_o);
    if (from_r != from_o)
        return differ(d, "from_status", is_stock_status_name(from_r), is_stock_status_name(from_o));
    return differ(d, "to_status", is_stock_status_name(to_r), is_stock_status_name(to_o));
}

static const char *or_none(const char *v) {
    return v && *v ? v : "(none)";
}

int is_movement_reversal_check(const is_movement_t *r, const is_movement_t *o, char *buf,
                               size_t size) {
    is_reversal_diff_t d;
    if (is_movement_reversal_matches(r, o, &d))
        return 1;
    snprintf(buf, size, "reversal does not match %s: %s is %s, the original's %s%s",
             str(r->reverses_movement_id), d.field, or_none(d.have),
             strcmp(d.field, "reversed_type") == 0 ? "type is " : "is ", or_none(d.want));
    return 0;
}

/* ---- keys, quantity ---------------------------------------------------- */

int is_movement_lot_key(const is_movement_t *m, char *buf, size_t buf_size) {
    int n;
    if (!buf || buf_size == 0)
        return -1;
    n = snprintf(buf, buf_size, "%s/%s/%s", str(m->site), str(m->material), str(m->lot));
    if (n < 0 || (size_t)n >= buf_size) {
        buf[0] = '\0';
        return -1;
    }
    return n;
}

is_decimal_t is_movement_qty(const is_movement_t *m) {
    is_decimal_t d = {0, 0};
    if (m->quantity) {
        d.units = m->quantity->units;
        d.scale = m->quantity->scale;
    }
    return d;
}

/* ---- fingerprint ------------------------------------------------------- */

/* A ProtobufCBuffer that feeds what protobuf-c packs straight into SHA-256. */
typedef struct hash_buffer {
    ProtobufCBuffer base;
    is_sha256_t *sha;
} hash_buffer_t;

static void hash_append(ProtobufCBuffer *b, size_t len, const uint8_t *data) {
    is_sha256_update(((hash_buffer_t *)b)->sha, data, len);
}

static int cmp_entry(const void *a, const void *b) {
    const Invsync__V1__Movement__AttributesEntry *x =
        *(const Invsync__V1__Movement__AttributesEntry *const *)a;
    const Invsync__V1__Movement__AttributesEntry *y =
        *(const Invsync__V1__Movement__AttributesEntry *const *)b;
    int c = strcmp(str(x->key), str(y->key));
    return c ? c : strcmp(str(x->value), str(y->value));
}

/*
 * SHA-256 of the canonical packed form: a shallow copy with the stamped
 * fields cleared and the attribute entries sorted by key (then value), so
 * the fingerprint does not depend on the order a map happened to be built
 * in. Fields are packed in field-number order by protobuf-c, and proto3
 * omits zero values, so a movement without attributes hashes exactly as
 * its plain packed form. Note the quantity's scale is content: "12.5" and
 * "12.50" are different submissions.
 */
is_err_t is_movement_fingerprint(const is_movement_t *m, uint8_t out[32]) {
    is_movement_t c = *m;
    Invsync__V1__Movement__AttributesEntry **sorted = NULL;
    is_sha256_t sha;
    hash_buffer_t hb;

    c.tier = (char *)protobuf_c_empty_string;
    c.policy_version = (char *)protobuf_c_empty_string;
    c.producer_id = (char *)protobuf_c_empty_string;
    c.sequence = 0;
    c.accepted_time = 0;
    if (m->n_attributes > 1) {
        sorted = malloc(m->n_attributes * sizeof *sorted);
        if (!sorted)
            return IS_ERR_NOMEM;
        memcpy(sorted, m->attributes, m->n_attributes * sizeof *sorted);
        qsort(sorted, m->n_attributes, sizeof *sorted, cmp_entry);
        c.attributes = sorted;
    }
    if (is_sha256_init(&sha) != IS_OK) {
        free(sorted);
        return IS_ERR_NOMEM;
    }
    hb.base.append = hash_append;
    hb.sha = &sha;
    protobuf_c_message_pack_to_buffer(&c.base, &hb.base);
    is_sha256_final(&sha, out);
    free(sorted);
    return IS_OK;
}
