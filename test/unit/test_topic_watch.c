/*
 * test_topic_watch.c — the missing-topic rules (mes-producer/topic_watch.c):
 * which topics are asked about, the WARN naming topic, site, tier, waiting
 * movements and the fix (once, then once a minute), the INFO when it
 * resolves (the broker has it, or its movements were delivered), an unclear
 * answer keeping the state, and what reaches the metrics handle (the gauge
 * and the /readyz list).
 *
 * The broker is a table of answers behind the ask callback; the log is read
 * back from stderr (a pipe dup2'd onto fd 2) and parsed line by line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "log.h"
#include "producer_metrics.h"
#include "topic_watch.h"

#define T0 1764460800000LL /* 2025-11-30T00:00:00Z */

/* ---- the fake broker ----------------------------------------------------- */

typedef struct broker {
    const char *topic[8];
    topic_watch_answer_t answer[8];
    size_t n;
    char asked[16][64]; /* topics asked, in order */
    size_t n_asked;
} broker_t;

static void broker_set(broker_t *b, const char *topic, topic_watch_answer_t a) {
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->topic[i], topic) == 0) {
            b->answer[i] = a;
            return;
        }
    b->topic[b->n] = topic;
    b->answer[b->n++] = a;
}

static topic_watch_answer_t ask(void *opaque, const char *topic) {
    broker_t *b = opaque;
    assert_true(b->n_asked < 16);
    snprintf(b->asked[b->n_asked++], 64, "%s", topic);
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->topic[i], topic) == 0)
            return b->answer[i];
    return TOPIC_WATCH_EXISTS;
}

/* ---- stderr capture ------------------------------------------------------- */

typedef struct capture {
    int saved_fd, read_fd;
} capture_t;

static void capture_begin(capture_t *c) {
    int p[2];
    assert_int_equal(pipe(p), 0);
    c->saved_fd = dup(STDERR_FILENO);
    assert_true(dup2(p[1], STDERR_FILENO) >= 0);
    close(p[1]);
    c->read_fd = p[0];
}

/* Restore stderr; the lines written, parsed (a JSON array of objects). */
static json_t *capture_end(capture_t *c) {
    char buf[65536];
    size_t len = 0;
    ssize_t n;
    json_t *lines = json_array();
    assert_true(dup2(c->saved_fd, STDERR_FILENO) >= 0);
    close(c->saved_fd);
    while ((n = read(c->read_fd, buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)n;
    close(c->read_fd);
    buf[len] = '\0';
    for (char *line = buf, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        json_error_t jerr;
        json_t *j = json_loadb(line, (size_t)(nl - line), 0, &jerr);
        if (!j)
            fail_msg("invalid log line (%s): %.*s", jerr.text, (int)(nl - line), line);
        json_array_append_new(lines, j);
    }
    return lines;
}

static const char *jstr(json_t *j, const char *key) {
    json_t *v = json_object_get(j, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* ---- helpers ------------------------------------------------------------- */

typedef struct fixture {
    producer_metrics_t *pm;
    topic_watch_t *tw;
    broker_t broker;
} fixture_t;

static int setup(void **state) {
    fixture_t *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    is_log_init("mes-producer", IS_LOG_INFO);
    f->pm = producer_metrics_new();
    f->tw = topic_watch_new(f->pm);
    *state = f;
    return f->pm && f->tw ? 0 : -1;
}

static int teardown(void **state) {
    fixture_t *f = *state;
    topic_watch_destroy(f->tw);
    producer_metrics_destroy(f->pm);
    free(f);
    return 0;
}

typedef struct waiting {
    const char *topic, *site, *tier;
    uint64_t n;
    int64_t oldest;
} waiting_t;

/* One check at now with these topics waiting; returns the log lines and
 * *back = topics found again. */
static json_t *round_at(fixture_t *f, int64_t now, const waiting_t *w, size_t n, size_t *back) {
    capture_t c;
    size_t b;
    f->broker.n_asked = 0;
    capture_begin(&c);
    topic_watch_begin(f->tw);
    for (size_t i = 0; i < n; i++)
        topic_watch_waiting(f->tw, w[i].topic, w[i].site, w[i].tier, w[i].n, w[i].oldest);
    b = topic_watch_end(f->tw, now, ask, &f->broker);
    if (back)
        *back = b;
    return capture_end(&c);
}

static size_t gauge(fixture_t *f) {
    producer_missing_topic_t v[PRODUCER_METRICS_MAX_MISSING];
    size_t n = 0,
           total = producer_metrics_topics_missing(f->pm, v, PRODUCER_METRICS_MAX_MISSING, &n);
    size_t len = 0;
    char *text = producer_metrics_render(f->pm, 0, 0, NULL, &len);
    char want[64];
    assert_non_null(text);
    snprintf(want, sizeof(want), "\ninvsync_kafka_topics_missing %zu\n", total);
    assert_non_null(strstr(text, want));
    free(text);
    assert_int_equal(n,
                     total < PRODUCER_METRICS_MAX_MISSING ? total : PRODUCER_METRICS_MAX_MISSING);
    return total;
}

static const waiting_t PLANT9_DAILY = {"inv.PLANT9.daily", "PLANT9", "daily", 3, T0};

/* ---- tests --------------------------------------------------------------- */

/* Found missing: one WARN with everything an operator needs; the gauge and
 * the /readyz list say so. */
static void test_missing_topic_is_warned_with_site_tier_count_and_fix(void **state) {
    fixture_t *f = *state;
    producer_missing_topic_t v[4];
    size_t n = 0, back = 9;
    json_t *log, *w;

    broker_set(&f->broker, "inv.PLANT9.daily", TOPIC_WATCH_MISSING);
    log = round_at(f, T0 + 12000, &PLANT9_DAILY, 1, &back);
    assert_int_equal(back, 0);
    assert_int_equal(f->broker.n_asked, 1);
    assert_int_equal(json_array_size(log), 1);
    w = json_array_get(log, 0);
    assert_string_equal(jstr(w, "level"), "warn");
    assert_string_equal(jstr(w, "msg"), "kafka topic missing; movements wait for it");
    assert_string_equal(jstr(w, "topic"), "inv.PLANT9.daily");
    assert_string_equal(jstr(w, "site"), "PLANT9");
    assert_string_equal(jstr(w, "tier"), "daily");
    assert_string_equal(jstr(w, "waiting"), "3");
    assert_string_equal(jstr(w, "oldest_waiting_s"), "12");
    assert_string_equal(jstr(w, "fix"), "create the topic: README 'Adding a site'");
    json_decref(log);

    assert_int_equal(gauge(f), 1);
    assert_int_equal(topic_watch_missing(f->tw), 1);
    assert_int_equal(producer_metrics_topics_missing(f->pm, v, 4, &n), 1);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].topic, "inv.PLANT9.daily");
    assert_string_equal(v[0].site, "PLANT9");
    assert_string_equal(v[0].tier, "daily");
    assert_int_equal(v[0].waiting, 3);
    assert_int_equal(v[0].since_ms, T0 + 12000);
}

/* While it lasts: silent between checks, the WARN again once a minute. */
static void test_missing_topic_warn_is_rate_limited(void **state) {
    fixture_t *f = *state;
    json_t *log;

    broker_set(&f->broker, "inv.PLANT9.daily", TOPIC_WATCH_MISSING);
    json_decref(round_at(f, T0 + 10000, &PLANT9_DAILY, 1, NULL));
    for (int64_t t = 15000; t < 10000 + TOPIC_WATCH_WARN_EVERY_MS; t += 5000) {
        log = round_at(f, T0 + t, &PLANT9_DAILY, 1, NULL);
        assert_int_equal(json_array_size(log), 0);
        json_decref(log);
    }
    log = round_at(f, T0 + 10000 + TOPIC_WATCH_WARN_EVERY_MS, &PLANT9_DAILY, 1, NULL);
    assert_int_equal(json_array_size(log), 1);
    assert_string_equal(jstr(json_array_get(log, 0), "missing_for_s"), "60");
    json_decref(log);
    assert_int_equal(gauge(f), 1);
}

/* Created: INFO once, the gauge back to 0, and the caller told to retry now. */
static void test_created_topic_resolves_with_info(void **state) {
    fixture_t *f = *state;
    size_t back = 0;
    json_t *log, *l;

    broker_set(&f->broker, "inv.PLANT9.daily", TOPIC_WATCH_MISSING);
    json_decref(round_at(f, T0 + 10000, &PLANT9_DAILY, 1, NULL));
    broker_set(&f->broker, "inv.PLANT9.daily", TOPIC_WATCH_EXISTS);
    log = round_at(f, T0 + 40000, &PLANT9_DAILY, 1, &back);
    assert_int_equal(back, 1);
    assert_int_equal(json_array_size(log), 1);
    l = json_array_get(log, 0);
    assert_string_equal(jstr(l, "level"), "info");
    assert_string_equal(jstr(l, "msg"), "kafka topic missing no more");
    assert_string_equal(jstr(l, "topic"), "inv.PLANT9.daily");
    assert_string_equal(jstr(l, "reason"), "the broker has it now");
    assert_string_equal(jstr(l, "missing_for_s"), "30");
    json_decref(log);
    assert_int_equal(gauge(f), 0);

    /* Found again: nothing more to say. */
    log = round_at(f, T0 + 45000, &PLANT9_DAILY, 1, &back);
    assert_int_equal(back, 0);
    assert_int_equal(json_array_size(log), 0);
    json_decref(log);
}

/* Its movements delivered (nothing waits, or only fresh ones): resolved too. */
static void test_delivered_movements_resolve_a_missing_topic(void **state) {
    fixture_t *f = *state;
    waiting_t fresh = PLANT9_DAILY;
    json_t *log;

    broker_set(&f->broker, "inv.PLANT9.daily", TOPIC_WATCH_MISSING);
    json_decref(round_at(f, T0 + 10000, &PLANT9_DAILY, 1, NULL));
    fresh.oldest = T0 + 19000; /* 1 s old at the next check: not asked about */
    log = round_at(f, T0 + 20000, &fresh, 1, NULL);
    assert_int_equal(f->broker.n_asked, 0);
    assert_int_equal(json_array_size(log), 1);
    assert_string_equal(jstr(json_array_get(log, 0), "reason"),
                        "its waiting movements were delivered");
    json_decref(log);
    assert_int_equal(gauge(f), 0);

    json_decref(round_at(f, T0 + 30000, &PLANT9_DAILY, 1, NULL)); /* missing again */
    assert_int_equal(gauge(f), 1);
    log = round_at(f, T0 + 35000, NULL, 0, NULL); /* nothing waits at all */
    assert_int_equal(json_array_size(log), 1);
    assert_string_equal(jstr(json_array_get(log, 0), "msg"), "kafka topic missing no more");
    json_decref(log);
    assert_int_equal(gauge(f), 0);
}

/* Only topics whose oldest movement waits TOPIC_WATCH_STUCK_MS are asked
 * about; a topic the broker has is neither logged nor counted. */
static void test_only_old_waiting_topics_are_asked(void **state) {
    fixture_t *f = *state;
    const waiting_t w[] = {
        {"inv.PLANT1.realtime", "PLANT1", "realtime", 10, T0 + 100000 - TOPIC_WATCH_STUCK_MS + 1},
        {"inv.PLANT2.realtime", "PLANT2", "realtime", 10, T0 + 100000 - TOPIC_WATCH_STUCK_MS},
    };
    json_t *log = round_at(f, T0 + 100000, w, 2, NULL);
    assert_int_equal(f->broker.n_asked, 1);
    assert_string_equal(f->broker.asked[0], "inv.PLANT2.realtime");
    assert_int_equal(json_array_size(log), 0);
    json_decref(log);
    assert_int_equal(gauge(f), 0);
}

/* No clear answer (timeout, another error): the known state stays, and the
 * rest of the round is not asked (each call may block). */
static void test_unclear_answer_keeps_state_and_stops_asking(void **state) {
    fixture_t *f = *state;
    const waiting_t w[] = {PLANT9_DAILY, {"inv.PLANT8.daily", "PLANT8", "daily", 1, T0}};
    json_t *log;

    broker_set(&f->broker, "inv.PLANT9.daily", TOPIC_WATCH_MISSING);
    json_decref(round_at(f, T0 + 10000, &PLANT9_DAILY, 1, NULL));
    broker_set(&f->broker, "inv.PLANT9.daily", TOPIC_WATCH_UNCLEAR);
    broker_set(&f->broker, "inv.PLANT8.daily", TOPIC_WATCH_MISSING);
    log = round_at(f, T0 + 15000, w, 2, NULL);
    assert_int_equal(f->broker.n_asked, 1);
    assert_int_equal(json_array_size(log), 0);
    json_decref(log);
    assert_int_equal(gauge(f), 1);
}

/* Several missing topics: each warned once, all counted. */
static void test_every_missing_topic_is_counted(void **state) {
    fixture_t *f = *state;
    const waiting_t w[] = {PLANT9_DAILY,
                           {"inv.PLANT9.realtime", "PLANT9", "realtime", 2, T0},
                           {"inv.PLANT1.daily", "PLANT1", "daily", 2, T0}};
    json_t *log;

    broker_set(&f->broker, "inv.PLANT9.daily", TOPIC_WATCH_MISSING);
    broker_set(&f->broker, "inv.PLANT9.realtime", TOPIC_WATCH_MISSING);
    log = round_at(f, T0 + 10000, w, 3, NULL);
    assert_int_equal(f->broker.n_asked, 3);
    assert_int_equal(json_array_size(log), 2);
    json_decref(log);
    assert_int_equal(gauge(f), 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_missing_topic_is_warned_with_site_tier_count_and_fix,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_topic_warn_is_rate_limited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_created_topic_resolves_with_info, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivered_movements_resolve_a_missing_topic, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_only_old_waiting_topics_are_asked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unclear_answer_keeps_state_and_stops_asking, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_every_missing_topic_is_counted, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
