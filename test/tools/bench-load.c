/*
 * bench-load.c — HTTP load for the benchmark (docs/PERFORMANCE.md): POSTs
 * the simulator's movements to mes-producer in batches from several
 * concurrent clients, optionally paced, and reports what was acknowledged.
 *
 *   bench-load --url URL --token T --in F.jsonl [--skip K] [--max N]
 *              [--format json|protobuf] [--batch 1000] [--clients 4]
 *              [--rate 0] [--json OUT]
 *
 * All request bodies are built before the clock starts: a JSON array of the
 * file's lines as they are (json), or a packed invsync.v1.MovementBatch
 * (protobuf), --batch movements each, in file order. Each client thread has
 * its own libcurl handle (keep-alive) and takes the next body from a shared
 * counter, so requests run --clients at a time. With --rate R (movements/s)
 * request k is not sent before start + k·batch/R (open-loop pacing; when
 * every client is busy the schedule slips, and the slip is reported).
 *
 * Every answer must be 202 with every item accepted; anything else is
 * counted as a failure (and the first body printed). Output: one JSON object
 * on stdout and in --json OUT: movements acknowledged per second (first send
 * to last acknowledgement, wall clock in epoch ms so it can be matched with
 * the services' timestamps) and request latency percentiles.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "duration.h"
#include "movement.h"
#include "movement_json.h"

#define BL_MAX_RESP (4 << 20)

typedef struct bl_body {
    char *data;
    size_t len;
    size_t n; /* movements */
} bl_body_t;

typedef struct bl_req {
    double t_send_ms, t_done_ms; /* epoch ms */
    double slip_ms;              /* how late it went out against the schedule */
    int status;
} bl_req_t;

typedef struct bl_run {
    const char *url;
    char auth[512];
    const char *content_type;
    bl_body_t *bodies;
    size_t n_bodies;
    bl_req_t *reqs;
    double rate;  /* movements/s, 0 = as fast as possible */
    size_t batch; /* movements per body (for the schedule) */
    double t0_ms; /* schedule start, epoch ms */
    atomic_size_t next;
    atomic_int failed;
    pthread_mutex_t mu; /* first failure message */
    char first_error[512];
} bl_run_t;

static double bl_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void bl_sleep_until_ms(double t) {
    for (;;) {
        double d = t - bl_now_ms();
        if (d <= 0)
            return;
        struct timespec ts = {(time_t)(d / 1000.0), (long)(((int64_t)(d * 1e6)) % 1000000000)};
        nanosleep(&ts, NULL);
    }
}

typedef struct bl_buf {
    char *p;
    size_t n;
} bl_buf_t;

static size_t bl_on_body(char *data, size_t size, size_t nmemb, void *ud) {
    bl_buf_t *b = ud;
    size_t add = size * nmemb;
    if (b->n + add > BL_MAX_RESP)
        return 0;
    char *np = realloc(b->p, b->n + add + 1);
    if (!np)
        return 0;
    memcpy(np + b->n, data, add);
    b->p = np;
    b->n += add;
    b->p[b->n] = '\0';
    return add;
}

/* 1 when the 202 body says every item of the request was accepted. */
static int bl_all_accepted(const char *body, size_t n) {
    json_error_t jerr;
    json_t *root = json_loads(body ? body : "", 0, &jerr);
    int ok = root && (size_t)json_integer_value(json_object_get(root, "accepted")) == n;
    json_decref(root);
    return ok;
}

static void bl_fail(bl_run_t *r, const char *fmt, const char *a, long b) {
    if (atomic_fetch_add(&r->failed, 1) == 0) {
        pthread_mutex_lock(&r->mu);
        snprintf(r->first_error, sizeof(r->first_error), fmt, a, b);
        pthread_mutex_unlock(&r->mu);
    }
}

static void *bl_client(void *arg) {
    bl_run_t *r = arg;
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    char ct[128];
    bl_buf_t resp = {NULL, 0};

    if (!h) {
        bl_fail(r, "%s%ld", "curl_easy_init failed", 0);
        return NULL;
    }
    snprintf(ct, sizeof(ct), "Content-Type: %s", r->content_type);
    hdrs = curl_slist_append(hdrs, ct);
    hdrs = curl_slist_append(hdrs, r->auth);
    hdrs = curl_slist_append(hdrs, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(h, CURLOPT_URL, r->url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, bl_on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &resp);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    for (;;) {
        size_t k = atomic_fetch_add(&r->next, 1);
        long status = 0;
        if (k >= r->n_bodies)
            break;
        bl_req_t *q = &r->reqs[k];
        if (r->rate > 0) {
            double due = r->t0_ms + (double)(k * r->batch) * 1000.0 / r->rate;
            bl_sleep_until_ms(due);
            q->slip_ms = bl_now_ms() - due;
        }
        resp.n = 0;
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->bodies[k].data);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->bodies[k].len);
        q->t_send_ms = bl_now_ms();
        CURLcode cc = curl_easy_perform(h);
        q->t_done_ms = bl_now_ms();
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        q->status = (int)status;
        if (cc != CURLE_OK)
            bl_fail(r, "request failed: %s (%ld)", curl_easy_strerror(cc), (long)k);
        else if (status != 202 || !bl_all_accepted(resp.p, r->bodies[k].n))
            bl_fail(r, "answer: %.400s (HTTP %ld)", resp.p ? resp.p : "", status);
    }
    free(resp.p);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return NULL;
}

/* ---- bodies --------------------------------------------------------------- */

/* Read lines [skip, skip+max) of path. Returns the count, or -1. */
static ssize_t bl_read_lines(const char *path, int64_t skip, int64_t max, char ***out) {
    FILE *f = fopen(path, "r");
    char *line = NULL, **v = NULL;
    size_t cap = 0, n = 0, vcap = 0;
    ssize_t len;
    int64_t seen = 0;
    if (!f) {
        fprintf(stderr, "bench-load: cannot open '%s': %s\n", path, strerror(errno));
        return -1;
    }
    while ((max <= 0 || (int64_t)n < max) && (len = getline(&line, &cap, f)) > 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0 || seen++ < skip)
            continue;
        if (n == vcap) {
            vcap = vcap ? vcap * 2 : 1024;
            char **nv = realloc(v, vcap * sizeof(*nv));
            if (!nv)
                goto nomem;
            v = nv;
        }
        v[n] = strdup(line);
        if (!v[n])
            goto nomem;
        n++;
    }
    free(line);
    fclose(f);
    *out = v;
    return (ssize_t)n;
nomem:
    fprintf(stderr, "bench-load: out of memory\n");
    free(line);
    fclose(f);
    return -1;
}

static int bl_body_json(char **lines, size_t n, bl_body_t *b) {
    size_t len = 2;
    for (size_t i = 0; i < n; i++)
        len += strlen(lines[i]) + 1;
    b->data = malloc(len + 1);
    if (!b->data)
        return -1;
    char *p = b->data;
    *p++ = '[';
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(lines[i]);
        if (i)
            *p++ = ',';
        memcpy(p, lines[i], l);
        p += l;
    }
    *p++ = ']';
    *p = '\0';
    b->len = (size_t)(p - b->data);
    b->n = n;
    return 0;
}

static int bl_body_protobuf(char **lines, size_t n, bl_body_t *b) {
    Invsync__V1__MovementBatch batch = INVSYNC__V1__MOVEMENT_BATCH__INIT;
    is_movement_t **ms = calloc(n, sizeof(*ms));
    int rc = -1;
    if (!ms)
        return -1;
    batch.movements = ms;
    for (size_t i = 0; i < n; i++) {
        json_error_t jerr;
        is_field_error_t ferr;
        json_t *obj = json_loads(lines[i], 0, &jerr);
        memset(&ferr, 0, sizeof(ferr));
        if (!obj || is_movement_from_json(obj, 6, &ms[i], &ferr) != IS_OK) {
            fprintf(stderr, "bench-load: bad movement line: %s %s\n", obj ? ferr.field : jerr.text,
                    obj ? ferr.error : "");
            json_decref(obj);
            goto out;
        }
        json_decref(obj);
        batch.n_movements = i + 1;
    }
    b->len = invsync__v1__movement_batch__get_packed_size(&batch);
    b->data = malloc(b->len ? b->len : 1);
    if (!b->data)
        goto out;
    invsync__v1__movement_batch__pack(&batch, (uint8_t *)b->data);
    b->n = n;
    rc = 0;
out:
    for (size_t i = 0; i < batch.n_movements; i++)
        invsync__v1__movement__free_unpacked(ms[i], NULL);
    free(ms);
    return rc;
}

static int bl_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double bl_pct(const double *v, size_t n, double p) {
    if (n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static void bl_usage(FILE *f) {
    fputs("usage: bench-load --url URL --token T --in F.jsonl [--skip K] [--max N]\n"
          "                  [--format json|protobuf] [--batch 1000] [--clients 4] [--rate 0]\n"
          "                  [--json OUT]\n",
          f);
}

int main(int argc, char **argv) {
    enum {
        O_URL = 1,
        O_TOKEN,
        O_IN,
        O_SKIP,
        O_MAX,
        O_FORMAT,
        O_BATCH,
        O_CLIENTS,
        O_RATE,
        O_JSON,
        O_HELP
    };
    static const struct option lo[] = {{"url", required_argument, NULL, O_URL},
                                       {"token", required_argument, NULL, O_TOKEN},
                                       {"in", required_argument, NULL, O_IN},
                                       {"skip", required_argument, NULL, O_SKIP},
                                       {"max", required_argument, NULL, O_MAX},
                                       {"format", required_argument, NULL, O_FORMAT},
                                       {"batch", required_argument, NULL, O_BATCH},
                                       {"clients", required_argument, NULL, O_CLIENTS},
                                       {"rate", required_argument, NULL, O_RATE},
                                       {"json", required_argument, NULL, O_JSON},
                                       {"help", no_argument, NULL, O_HELP},
                                       {NULL, 0, NULL, 0}};
    const char *token = NULL, *in = NULL, *format = "json", *json_out = NULL;
    int64_t skip = 0, max = 0, batch = 1000, clients = 4, rate = 0;
    bl_run_t r;
    char **lines = NULL;
    ssize_t n_lines;
    pthread_t *th = NULL;
    double *lat = NULL, t_first = 0, t_last = 0, slip_max = 0;
    size_t bytes = 0;
    int c, rc = 1;

    memset(&r, 0, sizeof(r));
    pthread_mutex_init(&r.mu, NULL);
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        int64_t *dst = NULL;
        int64_t min = 1;
        switch (c) {
        case O_URL:
            r.url = optarg;
            break;
        case O_TOKEN:
            token = optarg;
            break;
        case O_IN:
            in = optarg;
            break;
        case O_FORMAT:
            format = optarg;
            break;
        case O_JSON:
            json_out = optarg;
            break;
        case O_SKIP:
            dst = &skip, min = 0;
            break;
        case O_MAX:
            dst = &max;
            break;
        case O_BATCH:
            dst = &batch;
            break;
        case O_CLIENTS:
            dst = &clients;
            break;
        case O_RATE:
            dst = &rate, min = 0;
            break;
        case O_HELP:
            bl_usage(stdout);
            return 0;
        default:
            bl_usage(stderr);
            return 2;
        }
        if (dst && is_parse_int64(optarg, min, INT64_MAX, dst) != IS_OK) {
            fprintf(stderr, "bench-load: bad number '%s'\n", optarg);
            return 2;
        }
    }
    if (!r.url || !token || !in ||
        (strcmp(format, "json") != 0 && strcmp(format, "protobuf") != 0)) {
        bl_usage(stderr);
        return 2;
    }
    snprintf(r.auth, sizeof(r.auth), "Authorization: Bearer %s", token);
    r.content_type = strcmp(format, "json") == 0 ? "application/json" : "application/x-protobuf";
    r.rate = (double)rate;
    r.batch = (size_t)batch;

    n_lines = bl_read_lines(in, skip, max, &lines);
    if (n_lines <= 0)
        goto out;
    r.n_bodies = ((size_t)n_lines + r.batch - 1) / r.batch;
    r.bodies = calloc(r.n_bodies, sizeof(*r.bodies));
    r.reqs = calloc(r.n_bodies, sizeof(*r.reqs));
    th = calloc((size_t)clients, sizeof(*th));
    lat = calloc(r.n_bodies, sizeof(*lat));
    if (!r.bodies || !r.reqs || !th || !lat)
        goto out;
    for (size_t k = 0; k < r.n_bodies; k++) {
        size_t from = k * r.batch,
               cnt = (size_t)n_lines - from < r.batch ? (size_t)n_lines - from : r.batch;
        if ((strcmp(format, "json") == 0 ? bl_body_json(lines + from, cnt, &r.bodies[k])
                                         : bl_body_protobuf(lines + from, cnt, &r.bodies[k])) != 0)
            goto out;
        bytes += r.bodies[k].len;
    }
    curl_global_init(CURL_GLOBAL_ALL);
    r.t0_ms = bl_now_ms() + 5; /* the schedule starts once every thread is up */
    for (int64_t i = 0; i < clients; i++)
        if (pthread_create(&th[i], NULL, bl_client, &r) != 0) {
            fprintf(stderr, "bench-load: cannot start client threads\n");
            return 1; /* threads already started hold r: do not free it */
        }
    for (int64_t i = 0; i < clients; i++)
        pthread_join(th[i], NULL);
    curl_global_cleanup();

    for (size_t k = 0; k < r.n_bodies; k++) {
        const bl_req_t *q = &r.reqs[k];
        lat[k] = q->t_done_ms - q->t_send_ms;
        if (k == 0 || q->t_send_ms < t_first)
            t_first = q->t_send_ms;
        if (q->t_done_ms > t_last)
            t_last = q->t_done_ms;
        if (q->slip_ms > slip_max)
            slip_max = q->slip_ms;
    }
    qsort(lat, r.n_bodies, sizeof(*lat), bl_cmp_double);
    {
        double el = (t_last - t_first) / 1000.0;
        int failed = atomic_load(&r.failed);
        json_t *res = json_pack(
            "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}",
            "format", format, "movements", (json_int_t)n_lines, "requests", (json_int_t)r.n_bodies,
            "failed_requests", (json_int_t)failed, "batch", (json_int_t)batch, "clients",
            (json_int_t)clients, "body_bytes", (json_int_t)bytes, "offered_rate", (double)rate,
            "first_send_ms", t_first, "last_ack_ms", t_last, "elapsed_s", el, "movements_per_s",
            el > 0 ? (double)n_lines / el : 0.0, "req_p50_ms", bl_pct(lat, r.n_bodies, 0.50),
            "req_p95_ms", bl_pct(lat, r.n_bodies, 0.95), "req_p99_ms",
            bl_pct(lat, r.n_bodies, 0.99), "req_max_ms", lat[r.n_bodies - 1],
            "schedule_slip_max_ms", slip_max);
        if (failed)
            json_object_set_new(res, "first_error", json_string(r.first_error));
        json_dumpf(res, stdout, JSON_INDENT(1));
        fputc('\n', stdout);
        if (json_out && json_dump_file(res, json_out, JSON_INDENT(1)) != 0)
            fprintf(stderr, "bench-load: cannot write '%s'\n", json_out);
        json_decref(res);
        if (failed)
            fprintf(stderr, "bench-load: %d request(s) failed; first: %s\n", failed, r.first_error);
        rc = failed ? 1 : 0;
    }
out:
    for (ssize_t i = 0; lines && i < n_lines; i++)
        free(lines[i]);
    free(lines);
    for (size_t k = 0; r.bodies && k < r.n_bodies; k++)
        free(r.bodies[k].data);
    free(r.bodies);
    free(r.reqs);
    free(th);
    free(lat);
    pthread_mutex_destroy(&r.mu);
    return rc;
}
