/*
 * kafka.c — small librdkafka helpers (see kafka.h).
 */
#include "kafka.h"

is_err_t is_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errstr,
                           size_t errstr_size) {
    char reason[512];
    if (rd_kafka_conf_set(conf, key, value, reason, sizeof(reason)) != RD_KAFKA_CONF_OK) {
        is_errf(errstr, errstr_size, "kafka.%s: %s", key, reason);
        return IS_ERR_CONFIG;
    }
    return IS_OK;
}
