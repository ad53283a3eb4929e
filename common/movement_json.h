/*
 * movement_json.h — Movement ↔ JSON, following the proto3 JSON mapping.
 *
 * Field names as in the .proto (movement_id) or their lowerCamelCase form
 * (movementId); enums by name ("GOODS_ISSUE"; the number is accepted too);
 * Decimal fields as decimal strings ("12.500"; a JSON number is rejected
 * because it may already have lost precision); int64 *_time fields as RFC 3339
 * strings; uint64 as a string or number; `attributes` as an object of strings;
 * null means "absent". An unknown field is an error (a typo must be loud).
 * Driven by the protobuf-c descriptors, so a new .proto field needs no code.
 */
#ifndef INVSYNC_MOVEMENT_JSON_H
#define INVSYNC_MOVEMENT_JSON_H

#include <jansson.h>

#include "movement.h"

/*
 * Build a movement from a JSON object. On success *out is a new message
 * (free with invsync__v1__movement__free_unpacked(m, NULL)). On failure
 * *out is NULL, err names the field and says what is wrong, and
 * IS_ERR_INVALID (or IS_ERR_NOMEM) is returned.
 */
is_err_t is_movement_from_json(const json_t *obj, uint32_t max_scale, is_movement_t **out,
                               is_field_error_t *err) IS_MUST_CHECK;

/*
 * The same, reading past a field that cannot be read: every such field's
 * error goes into errs (the first max_errs of them; *n_errs counts all).
 * IS_OK: *out is the movement. IS_ERR_INVALID: *out is the movement without
 * the fields that could not be read (to validate the rest; free it as
 * above), or NULL when obj is not an object. IS_ERR_NOMEM: *out is NULL.
 */
is_err_t is_movement_from_json_all(const json_t *obj, uint32_t max_scale, is_movement_t **out,
                                   is_field_error_t *errs, size_t max_errs,
                                   size_t *n_errs) IS_MUST_CHECK;

/* JSON object for a movement (proto field names; empty/zero fields omitted). NULL on ENOMEM. */
json_t *is_movement_to_json(const is_movement_t *m);

/* Same for a heartbeat. */
json_t *is_heartbeat_to_json(const is_heartbeat_t *h);

#endif
