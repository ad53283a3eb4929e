/*
 * policy_check.c — policy validation and impact preview (policy_check.h).
 * Load: a sample of up to a few million movements, classified once or twice
 * each.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movement_json.h"
#include "policy.h"
#include "policy_check.h"

#define MAX_TIERS 64

#define MAX_INVALID_SHOWN 5

typedef struct counts {
    long by_new[MAX_TIERS];
    long by_old[MAX_TIERS];
    long moves[MAX_TIERS][MAX_TIERS]; /* [old][new] */
    long total, invalid, duplicates;
    /* Movements seen, by a 64-bit hash of "source_system \x1f movement_id"
     * (open addressing, 0 = empty): an MES resend counts once, as in the
     * producer. A collision would count a movement as a resend: at 10^7
     * movements the chance is ~10^-5 (a preview, not a ledger). */
    uint64_t *seen;
    size_t seen_cap, seen_n;
} counts_t;

static uint64_t key_hash(const char *source, const char *id) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const char *p = source; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ 0x1f) * 1099511628211ULL;
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h ? h : 1;
}

/* 1 if the key was seen before (and now is), 0 if new, -1 out of memory. */
static int seen_add(counts_t *c, uint64_t h) {
    if (2 * (c->seen_n + 1) > c->seen_cap) {
        size_t cap = c->seen_cap ? 2 * c->seen_cap : 4096;
        uint64_t *t = calloc(cap, sizeof(*t));
        if (!t)
            return -1;
        for (size_t i = 0; i < c->seen_cap; i++) {
            if (!c->seen[i])
                continue;
            size_t j = (size_t)(c->seen[i] & (cap - 1));
            while (t[j])
                j = (j + 1) & (cap - 1);
            t[j] = c->seen[i];
        }
        free(c->seen);
        c->seen = t;
        c->seen_cap = cap;
    }
    size_t j = (size_t)(h & (c->seen_cap - 1));
    while (c->seen[j]) {
        if (c->seen[j] == h)
            return 1;
        j = (j + 1) & (c->seen_cap - 1);
    }
    c->seen[j] = h;
    c->seen_n++;
    return 0;
}

static int tier_index(const is_policy_t *p, const is_tier_t *t) {
    for (size_t i = 0; i < is_policy_tier_count(p) && i < MAX_TIERS; i++)
        if (is_policy_tier(p, i) == t)
            return (int)i;
    return 0;
}

/* where: "line 12" or "item 3"; invalid items are counted, the first few
 * named on stderr with the producer's own error. */
static void classify(const is_policy_t *np, const is_policy_t *op, const json_t *obj,
                     const char *path, const char *where, counts_t *c) {
    is_movement_t *m = NULL;
    is_field_error_t err;
    /* The producer's rules (its ingest ones included), scale aside: its
     * quantity.max_scale is its own configuration. */
    const is_validate_opts_t at_ingest = {.max_scale = IS_DECIMAL_MAX_SCALE, .ingest = 1};
    memset(&err, 0, sizeof(err));
    if (is_movement_from_json(obj, IS_DECIMAL_MAX_SCALE, &m, &err) != IS_OK ||
        is_movement_validate(m, &at_ingest, &err, 1) > 0) {
        if (c->invalid < MAX_INVALID_SHOWN)
            fprintf(stderr, "erp-consumer: %s: %s: not a valid movement, skipped: %s: %s\n", path,
                    where, err.field[0] ? err.field : "movement", err.error);
        c->invalid++;
        if (m)
            invsync__v1__movement__free_unpacked(m, NULL);
        return;
    }
    int dup = seen_add(c, key_hash(m->source_system, m->movement_id));
    if (dup != 0) {
        c->duplicates += dup > 0; /* out of memory (-1): counted, not de-duplicated */
        if (dup > 0) {
            invsync__v1__movement__free_unpacked(m, NULL);
            return;
        }
    }
    int ni = tier_index(np, is_policy_classify(np, m, NULL));
    c->by_new[ni]++;
    if (op) {
        int oi = tier_index(op, is_policy_classify(op, m, NULL));
        c->by_old[oi]++;
        c->moves[oi][ni]++;
    }
    c->total++;
    invsync__v1__movement__free_unpacked(m, NULL);
}

/* JSON lines, or one JSON array. Returns 0 or -1 with a message on stderr. */
static int read_sample(const char *path, const is_policy_t *np, const is_policy_t *op,
                       counts_t *c) {
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    int first = 1;
    if (!f) {
        fprintf(stderr, "erp-consumer: cannot open sample '%s'\n", path);
        return -1;
    }
    while ((len = getline(&line, &cap, f)) > 0) {
        json_error_t jerr;
        lineno++;
        if (line[strspn(line, " \t\r\n")] == '\0')
            continue;
        if (first && line[strspn(line, " \t")] == '[') {
            /* A JSON array: load the whole file instead. */
            json_t *arr = json_load_file(path, 0, &jerr), *v;
            size_t i;
            if (!arr || !json_is_array(arr)) {
                fprintf(stderr, "erp-consumer: %s:%d: %s\n", path, jerr.line,
                        arr ? "expected an array of movements" : jerr.text);
                json_decref(arr);
                goto fail;
            }
            json_array_foreach(arr, i, v) {
                char where[32];
                snprintf(where, sizeof(where), "item %zu", i);
                classify(np, op, v, path, where, c);
            }
            json_decref(arr);
            break;
        }
        first = 0;
        json_t *obj = json_loadb(line, (size_t)len, 0, &jerr);
        if (!obj || !json_is_object(obj)) {
            fprintf(stderr, "erp-consumer: %s:%ld: %s\n", path, lineno,
                    obj ? "expected one movement object per line" : jerr.text);
            json_decref(obj);
            goto fail;
        }
        char where[32];
        snprintf(where, sizeof(where), "line %ld", lineno);
        classify(np, op, obj, path, where, c);
        json_decref(obj);
    }
    free(line);
    fclose(f);
    return 0;
fail:
    free(line);
    fclose(f);
    return -1;
}

static void policy_check_usage(FILE *out) {
    fprintf(out, "usage: erp-consumer policy-check --policy NEW.yaml [--against CURRENT.yaml]\n"
                 "                                 [--sample movements.jsonl] [--json]\n"
                 "Validate a tier policy and preview its impact before deploying it.\n"
                 "  --policy NEW.yaml      the policy to check (errors name file, line and key)\n"
                 "  --against CURRENT.yaml compare with the policy in use: which movements change "
                 "tier\n"
                 "  --sample FILE          movements (JSON lines or a JSON array) to classify\n"
                 "  --json                 the report as one JSON object\n"
                 "Exit status: 0 valid, 2 invalid policy or sample, or bad usage.\n");
}

int policy_check_main(int argc, char **argv) {
    static const struct option opts[] = {
        {"policy", required_argument, NULL, 'p'}, {"against", required_argument, NULL, 'a'},
        {"sample", required_argument, NULL, 's'}, {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *np_path = NULL, *op_path = NULL, *sample = NULL;
    int as_json = 0, c, status = 2;
    char errstr[1024];
    is_policy_t *np = NULL, *op = NULL;
    counts_t *cnt = calloc(1, sizeof(*cnt));

    optind = 1;
    while ((c = getopt_long(argc, argv, "p:a:s:j", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            np_path = optarg;
            break;
        case 'a':
            op_path = optarg;
            break;
        case 's':
            sample = optarg;
            break;
        case 'j':
            as_json = 1;
            break;
        case 'h':
            policy_check_usage(stdout);
            status = 0;
            goto out;
        default:
            goto usage;
        }
    }
    if (!np_path || !cnt)
        goto usage;
    if (is_policy_load(np_path, &np, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer: policy is not valid: %s\n", errstr);
        goto out;
    }
    if (op_path && is_policy_load(op_path, &op, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer: current policy is not valid: %s\n", errstr);
        goto out;
    }
    if (sample && read_sample(sample, np, op, cnt) != 0)
        goto out;

    json_t *doc = json_pack("{s:b,s:s,s:s}", "valid", 1, "policy", np_path, "policy_version",
                            is_policy_version(np));
    json_t *tiers = json_array();
    for (size_t i = 0; i < is_policy_tier_count(np) && i < MAX_TIERS; i++) {
        const is_tier_t *t = is_policy_tier(np, i);
        json_array_append_new(tiers, json_pack("{s:s,s:f,s:I}", "tier", t->name, "stale_after_s",
                                               (double)t->stale_after_ms / 1000.0, "movements",
                                               (json_int_t)cnt->by_new[i]));
    }
    json_object_set_new(doc, "tiers", tiers);
    if (sample)
        json_object_set_new(
            doc, "sample",
            json_pack("{s:s,s:I,s:I,s:I}", "file", sample, "movements", (json_int_t)cnt->total,
                      "resends", (json_int_t)cnt->duplicates, "invalid", (json_int_t)cnt->invalid));
    if (op) {
        json_t *moves = json_array();
        json_object_set_new(
            doc, "against",
            json_pack("{s:s,s:s}", "policy", op_path, "policy_version", is_policy_version(op)));
        for (size_t o = 0; o < is_policy_tier_count(op) && o < MAX_TIERS; o++)
            for (size_t n = 0; n < is_policy_tier_count(np) && n < MAX_TIERS; n++)
                if (cnt->moves[o][n] &&
                    strcmp(is_policy_tier(op, o)->name, is_policy_tier(np, n)->name) != 0)
                    json_array_append_new(moves, json_pack("{s:s,s:s,s:I}", "from",
                                                           is_policy_tier(op, o)->name, "to",
                                                           is_policy_tier(np, n)->name, "movements",
                                                           (json_int_t)cnt->moves[o][n]));
        json_object_set_new(doc, "moves", moves);
    }
    if (as_json) {
        json_dumpf(doc, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
    } else {
        size_t i;
        json_t *t;
        printf("policy %s is valid (version %.12s…)\n", np_path, is_policy_version(np));
        if (sample)
            printf("sample %s: %ld movements (%ld resends counted once, %ld not valid, "
                   "skipped)\n",
                   sample, cnt->total, cnt->duplicates, cnt->invalid);
        printf("%-12s %12s %14s\n", "tier", "stale_after", sample ? "movements" : "");
        json_array_foreach(json_object_get(doc, "tiers"), i, t) {
            printf("%-12s %11.0fs", json_string_value(json_object_get(t, "tier")),
                   json_real_value(json_object_get(t, "stale_after_s")));
            if (sample)
                printf(" %14lld", (long long)json_integer_value(json_object_get(t, "movements")));
            printf("\n");
        }
        if (op) {
            printf("against %s: %s\n", op_path,
                   json_array_size(json_object_get(doc, "moves")) ? "movements change tier"
                                                                  : "no movement changes tier");
            json_array_foreach(json_object_get(doc, "moves"), i, t)
                printf("  %-10s -> %-10s %10lld\n", json_string_value(json_object_get(t, "from")),
                       json_string_value(json_object_get(t, "to")),
                       (long long)json_integer_value(json_object_get(t, "movements")));
        }
    }
    json_decref(doc);
    status = 0;
    goto out;
usage:
    policy_check_usage(stderr);
out:
    is_policy_destroy(np);
    is_policy_destroy(op);
    if (cnt)
        free(cnt->seen);
    free(cnt);
    return status;
}
