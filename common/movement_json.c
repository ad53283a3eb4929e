/*
 * movement_json.c — Movement (and Heartbeat) ↔ JSON after the proto3 JSON
 * mapping, driven entirely by the protobuf-c descriptors: a new string,
 * enum, integer, bool, *_time or Decimal field in the .proto needs no code
 * here. Field kinds are derived from the descriptor (see field_kind); the
 * kinds this mapping does not know (bytes, floats, repeated scalars, other
 * nested messages) are rejected on input and omitted on output. Parsing
 * builds a heap message that invsync__v1__movement__free_unpacked(m, NULL)
 * frees: every string is malloc'd or exactly protobuf_c_empty_string, and
 * the message is freed the same way on every error path.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"
#include "duration.h"
#include "movement_json.h"

typedef enum field_kind {
    FK_STRING,
    FK_ENUM,
    FK_DECIMAL, /* invsync.v1.Decimal ↔ "12.500" */
    FK_TIME,    /* int64 *_time ↔ RFC 3339 */
    FK_INT,     /* other integers ↔ number or (64-bit) string */
    FK_BOOL,
    FK_STRMAP, /* map<string, string> ↔ object of strings */
    FK_UNSUPPORTED,
} field_kind_t;

#define TIME_EXAMPLE "\"2026-03-01T06:00:00Z\""

/* A field holds a time if it is int64 and named "time" or "*_time". */
static int is_time_name(const char *name) {
    size_t n = strlen(name);
    return strcmp(name, "time") == 0 || (n > 5 && strcmp(name + n - 5, "_time") == 0);
}

/* protobuf-c 1.4 has no map flag: a map entry is a message with string key/value. */
static int is_string_map_entry(const ProtobufCMessageDescriptor *d) {
    return d && d->n_fields == 2 && strcmp(d->fields[0].name, "key") == 0 &&
           d->fields[0].type == PROTOBUF_C_TYPE_STRING && strcmp(d->fields[1].name, "value") == 0 &&
           d->fields[1].type == PROTOBUF_C_TYPE_STRING;
}

static field_kind_t field_kind(const ProtobufCFieldDescriptor *f) {
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        if (f->type == PROTOBUF_C_TYPE_MESSAGE && is_string_map_entry(f->descriptor))
            return FK_STRMAP;
        return FK_UNSUPPORTED;
    }
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
        return FK_STRING;
    case PROTOBUF_C_TYPE_ENUM:
        return FK_ENUM;
    case PROTOBUF_C_TYPE_MESSAGE:
        return strcmp(((const ProtobufCMessageDescriptor *)f->descriptor)->name,
                      "invsync.v1.Decimal") == 0
                   ? FK_DECIMAL
                   : FK_UNSUPPORTED;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return is_time_name(f->name) ? FK_TIME : FK_INT;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return FK_INT;
    case PROTOBUF_C_TYPE_BOOL:
        return FK_BOOL;
    default:
        return FK_UNSUPPORTED;
    }
}

static int is_signed_type(ProtobufCType t) {
    return t == PROTOBUF_C_TYPE_INT32 || t == PROTOBUF_C_TYPE_SINT32 ||
           t == PROTOBUF_C_TYPE_SFIXED32 || t == PROTOBUF_C_TYPE_INT64 ||
           t == PROTOBUF_C_TYPE_SINT64 || t == PROTOBUF_C_TYPE_SFIXED64;
}

static int is_64bit_type(ProtobufCType t) {
    return t == PROTOBUF_C_TYPE_INT64 || t == PROTOBUF_C_TYPE_SINT64 ||
           t == PROTOBUF_C_TYPE_SFIXED64 || t == PROTOBUF_C_TYPE_UINT64 ||
           t == PROTOBUF_C_TYPE_FIXED64;
}

#define MEMBER(msg, off)  ((void *)((char *)(msg) + (off)))
#define CMEMBER(msg, off) ((const void *)((const char *)(msg) + (off)))

/* ---- JSON → message ---------------------------------------------------- */

static is_err_t field_err(is_field_error_t *err, const char *field, const char *fmt, ...)
    IS_PRINTF(3, 4);

static is_err_t field_err(is_field_error_t *err, const char *field, const char *fmt, ...) {
    if (err) {
        va_list ap;
        snprintf(err->field, sizeof err->field, "%s", field);
        va_start(ap, fmt);
        vsnprintf(err->error, sizeof err->error, fmt, ap);
        va_end(ap);
    }
    return IS_ERR_INVALID;
}

/* key equals name's lowerCamelCase form: "_x" becomes "X". */
static int camel_eq(const char *name, const char *key) {
    for (; *name; name++, key++) {
        char c = *name;
        if (c == '_' && name[1]) {
            c = *++name;
            if (c >= 'a' && c <= 'z')
                c = (char)(c - 'a' + 'A');
        }
        if (*key != c)
            return 0;
    }
    return *key == '\0';
}

static int find_field(const ProtobufCMessageDescriptor *d, const char *key) {
    for (unsigned i = 0; i < d->n_fields; i++)
        if (strcmp(d->fields[i].name, key) == 0 || camel_eq(d->fields[i].name, key))
            return (int)i;
    return -1;
}

/* A JSON string without embedded NULs, or NULL. */
static const char *plain_string(const json_t *v) {
    const char *s = json_string_value(v);
    if (s && strlen(s) != json_string_length(v))
        return NULL;
    return s;
}

static is_err_t set_string(char **slot, const char *name, const json_t *v, is_field_error_t *err) {
    const char *s = plain_string(v);
    char *copy;
    if (!s)
        return field_err(
            err, name, json_is_string(v) ? "must not contain NUL characters" : "must be a string");
    if (*s == '\0')
        return IS_OK; /* "" is the proto3 default: keep protobuf_c_empty_string */
    copy = strdup(s);
    if (!copy)
        return IS_ERR_NOMEM;
    *slot = copy;
    return IS_OK;
}

/* "GOODS_ISSUE, COMPLETION, …": the names an enum field takes (not the
 * zero value, which means "not given"), so a refusal says what would do. */
static const char *enum_names(const ProtobufCEnumDescriptor *ed, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < ed->n_values; i++) {
        int n;
        if (ed->values[i].value == 0)
            continue;
        n = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", ed->values[i].name);
        if (n < 0 || (size_t)n >= size - used) {
            buf[used] = '\0';
            break;
        }
        used += (size_t)n;
    }
    return buf;
}

static is_err_t set_enum(int32_t *slot, const ProtobufCFieldDescriptor *f, const json_t *v,
                         is_field_error_t *err) {
    const ProtobufCEnumDescriptor *ed = f->descriptor;
    const ProtobufCEnumValue *ev = NULL;
    char names[sizeof err->error];
    if (json_is_string(v)) {
        const char *s = plain_string(v);
        if (s)
            ev = protobuf_c_enum_descriptor_get_value_by_name(ed, s);
        if (!ev)
            return field_err(err, f->name, "unknown value '%.40s' (one of %s)",
                             json_string_value(v), enum_names(ed, names, sizeof names));
    } else if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (n >= INT32_MIN && n <= INT32_MAX)
            ev = protobuf_c_enum_descriptor_get_value(ed, (int)n);
        if (!ev)
            return field_err(err, f->name, "unknown value %" JSON_INTEGER_FORMAT " (one of %s)", n,
                             enum_names(ed, names, sizeof names));
    } else {
        return field_err(err, f->name, "must be a name such as '%s' or its number",
                         ed->n_values > 1 ? ed->values[1].name : ed->values[0].name);
    }
    *slot = ev->value;
    return IS_OK;
}

static is_err_t set_decimal(ProtobufCMessage **slot, const ProtobufCFieldDescriptor *f,
                            const json_t *v, uint32_t max_scale, is_field_error_t *err) {
    const ProtobufCMessageDescriptor *md = f->descriptor;
    const char *s = plain_string(v);
    char why[128];
    is_decimal_t d;
    Invsync__V1__Decimal *msg;
    if (!s)
        return field_err(err, f->name, "must be a decimal string such as \"12.500\"");
    if (!*s)
        return field_err(err, f->name, "is empty: send a decimal string such as \"12.500\"");
    if (is_decimal_parse(s, strlen(s), max_scale, &d, why, sizeof why) != IS_OK) {
        /* Too many places is the one refusal that does not quote the value. */
        if (strncmp(why, "more than ", 10) == 0)
            return field_err(err, f->name, "'%.40s' has %s", s, why);
        return field_err(err, f->name, "%s", why);
    }
    msg = malloc(md->sizeof_message);
    if (!msg)
        return IS_ERR_NOMEM;
    protobuf_c_message_init(md, msg);
    msg->units = d.units;
    msg->scale = d.scale;
    *slot = &msg->base;
    return IS_OK;
}

static is_err_t set_time(int64_t *slot, const char *name, const json_t *v, is_field_error_t *err) {
    const char *s = plain_string(v);
    if (!s || is_parse_rfc3339(s, slot) != IS_OK)
        return field_err(err, name, "must be an RFC 3339 time such as " TIME_EXAMPLE);
    return IS_OK;
}

/* Strict unsigned decimal digits, no sign, no spaces. */
static is_err_t parse_u64(const char *s, uint64_t *out) {
    uint64_t v = 0;
    if (!*s)
        return IS_ERR_INVALID;
    for (; *s; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (d > 9)
            return IS_ERR_INVALID;
        if (v > (UINT64_MAX - d) / 10)
            return IS_ERR_OVERFLOW;
        v = v * 10 + d;
    }
    *out = v;
    return IS_OK;
}

static is_err_t set_int(void *slot, const ProtobufCFieldDescriptor *f, const json_t *v,
                        is_field_error_t *err) {
    const int sgn = is_signed_type(f->type), wide = is_64bit_type(f->type);
    const int64_t lo = wide ? INT64_MIN : INT32_MIN, hi = wide ? INT64_MAX : INT32_MAX;
    int64_t sv = 0;
    uint64_t uv = 0;
    is_err_t rc;

    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (sgn ? (n < lo || n > hi) : (n < 0 || (!wide && n > (json_int_t)UINT32_MAX)))
            return field_err(err, f->name, "is out of range");
        sv = (int64_t)n;
        uv = (uint64_t)n;
    } else if (json_is_string(v) && plain_string(v)) {
        const char *s = json_string_value(v);
        rc = sgn ? is_parse_int64(s, lo, hi, &sv) : parse_u64(s, &uv);
        if (rc == IS_OK && !sgn && !wide && uv > UINT32_MAX)
            rc = IS_ERR_OVERFLOW;
        if (rc == IS_ERR_OVERFLOW)
            return field_err(err, f->name, "is out of range");
        if (rc != IS_OK)
            return field_err(err, f->name, "must be an integer or a string of digits");
    } else {
        return field_err(err, f->name, "must be an integer or a string of digits");
    }
    if (wide && sgn)
        *(int64_t *)slot = sv;
    else if (wide)
        *(uint64_t *)slot = uv;
    else if (sgn)
        *(int32_t *)slot = (int32_t)sv;
    else
        *(uint32_t *)slot = (uint32_t)uv;
    return IS_OK;
}

/* Entries are appended one by one so free_unpacked can free a partial map. */
static is_err_t set_strmap(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                           const json_t *v, is_field_error_t *err) {
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    size_t *n = MEMBER(msg, f->quantifier_offset);
    ProtobufCMessage ***arr = MEMBER(msg, f->offset);
    size_t cap = json_object_size(v);

    if (!json_is_object(v))
        return field_err(err, f->name, "must be an object of strings");
    if (cap == 0)
        return IS_OK;
    *arr = calloc(cap, sizeof **arr);
    if (!*arr)
        return IS_ERR_NOMEM;
    for (void *it = json_object_iter((json_t *)v); it;
         it = json_object_iter_next((json_t *)v, it)) {
        const char *key = json_object_iter_key(it);
        const char *val = plain_string(json_object_iter_value(it));
        ProtobufCMessage *e;
        char **kv;
        if (strlen(key) != json_object_iter_key_len(it))
            return field_err(err, f->name, "keys must not contain NUL characters");
        if (!val)
            return field_err(err, f->name, "value of '%.64s' must be a string", key);
        e = malloc(ed->sizeof_message);
        if (!e)
            return IS_ERR_NOMEM;
        protobuf_c_message_init(ed, e);
        (*arr)[(*n)++] = e;
        kv = MEMBER(e, ed->fields[0].offset);
        if (*key && !(*kv = strdup(key)))
            return IS_ERR_NOMEM;
        kv = MEMBER(e, ed->fields[1].offset);
        if (*val && !(*kv = strdup(val)))
            return IS_ERR_NOMEM;
    }
    return IS_OK;
}

static is_err_t set_field(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, const json_t *v,
                          uint32_t max_scale, is_field_error_t *err) {
    void *slot = MEMBER(msg, f->offset);
    switch (field_kind(f)) {
    case FK_STRING:
        return set_string(slot, f->name, v, err);
    case FK_ENUM:
        return set_enum(slot, f, v, err);
    case FK_DECIMAL:
        return set_decimal(slot, f, v, max_scale, err);
    case FK_TIME:
        return set_time(slot, f->name, v, err);
    case FK_INT:
        return set_int(slot, f, v, err);
    case FK_BOOL:
        if (!json_is_boolean(v))
            return field_err(err, f->name, "must be true or false");
        *(protobuf_c_boolean *)slot = json_is_true(v);
        return IS_OK;
    case FK_STRMAP:
        return set_strmap(msg, f, v, err);
    default:
        return field_err(err, f->name, "has a type the JSON mapping does not support");
    }
}

is_err_t is_movement_from_json_all(const json_t *obj, uint32_t max_scale, is_movement_t **out,
                                   is_field_error_t *errs, size_t max_errs, size_t *n_errs) {
    const ProtobufCMessageDescriptor *d = &invsync__v1__movement__descriptor;
    ProtobufCMessage *msg = NULL;
    unsigned char *seen = NULL;
    is_field_error_t scratch;
    is_err_t rc = IS_OK;

    *out = NULL;
    *n_errs = 0;
    if (!json_is_object(obj)) {
        *n_errs = 1;
        return field_err(max_errs ? errs : NULL, "", "must be a JSON object");
    }
    msg = malloc(d->sizeof_message);
    seen = calloc(d->n_fields, 1);
    if (!msg || !seen) {
        free(msg);
        free(seen);
        return IS_ERR_NOMEM;
    }
    protobuf_c_message_init(d, msg);
    /* A field that cannot be read is left unset and the next one read, so
     * that one bad value does not hide the item's other errors. */
    for (void *it = json_object_iter((json_t *)obj); it && rc != IS_ERR_NOMEM;
         it = json_object_iter_next((json_t *)obj, it)) {
        const char *key = json_object_iter_key(it);
        const json_t *v = json_object_iter_value(it);
        int i = strlen(key) == json_object_iter_key_len(it) ? find_field(d, key) : -1;
        is_field_error_t *err = *n_errs < max_errs ? &errs[*n_errs] : &scratch;
        is_err_t frc = IS_OK;
        if (i < 0) {
            frc = field_err(err, key, "unknown field");
        } else if (seen[i]) {
            frc = field_err(err, d->fields[i].name, "is given more than once");
        } else {
            seen[i] = 1;
            if (!json_is_null(v))
                frc = set_field(msg, &d->fields[i], v, max_scale, err);
        }
        if (frc == IS_ERR_NOMEM)
            rc = IS_ERR_NOMEM;
        else if (frc != IS_OK) {
            (*n_errs)++;
            rc = IS_ERR_INVALID;
        }
    }
    free(seen);
    if (rc == IS_ERR_NOMEM) {
        protobuf_c_message_free_unpacked(msg, NULL);
        return rc;
    }
    *out = (is_movement_t *)msg;
    return rc;
}

is_err_t is_movement_from_json(const json_t *obj, uint32_t max_scale, is_movement_t **out,
                               is_field_error_t *err) {
    is_field_error_t first;
    size_t n = 0;
    is_err_t rc = is_movement_from_json_all(obj, max_scale, out, &first, 1, &n);
    if (rc == IS_ERR_NOMEM) {
        field_err(err, "", "out of memory");
        return rc;
    }
    if (rc != IS_OK) {
        if (*out)
            invsync__v1__movement__free_unpacked(*out, NULL);
        *out = NULL;
        if (err)
            *err = first;
    }
    return rc;
}

/* ---- message → JSON ---------------------------------------------------- */

/* Set key to v (stolen); returns -1 if v is NULL or the set fails. */
static int put(json_t *obj, const char *key, json_t *v) {
    return v ? json_object_set_new(obj, key, v) : -1;
}

static json_t *strmap_to_json(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f) {
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    size_t n = *(const size_t *)CMEMBER(msg, f->quantifier_offset);
    ProtobufCMessage *const *arr = *(ProtobufCMessage *const *const *)CMEMBER(msg, f->offset);
    json_t *o = json_object();
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *k = *(char *const *)CMEMBER(arr[i], ed->fields[0].offset);
        const char *v = *(char *const *)CMEMBER(arr[i], ed->fields[1].offset);
        if (put(o, k ? k : "", json_string(v ? v : "")) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

/* JSON for one field, or *omit = 1 when it holds its zero value. */
static json_t *field_to_json(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                             int *omit) {
    const void *p = CMEMBER(msg, f->offset);
    char buf[IS_RFC3339_LEN > IS_DECIMAL_STRLEN ? IS_RFC3339_LEN : IS_DECIMAL_STRLEN];
    *omit = 0;
    switch (field_kind(f)) {
    case FK_STRING: {
        const char *s = *(char *const *)p;
        if (!s || !*s)
            break;
        return json_string(s);
    }
    case FK_ENUM: {
        int32_t v = *(const int32_t *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, v);
        if (v == 0)
            break;
        return ev ? json_string(ev->name) : json_integer(v);
    }
    case FK_DECIMAL: {
        const Invsync__V1__Decimal *d = *(Invsync__V1__Decimal *const *)p;
        is_decimal_t x;
        if (!d)
            break;
        x.units = d->units;
        x.scale = d->scale;
        if (is_decimal_format(x, buf, sizeof buf) >= sizeof buf)
            break; /* a scale no valid quantity has: nothing exact to show */
        return json_string(buf);
    }
    case FK_TIME: {
        int64_t t = *(const int64_t *)p;
        if (t == 0)
            break;
        is_format_rfc3339(t, buf);
        return json_string(buf);
    }
    case FK_INT:
        /* proto3 JSON: 64-bit integers are strings, 32-bit ones numbers. */
        if (is_64bit_type(f->type)) {
            if (is_signed_type(f->type)) {
                int64_t v = *(const int64_t *)p;
                if (v == 0)
                    break;
                snprintf(buf, sizeof buf, "%" PRId64, v);
            } else {
                uint64_t v = *(const uint64_t *)p;
                if (v == 0)
                    break;
                snprintf(buf, sizeof buf, "%" PRIu64, v);
            }
            return json_string(buf);
        }
        if (is_signed_type(f->type)) {
            int32_t v = *(const int32_t *)p;
            if (v == 0)
                break;
            return json_integer(v);
        } else {
            uint32_t v = *(const uint32_t *)p;
            if (v == 0)
                break;
            return json_integer((json_int_t)v);
        }
    case FK_BOOL:
        if (!*(const protobuf_c_boolean *)p)
            break;
        return json_true();
    case FK_STRMAP:
        if (*(const size_t *)CMEMBER(msg, f->quantifier_offset) == 0)
            break;
        return strmap_to_json(msg, f);
    default:
        break;
    }
    *omit = 1;
    return NULL;
}

/*
 * NULL on ENOMEM, or when a string field is not valid UTF-8 (protobuf-c
 * does not check that on unpack, and JSON cannot carry it).
 */
static json_t *message_to_json(const ProtobufCMessage *msg) {
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    json_t *o = json_object();
    if (!o)
        return NULL;
    for (unsigned i = 0; i < d->n_fields; i++) {
        int omit;
        json_t *v = field_to_json(msg, &d->fields[i], &omit);
        if (omit)
            continue;
        if (put(o, d->fields[i].name, v) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

json_t *is_movement_to_json(const is_movement_t *m) {
    return message_to_json(&m->base);
}

json_t *is_heartbeat_to_json(const is_heartbeat_t *h) {
    return message_to_json(&h->base);
}
