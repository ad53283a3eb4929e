/*
 * kafka.h — small librdkafka helpers shared by both services and the tools.
 */
#ifndef INVSYNC_KAFKA_H
#define INVSYNC_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

#include "error.h"

/*
 * rd_kafka_conf_set(conf, key, value); on refusal errstr says
 * "kafka.<key>: <librdkafka's reason>" (the config file's spelling of the key)
 * and IS_ERR_CONFIG is returned.
 */
is_err_t is_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errstr,
                           size_t errstr_size) IS_MUST_CHECK;

#endif
