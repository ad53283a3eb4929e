/*
 * test_movement.c — unit tests for common/movement.c: enum names from the
 * descriptors, one validation case per rule (and valid counterparts), the
 * stock effects of every type and of the REVERSAL of every type, the lot
 * key's bounds, and the fingerprint's equalities and differences.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hash.h"
#include "movement.h"

#define T(x) INVSYNC__V1__MOVEMENT_TYPE__##x
#define S(x) INVSYNC__V1__STOCK_STATUS__##x

static char long65[66], long129[130];

static int setup_strings(void **state) {
    (void)state;
    memset(long65, 'x', 65);
    memset(long129, 'y', 129);
    return 0;
}

/* "<65>"/"<129>" stand for long strings, so cases stay one line. */
static char *value_of(const char *v) {
    if (strcmp(v, "<65>") == 0)
        return long65;
    if (strcmp(v, "<129>") == 0)
        return long129;
    if (strcmp(v, "<64>") == 0)
        return long65 + 1;
    return (char *)v;
}

/*
 * Set a field by its proto name from text: strings as given, enums by name
 * or number. Uses the descriptor so the table can name any field.
 */
static void set_by_name(is_movement_t *m, const char *name, const char *text) {
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(m->base.descriptor, name);
    void *slot;
    if (!f)
        fail_msg("no field '%s'", name);
    slot = (char *)m + f->offset;
    if (f->type == PROTOBUF_C_TYPE_STRING) {
        *(char **)slot = value_of(text);
    } else if (f->type == PROTOBUF_C_TYPE_ENUM) {
        const ProtobufCEnumValue *v =
            protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, text);
        *(int32_t *)slot = v ? v->value : (int32_t)strtol(text, NULL, 10);
    } else {
        fail_msg("field '%s' not settable from text", name);
    }
}

/* A movement valid for `type`: the fields every type takes (order_id,
 * reason_code) filled; to_location only on a TRANSFER and the reversal's
 * fields only on a REVERSAL (ingest refuses them on other types). */
static void fill_valid(is_movement_t *m, Invsync__V1__Decimal *q, int type) {
    invsync__v1__movement__init(m);
    invsync__v1__decimal__init(q);
    q->units = 12500;
    q->scale = 3;
    m->movement_id = "M-1";
    m->source_system = "MES-PLANT1";
    m->site = "PLANT_1-a";
    m->type = type;
    m->material = "MAT-1";
    m->lot = "LOT-1";
    m->location = "A-01";
    m->to_location = type == T(TRANSFER) ? "B-02" : "";
    m->quantity = q;
    m->uom = "KG";
    m->order_id = "ORD-1";
    m->reason_code = "DMG";
    m->reverses_movement_id = type == T(REVERSAL) ? "M-0" : "";
    m->reversed_type = type == T(REVERSAL) ? T(GOODS_ISSUE) : T(MOVEMENT_TYPE_UNSPECIFIED);
}

static void test_names(void **state) {
    static const struct {
        int value;
        const char *name;
    } types[] =
        {
            {0, "MOVEMENT_TYPE_UNSPECIFIED"},
            {1, "GOODS_ISSUE"},
            {2, "COMPLETION"},
            {3, "SCRAP"},
            {4, "QUARANTINE"},
            {5, "RELEASE"},
            {6, "TRANSFER"},
            {7, "ADJUSTMENT"},
            {8, "REVERSAL"},
        },
      statuses[] = {
          {0, "STOCK_STATUS_UNSPECIFIED"},
          {1, "UNRESTRICTED"},
          {2, "QUALITY"},
          {3, "BLOCKED"},
      };
    (void)state;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        assert_string_equal(is_movement_type_name(types[i].value), types[i].name);
        assert_int_equal(is_movement_type_parse(types[i].name), types[i].value);
    }
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++) {
        assert_string_equal(is_stock_status_name(statuses[i].value), statuses[i].name);
        assert_int_equal(is_stock_status_parse(statuses[i].name), statuses[i].value);
    }
    assert_string_equal(is_movement_type_name(9), "?");
    assert_string_equal(is_movement_type_name(-1), "?");
    assert_string_equal(is_stock_status_name(4), "?");
    /* Exact proto names only. */
    assert_int_equal(is_movement_type_parse("goods_issue"), 0);
    assert_int_equal(is_movement_type_parse("GOODS_ISSUE "), 0);
    assert_int_equal(is_movement_type_parse(""), 0);
    assert_int_equal(is_movement_type_parse(NULL), 0);
    assert_int_equal(is_stock_status_parse("blocked"), 0);
    assert_int_equal(is_stock_status_parse(NULL), 0);
}

typedef struct vcase {
    int type;
    const char *f1, *v1; /* optional field overrides (proto name, text) */
    const char *f2, *v2;
    const char *qty;        /* NULL: keep 12.500; "none": no quantity; else units/scale text */
    int n_attrs;            /* attributes to add */
    const char *want_field; /* NULL: valid */
    const char *want_error; /* substring */
} vcase_t;

static const vcase_t vcases[] = {
    /* valid baselines, one per type */
    {T(GOODS_ISSUE), NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL},
    {T(COMPLETION), NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL},
    {T(SCRAP), NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL},
    {T(QUARANTINE), NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL},
    {T(RELEASE), NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL},
    {T(TRANSFER), NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL},
    {T(ADJUSTMENT), NULL, NULL, NULL, NULL, "-5", 0, NULL, NULL},
    {T(REVERSAL), NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL},
    /* valid edges */
    {T(SCRAP), "order_id", "", NULL, NULL, NULL, 0, NULL, NULL},
    {T(GOODS_ISSUE), "reason_code", "", "to_location", "", NULL, 0, NULL, NULL},
    {T(GOODS_ISSUE), "site", "<64>", NULL, NULL, NULL, 0, NULL, NULL},
    {T(GOODS_ISSUE), NULL, NULL, NULL, NULL, "0.000001", 32, NULL, NULL},
    {T(RELEASE), "from_status", "QUALITY", NULL, NULL, NULL, 0, NULL, NULL},
    {T(QUARANTINE), "to_status", "QUALITY", NULL, NULL, NULL, 0, NULL, NULL},
    {T(REVERSAL), "reversed_type", "ADJUSTMENT", NULL, NULL, "-3", 0, NULL, NULL},
    {T(GOODS_ISSUE), "movement_id", "MES-ERP", NULL, NULL, NULL, 0, NULL, NULL},
    /* required ids */
    {T(GOODS_ISSUE), "movement_id", "", NULL, NULL, NULL, 0, "movement_id", "is required"},
    {T(GOODS_ISSUE), "source_system", "", NULL, NULL, NULL, 0, "source_system", "is required"},
    {T(GOODS_ISSUE), "site", "", NULL, NULL, NULL, 0, "site", "is required"},
    {T(GOODS_ISSUE), "material", "", NULL, NULL, NULL, 0, "material", "is required"},
    {T(GOODS_ISSUE), "lot", "", NULL, NULL, NULL, 0, "lot", "is required"},
    {T(GOODS_ISSUE), "location", "", NULL, NULL, NULL, 0, "location", "is required"},
    {T(GOODS_ISSUE), "uom", "", NULL, NULL, NULL, 0, "uom", "is required"},
    /* lengths */
    {T(GOODS_ISSUE), "movement_id", "<129>", NULL, NULL, NULL, 0, "movement_id",
     "is longer than 128"},
    {T(GOODS_ISSUE), "lot", "<129>", NULL, NULL, NULL, 0, "lot", "is longer than 128"},
    {T(GOODS_ISSUE), "serial", "<129>", NULL, NULL, NULL, 0, "serial", "is longer than 128"},
    {T(GOODS_ISSUE), "site", "<65>", NULL, NULL, NULL, 0, "site", "is longer than 64"},
    /* site topic-safe */
    {T(GOODS_ISSUE), "site", "P 1", NULL, NULL, NULL, 0, "site", "must contain only letters"},
    {T(GOODS_ISSUE), "site", "P1.x", NULL, NULL, NULL, 0, "site", "must contain only letters"},
    {T(GOODS_ISSUE), "site", "P/1", NULL, NULL, NULL, 0, "site", "must contain only letters"},
    /* type */
    {T(MOVEMENT_TYPE_UNSPECIFIED), NULL, NULL, NULL, NULL, NULL, 0, "type", "is required"},
    {99, NULL, NULL, NULL, NULL, NULL, 0, "type", "unknown value 99"},
    /* quantity */
    {T(GOODS_ISSUE), NULL, NULL, NULL, NULL, "none", 0, "quantity", "is required"},
    {T(GOODS_ISSUE), NULL, NULL, NULL, NULL, "0", 0, "quantity", "must be greater than zero"},
    {T(COMPLETION), NULL, NULL, NULL, NULL, "-1", 0, "quantity", "must be greater than zero"},
    {T(TRANSFER), NULL, NULL, NULL, NULL, "0.000", 0, "quantity", "must be greater than zero"},
    {T(SCRAP), NULL, NULL, NULL, NULL, "1.0000001", 0, "quantity",
     "has more than 6 decimal places"},
    {T(ADJUSTMENT), NULL, NULL, NULL, NULL, "0", 0, "quantity", "must not be zero"},
    {T(REVERSAL), NULL, NULL, NULL, NULL, "-3", 0, "quantity", "must be greater than zero"},
    /* quantity range: 12 integer digits (the ERP's int64 at 6 decimals is ±9.2e12) */
    {T(GOODS_ISSUE), NULL, NULL, NULL, NULL, "999999999999.999999", 0, NULL, NULL},
    {T(ADJUSTMENT), NULL, NULL, NULL, NULL, "-999999999999", 0, NULL, NULL},
    {T(COMPLETION), NULL, NULL, NULL, NULL, "1000000000000", 0, "quantity",
     "is out of range: at most 12 digits before the decimal point"},
    {T(COMPLETION), NULL, NULL, NULL, NULL, "9223372036854775807", 0, "quantity",
     "is out of range"},
    {T(ADJUSTMENT), NULL, NULL, NULL, NULL, "-9223372036854775808", 0, "quantity",
     "is out of range"},
    {T(ADJUSTMENT), NULL, NULL, NULL, NULL, "-1000000000000.5", 0, "quantity", "is out of range"},
    /* type-specific */
    {T(TRANSFER), "to_location", "", NULL, NULL, NULL, 0, "to_location", "is required"},
    {T(TRANSFER), "to_location", "A-01", NULL, NULL, NULL, 0, "to_location",
     "must differ from location"},
    {T(GOODS_ISSUE), "order_id", "", NULL, NULL, NULL, 0, "order_id", "is required"},
    {T(COMPLETION), "order_id", "", NULL, NULL, NULL, 0, "order_id", "is required"},
    {T(SCRAP), "reason_code", "", NULL, NULL, NULL, 0, "reason_code", "is required"},
    {T(QUARANTINE), "from_status", "BLOCKED", NULL, NULL, NULL, 0, "to_status",
     "must differ from from_status"},
    {T(QUARANTINE), "from_status", "QUALITY", "to_status", "QUALITY", NULL, 0, "to_status",
     "must differ from from_status"},
    {T(RELEASE), "to_status", "BLOCKED", NULL, NULL, NULL, 0, "to_status",
     "must differ from from_status"},
    /* the type says which way the stock goes */
    {T(QUARANTINE), "from_status", "BLOCKED", "to_status", "UNRESTRICTED", NULL, 0, "to_status",
     "must not be UNRESTRICTED for a QUARANTINE (that is a RELEASE)"},
    {T(RELEASE), "from_status", "UNRESTRICTED", "to_status", "BLOCKED", NULL, 0, "from_status",
     "must not be UNRESTRICTED for a RELEASE (that is a QUARANTINE)"},
    {T(GOODS_ISSUE), "from_status", "9", NULL, NULL, NULL, 0, "from_status", "unknown value 9"},
    {T(COMPLETION), "to_status", "-2", NULL, NULL, NULL, 0, "to_status", "unknown value -2"},
    /* reversal */
    {T(REVERSAL), "reverses_movement_id", "", NULL, NULL, NULL, 0, "reverses_movement_id",
     "is required"},
    {T(REVERSAL), "reverses_movement_id", "M-1", NULL, NULL, NULL, 0, "reverses_movement_id",
     "must differ from movement_id"},
    {T(REVERSAL), "reversed_type", "MOVEMENT_TYPE_UNSPECIFIED", NULL, NULL, NULL, 0,
     "reversed_type", "is required"},
    {T(REVERSAL), "reversed_type", "REVERSAL", NULL, NULL, NULL, 0, "reversed_type",
     "must not be REVERSAL"},
    {T(REVERSAL), "reversed_type", "42", NULL, NULL, NULL, 0, "reversed_type", "unknown value 42"},
    {T(REVERSAL), "reversed_type", "TRANSFER", "to_location", "", NULL, 0, "to_location",
     "is required"},
    {T(REVERSAL), "reversed_type", "TRANSFER", "to_location", "B-02", NULL, 0, NULL, NULL},
    /* fields of another type: the MES meant another type, the ERP would get them */
    {T(GOODS_ISSUE), "to_location", "B-02", NULL, NULL, NULL, 0, "to_location",
     "only for TRANSFER, not for GOODS_ISSUE"},
    {T(QUARANTINE), "to_location", "A-01", NULL, NULL, NULL, 0, "to_location",
     "only for TRANSFER, not for QUARANTINE"},
    {T(REVERSAL), "to_location", "B-02", NULL, NULL, NULL, 0, "to_location",
     "only for TRANSFER, not for a REVERSAL of GOODS_ISSUE"},
    {T(TRANSFER), "reverses_movement_id", "M-0", NULL, NULL, NULL, 0, "reverses_movement_id",
     "only for REVERSAL, not for TRANSFER"},
    {T(SCRAP), "reversed_type", "GOODS_ISSUE", NULL, NULL, NULL, 0, "reversed_type",
     "only for REVERSAL, not for SCRAP"},
    {T(ADJUSTMENT), "reversed_type", "42", NULL, NULL, "-5", 0, "reversed_type",
     "only for REVERSAL, not for ADJUSTMENT"},
    {T(MOVEMENT_TYPE_UNSPECIFIED), "to_location", "B-02", NULL, NULL, NULL, 0, "type",
     "is required"},
    /* attributes */
    {T(GOODS_ISSUE), NULL, NULL, NULL, NULL, NULL, 33, "attributes", "has more than 32 entries"},
    /* loop guard */
    {T(GOODS_ISSUE), "source_system", "ERP", NULL, NULL, NULL, 0, "source_system",
     "source system 'ERP' is an ERP-origin system (loop guard)"},
    {T(GOODS_ISSUE), "source_system", "SAP-PRD", NULL, NULL, NULL, 0, "source_system",
     "source system 'SAP-PRD' is an ERP-origin system (loop guard)"},
    {T(GOODS_ISSUE), "source_system", "sap-prd", NULL, NULL, NULL, 0, "source_system",
     "source system 'SAP-PRD' is an ERP-origin system (loop guard)"},
    /* control characters */
    {T(GOODS_ISSUE), "lot", "L1\tX", NULL, NULL, NULL, 0, "lot",
     "must not contain control characters (0x09 at byte 2)"},
    {T(GOODS_ISSUE), "movement_id", "M-1\n", NULL, NULL, NULL, 0, "movement_id",
     "must not contain control characters (0x0a at byte 3)"},
    {T(SCRAP), "reason_code", "\x1b[31m", NULL, NULL, NULL, 0, "reason_code",
     "must not contain control characters"},
    {T(GOODS_ISSUE), "lot", "L1\xc2\x85X", NULL, NULL, NULL, 0, "lot",
     "must not contain control characters (U+0085 at byte 2)"},
    {T(GOODS_ISSUE), "lot", "L1\xe2\x80\xa8X", NULL, NULL, NULL, 0, "lot",
     "must not contain line breaks (U+2028 at byte 2)"},
    {T(GOODS_ISSUE), "material", "M\xe2\x80\xa9", NULL, NULL, NULL, 0, "material",
     "must not contain line breaks (U+2029 at byte 1)"},
    {T(GOODS_ISSUE), "lot", "L1\xe2\x80\xa7X", NULL, NULL, NULL, 0, NULL, NULL}, /* U+2027 */
    /* zero-width and bidirectional controls: two codes that look alike */
    {T(GOODS_ISSUE), "lot", "L1\xe2\x80\x8bX", NULL, NULL, NULL, 0, "lot",
     "must not contain invisible or bidirectional characters (U+200B at byte 2)"},
    {T(GOODS_ISSUE), "movement_id", "M\xe2\x80\x8f", NULL, NULL, NULL, 0, "movement_id",
     "must not contain invisible or bidirectional characters (U+200F at byte 1)"},
    {T(GOODS_ISSUE), "material", "\xe2\x80\xaaRM", NULL, NULL, NULL, 0, "material",
     "must not contain invisible or bidirectional characters (U+202A at byte 0)"},
    {T(GOODS_ISSUE), "location",
     "A\xe2\x80\xae"
     "B",
     NULL, NULL, NULL, 0, "location",
     "must not contain invisible or bidirectional characters (U+202E at byte 1)"},
    {T(GOODS_ISSUE), "order_id", "O\xe2\x81\xa0", NULL, NULL, NULL, 0, "order_id",
     "must not contain invisible or bidirectional characters (U+2060 at byte 1)"},
    {T(GOODS_ISSUE), "serial", "S\xe2\x81\xa4", NULL, NULL, NULL, 0, "serial",
     "must not contain invisible or bidirectional characters (U+2064 at byte 1)"},
    {T(GOODS_ISSUE), "source_system", "MES\xe2\x81\xa6", NULL, NULL, NULL, 0, "source_system",
     "must not contain invisible or bidirectional characters (U+2066 at byte 3)"},
    {T(GOODS_ISSUE), "uom", "K\xe2\x81\xa9G", NULL, NULL, NULL, 0, "uom",
     "must not contain invisible or bidirectional characters (U+2069 at byte 1)"},
    {T(GOODS_ISSUE), "lot", "\xef\xbb\xbfLOT", NULL, NULL, NULL, 0, "lot",
     "must not contain invisible or bidirectional characters (U+FEFF at byte 0)"},
    /* their neighbours are visible: U+200A HAIR SPACE, U+2030, U+2065, U+206A, U+FEFE */
    {T(GOODS_ISSUE), "lot", "L\xe2\x80\x8a\xe2\x80\xb0\xe2\x81\xa5", NULL, NULL, NULL, 0, NULL,
     NULL},
    {T(GOODS_ISSUE), "lot", "L\xe2\x81\xaa\xef\xbb\xbe\xe2\x80\xa9X", NULL, NULL, NULL, 0, "lot",
     "must not contain line breaks (U+2029 at byte 7)"},
    /* leading / trailing spaces make another code */
    {T(GOODS_ISSUE), "lot", "LOT-1 ", NULL, NULL, NULL, 0, "lot",
     "must not begin or end with a space"},
    {T(GOODS_ISSUE), "material", " RM-1", NULL, NULL, NULL, 0, "material",
     "must not begin or end with a space"},
    {T(GOODS_ISSUE), "location", "WH\xc2\xa0", NULL, NULL, NULL, 0, "location",
     "must not begin or end with a space"},
};

static void test_validate_rules(void **state) {
    static const char *const refused[] = {"ERP", "SAP-PRD", NULL};
    const is_validate_opts_t opts = {6, refused, 1, 0};
    (void)state;
    for (size_t i = 0; i < sizeof vcases / sizeof vcases[0]; i++) {
        const vcase_t *c = &vcases[i];
        is_movement_t m;
        Invsync__V1__Decimal q;
        Invsync__V1__Movement__AttributesEntry entries[40], *ptrs[40];
        char keys[40][16];
        is_field_error_t errs[8];
        size_t n;

        fill_valid(&m, &q, c->type);
        if (c->f1)
            set_by_name(&m, c->f1, c->v1);
        if (c->f2)
            set_by_name(&m, c->f2, c->v2);
        if (c->qty && strcmp(c->qty, "none") == 0) {
            m.quantity = NULL;
        } else if (c->qty) {
            is_decimal_t d;
            assert_int_equal(is_decimal_parse(c->qty, strlen(c->qty), 18, &d, NULL, 0), IS_OK);
            q.units = d.units;
            q.scale = d.scale;
        }
        for (int a = 0; a < c->n_attrs; a++) {
            invsync__v1__movement__attributes_entry__init(&entries[a]);
            snprintf(keys[a], sizeof keys[a], "k%d", a);
            entries[a].key = keys[a];
            entries[a].value = "v";
            ptrs[a] = &entries[a];
        }
        m.n_attributes = (size_t)c->n_attrs;
        m.attributes = c->n_attrs ? ptrs : NULL;

        memset(errs, 0, sizeof errs);
        n = is_movement_validate(&m, &opts, errs, 8);
        if (!c->want_field) {
            if (n != 0)
                fail_msg("case %zu: want valid, got %zu errors, first %s: %s", i, n, errs[0].field,
                         errs[0].error);
            continue;
        }
        if (n != 1 || strcmp(errs[0].field, c->want_field) != 0 ||
            !strstr(errs[0].error, c->want_error))
            fail_msg("case %zu: want exactly '%s: %s', got %zu errors, first '%s: %s'", i,
                     c->want_field, c->want_error, n, errs[0].field, errs[0].error);
    }
}

/* Fields of another type are refused at ingest only: the consumer posts what
 * an older producer accepted with them. */
static void test_other_types_fields_consumed(void **state) {
    is_movement_t m;
    Invsync__V1__Decimal q;
    is_field_error_t err;
    const is_validate_opts_t at_ingest = {6, NULL, 1, 0}, consumed = {6, NULL, 0, 0};
    (void)state;
    fill_valid(&m, &q, T(GOODS_ISSUE));
    m.to_location = "B-02";
    m.reverses_movement_id = "M-0";
    m.reversed_type = T(SCRAP);
    assert_int_equal(is_movement_validate(&m, &at_ingest, &err, 1), 3);
    assert_int_equal(is_movement_validate(&m, &consumed, &err, 1), 0);
}

/* event_time is optional; given, at ingest it is not before 2000 and not
 * more than a day ahead of the producer's clock. The consumer (ingest 0)
 * takes what an older producer accepted. */
static void test_event_time_at_ingest(void **state) {
    is_movement_t m;
    Invsync__V1__Decimal q;
    is_field_error_t err;
    const int64_t now = 1796000000000; /* 2026-11-30 */
    const is_validate_opts_t at_ingest = {6, NULL, 1, now}, no_clock = {6, NULL, 1, 0},
                             consumed = {6, NULL, 0, 0};
    (void)state;
    fill_valid(&m, &q, T(GOODS_ISSUE));
    m.event_time = 0; /* not given */
    assert_int_equal(is_movement_validate(&m, &at_ingest, &err, 1), 0);
    m.event_time = now - 86400000LL * 365; /* a year ago: a late resend */
    assert_int_equal(is_movement_validate(&m, &at_ingest, &err, 1), 0);
    m.event_time = now + IS_MOVEMENT_MAX_FUTURE_MS; /* clock skew up to a day */
    assert_int_equal(is_movement_validate(&m, &at_ingest, &err, 1), 0);
    m.event_time = now + IS_MOVEMENT_MAX_FUTURE_MS + 1;
    assert_int_equal(is_movement_validate(&m, &at_ingest, &err, 1), 1);
    assert_string_equal(err.field, "event_time");
    assert_string_equal(err.error,
                        "2026-12-01T00:53:20.001Z is more than 24 hours ahead of this producer's "
                        "clock");
    assert_int_equal(is_movement_validate(&m, &no_clock, &err, 1), 0);
    assert_int_equal(is_movement_validate(&m, &consumed, &err, 1), 0);
    m.event_time = -1;
    assert_int_equal(is_movement_validate(&m, &at_ingest, &err, 1), 1);
    assert_string_equal(err.field, "event_time");
    assert_string_equal(err.error, "is before 1970-01-01");
    assert_int_equal(is_movement_validate(&m, &consumed, &err, 1), 0);
    /* Epoch seconds sent as milliseconds (1970-01-21): refused, saying so. */
    m.event_time = now / 1000;
    assert_int_equal(is_movement_validate(&m, &at_ingest, &err, 1), 1);
    assert_string_equal(err.field, "event_time");
    assert_string_equal(err.error, "1970-01-21T18:53:20.000Z is before 2000-01-01 (on the wire "
                                   "event_time is milliseconds since the epoch, not seconds)");
    assert_int_equal(is_movement_validate(&m, &consumed, &err, 1), 0);
    m.event_time = IS_MOVEMENT_MIN_EVENT_MS;
    assert_int_equal(is_movement_validate(&m, &at_ingest, &err, 1), 0);
}

/* Control characters and quantity range are checked at ingest only: a
 * movement an older producer accepted with them is still posted by the
 * consumer. */
static void test_control_characters_only_at_ingest(void **state) {
    is_movement_t m;
    Invsync__V1__Decimal q;
    is_field_error_t err;
    const is_validate_opts_t at_ingest = {6, NULL, 1, 0}, consumed = {6, NULL, 0, 0};
    (void)state;
    fill_valid(&m, &q, T(GOODS_ISSUE));
    m.lot = "A\tB";
    assert_int_equal(is_movement_validate(&m, &consumed, &err, 1), 0);
    assert_int_equal(is_movement_validate(&m, NULL, &err, 1), 0);
    assert_int_equal(is_movement_validate(&m, &at_ingest, &err, 1), 1);
    assert_string_equal(err.field, "lot");
    /* Likewise a quantity of 13 integer digits (the ERP judges it). */
    m.lot = "LOT-1";
    q.units = INT64_C(5000000000000);
    q.scale = 0;
    assert_int_equal(is_movement_validate(&m, &consumed, &err, 1), 0);
    assert_int_equal(is_movement_validate(&m, &at_ingest, &err, 1), 1);
    assert_string_equal(err.field, "quantity");
    /* And the direction of a status change (refused at ingest since 2026-11):
     * what an older producer accepted is still consumed. */
    fill_valid(&m, &q, T(QUARANTINE));
    m.from_status = INVSYNC__V1__STOCK_STATUS__BLOCKED;
    m.to_status = INVSYNC__V1__STOCK_STATUS__UNRESTRICTED;
    assert_int_equal(is_movement_validate(&m, &consumed, &err, 1), 0);
    assert_int_equal(is_movement_validate(&m, &at_ingest, &err, 1), 1);
    assert_string_equal(err.field, "to_status");
}

static void test_validate_counts_all_errors(void **state) {
    is_movement_t m = INVSYNC__V1__MOVEMENT__INIT;
    is_field_error_t errs[3];
    is_field_error_t sentinel;
    size_t n_all, n;
    (void)state;
    /* Empty: movement_id, source_system, site, type, material, lot, location, quantity, uom. */
    n_all = is_movement_validate(&m, NULL, NULL, 0);
    assert_int_equal(n_all, 9);
    memset(errs, 0, sizeof errs);
    memset(&sentinel, 0x5a, sizeof sentinel);
    errs[2] = sentinel;
    n = is_movement_validate(&m, NULL, errs, 2);
    assert_int_equal(n, n_all);
    assert_string_equal(errs[0].field, "movement_id");
    assert_string_equal(errs[0].error, "is required");
    assert_string_equal(errs[1].field, "source_system");
    assert_memory_equal(&errs[2], &sentinel, sizeof sentinel); /* not written */
}

static void test_validate_opts_null(void **state) {
    is_movement_t m;
    Invsync__V1__Decimal q;
    (void)state;
    fill_valid(&m, &q, T(GOODS_ISSUE));
    m.source_system = "ERP"; /* nothing refused without opts */
    q.scale = 18;
    q.units = 1;
    assert_int_equal(is_movement_validate(&m, NULL, NULL, 0), 0);
    /* NULL strings (hand-built structs) count as empty, not a crash. */
    m.lot = NULL;
    m.serial = NULL;
    assert_int_equal(is_movement_validate(&m, NULL, NULL, 0), 1);
}

/* ---- effects ------------------------------------------------------------ */

typedef struct eff {
    const char *location;
    int status;
    int64_t units; /* at scale 3 */
} eff_t;

typedef struct ecase {
    int type, reversed_type, from, to;
    int64_t qty; /* at scale 3 */
    size_t n;
    eff_t want[2];
} ecase_t;

/* Shorthands for the table: quantity 12.500, the two locations of fill_valid. */
/* clang-format off */
#define Q 12500
#define LA "A-01"
#define LB "B-02"
#define E(loc, st, units) {loc, S(st), units}
#define NONE {{NULL, 0, 0}}
/* clang-format on */

static const ecase_t ecases[] = {
    {T(GOODS_ISSUE), 0, 0, 0, Q, 1, {E(LA, UNRESTRICTED, -Q)}},
    {T(GOODS_ISSUE), 0, S(QUALITY), 0, Q, 1, {E(LA, QUALITY, -Q)}},
    {T(COMPLETION), 0, 0, 0, Q, 1, {E(LA, UNRESTRICTED, Q)}},
    {T(COMPLETION), 0, 0, S(QUALITY), Q, 1, {E(LA, QUALITY, Q)}},
    {T(SCRAP), 0, 0, 0, Q, 1, {E(LA, UNRESTRICTED, -Q)}},
    {T(SCRAP), 0, S(BLOCKED), 0, Q, 1, {E(LA, BLOCKED, -Q)}},
    {T(QUARANTINE), 0, 0, 0, Q, 2, {E(LA, UNRESTRICTED, -Q), E(LA, BLOCKED, Q)}},
    {T(QUARANTINE), 0, 0, S(QUALITY), Q, 2, {E(LA, UNRESTRICTED, -Q), E(LA, QUALITY, Q)}},
    {T(RELEASE), 0, 0, 0, Q, 2, {E(LA, BLOCKED, -Q), E(LA, UNRESTRICTED, Q)}},
    {T(RELEASE), 0, S(QUALITY), 0, Q, 2, {E(LA, QUALITY, -Q), E(LA, UNRESTRICTED, Q)}},
    {T(TRANSFER), 0, 0, 0, Q, 2, {E(LA, UNRESTRICTED, -Q), E(LB, UNRESTRICTED, Q)}},
    {T(TRANSFER), 0, S(BLOCKED), 0, Q, 2, {E(LA, BLOCKED, -Q), E(LB, BLOCKED, Q)}},
    {T(ADJUSTMENT), 0, 0, 0, -4000, 1, {E(LA, UNRESTRICTED, -4000)}},
    {T(ADJUSTMENT), 0, S(QUALITY), 0, 4000, 1, {E(LA, QUALITY, 4000)}},
    {T(ADJUSTMENT), 0, S(QUALITY), S(BLOCKED), 4000, 1, {E(LA, BLOCKED, 4000)}},
    /* REVERSAL: the reversed type's effects, negated, in reverse order */
    {T(REVERSAL), T(GOODS_ISSUE), 0, 0, Q, 1, {E(LA, UNRESTRICTED, Q)}},
    {T(REVERSAL), T(COMPLETION), 0, 0, Q, 1, {E(LA, UNRESTRICTED, -Q)}},
    {T(REVERSAL), T(SCRAP), S(BLOCKED), 0, Q, 1, {E(LA, BLOCKED, Q)}},
    {T(REVERSAL), T(QUARANTINE), 0, 0, Q, 2, {E(LA, BLOCKED, -Q), E(LA, UNRESTRICTED, Q)}},
    {T(REVERSAL), T(RELEASE), 0, 0, Q, 2, {E(LA, UNRESTRICTED, -Q), E(LA, BLOCKED, Q)}},
    {T(REVERSAL), T(TRANSFER), 0, 0, Q, 2, {E(LB, UNRESTRICTED, -Q), E(LA, UNRESTRICTED, Q)}},
    {T(REVERSAL), T(ADJUSTMENT), 0, 0, -4000, 1, {E(LA, UNRESTRICTED, 4000)}},
    /* no effects */
    {T(REVERSAL), T(REVERSAL), 0, 0, Q, 0, NONE},
    {T(REVERSAL), 0, 0, 0, Q, 0, NONE},
    {0, 0, 0, 0, Q, 0, NONE},
    {99, 0, 0, 0, Q, 0, NONE},
    {T(GOODS_ISSUE), 0, 7, 0, Q, 0, NONE},
    {T(GOODS_ISSUE), 0, 0, 0, INT64_MIN, 0, NONE},
    {T(REVERSAL), T(COMPLETION), 0, 0, INT64_MIN, 0, NONE},
};

static void test_effects(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof ecases / sizeof ecases[0]; i++) {
        const ecase_t *c = &ecases[i];
        is_movement_t m;
        Invsync__V1__Decimal q;
        is_stock_effect_t out[4];
        size_t n;

        fill_valid(&m, &q, c->type);
        m.reversed_type = c->reversed_type;
        if (c->reversed_type == T(TRANSFER))
            m.to_location = LB;
        m.from_status = c->from;
        m.to_status = c->to;
        q.units = c->qty;
        n = is_movement_effects(&m, out);
        if (n != c->n)
            fail_msg("case %zu (%s): %zu effects, want %zu", i, is_movement_type_name(c->type), n,
                     c->n);
        for (size_t k = 0; k < n; k++) {
            if (strcmp(out[k].location, c->want[k].location) != 0 ||
                out[k].status != c->want[k].status || out[k].delta.units != c->want[k].units ||
                out[k].delta.scale != 3)
                fail_msg("case %zu effect %zu: %s %s %" PRId64 ", want %s %s %" PRId64, i, k,
                         out[k].location, is_stock_status_name(out[k].status), out[k].delta.units,
                         c->want[k].location, is_stock_status_name(c->want[k].status),
                         c->want[k].units);
            /* Points into the movement, not a copy. */
            assert_true(out[k].location == m.location || out[k].location == m.to_location);
        }
    }
}

static void test_effects_no_quantity(void **state) {
    is_movement_t m;
    Invsync__V1__Decimal q;
    is_stock_effect_t out[4];
    (void)state;
    fill_valid(&m, &q, T(COMPLETION));
    m.quantity = NULL;
    assert_int_equal(is_movement_effects(&m, out), 0);
    assert_int_equal(is_movement_qty(&m).units, 0);
    assert_int_equal(is_movement_qty(&m).scale, 0);
    m.quantity = &q;
    assert_int_equal(is_movement_qty(&m).units, 12500);
    assert_int_equal(is_movement_qty(&m).scale, 3);
}

/* Attribute keys and values are bounded, so that every accepted movement
 * fits a Kafka message (an unbounded value was accepted, then could never be
 * produced: "Message size too large", and the movement never arrived). */
static void test_validate_attributes(void **state) {
    static char big[IS_MOVEMENT_MAX_ATTR_VALUE + 2];
    static char longkey[IS_MOVEMENT_MAX_STR + 2];
    static const struct {
        const char *key;
        size_t value_len;
        const char *want; /* NULL: valid */
    } cases[] = {
        {"shift", IS_MOVEMENT_MAX_ATTR_VALUE, NULL},
        {"shift", IS_MOVEMENT_MAX_ATTR_VALUE + 1,
         "value of 'shift' is longer than 4096 bytes (4097)"},
        {"", 1, "has an empty key"},
        {longkey, 1, "is longer than 128 bytes"},
    };
    (void)state;
    memset(longkey, 'k', IS_MOVEMENT_MAX_STR + 1);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        is_movement_t m;
        Invsync__V1__Decimal q;
        Invsync__V1__Movement__AttributesEntry e, *pe = &e;
        is_field_error_t errs[2];
        fill_valid(&m, &q, T(GOODS_ISSUE));
        invsync__v1__movement__attributes_entry__init(&e);
        memset(big, 'v', sizeof big - 1);
        big[cases[i].value_len] = '\0';
        e.key = (char *)cases[i].key;
        e.value = big;
        m.n_attributes = 1;
        m.attributes = &pe;
        memset(errs, 0, sizeof errs);
        const is_validate_opts_t at_ingest = {6, NULL, 1, 0}, consumed = {6, NULL, 0, 0};
        /* The consumer posts what an older producer accepted. */
        assert_int_equal(is_movement_validate(&m, &consumed, NULL, 0), 0);
        size_t n = is_movement_validate(&m, &at_ingest, errs, 2);
        if (!cases[i].want) {
            assert_int_equal(n, 0);
            continue;
        }
        assert_int_equal(n, 1);
        assert_string_equal(errs[0].field, "attributes");
        if (!strstr(errs[0].error, cases[i].want))
            fail_msg("case %zu: want '%s', got '%s'", i, cases[i].want, errs[0].error);
    }
}

/* A map key given twice (protobuf's wire allows it, JSON refuses it as
 * malformed) is refused at ingest, naming the key: readers disagree on which
 * value counts, and the fingerprint took {a:1,a:2} and {a:2,a:1} (different
 * content for a last-wins reader) for the same movement. */
static void test_validate_attribute_key_given_twice(void **state) {
    is_movement_t m;
    Invsync__V1__Decimal q;
    Invsync__V1__Movement__AttributesEntry e[3], *pe[3] = {&e[0], &e[1], &e[2]};
    const char *keys[3] = {"shift", "operator", "shift"};
    is_field_error_t errs[2];
    const is_validate_opts_t at_ingest = {6, NULL, 1, 0}, consumed = {6, NULL, 0, 0};
    (void)state;
    fill_valid(&m, &q, T(GOODS_ISSUE));
    for (int i = 0; i < 3; i++) {
        invsync__v1__movement__attributes_entry__init(&e[i]);
        e[i].key = (char *)keys[i];
        e[i].value = i == 2 ? "late" : "early";
    }
    m.n_attributes = 2;
    m.attributes = pe;
    assert_int_equal(is_movement_validate(&m, &at_ingest, errs, 2), 0);
    m.n_attributes = 3;
    assert_int_equal(is_movement_validate(&m, &consumed, NULL, 0), 0);
    memset(errs, 0, sizeof errs);
    assert_int_equal(is_movement_validate(&m, &at_ingest, errs, 2), 1);
    assert_string_equal(errs[0].field, "attributes");
    assert_string_equal(errs[0].error, "key 'shift' is given more than once");
}

/* ---- lot key ------------------------------------------------------------ */

static void test_lot_key(void **state) {
    is_movement_t m;
    Invsync__V1__Decimal q;
    char buf[IS_LOT_KEY_MAX];
    char small[16];
    (void)state;
    fill_valid(&m, &q, T(GOODS_ISSUE));
    assert_int_equal(is_movement_lot_key(&m, buf, sizeof buf), 21);
    assert_string_equal(buf, "PLANT_1-a/MAT-1/LOT-1");
    /* Exactly fitting: 21 chars + NUL in 22 bytes; one less fails. */
    assert_int_equal(is_movement_lot_key(&m, buf, 22), 21);
    assert_int_equal(is_movement_lot_key(&m, small, sizeof small), -1);
    assert_string_equal(small, "");
    assert_int_equal(is_movement_lot_key(&m, buf, 21), -1);
    assert_int_equal(is_movement_lot_key(&m, buf, 0), -1);
    /* The longest valid fields fit IS_LOT_KEY_MAX. */
    m.site = long65 + 1;
    m.material = long129 + 1;
    m.lot = long129 + 1;
    assert_int_equal(is_movement_lot_key(&m, buf, sizeof buf), 64 + 1 + 128 + 1 + 128);
}

/* ---- fingerprint -------------------------------------------------------- */

typedef struct fp_movement {
    is_movement_t m;
    Invsync__V1__Decimal q;
    Invsync__V1__Movement__AttributesEntry e[3];
    Invsync__V1__Movement__AttributesEntry *p[3];
} fp_movement_t;

static void fp_fill(fp_movement_t *f, int reorder) {
    static const char *keys[3] = {"shift", "line", "operator"};
    static const char *vals[3] = {"B", "L2", "jdoe"};
    fill_valid(&f->m, &f->q, T(GOODS_ISSUE));
    f->m.event_time = 1767261600000;
    for (int i = 0; i < 3; i++) {
        int k = reorder ? 2 - i : i;
        invsync__v1__movement__attributes_entry__init(&f->e[i]);
        f->e[i].key = (char *)keys[k];
        f->e[i].value = (char *)vals[k];
        f->p[i] = &f->e[i];
    }
    f->m.n_attributes = 3;
    f->m.attributes = f->p;
}

static void fingerprint(const is_movement_t *m, uint8_t out[32]) {
    assert_int_equal(is_movement_fingerprint(m, out), IS_OK);
}

static void test_fingerprint(void **state) {
    fp_movement_t a, b;
    uint8_t fa[32], fb[32];
    (void)state;

    fp_fill(&a, 0);
    fp_fill(&b, 1);
    fingerprint(&a.m, fa);
    fingerprint(&b.m, fb);
    assert_memory_equal(fa, fb, 32);              /* attribute order does not matter */
    assert_ptr_equal(b.m.attributes[0], &b.e[0]); /* input left as it was */
    assert_string_equal(b.m.attributes[0]->key, "operator");

    /* Producer-stamped fields do not matter. */
    b.m.tier = "realtime";
    b.m.policy_version = "ab12";
    b.m.producer_id = "prod-1";
    b.m.sequence = 77;
    b.m.accepted_time = 1767261601234;
    fingerprint(&b.m, fb);
    assert_memory_equal(fa, fb, 32);

    /* Content does. */
    fp_fill(&b, 0);
    b.q.units = 12501;
    fingerprint(&b.m, fb);
    assert_memory_not_equal(fa, fb, 32);

    fp_fill(&b, 0);
    b.q.units = 125000; /* 12.5000: same value, different text */
    b.q.scale = 4;
    fingerprint(&b.m, fb);
    assert_memory_not_equal(fa, fb, 32);

    fp_fill(&b, 0);
    b.e[1].value = "L3";
    fingerprint(&b.m, fb);
    assert_memory_not_equal(fa, fb, 32);

    fp_fill(&b, 0);
    b.m.n_attributes = 2;
    fingerprint(&b.m, fb);
    assert_memory_not_equal(fa, fb, 32);

    fp_fill(&b, 0);
    b.m.event_time++;
    fingerprint(&b.m, fb);
    assert_memory_not_equal(fa, fb, 32);

    fp_fill(&b, 0);
    b.m.serial = "S-1";
    fingerprint(&b.m, fb);
    assert_memory_not_equal(fa, fb, 32);
}

/* Without attributes the fingerprint is the SHA-256 of the plain packed form. */
static void test_fingerprint_is_packed_hash(void **state) {
    is_movement_t m;
    Invsync__V1__Decimal q;
    uint8_t buf[1024], want[32], got[32];
    size_t len;
    (void)state;
    fill_valid(&m, &q, T(TRANSFER));
    len = invsync__v1__movement__pack(&m, buf);
    assert_true(len < sizeof buf);
    is_sha256(buf, len, want);
    m.producer_id = "prod-9";
    m.sequence = 5;
    fingerprint(&m, got);
    assert_memory_equal(got, want, 32);
}

/* One field by the ingest rules, for values outside a movement (seed-erp). */
static void test_field_invalid(void **state) {
    (void)state;
    char err[160];
    char long_uom[200];
    memset(long_uom, 'K', sizeof(long_uom) - 1);
    long_uom[sizeof(long_uom) - 1] = '\0';
    assert_int_equal(is_movement_field_invalid("site", "PLANT-1_a", 1, err, sizeof(err)), 0);
    assert_int_equal(is_movement_field_invalid("site", "PLANT 1", 1, err, sizeof(err)), 1);
    assert_string_equal(err, "must contain only letters, digits, '_' and '-'");
    assert_int_equal(is_movement_field_invalid("site", "", 1, err, sizeof(err)), 1);
    assert_string_equal(err, "is required");
    assert_int_equal(is_movement_field_invalid("lot", "L2026/11 b", 1, err, sizeof(err)), 0);
    assert_int_equal(is_movement_field_invalid("lot", "L\tX", 1, err, sizeof(err)), 1);
    assert_string_equal(err, "must not contain control characters (0x09 at byte 1)");
    assert_int_equal(is_movement_field_invalid("uom", long_uom, 1, err, sizeof(err)), 1);
    assert_string_equal(err, "is longer than 128 bytes");
    assert_int_equal(is_movement_field_invalid("serial", "", 0, err, sizeof(err)), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_validate_rules),
        cmocka_unit_test(test_control_characters_only_at_ingest),
        cmocka_unit_test(test_validate_counts_all_errors),
        cmocka_unit_test(test_validate_opts_null),
        cmocka_unit_test(test_effects),
        cmocka_unit_test(test_effects_no_quantity),
        cmocka_unit_test(test_validate_attributes),
        cmocka_unit_test(test_validate_attribute_key_given_twice),
        cmocka_unit_test(test_lot_key),
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_fingerprint_is_packed_hash),
        cmocka_unit_test(test_field_invalid),
        cmocka_unit_test(test_other_types_fields_consumed),
        cmocka_unit_test(test_event_time_at_ingest),
    };
    return cmocka_run_group_tests(tests, setup_strings, NULL);
}
