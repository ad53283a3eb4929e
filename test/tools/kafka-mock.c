/*
 * kafka-mock.c — the embedded Kafka: hosts librdkafka's mock cluster
 * (rdkafka_mock.h) in its own process so that separate processes (the two
 * services, test tools) can reach it over TCP on loopback.
 *
 *   kafka-mock [--brokers N] [--partitions N] [--topic NAME[:PARTITIONS]]...
 *              [--bootstrap-file F] [--exit-after DURATION] [--log-level L]
 *
 * The bootstrap address ("127.0.0.1:PORT[,…]") is printed as one line on
 * stdout as soon as the cluster listens, and optionally written atomically
 * to F (F.tmp then rename; F is removed again on a clean exit so a stale
 * address is never picked up). The process then waits for SIGTERM/SIGINT
 * (or --exit-after) and shuts the cluster down.
 *
 * Limits of librdkafka 2.0.2's mock cluster (DESIGN.md §8): in memory only,
 * no lookup by timestamp, ~5 MiB per partition, no CreateTopics. Topics are
 * auto-created on first metadata request with a partition count hard-coded
 * to 4 inside librdkafka (mcluster->defaults.partition_cnt): there is no
 * public knob to change it, so --partitions only sets the count for --topic
 * entries given without ":PARTITIONS". Pre-create topics with --topic when
 * the partition count matters.
 *
 * Load: idle apart from whatever the clients do; all work happens on
 * librdkafka's mock broker threads. The main thread waits for a signal in
 * sigtimedwait(2), waking once a second to serve the owning client's event
 * queue (so nothing piles up there) and check --exit-after.
 *
 * Signals: SIGTERM/SIGINT are blocked before librdkafka starts its threads
 * (they inherit the mask) and taken synchronously by sigtimedwait, so no
 * handler and no global flag are needed, and no wake-up can be lost.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "duration.h"
#include "log.h"

#define KM_MAX_TOPICS                 64
#define KM_MAX_BROKERS                16
#define KM_MAX_PARTITIONS             1024
#define KM_LIBRDKAFKA_AUTO_PARTITIONS 4 /* librdkafka 2.0.2 mock default */

typedef struct km_topic {
    const char *name; /* points into argv (the ':' is not part of it) */
    size_t name_len;
    int partitions; /* 0 = use --partitions */
} km_topic_t;

typedef struct km_opts {
    int brokers;    /* mock brokers, ids 1..N */
    int partitions; /* default for --topic without a count */
    km_topic_t topics[KM_MAX_TOPICS];
    size_t n_topics;
    const char *bootstrap_file; /* NULL = stdout only */
    int64_t exit_after_ms;      /* 0 = run until signalled */
    is_log_level_t log_level;
} km_opts_t;

static void km_usage(FILE *out) {
    fprintf(out,
            "usage: kafka-mock [options]\n"
            "\n"
            "Hosts librdkafka's mock Kafka cluster on loopback, prints its bootstrap\n"
            "address as one line on stdout and runs until SIGTERM/SIGINT.\n"
            "\n"
            "  --brokers N              mock brokers (1..%d, default 1)\n"
            "  --partitions N           partitions for --topic entries without a count\n"
            "                           (default %d; auto-created topics always get %d,\n"
            "                           librdkafka 2.0.2 has no knob for that)\n"
            "  --topic NAME[:PARTS]     pre-create a topic (repeatable, up to %d)\n"
            "  --bootstrap-file F       also write the address to F (atomically; removed on "
            "exit)\n"
            "  --exit-after DURATION    stop by itself after e.g. 10m (safety net for tests)\n"
            "  --log-level L            debug|info|warn|error (default info)\n"
            "  --help                   this text\n",
            KM_MAX_BROKERS, KM_LIBRDKAFKA_AUTO_PARTITIONS, KM_LIBRDKAFKA_AUTO_PARTITIONS,
            KM_MAX_TOPICS);
}

/* Parse "NAME" or "NAME:PARTS" into t. Returns 0, or -1 with a message on stderr. */
static int km_parse_topic(const char *arg, km_topic_t *t) {
    const char *colon = strrchr(arg, ':');
    int64_t v = 0;
    t->name = arg;
    t->name_len = colon ? (size_t)(colon - arg) : strlen(arg);
    t->partitions = 0;
    if (t->name_len == 0 || t->name_len > 249) {
        fprintf(stderr, "kafka-mock: --topic '%s': topic name must be 1..249 characters\n", arg);
        return -1;
    }
    for (size_t i = 0; i < t->name_len; i++) {
        char c = arg[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            fprintf(stderr, "kafka-mock: --topic '%s': invalid character '%c' in topic name\n", arg,
                    c);
            return -1;
        }
    }
    if (colon) {
        if (is_parse_int64(colon + 1, 1, KM_MAX_PARTITIONS, &v) != IS_OK) {
            fprintf(stderr, "kafka-mock: --topic '%s': partition count must be 1..%d\n", arg,
                    KM_MAX_PARTITIONS);
            return -1;
        }
        t->partitions = (int)v;
    }
    return 0;
}

/* Fill o from argv. Returns 0 to run, 1 after --help, 2 on a bad argument (message printed). */
static int km_parse_args(int argc, char **argv, km_opts_t *o) {
    memset(o, 0, sizeof(*o));
    o->brokers = 1;
    o->partitions = KM_LIBRDKAFKA_AUTO_PARTITIONS;
    o->log_level = IS_LOG_INFO;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        int64_t v = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            km_usage(stdout);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "kafka-mock: unexpected argument '%s'\n", a);
            goto usage;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "kafka-mock: option '%s' needs a value\n", a);
            goto usage;
        }
        val = argv[++i];
        if (strcmp(a, "--brokers") == 0) {
            if (is_parse_int64(val, 1, KM_MAX_BROKERS, &v) != IS_OK) {
                fprintf(stderr, "kafka-mock: --brokers '%s': must be 1..%d\n", val, KM_MAX_BROKERS);
                goto usage;
            }
            o->brokers = (int)v;
        } else if (strcmp(a, "--partitions") == 0) {
            if (is_parse_int64(val, 1, KM_MAX_PARTITIONS, &v) != IS_OK) {
                fprintf(stderr, "kafka-mock: --partitions '%s': must be 1..%d\n", val,
                        KM_MAX_PARTITIONS);
                goto usage;
            }
            o->partitions = (int)v;
        } else if (strcmp(a, "--topic") == 0) {
            if (o->n_topics == KM_MAX_TOPICS) {
                fprintf(stderr, "kafka-mock: --topic: at most %d topics\n", KM_MAX_TOPICS);
                goto usage;
            }
            if (km_parse_topic(val, &o->topics[o->n_topics]) != 0)
                goto usage;
            o->n_topics++;
        } else if (strcmp(a, "--bootstrap-file") == 0) {
            if (!*val) {
                fprintf(stderr, "kafka-mock: --bootstrap-file: empty path\n");
                goto usage;
            }
            o->bootstrap_file = val;
        } else if (strcmp(a, "--exit-after") == 0) {
            if (is_parse_duration_ms(val, &v) != IS_OK || v <= 0) {
                fprintf(stderr, "kafka-mock: --exit-after '%s': not a positive duration\n", val);
                goto usage;
            }
            o->exit_after_ms = v;
        } else if (strcmp(a, "--log-level") == 0) {
            if (is_log_level_parse(val, &o->log_level) != IS_OK) {
                fprintf(stderr, "kafka-mock: --log-level '%s': use debug|info|warn|error\n", val);
                goto usage;
            }
        } else {
            fprintf(stderr, "kafka-mock: unknown option '%s'\n", a);
            goto usage;
        }
    }
    return 0;
usage:
    km_usage(stderr);
    return 2;
}

/*
 * Write "bootstrap\n" to path atomically (path.tmp, fsync, rename).
 * Returns 0, or -1 with errstr filled; path.tmp is removed on failure.
 */
static int km_write_bootstrap_file(const char *path, const char *bootstrap, char *errstr,
                                   size_t errstr_size) {
    char tmp[4096];
    FILE *f = NULL;
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        is_errf(errstr, errstr_size, "path too long: '%s'", path);
        return -1;
    }
    f = fopen(tmp, "w");
    if (!f) {
        is_errf(errstr, errstr_size, "cannot open '%s': %s", tmp, strerror(errno));
        return -1;
    }
    if (fprintf(f, "%s\n", bootstrap) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        is_errf(errstr, errstr_size, "cannot write '%s': %s", tmp, strerror(errno));
        goto err;
    }
    if (fclose(f) != 0) {
        f = NULL;
        is_errf(errstr, errstr_size, "cannot close '%s': %s", tmp, strerror(errno));
        goto err;
    }
    f = NULL;
    if (rename(tmp, path) != 0) {
        is_errf(errstr, errstr_size, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        goto err;
    }
    return 0;
err:
    if (f)
        fclose(f);
    unlink(tmp);
    return -1;
}

/* Pre-create the --topic entries. Returns 0, or -1 after logging the failure. */
static int km_create_topics(rd_kafka_mock_cluster_t *mc, const km_opts_t *o) {
    int rf = o->brokers < 3 ? o->brokers : 3; /* what auto-creation would use */
    for (size_t i = 0; i < o->n_topics; i++) {
        const km_topic_t *t = &o->topics[i];
        char name[256];
        char parts[16];
        int parts_n = t->partitions ? t->partitions : o->partitions;
        rd_kafka_resp_err_t err;
        snprintf(name, sizeof(name), "%.*s", (int)t->name_len, t->name);
        err = rd_kafka_mock_topic_create(mc, name, parts_n, rf);
        if (err) {
            is_log(IS_LOG_ERROR, "cannot create topic", "topic", name, "error",
                   rd_kafka_err2str(err), NULL);
            return -1;
        }
        snprintf(parts, sizeof(parts), "%d", parts_n);
        is_log(IS_LOG_INFO, "topic created", "topic", name, "partitions", parts, NULL);
    }
    return 0;
}

int main(int argc, char **argv) {
    km_opts_t o;
    char errstr[512];
    char brokers_s[16];
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    const char *bootstrap;
    int wrote_file = 0;
    int rc = 1;
    int sig = 0;
    int64_t deadline = 0;
    sigset_t block;

    rc = km_parse_args(argc, argv, &o);
    if (rc == 1)
        return 0;
    if (rc == 2)
        return 2;
    rc = 1;
    is_log_init("kafka-mock", o.log_level);

    /* Before librdkafka starts any thread: see "Signals" above. */
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, NULL);
    signal(SIGPIPE, SIG_IGN);

    /*
     * The mock cluster needs a client handle for its bookkeeping; a
     * producer with test.mock.num.brokers creates the cluster and points
     * itself at it, so it never complains about missing bootstrap servers.
     */
    conf = rd_kafka_conf_new();
    snprintf(brokers_s, sizeof(brokers_s), "%d", o.brokers);
    if (rd_kafka_conf_set(conf, "test.mock.num.brokers", brokers_s, errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "client.id", "kafka-mock", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
        is_log(IS_LOG_ERROR, "bad librdkafka configuration", "error", errstr, NULL);
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    rd_kafka_conf_set_log_cb(conf, is_log_rdkafka_cb);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        is_log(IS_LOG_ERROR, "cannot create the mock cluster's client", "error", errstr, NULL);
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    conf = NULL; /* owned by rk now */
    mc = rd_kafka_handle_mock_cluster(rk);
    if (!mc) {
        is_log(IS_LOG_ERROR, "librdkafka did not create a mock cluster", NULL);
        goto out;
    }
    bootstrap = rd_kafka_mock_cluster_bootstraps(mc);
    if (km_create_topics(mc, &o) != 0)
        goto out;

    if (o.bootstrap_file) {
        if (km_write_bootstrap_file(o.bootstrap_file, bootstrap, errstr, sizeof(errstr)) != 0) {
            is_log(IS_LOG_ERROR, "cannot write the bootstrap file", "error", errstr, NULL);
            goto out;
        }
        wrote_file = 1;
    }
    if (printf("%s\n", bootstrap) < 0 || fflush(stdout) != 0) {
        is_log(IS_LOG_ERROR, "cannot write the bootstrap address to stdout", NULL);
        goto out;
    }
    is_log(IS_LOG_INFO, "mock cluster listening", "bootstrap", bootstrap, "brokers", brokers_s,
           NULL);

    if (o.exit_after_ms > 0)
        deadline = is_monotonic_ms() + o.exit_after_ms;
    while (sig <= 0) {
        struct timespec one_second = {1, 0};
        sig = sigtimedwait(&block, NULL, &one_second);
        rd_kafka_poll(rk, 0);
        if (sig <= 0 && deadline && is_monotonic_ms() >= deadline)
            break;
    }
    is_log(IS_LOG_INFO, "stopping", "reason",
           sig == SIGTERM  ? "SIGTERM"
           : sig == SIGINT ? "SIGINT"
                           : "--exit-after",
           NULL);
    rc = 0;

out:
    if (wrote_file && unlink(o.bootstrap_file) != 0)
        is_log(IS_LOG_WARN, "cannot remove the bootstrap file", "path", o.bootstrap_file, "error",
               strerror(errno), NULL);
    /* Destroying the owning handle tears the mock cluster down with it. */
    if (rk)
        rd_kafka_destroy(rk);
    return rc;
}
