/*
 * replay_cli.c — the `erp-consumer replay` command (replay.h): arguments,
 * the store look-up, reading (replay.c), --check-erp / --apply
 * (replay_apply.c), the timeline (replay_timeline.c) and the summary.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "duration.h"
#include "investigation.h"
#include "policy.h"
#include "replay_int.h"
#include "store.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: erp-consumer replay --config FILE --from RFC3339 --to RFC3339\n"
            "           [--site S] [--tier T] [--material M] [--lot L] [--order O] [--type TYPE]\n"
            "           [--format jsonl|csv] [--summary FILE.json] [--check-erp]\n"
            "           [--apply --by WHO --reason WHY]\n"
            "  Times in UTC (2026-11-29T06:00:00Z) or with an offset (+01:00).\n"
            "  --check-erp asks the ERP whether each posted movement's posting exists;\n"
            "  --apply (implies it) queues what the store lacks and re-queues postings the\n"
            "  ERP lost, through the consumer's dedup store (nothing is posted twice).\n"
            "  Exit: 0 ok, 2 bad arguments/range/site, 3 the range reaches before what\n"
            "  Kafka keeps (retention), 1 Kafka, store or ERP failure. Nothing in the range\n"
            "  is exit 0, with a line on stderr saying why (topics empty, all older, the\n"
            "  next message's time, or no movement matching the filters).\n");
}

/* The run in numbers: printed on stderr, and written as JSON with --summary. */
static json_t *summary_json(const replay_timeline_t *t, const replay_info_t *info,
                            const replay_apply_counts_t *c, int checked, int applied) {
    size_t posted = 0, pending = 0, failed = 0, other = 0, missing = 0;
    json_t *d;
    for (size_t i = 0; i < t->n; i++) {
        const replay_row_t *r = &t->rows[i];
        if (!r->decodable)
            continue;
        if (!r->in_store && !r->dead_lettered)
            missing++;
        else if (!r->in_store)
            other++; /* dead-lettered by the consume loop before the store kept it */
        else if (strcmp(r->state, "posted") == 0)
            posted++;
        else if (!strcmp(r->state, "queued") || !strcmp(r->state, "posting") ||
                 !strcmp(r->state, "retry"))
            pending++;
        else if (strcmp(r->state, "failed") == 0)
            failed++;
        else
            other++;
    }
    d = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b}", "topics",
                  (json_int_t)info->topics, "partitions", (json_int_t)info->partitions, "read",
                  (json_int_t)t->read, "movements", (json_int_t)t->movements, "heartbeats",
                  (json_int_t)t->heartbeats, "undecodable", (json_int_t)t->undecodable, "matched",
                  (json_int_t)t->n, "already_posted", (json_int_t)posted, "pending",
                  (json_int_t)pending, "failed", (json_int_t)failed, "dead_cancelled_skipped",
                  (json_int_t)other, "not_in_store", (json_int_t)missing, "retention_gap",
                  info->retention_gap);
    if (!d)
        return NULL;
    json_object_set_new(d, "outside_range", json_integer((json_int_t)info->outside_range));
    if (checked) {
        json_object_set_new(d, "postings_checked", json_integer((json_int_t)c->postings_checked));
        json_object_set_new(d, "postings_missing_in_erp",
                            json_integer((json_int_t)c->postings_missing));
        json_object_set_new(d, "posted_confirmed", json_integer((json_int_t)c->posted_confirmed));
        json_object_set_new(d, "posted_missing_in_erp",
                            json_integer((json_int_t)c->posted_missing));
        json_object_set_new(d, "postings_partly_in_erp",
                            json_integer((json_int_t)c->postings_partial));
        json_object_set_new(d, "posted_partly_in_erp", json_integer((json_int_t)c->posted_partial));
    }
    if (applied) {
        json_object_set_new(d, "newly_queued", json_integer((json_int_t)c->newly_queued));
        json_object_set_new(d, "requeued", json_integer((json_int_t)c->requeued));
        json_object_set_new(d, "requeued_outside_selection",
                            json_integer((json_int_t)c->requeued_outside));
        json_object_set_new(d, "already_known", json_integer((json_int_t)c->already_known));
        json_object_set_new(d, "not_valid", json_integer((json_int_t)c->not_valid));
        json_object_set_new(d, "not_owned", json_integer((json_int_t)c->not_owned));
        json_object_set_new(d, "before_horizon", json_integer((json_int_t)c->before_horizon));
        if (c->pruned_before > 0) {
            char ts[IS_RFC3339_LEN];
            is_format_rfc3339(c->pruned_before, ts);
            json_object_set_new(d, "pruned_before", json_string(ts));
        }
    }
    if (info->retention_gap && info->retention_earliest_ms > 0) {
        char ts[IS_RFC3339_LEN];
        is_format_rfc3339(info->retention_earliest_ms, ts);
        json_object_set_new(d, "earliest_available", json_string(ts));
    }
    return d;
}

static json_int_t num(const json_t *d, const char *k) {
    return json_integer_value(json_object_get(d, k));
}

static void print_summary(FILE *f, const json_t *d) {
    fprintf(f,
            "replay: read %" JSON_INTEGER_FORMAT " message(s) from %" JSON_INTEGER_FORMAT
            " topic(s): %" JSON_INTEGER_FORMAT " movement(s), %" JSON_INTEGER_FORMAT
            " heartbeat(s), %" JSON_INTEGER_FORMAT " undecodable; %" JSON_INTEGER_FORMAT
            " matched the filters\n"
            "replay: %" JSON_INTEGER_FORMAT " already posted, %" JSON_INTEGER_FORMAT
            " pending, %" JSON_INTEGER_FORMAT " failed, %" JSON_INTEGER_FORMAT
            " dead-lettered/cancelled/skipped, %" JSON_INTEGER_FORMAT " not in the store\n",
            num(d, "read"), num(d, "topics"), num(d, "movements"), num(d, "heartbeats"),
            num(d, "undecodable"), num(d, "matched"), num(d, "already_posted"), num(d, "pending"),
            num(d, "failed"), num(d, "dead_cancelled_skipped"), num(d, "not_in_store"));
    if (json_object_get(d, "postings_checked"))
        fprintf(f,
                "replay: ERP check: %" JSON_INTEGER_FORMAT
                " posting(s) asked, %" JSON_INTEGER_FORMAT
                " missing in the ERP (%" JSON_INTEGER_FORMAT
                " posted movement(s)), %" JSON_INTEGER_FORMAT
                " only partly there (%" JSON_INTEGER_FORMAT
                " posted movement(s); chunked, not re-queued: compare them with the ERP)\n",
                num(d, "postings_checked"), num(d, "postings_missing_in_erp"),
                num(d, "posted_missing_in_erp"), num(d, "postings_partly_in_erp"),
                num(d, "posted_partly_in_erp"));
    if (json_object_get(d, "newly_queued"))
        fprintf(f,
                "replay: apply: %" JSON_INTEGER_FORMAT " newly queued, %" JSON_INTEGER_FORMAT
                " re-queued (%" JSON_INTEGER_FORMAT " outside the selection), %" JSON_INTEGER_FORMAT
                " already known and skipped, %" JSON_INTEGER_FORMAT
                " not valid, %" JSON_INTEGER_FORMAT " of sites this consumer does not own\n",
                num(d, "newly_queued"), num(d, "requeued"), num(d, "requeued_outside_selection"),
                num(d, "already_known"), num(d, "not_valid"), num(d, "not_owned"));
    if (num(d, "before_horizon") > 0)
        fprintf(f,
                "replay: apply: %" JSON_INTEGER_FORMAT
                " not in the store and accepted before its pruned horizon %s (store.retention):"
                " not queued, they may have been posted already; check them in the ERP\n",
                num(d, "before_horizon"), json_string_value(json_object_get(d, "pruned_before")));
}

typedef struct replay_args {
    const char *config, *from, *to, *format, *by, *reason, *type, *summary;
    replay_filter_t filter;
    int apply, check;
    int64_t from_ms, to_ms;
} replay_args_t;

/* Parse and check the arguments; 0 = go on, else the exit status. */
static int parse_args(int argc, char **argv, replay_args_t *a) {
    enum {
        O_FROM = 256,
        O_TO,
        O_MATERIAL,
        O_LOT,
        O_ORDER,
        O_TYPE,
        O_FORMAT,
        O_APPLY,
        O_CHECK,
        O_SUMMARY
    };
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"from", required_argument, NULL, O_FROM},
                                         {"to", required_argument, NULL, O_TO},
                                         {"site", required_argument, NULL, 's'},
                                         {"tier", required_argument, NULL, 't'},
                                         {"material", required_argument, NULL, O_MATERIAL},
                                         {"lot", required_argument, NULL, O_LOT},
                                         {"order", required_argument, NULL, O_ORDER},
                                         {"type", required_argument, NULL, O_TYPE},
                                         {"format", required_argument, NULL, O_FORMAT},
                                         {"summary", required_argument, NULL, O_SUMMARY},
                                         {"check-erp", no_argument, NULL, O_CHECK},
                                         {"apply", no_argument, NULL, O_APPLY},
                                         {"by", required_argument, NULL, 'b'},
                                         {"reason", required_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    char errstr[512], up[64];
    int c;
    uint32_t seen_opts = 0;
    memset(a, 0, sizeof(*a));
    a->format = "jsonl";
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:s:t:b:r:h", opts, NULL)) != -1) {
        if (investigation_option_twice("erp-consumer replay", opts, c, &seen_opts))
            return 2;
        switch (c) {
        case 'c':
            a->config = optarg;
            break;
        case O_FROM:
            a->from = optarg;
            break;
        case O_TO:
            a->to = optarg;
            break;
        case 's':
            a->filter.site = optarg;
            break;
        case 't':
            a->filter.tier = optarg;
            break;
        case O_MATERIAL:
            a->filter.material = optarg;
            break;
        case O_LOT:
            a->filter.lot = optarg;
            break;
        case O_ORDER:
            a->filter.order_id = optarg;
            break;
        case O_TYPE:
            a->type = optarg;
            break;
        case O_FORMAT:
            a->format = optarg;
            break;
        case O_SUMMARY:
            a->summary = optarg;
            break;
        case O_CHECK:
            a->check = 1;
            break;
        case O_APPLY:
            a->apply = a->check = 1;
            break;
        case 'b':
            a->by = optarg;
            break;
        case 'r':
            a->reason = optarg;
            break;
        case 'h':
            usage(stdout);
            return -1;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "erp-consumer replay: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!a->config || !*a->config || !a->from || !a->to || optind < argc) {
        fprintf(stderr, "erp-consumer replay: %s\n",
                optind < argc               ? "unexpected argument"
                : !a->config || !*a->config ? "--config FILE is required (the consumer's "
                                              "configuration: its store, policy and Kafka)"
                                            : "--from and --to are required");
        usage(stderr);
        return 2;
    }
    if (strcmp(a->format, "jsonl") != 0 && strcmp(a->format, "csv") != 0) {
        fprintf(stderr, "erp-consumer replay: --format '%s' is not jsonl or csv\n", a->format);
        return 2;
    }
    if (a->apply && (!a->by || !*a->by || !a->reason || !*a->reason)) {
        fprintf(stderr, "erp-consumer replay: --apply needs --by WHO and --reason WHY (audited)\n");
        return 2;
    }
    if (a->apply) {
        /* What --apply writes into its audit row: actor, subject and detail. */
        const char *const names[] = {"--by",   "--reason",   "--from", "--to",   "--site",
                                     "--tier", "--material", "--lot",  "--order"};
        const char *const values[] = {a->by,
                                      a->reason,
                                      a->from,
                                      a->to,
                                      a->filter.site,
                                      a->filter.tier,
                                      a->filter.material,
                                      a->filter.lot,
                                      a->filter.order_id};
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (admin_text_invalid(names[i], values[i], errstr, sizeof(errstr))) {
                fprintf(stderr, "erp-consumer replay: %s\n", errstr);
                return 2;
            }
    }
    int bad_from = is_parse_rfc3339(a->from, &a->from_ms) != IS_OK;
    if (bad_from || is_parse_rfc3339(a->to, &a->to_ms) != IS_OK) {
        fprintf(stderr,
                "erp-consumer replay: --%s '%s' is not an RFC 3339 time (e.g. "
                "2026-11-29T06:00:00Z or 2026-11-29T07:00:00+01:00)\n",
                bad_from ? "from" : "to", bad_from ? a->from : a->to);
        return 2;
    }
    if (a->type) {
        size_t i;
        for (i = 0; a->type[i] && i < sizeof(up) - 1; i++)
            up[i] = (char)(a->type[i] >= 'a' && a->type[i] <= 'z' ? a->type[i] - 32 : a->type[i]);
        up[i] = '\0';
        a->filter.type = is_movement_type_parse(up);
        if (a->filter.type == 0) {
            fprintf(stderr,
                    "erp-consumer replay: --type '%s' is not a movement type (GOODS_ISSUE, "
                    "COMPLETION, SCRAP, QUARANTINE, RELEASE, TRANSFER, ADJUSTMENT, REVERSAL)\n",
                    a->type);
            return 2;
        }
    }
    if (replay_check_range(a->from_ms, a->to_ms, is_clock_now_ms(NULL), errstr, sizeof(errstr)) !=
        IS_OK) {
        fprintf(stderr, "erp-consumer replay: %s\n", errstr);
        return 2;
    }
    return 0;
}

int replay_cli(int argc, char **argv) {
    replay_args_t a;
    char errstr[1024];
    consumer_config_t cfg;
    is_policy_t *policy = NULL;
    store_t *store = NULL;
    replay_timeline_t t = {0};
    replay_info_t info = {0};
    replay_apply_counts_t counts = {0};
    json_t *summary = NULL;
    is_err_t rc;
    int status = parse_args(argc, argv, &a);

    if (status != 0)
        return status < 0 ? 0 : status;
    status = 2;
    t.filter = &a.filter;
    if (investigation_load_config("replay", a.config, &cfg) != 0)
        return 2;
    if (is_policy_load(cfg.policy_path, &policy, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer replay: %s\n", errstr);
        goto out;
    }
    status = 1;
    if (store_open_existing(cfg.store_path, consumer_config_store_sync(&cfg), &store, errstr,
                            sizeof(errstr)) != IS_OK ||
        replay_timeline_prepare(&t, store_db(store), errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer replay: cannot read the store '%s': %s\n", cfg.store_path,
                errstr);
        goto out;
    }
    rc = replay_read(&cfg, is_policy_topic_prefix(policy), a.from_ms, a.to_ms, &a.filter,
                     replay_timeline_collect, &t, &info, errstr, sizeof(errstr));
    if (rc != IS_OK || t.failed_lookups) {
        fprintf(stderr, "erp-consumer replay: %s\n",
                t.nomem            ? "out of memory"
                : t.failed_lookups ? "a store look-up failed (see the log)"
                                   : errstr);
        status = rc == IS_ERR_INVALID || rc == IS_ERR_NOT_FOUND ? 2 : 1;
        goto out;
    }
    if (a.check && replay_check_erp(&cfg, t.rows, t.n, &counts, errstr, sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer replay: %s%s\n", errstr,
                a.apply ? " (nothing was applied)" : "");
        goto out;
    }
    if (a.apply) {
        replay_apply_req_t req = {.by = a.by,
                                  .reason = a.reason,
                                  .from = a.from,
                                  .to = a.to,
                                  .filter = &a.filter,
                                  .earliest_ms =
                                      info.retention_gap ? info.retention_earliest_ms : 0};
        if (replay_apply(&cfg, store, t.rows, t.n, &req, &counts, errstr, sizeof(errstr)) !=
            IS_OK) {
            fprintf(stderr, "erp-consumer replay: %s\n", errstr);
            goto out;
        }
    }
    if (t.n > 0)
        qsort(t.rows, t.n, sizeof(*t.rows), replay_row_cmp);
    if (strcmp(a.format, "csv") == 0)
        replay_write_csv_header(stdout);
    for (size_t i = 0; i < t.n; i++)
        replay_write_row(stdout, &t.rows[i], strcmp(a.format, "csv") == 0);
    fflush(stdout);
    summary = summary_json(&t, &info, &counts, a.check, a.apply);
    int summary_failed = a.summary && !summary;
    if (summary) {
        print_summary(stderr, summary);
        summary_failed = a.summary && json_dump_file(summary, a.summary, JSON_INDENT(2)) != 0;
    }
    if (summary_failed) {
        /* Asked for and missing: the run did not deliver what it was asked for. */
        fprintf(stderr, "erp-consumer replay: cannot write the summary to '%s'\n", a.summary);
        status = 1;
        goto out;
    }
    status = 0;
    if (t.n == 0) {
        /* An empty timeline is a valid answer (exit 0), but say why: a
         * mistyped range or site looks the same as a quiet hour otherwise. */
        replay_empty_hint(&info, is_policy_topic_prefix(policy), &a.filter, a.from_ms, a.to_ms,
                          t.read, t.movements, errstr, sizeof(errstr));
        fprintf(stderr, "erp-consumer replay: %s\n", errstr);
    }
    if (info.retention_gap) {
        char hint[160];
        replay_retention_hint(&info, hint, sizeof(hint));
        if (info.retention_earliest_ms > 0)
            fprintf(stderr,
                    "erp-consumer replay: %s: the range starts at %s; what is still there was "
                    "replayed\n",
                    hint, a.from);
        else
            fprintf(stderr, "erp-consumer replay: %s; what is still there was replayed\n", hint);
        status = 3;
    }
out:
    replay_timeline_release(&t); /* before the store it has statements on */
    json_decref(summary);
    store_close(store);
    is_policy_destroy(policy);
    consumer_config_release(&cfg);
    return status;
}
