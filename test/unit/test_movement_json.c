/*
 * test_movement_json.c — unit tests for common/movement_json.c: field-name
 * variants (proto and lowerCamelCase), a table of rejected documents with
 * the field and message each must produce (unknown field, wrong JSON type,
 * bad enum, a number for a quantity, bad times and integers), accepted
 * values per field kind, omission of zero fields, JSON → movement → JSON and
 * JSON → movement → protobuf → JSON round trips, and the heartbeat form.
 * Run under ASan/valgrind, the error cases also prove nothing leaks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "movement_json.h"

static json_t *parse(const char *text) {
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_ALLOW_NUL, &jerr);
    if (!j)
        fail_msg("bad test JSON '%s': %s", text, jerr.text);
    return j;
}

/* Parse text into a movement, failing the test on error. */
static is_movement_t *movement_from(const char *text) {
    json_t *j = parse(text);
    is_movement_t *m = NULL;
    is_field_error_t err = {"", ""};
    is_err_t rc = is_movement_from_json(j, 6, &m, &err);
    json_decref(j);
    if (rc != IS_OK)
        fail_msg("'%s': %s: %s", text, err.field, err.error);
    return m;
}

static char *dump(const json_t *j) {
    return json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
}

static void assert_json_equal(const json_t *got, const char *want_text) {
    json_t *want = parse(want_text);
    if (!json_equal(got, want)) {
        char *g = dump(got), *w = dump(want);
        fail_msg("got  %s\nwant %s", g, w);
    }
    json_decref(want);
}

#define FULL_PROTO_NAMES                                                                           \
    "{\"movement_id\":\"M-1\",\"source_system\":\"MES-PLANT1\",\"site\":\"P1\","                   \
    "\"type\":\"TRANSFER\",\"material\":\"MAT-1\",\"lot\":\"LOT-1\",\"serial\":\"S-9\","           \
    "\"location\":\"A-01\",\"to_location\":\"B-02\",\"quantity\":\"12.500\",\"uom\":\"KG\","       \
    "\"order_id\":\"ORD-1\",\"operation\":\"0010\",\"from_status\":\"QUALITY\","                   \
    "\"to_status\":\"BLOCKED\",\"reason_code\":\"R1\",\"reverses_movement_id\":\"M-0\","           \
    "\"event_time\":\"2026-01-01T10:00:00.123Z\",\"accepted_time\":\"2026-01-01T10:00:01.000Z\","  \
    "\"tier\":\"realtime\",\"policy_version\":\"ab12\",\"producer_id\":\"prod-1\","                \
    "\"sequence\":\"42\",\"attributes\":{\"shift\":\"B\",\"line\":\"L2\"},"                        \
    "\"reversed_type\":\"GOODS_ISSUE\"}"

#define FULL_CAMEL_NAMES                                                                           \
    "{\"movementId\":\"M-1\",\"sourceSystem\":\"MES-PLANT1\",\"site\":\"P1\","                     \
    "\"type\":\"TRANSFER\",\"material\":\"MAT-1\",\"lot\":\"LOT-1\",\"serial\":\"S-9\","           \
    "\"location\":\"A-01\",\"toLocation\":\"B-02\",\"quantity\":\"12.500\",\"uom\":\"KG\","        \
    "\"orderId\":\"ORD-1\",\"operation\":\"0010\",\"fromStatus\":\"QUALITY\","                     \
    "\"toStatus\":\"BLOCKED\",\"reasonCode\":\"R1\",\"reversesMovementId\":\"M-0\","               \
    "\"eventTime\":\"2026-01-01T11:00:00.123+01:00\",\"acceptedTime\":\"2026-01-01T10:00:01Z\","   \
    "\"tier\":\"realtime\",\"policyVersion\":\"ab12\",\"producerId\":\"prod-1\","                  \
    "\"sequence\":42,\"attributes\":{\"shift\":\"B\",\"line\":\"L2\"},"                            \
    "\"reversedType\":1}"

static void test_full_movement_fields(void **state) {
    is_movement_t *m = movement_from(FULL_PROTO_NAMES);
    (void)state;
    assert_string_equal(m->movement_id, "M-1");
    assert_string_equal(m->source_system, "MES-PLANT1");
    assert_int_equal(m->type, INVSYNC__V1__MOVEMENT_TYPE__TRANSFER);
    assert_string_equal(m->to_location, "B-02");
    assert_non_null(m->quantity);
    assert_int_equal(m->quantity->units, 12500);
    assert_int_equal(m->quantity->scale, 3);
    assert_int_equal(m->from_status, INVSYNC__V1__STOCK_STATUS__QUALITY);
    assert_int_equal(m->to_status, INVSYNC__V1__STOCK_STATUS__BLOCKED);
    assert_int_equal(m->event_time, 1767261600123LL);
    assert_int_equal(m->accepted_time, 1767261601000LL);
    assert_int_equal(m->sequence, 42);
    assert_int_equal(m->reversed_type, INVSYNC__V1__MOVEMENT_TYPE__GOODS_ISSUE);
    assert_int_equal(m->n_attributes, 2);
    assert_string_equal(m->attributes[0]->key, "shift"); /* document order */
    assert_string_equal(m->attributes[0]->value, "B");
    assert_string_equal(m->attributes[1]->key, "line");
    invsync__v1__movement__free_unpacked(m, NULL);
}

/* Every camelCase spelling gives the same movement as the proto names. */
static void test_camel_case_equals_proto_names(void **state) {
    is_movement_t *a = movement_from(FULL_PROTO_NAMES);
    is_movement_t *b = movement_from(FULL_CAMEL_NAMES);
    json_t *ja = is_movement_to_json(a), *jb = is_movement_to_json(b);
    (void)state;
    assert_non_null(ja);
    assert_non_null(jb);
    assert_true(json_equal(ja, jb));
    assert_int_equal(json_object_size(ja), 25); /* every field came through */
    json_decref(ja);
    json_decref(jb);
    invsync__v1__movement__free_unpacked(a, NULL);
    invsync__v1__movement__free_unpacked(b, NULL);
}

static void test_name_variants(void **state) {
    static const struct {
        const char *json;
        const char *field; /* proto name of the string field set */
    } cases[] = {
        {"{\"movement_id\":\"v\"}", "movement_id"},
        {"{\"movementId\":\"v\"}", "movement_id"},
        {"{\"to_location\":\"v\"}", "to_location"},
        {"{\"toLocation\":\"v\"}", "to_location"},
        {"{\"reverses_movement_id\":\"v\"}", "reverses_movement_id"},
        {"{\"reversesMovementId\":\"v\"}", "reverses_movement_id"},
        {"{\"policyVersion\":\"v\"}", "policy_version"},
        {"{\"uom\":\"v\"}", "uom"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        is_movement_t *m = movement_from(cases[i].json);
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(m->base.descriptor, cases[i].field);
        assert_non_null(f);
        assert_string_equal(*(char **)((char *)m + f->offset), "v");
        invsync__v1__movement__free_unpacked(m, NULL);
    }
}

#define LONG_NAME "GOODS_ISSUE_GOODS_ISSUE_GOODS_ISSUE_GOODS_ISSUE_GOODS_ISSUE_GOODS_ISSUE"

static void test_rejected(void **state) {
    static const struct {
        const char *json;
        const char *field;
        const char *error; /* substring */
    } cases[] = {
        {"[]", "", "must be a JSON object"},
        {"{\"movment_id\":\"x\"}", "movment_id", "unknown field"},
        {"{\"MovementId\":\"x\"}", "MovementId", "unknown field"},
        {"{\"movement-id\":\"x\"}", "movement-id", "unknown field"},
        {"{\"movement_id\":\"x\",\"movementId\":\"y\"}", "movement_id", "more than once"},
        {"{\"movement_id\":5}", "movement_id", "must be a string"},
        {"{\"site\":[\"P1\"]}", "site", "must be a string"},
        {"{\"lot\":true}", "lot", "must be a string"},
        {"{\"lot\":\"a\\u0000b\"}", "lot", "must not contain NUL"},
        {"{\"attributes\":{\"k\":\"v\\u0000\"}}", "attributes", "must be a string"},
        {"{\"type\":\"GOODS_ISSUED\"}", "type", "unknown value 'GOODS_ISSUED'"},
        /* the names that would do are listed (a misspelt or lower-case type) */
        {"{\"type\":\"goods_issue\"}", "type",
         "unknown value 'goods_issue' (one of GOODS_ISSUE, COMPLETION, SCRAP, QUARANTINE, "
         "RELEASE, TRANSFER, ADJUSTMENT, REVERSAL)"},
        {"{\"type\":\"" LONG_NAME "\"}", "type",
         "' (one of GOODS_ISSUE, COMPLETION, SCRAP, QUARANTINE, RELEASE, TRANSFER, ADJUSTMENT, "
         "REVERSAL)"},
        {"{\"type\":99}", "type", "unknown value 99 (one of GOODS_ISSUE, "},
        {"{\"type\":4294967297}", "type", "unknown value 4294967297"}, /* not 1 mod 2^32 */
        {"{\"type\":1.0}", "type", "must be a name"},
        {"{\"fromStatus\":\"DAMAGED\"}", "from_status",
         "unknown value 'DAMAGED' (one of UNRESTRICTED, QUALITY, BLOCKED)"},
        {"{\"quantity\":12.5}", "quantity", "must be a decimal string such as \"12.500\""},
        {"{\"quantity\":12}", "quantity", "must be a decimal string such as \"12.500\""},
        {"{\"quantity\":{\"units\":12,\"scale\":0}}", "quantity", "must be a decimal string"},
        {"{\"quantity\":\"1e3\"}", "quantity", "not a decimal number"},
        {"{\"quantity\":\" 1\"}", "quantity", "not a decimal number"},
        {"{\"quantity\":\"1.0000001\"}", "quantity", "'1.0000001' has more than 6 decimal places"},
        {"{\"quantity\":\"-1.0000000\"}", "quantity",
         "'-1.0000000' has more than 6 decimal places"},
        {"{\"quantity\":\"\"}", "quantity", "is empty: send a decimal string such as \"12.500\""},
        {"{\"quantity\":\"99999999999999999999\"}", "quantity", "too large"},
        {"{\"event_time\":\"yesterday\"}", "event_time", "must be an RFC 3339 time"},
        {"{\"eventTime\":1767261600000}", "event_time", "must be an RFC 3339 time"},
        {"{\"accepted_time\":\"2026-02-30T00:00:00Z\"}", "accepted_time", "RFC 3339"},
        {"{\"sequence\":-1}", "sequence", "is out of range"},
        {"{\"sequence\":\"-1\"}", "sequence", "must be an integer"},
        {"{\"sequence\":\"12a\"}", "sequence", "must be an integer"},
        {"{\"sequence\":\" 12\"}", "sequence", "must be an integer"},
        {"{\"sequence\":1.5}", "sequence", "must be an integer"},
        {"{\"sequence\":\"18446744073709551616\"}", "sequence", "is out of range"},
        {"{\"attributes\":[\"a\"]}", "attributes", "must be an object of strings"},
        {"{\"attributes\":\"a=b\"}", "attributes", "must be an object of strings"},
        {"{\"attributes\":{\"a\":1}}", "attributes", "value of 'a' must be a string"},
        {"{\"attributes\":{\"a\":null}}", "attributes", "value of 'a' must be a string"},
        /* errors after allocations: everything built so far must be freed */
        {"{\"movement_id\":\"x\",\"attributes\":{\"a\":\"b\",\"c\":\"d\"},\"quantity\":\"1.5\","
         "\"zzz\":1}",
         "zzz", "unknown field"},
        {"{\"attributes\":{\"a\":\"b\",\"c\":2}}", "attributes", "value of 'c' must be a string"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *j = parse(cases[i].json);
        is_movement_t *m = (is_movement_t *)&m; /* must be reset to NULL */
        is_field_error_t err = {"?", "?"};
        is_err_t rc = is_movement_from_json(j, 6, &m, &err);
        json_decref(j);
        if (rc != IS_ERR_INVALID || m != NULL || strcmp(err.field, cases[i].field) != 0 ||
            !strstr(err.error, cases[i].error))
            fail_msg("%s: rc %d, field '%s' error '%s'; want field '%s' error '%s'", cases[i].json,
                     rc, err.field, err.error, cases[i].field, cases[i].error);
    }
}

/* jansson will not parse a NUL in a key, but a program can build one. */
static void test_nul_in_keys(void **state) {
    json_t *obj = json_object(), *attrs = json_object();
    is_movement_t *m = NULL;
    is_field_error_t err;
    (void)state;
    assert_int_equal(json_object_setn_new(obj, "lot\0x", 5, json_string("L")), 0);
    assert_int_equal(is_movement_from_json(obj, 6, &m, &err), IS_ERR_INVALID);
    assert_null(m);
    assert_string_equal(err.field, "lot");
    assert_string_equal(err.error, "unknown field");
    json_decref(obj);

    obj = json_object();
    assert_int_equal(json_object_set_new(attrs, "a", json_string("b")), 0);
    assert_int_equal(json_object_setn_new(attrs, "k\0", 2, json_string("v")), 0);
    assert_int_equal(json_object_set_new(obj, "attributes", attrs), 0);
    assert_int_equal(is_movement_from_json(obj, 6, &m, &err), IS_ERR_INVALID);
    assert_null(m);
    assert_string_equal(err.field, "attributes");
    assert_string_equal(err.error, "keys must not contain NUL characters");
    json_decref(obj);
}

static void test_accepted_values(void **state) {
    is_movement_t *m;
    (void)state;

    m = movement_from("{\"sequence\":\"18446744073709551615\",\"type\":3,"
                      "\"event_time\":\"2026-01-01T11:00:00.5+01:00\",\"to_status\":\"QUALITY\"}");
    assert_true(m->sequence == UINT64_MAX);
    assert_int_equal(m->type, INVSYNC__V1__MOVEMENT_TYPE__SCRAP);
    assert_int_equal(m->event_time, 1767261600500LL);
    assert_int_equal(m->to_status, INVSYNC__V1__STOCK_STATUS__QUALITY);
    invsync__v1__movement__free_unpacked(m, NULL);

    /* null and "" are absence: exactly the proto3 defaults. */
    m = movement_from("{\"serial\":null,\"quantity\":null,\"movement_id\":\"\",\"type\":null,"
                      "\"attributes\":{}}");
    assert_ptr_equal(m->serial, protobuf_c_empty_string);
    assert_ptr_equal(m->movement_id, protobuf_c_empty_string);
    assert_null(m->quantity);
    assert_int_equal(m->type, 0);
    assert_int_equal(m->n_attributes, 0);
    assert_null(m->attributes);
    invsync__v1__movement__free_unpacked(m, NULL);

    /* Signed and scale-keeping quantities; "+" accepted, written without it. */
    m = movement_from("{\"quantity\":\"-0.050\"}");
    assert_int_equal(m->quantity->units, -50);
    assert_int_equal(m->quantity->scale, 3);
    invsync__v1__movement__free_unpacked(m, NULL);

    /* Empty attribute key and value survive. */
    m = movement_from("{\"attributes\":{\"\":\"\",\"k\":\"\"}}");
    assert_int_equal(m->n_attributes, 2);
    assert_string_equal(m->attributes[0]->key, "");
    assert_string_equal(m->attributes[1]->value, "");
    invsync__v1__movement__free_unpacked(m, NULL);
}

static void test_max_scale_is_honoured(void **state) {
    json_t *j = parse("{\"quantity\":\"1.123\"}");
    is_movement_t *m = NULL;
    is_field_error_t err;
    (void)state;
    assert_int_equal(is_movement_from_json(j, 2, &m, &err), IS_ERR_INVALID);
    assert_null(m);
    assert_string_equal(err.field, "quantity");
    assert_string_equal(err.error, "'1.123' has more than 2 decimal places");
    assert_int_equal(is_movement_from_json(j, 3, &m, &err), IS_OK);
    assert_int_equal(m->quantity->units, 1123);
    invsync__v1__movement__free_unpacked(m, NULL);
    json_decref(j);
}

static void test_to_json_omits_zero_fields(void **state) {
    is_movement_t m = INVSYNC__V1__MOVEMENT__INIT;
    Invsync__V1__Decimal q = INVSYNC__V1__DECIMAL__INIT;
    json_t *j;
    (void)state;
    j = is_movement_to_json(&m);
    assert_json_equal(j, "{}");
    json_decref(j);

    /* A present zero quantity is shown; an out-of-range enum as its number. */
    q.scale = 3;
    m.quantity = &q;
    m.to_status = 9;
    m.accepted_time = -1; /* before the epoch is not zero */
    j = is_movement_to_json(&m);
    assert_json_equal(j, "{\"quantity\":\"0.000\",\"to_status\":9,"
                         "\"accepted_time\":\"1969-12-31T23:59:59.999Z\"}");
    json_decref(j);
}

/* JSON → movement → JSON gives the canonical form: proto names, UTC times. */
static void test_round_trip(void **state) {
    static const struct {
        const char *in, *out;
    } cases[] = {
        {FULL_PROTO_NAMES, FULL_PROTO_NAMES},
        {FULL_CAMEL_NAMES,
         "{\"movement_id\":\"M-1\",\"source_system\":\"MES-PLANT1\",\"site\":\"P1\","
         "\"type\":\"TRANSFER\",\"material\":\"MAT-1\",\"lot\":\"LOT-1\",\"serial\":\"S-9\","
         "\"location\":\"A-01\",\"to_location\":\"B-02\",\"quantity\":\"12.500\",\"uom\":\"KG\","
         "\"order_id\":\"ORD-1\",\"operation\":\"0010\",\"from_status\":\"QUALITY\","
         "\"to_status\":\"BLOCKED\",\"reason_code\":\"R1\",\"reverses_movement_id\":\"M-0\","
         "\"event_time\":\"2026-01-01T10:00:00.123Z\","
         "\"accepted_time\":\"2026-01-01T10:00:01.000Z\","
         "\"tier\":\"realtime\",\"policy_version\":\"ab12\",\"producer_id\":\"prod-1\","
         "\"sequence\":\"42\",\"attributes\":{\"shift\":\"B\",\"line\":\"L2\"},"
         "\"reversed_type\":\"GOODS_ISSUE\"}"},
        {"{\"quantity\":\"-9223372036854775808\",\"sequence\":\"18446744073709551615\"}",
         "{\"quantity\":\"-9223372036854775808\",\"sequence\":\"18446744073709551615\"}"},
        {"{\"quantity\":\"+0.000001\",\"type\":7,\"serial\":\"\",\"from_status\":0}",
         "{\"quantity\":\"0.000001\",\"type\":\"ADJUSTMENT\"}"},
        {"{\"event_time\":\"1969-07-20T20:17:40Z\"}",
         "{\"event_time\":\"1969-07-20T20:17:40.000Z\"}"},
        {"{\"attributes\":{\"é\":\"ü — ✓\"}}", "{\"attributes\":{\"é\":\"ü — ✓\"}}"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        is_movement_t *m = movement_from(cases[i].in), *back;
        json_t *j = is_movement_to_json(m), *j2;
        uint8_t buf[2048];
        size_t len;
        assert_non_null(j);
        assert_json_equal(j, cases[i].out);

        /* Through the wire format and back gives the same JSON. */
        len = invsync__v1__movement__get_packed_size(m);
        assert_true(len <= sizeof buf);
        invsync__v1__movement__pack(m, buf);
        back = invsync__v1__movement__unpack(NULL, len, buf);
        assert_non_null(back);
        j2 = is_movement_to_json(back);
        assert_true(json_equal(j, j2));

        json_decref(j);
        json_decref(j2);
        invsync__v1__movement__free_unpacked(back, NULL);
        invsync__v1__movement__free_unpacked(m, NULL);
    }
}

static void test_heartbeat_to_json(void **state) {
    is_heartbeat_t h = INVSYNC__V1__HEARTBEAT__INIT;
    json_t *j;
    (void)state;
    h.site = "P1";
    h.producer_id = "prod-1";
    h.last_sequence = 1234;
    h.time = 1767261600000;
    h.policy_version = "ab12";
    j = is_heartbeat_to_json(&h);
    assert_json_equal(j, "{\"site\":\"P1\",\"producer_id\":\"prod-1\",\"last_sequence\":\"1234\","
                         "\"time\":\"2026-01-01T10:00:00.000Z\",\"policy_version\":\"ab12\"}");
    json_decref(j);
    h.outbox_backlog = 7;
    j = is_heartbeat_to_json(&h);
    assert_string_equal(json_string_value(json_object_get(j, "outbox_backlog")), "7");
    json_decref(j);
}

/* Invalid UTF-8 (protobuf-c does not check it on unpack) cannot become JSON. */
static void test_to_json_invalid_utf8(void **state) {
    is_movement_t m = INVSYNC__V1__MOVEMENT__INIT;
    (void)state;
    m.lot = "\xff\xfe";
    assert_null(is_movement_to_json(&m));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_movement_fields),
        cmocka_unit_test(test_camel_case_equals_proto_names),
        cmocka_unit_test(test_name_variants),
        cmocka_unit_test(test_rejected),
        cmocka_unit_test(test_nul_in_keys),
        cmocka_unit_test(test_accepted_values),
        cmocka_unit_test(test_max_scale_is_honoured),
        cmocka_unit_test(test_to_json_omits_zero_fields),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_heartbeat_to_json),
        cmocka_unit_test(test_to_json_invalid_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
