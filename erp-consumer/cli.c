/*
 * cli.c — operator commands on the store (cli.h).
 */
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "cli.h"
#include "duration.h"
#include "policy.h"

int cli_is_admin_command(const char *cmd) {
    static const char *const cmds[] = {"pause", "resume", "flush", "failed", "trace", "audit"};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (strcmp(cmd, cmds[i]) == 0)
            return 1;
    return 0;
}

static int print_json(json_t *doc, int ok_status) {
    json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
    fputc('\n', stdout);
    json_decref(doc);
    return ok_status;
}

int cli_run(const char *cmd, const consumer_config_t *cfg, const cli_args_t *a) {
    char errstr[1024];
    store_t *store = NULL;
    json_t *res = NULL;
    is_policy_t *policy = NULL;
    int status = 1;
    if (store_open_existing(cfg->store_path, consumer_config_store_sync(cfg), &store, errstr,
                            sizeof(errstr)) != IS_OK) {
        fprintf(stderr, "erp-consumer: %s\n", errstr);
        return 1;
    }
    if (strcmp(cmd, "trace") == 0) {
        if (!a->movement == !a->document) {
            fprintf(stderr, a->movement ? "erp-consumer: trace takes one of --movement ID or "
                                          "--document DOC, not both\n"
                                        : "erp-consumer: trace needs --movement ID or --document "
                                          "DOC\n");
            status = 2;
            goto out;
        }
        res = a->movement ? admin_trace_movement(store, a->movement, errstr, sizeof(errstr))
                          : admin_trace_document(store, a->document, errstr, sizeof(errstr));
    } else if (strcmp(cmd, "audit") == 0) {
        if (a->argc < 1 || strcmp(a->argv[0], "verify") != 0) {
            fprintf(stderr, "erp-consumer: usage: erp-consumer audit verify --config FILE\n");
            status = 2;
            goto out;
        }
        res = admin_audit_verify(store);
        int ok = json_is_true(json_object_get(res, "ok"));
        status = print_json(res, ok ? 0 : 1);
        res = NULL;
        goto out;
    } else if (strcmp(cmd, "failed") == 0 && (a->argc == 0 || strcmp(a->argv[0], "list") == 0)) {
        res = admin_failed_list(store, errstr, sizeof(errstr));
    } else {
        admin_request_t req = {.site = a->site, .tier = a->tier, .by = a->by, .reason = a->reason};
        int http_status = 0;
        /* Named as the operator typed them; admin_perform checks again for HTTP. */
        if (admin_text_invalid("--by", a->by, errstr, sizeof(errstr)) ||
            admin_text_invalid("--reason", a->reason, errstr, sizeof(errstr)) ||
            admin_text_invalid("--site", a->site, errstr, sizeof(errstr)) ||
            admin_text_invalid("--tier", a->tier, errstr, sizeof(errstr)) ||
            (strcmp(cmd, "failed") == 0 && a->argc >= 2 &&
             admin_text_invalid("POSTING_ID", a->argv[1], errstr, sizeof(errstr)))) {
            fprintf(stderr, "erp-consumer: %s\n", errstr);
            status = 2;
            goto out;
        }
        if (strcmp(cmd, "failed") == 0) {
            int action = admin_action_parse(a->argv[0]);
            if ((action != ADMIN_RETRY && action != ADMIN_SKIP) || a->argc < 2) {
                fprintf(stderr, "erp-consumer: usage: erp-consumer failed [list] | failed "
                                "retry|skip POSTING_ID --by WHO --reason WHY\n");
                status = 2;
                goto out;
            }
            req.action = (admin_action_t)action;
            req.posting_id = a->argv[1];
        } else {
            req.action = (admin_action_t)admin_action_parse(cmd);
            /* The policy names the tiers a pause or flush may target, as for
             * the HTTP API (a tier that has had no movement yet included). */
            if (cfg->policy_path &&
                is_policy_load(cfg->policy_path, &policy, errstr, sizeof(errstr)) != IS_OK) {
                /* A configuration error, as `status` and `run` report it: exit 2. */
                fprintf(stderr, "erp-consumer: policy (key 'policy.path'): %s\n", errstr);
                status = 2;
                goto out;
            }
            req.policy = policy;
        }
        res =
            admin_perform(store, &req, is_clock_now_ms(NULL), &http_status, errstr, sizeof(errstr));
        if (!res && http_status == 400)
            status = 2;
    }
    if (!res) {
        fprintf(stderr, "erp-consumer: %s\n", errstr);
        goto out;
    }
    status = print_json(res, 0);
out:
    is_policy_destroy(policy);
    store_close(store);
    return status;
}
