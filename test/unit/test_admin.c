/*
 * test_admin.c — operator actions (admin.c) on a real store: pause, resume
 * and flush accept only a site the store has heard from or the policy names
 * and a tier of the policy (or "*"), exactly as spelled, and say which names are valid; without a
 * policy (the CLI) the tiers the store has seen count; a pause stored before the check can still be
 * resumed; who and why must not be blank.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "store.h"

typedef struct fx {
    char dir[64], store_path[128], policy_path[128];
    is_policy_t *policy;
    store_t *store;
} fx_t;

static const char POLICY[] = "topic_prefix: invsync\n"
                             "sites:\n"
                             "  PLANT7: {timezone: Europe/Berlin}\n"
                             "tiers:\n"
                             "  realtime: {cadence: immediate, stale_after: 2m}\n"
                             "  nearline: {cadence: every 5m, stale_after: 15m}\n"
                             "  periodic: {cadence: every 30m, stale_after: 90m}\n"
                             "  shift: {cadence: every 8h, stale_after: 9h}\n"
                             "  daily: {cadence: every 24h, stale_after: 26h}\n"
                             "rules:\n"
                             "  - {when: {type: [QUARANTINE, RELEASE]}, tier: realtime}\n"
                             "default_tier: periodic\n";

static void exec_sql(fx_t *f, const char *sql) {
    char *err = NULL;
    int rc = sqlite3_exec(store_db(f->store), sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, err ? err : "?");
}

static int setup(void **state) {
    fx_t *f = calloc(1, sizeof(*f));
    char errstr[512];
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_admin.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->store_path, sizeof(f->store_path), "%s/store.db", f->dir);
    snprintf(f->policy_path, sizeof(f->policy_path), "%s/policy.yaml", f->dir);
    FILE *pf = fopen(f->policy_path, "w");
    assert_non_null(pf);
    fputs(POLICY, pf);
    fclose(pf);
    assert_int_equal(is_policy_load(f->policy_path, &f->policy, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(store_open(f->store_path, IS_DB_SYNC_OFF, &f->store, errstr, sizeof(errstr)),
                     IS_OK);
    /* The store knows a site once a heartbeat or movement came from it. */
    exec_sql(f, "INSERT INTO sites(site, last_heartbeat_at) VALUES('PLANT1', 1), ('PLANT2', 1)");
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx_t *f = *state;
    char cmd[128];
    store_close(f->store);
    is_policy_destroy(f->policy);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static int pause_rows(fx_t *f) {
    sqlite3_stmt *st = NULL;
    int n;
    assert_int_equal(
        sqlite3_prepare_v2(store_db(f->store), "SELECT count(*) FROM pauses", -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* Perform; returns the status, errstr gets the error. */
static int perform(fx_t *f, admin_action_t action, const char *site, const char *tier,
                   const char *by, const char *reason, const is_policy_t *policy, char *errstr,
                   size_t errstr_size) {
    admin_request_t req = {
        .action = action, .site = site, .tier = tier, .by = by, .reason = reason, .policy = policy};
    int status = 0;
    errstr[0] = '\0';
    json_t *res = admin_perform(f->store, &req, 1000, &status, errstr, errstr_size);
    assert_true((res != NULL) == (status == 200));
    json_decref(res);
    return status;
}

static void test_pause_rejects_unknown_site_or_tier_naming_the_valid_ones(void **state) {
    fx_t *f = *state;
    char errstr[512];
    static const struct {
        admin_action_t action;
        const char *site, *tier;
        const char *bad;   /* quoted in the error */
        const char *lists; /* the valid names listed */
    } bad[] = {
        {ADMIN_PAUSE, "PLANT1", "hourly", "tier 'hourly'",
         "realtime, nearline, periodic, shift, daily"},
        {ADMIN_PAUSE, "PLANT1", "Periodic", "tier 'Periodic'", "realtime, nearline"},
        {ADMIN_PAUSE, "PLANT1", " ", "tier ' '", "realtime"},
        {ADMIN_PAUSE, "PLANT9", "periodic", "site 'PLANT9'", "PLANT1, PLANT2"},
        {ADMIN_PAUSE, "plant1", "periodic", "site 'plant1'", "PLANT1, PLANT2"},
        {ADMIN_PAUSE, "PL.ANT1", "periodic", "site 'PL.ANT1'", "PLANT1, PLANT2"},
        {ADMIN_PAUSE, "PLANT9", NULL, "site 'PLANT9'", "PLANT1, PLANT2"},
        {ADMIN_FLUSH, "PLANT1", "hourly", "tier 'hourly'", "realtime"},
        {ADMIN_FLUSH, "PLANT9", "*", "site 'PLANT9'", "PLANT1"},
        {ADMIN_RESUME, "PLANT9", "periodic", "site 'PLANT9'", "PLANT1"}, /* no such pause */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int status = perform(f, bad[i].action, bad[i].site, bad[i].tier, "alice", "test", f->policy,
                             errstr, sizeof(errstr));
        if (status != 400 || !strstr(errstr, bad[i].bad) || !strstr(errstr, bad[i].lists) ||
            !strstr(errstr, "\"*\""))
            fail_msg("case %zu (%s/%s): status %d, error \"%s\"", i, bad[i].site,
                     bad[i].tier ? bad[i].tier : "(none)", status, errstr);
    }
    assert_int_equal(pause_rows(f), 0);
}

static void test_pause_accepts_known_names_and_wildcards(void **state) {
    fx_t *f = *state;
    char errstr[512];
    static const struct {
        const char *site, *tier;
    } ok[] = {{"PLANT1", "periodic"}, {"PLANT2", "daily"}, {"*", "realtime"},
              {"PLANT1", "*"},        {"*", "*"},          {"PLANT2", NULL}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int status = perform(f, ADMIN_PAUSE, ok[i].site, ok[i].tier, "alice", "test", f->policy,
                             errstr, sizeof(errstr));
        if (status != 200)
            fail_msg("case %zu (%s/%s): status %d, error \"%s\"", i, ok[i].site,
                     ok[i].tier ? ok[i].tier : "(none)", status, errstr);
    }
    /* No tier means all tiers: PLANT2/"*" (documented in erp-consumer --help). */
    assert_true(store_is_paused(f->store, "PLANT2", "shift"));
    assert_int_equal(pause_rows(f), 6);
}

static void test_unknown_site_when_no_site_is_known_yet(void **state) {
    fx_t *f = *state;
    char errstr[512];
    exec_sql(f, "DELETE FROM sites");
    assert_int_equal(perform(f, ADMIN_PAUSE, "PLANT1", "periodic", "alice", "test", f->policy,
                             errstr, sizeof(errstr)),
                     400);
    assert_non_null(strstr(errstr, "unknown site 'PLANT1'"));
    assert_non_null(strstr(errstr, "no site has sent a heartbeat or movement yet"));
    assert_non_null(strstr(errstr, "the policy names PLANT7"));
    assert_int_equal(perform(f, ADMIN_PAUSE, "*", "periodic", "alice", "test", f->policy, errstr,
                             sizeof(errstr)),
                     200);
}

/* A site the policy names can be paused before it sends anything (adding a
 * site: hold it until the ERP's master data is ready); others cannot. */
static void test_site_named_by_the_policy_can_be_paused_before_it_sends(void **state) {
    fx_t *f = *state;
    char errstr[512];
    assert_int_equal(perform(f, ADMIN_PAUSE, "PLANT7", "*", "alice", "master data", f->policy,
                             errstr, sizeof(errstr)),
                     200);
    assert_true(store_is_paused(f->store, "PLANT7", "periodic"));
    assert_int_equal(
        perform(f, ADMIN_PAUSE, "PLANT8", "*", "alice", "typo", f->policy, errstr, sizeof(errstr)),
        400);
    /* The refusal lists both sources of valid names: heard from, and the
     * policy's (under sites: and in rules, each once, sorted). */
    assert_string_equal(errstr, "unknown site 'PLANT8': the sites heard from are PLANT1, PLANT2; "
                                "the policy names PLANT7 (or \"*\" for all sites)");
}

/* A site named only in a rule's site list is known too, and listed once
 * even when the policy names it in several places. */
static void test_sites_named_in_rules_are_listed_once(void **state) {
    fx_t *f = *state;
    char errstr[512], path[160];
    is_policy_t *p = NULL;
    snprintf(path, sizeof(path), "%s/rules.yaml", f->dir);
    FILE *pf = fopen(path, "w");
    assert_non_null(pf);
    fputs("sites: {PLANT7: {timezone: UTC}}\n"
          "tiers: {realtime: {cadence: immediate, stale_after: 2m}}\n"
          "rules:\n"
          "  - {when: {site: [PLANT5, PLANT7]}, tier: realtime}\n"
          "  - {when: {site: [PLANT5]}, tier: realtime}\n"
          "default_tier: realtime\n",
          pf);
    fclose(pf);
    assert_int_equal(is_policy_load(path, &p, errstr, sizeof(errstr)), IS_OK);
    assert_int_equal(
        perform(f, ADMIN_PAUSE, "PLANT5", "*", "alice", "new site", p, errstr, sizeof(errstr)),
        200);
    assert_int_equal(
        perform(f, ADMIN_PAUSE, "PLANT4", "*", "alice", "typo", p, errstr, sizeof(errstr)), 400);
    assert_non_null(strstr(errstr, "; the policy names PLANT5, PLANT7 (or"));
    exec_sql(f, "DELETE FROM sites");
    assert_int_equal(
        perform(f, ADMIN_PAUSE, "PLANT4", "*", "alice", "typo", NULL, errstr, sizeof(errstr)), 400);
    assert_non_null(strstr(errstr, "yet; the policy names no site"));
    is_policy_destroy(p);
}

/* The CLI has no policy loaded: the tiers the store has posted to or holds movements for. */
static void test_without_policy_the_tiers_the_store_has_seen_count(void **state) {
    fx_t *f = *state;
    char errstr[512];
    exec_sql(f,
             "INSERT INTO tier_activity(site, tier, last_posted_at) VALUES('PLANT1', 'daily', 1)");
    assert_int_equal(
        perform(f, ADMIN_PAUSE, "PLANT1", "daily", "alice", "test", NULL, errstr, sizeof(errstr)),
        200);
    assert_int_equal(
        perform(f, ADMIN_PAUSE, "PLANT1", "hourly", "alice", "test", NULL, errstr, sizeof(errstr)),
        400);
    assert_non_null(strstr(errstr, "unknown tier 'hourly'"));
    assert_non_null(strstr(errstr, "the tiers this store has seen are daily"));
    assert_int_equal(pause_rows(f), 1);
}

/* A pause stored before names were checked (or for a site or tier since gone) can be lifted. */
static void test_resume_lifts_a_stored_pause_with_an_invalid_name(void **state) {
    fx_t *f = *state;
    char errstr[512];
    exec_sql(f, "INSERT INTO pauses(site, tier, actor, reason, at)"
                " VALUES('PLANT1', 'hourly', 'a', 'r', 1), ('PLANT9', '*', 'a', 'r', 1)");
    assert_int_equal(perform(f, ADMIN_RESUME, "PLANT1", "hourly", "alice", "cleanup", f->policy,
                             errstr, sizeof(errstr)),
                     200);
    assert_int_equal(
        perform(f, ADMIN_RESUME, "PLANT9", NULL, "alice", "cleanup", NULL, errstr, sizeof(errstr)),
        200);
    assert_int_equal(pause_rows(f), 0);
    /* Once gone, the names are checked again: 400, not 404. */
    assert_int_equal(perform(f, ADMIN_RESUME, "PLANT1", "hourly", "alice", "again", f->policy,
                             errstr, sizeof(errstr)),
                     400);
    /* A valid name that is not paused is still 404. */
    assert_int_equal(perform(f, ADMIN_RESUME, "PLANT1", "periodic", "alice", "again", f->policy,
                             errstr, sizeof(errstr)),
                     404);
    assert_string_equal(errstr, "site 'PLANT1' tier 'periodic' is not paused; nothing is paused");
    /* The 404 names the pauses there are: resume lifts one row, not a pattern. */
    exec_sql(f, "INSERT INTO pauses(site, tier, actor, reason, at)"
                " VALUES('PLANT1', 'realtime', 'a', 'r', 1)");
    assert_int_equal(
        perform(f, ADMIN_RESUME, "*", "*", "alice", "all", f->policy, errstr, sizeof(errstr)), 404);
    assert_string_equal(
        errstr, "site '*' tier '*' is not paused; the pauses are (site/tier) PLANT1/realtime");
}

/* An empty tier is an unknown tier, as a blank one is, not "all tiers" (an unset --tier
 * "$TIER" paused every tier); no tier at all means all tiers. */
static void test_blank_tier_is_refused(void **state) {
    fx_t *f = *state;
    char errstr[512];
    static const char *const blank[] = {"", "  "};
    static const admin_action_t actions[] = {ADMIN_PAUSE, ADMIN_FLUSH, ADMIN_RESUME};
    for (size_t a = 0; a < 3; a++)
        for (size_t i = 0; i < 2; i++) {
            errstr[0] = '\0';
            int st = perform(f, actions[a], "*", blank[i], "alice", "test", f->policy, errstr,
                             sizeof(errstr));
            if (st != 400 || !strstr(errstr, "unknown tier '") || !strstr(errstr, "periodic"))
                fail_msg("action %zu tier '%s': status %d, error \"%s\"", a, blank[i], st, errstr);
        }
    assert_int_equal(pause_rows(f), 0);
    assert_int_equal(
        perform(f, ADMIN_PAUSE, "*", NULL, "alice", "test", f->policy, errstr, sizeof(errstr)),
        200);
    assert_int_equal(pause_rows(f), 1);
}

/* One number from the store (a count, a row's column). */
static int64_t scalar(fx_t *f, const char *sql) {
    sqlite3_stmt *st = NULL;
    int64_t v;
    assert_int_equal(sqlite3_prepare_v2(store_db(f->store), sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Pausing what is paused keeps the first pause's who, why and since when (409, CLI exit 1),
 * and records nothing; another row (a wider pause) is still taken. */
static void test_pause_of_a_paused_tier_keeps_the_first_pause(void **state) {
    fx_t *f = *state;
    char errstr[512];
    assert_int_equal(perform(f, ADMIN_PAUSE, "PLANT1", "periodic", "alice", "ERP upgrade",
                             f->policy, errstr, sizeof(errstr)),
                     200);
    int64_t audit = scalar(f, "SELECT count(*) FROM audit");
    assert_int_equal(perform(f, ADMIN_PAUSE, "PLANT1", "periodic", "bob", "stock count", f->policy,
                             errstr, sizeof(errstr)),
                     409);
    assert_string_equal(errstr, "site 'PLANT1' tier 'periodic' is already paused (by alice at "
                                "1970-01-01T00:00:01.000Z: ERP upgrade); nothing changed (resume "
                                "it first to pause it for another reason)");
    assert_int_equal(scalar(f, "SELECT count(*) FROM pauses WHERE actor = 'alice'"), 1);
    assert_int_equal(scalar(f, "SELECT count(*) FROM audit"), audit);
    assert_int_equal(perform(f, ADMIN_PAUSE, "PLANT1", "*", "bob", "stock count", f->policy, errstr,
                             sizeof(errstr)),
                     200);
    assert_int_equal(pause_rows(f), 2);
}

static void test_blank_by_or_reason_is_refused(void **state) {
    fx_t *f = *state;
    char errstr[512];
    static const struct {
        admin_action_t action;
        const char *by, *reason;
    } blank[] = {
        {ADMIN_PAUSE, " ", "upgrade"}, {ADMIN_PAUSE, "alice", "\t\n "}, {ADMIN_PAUSE, "", "x"},
        {ADMIN_PAUSE, "alice", NULL},  {ADMIN_FLUSH, "  ", "x"},        {ADMIN_RESUME, "a", " "},
        {ADMIN_RETRY, " ", "x"},       {ADMIN_SKIP, "a", "   "},
    };
    for (size_t i = 0; i < sizeof(blank) / sizeof(blank[0]); i++) {
        admin_request_t req = {.action = blank[i].action,
                               .site = "PLANT1",
                               .tier = "periodic",
                               .posting_id = "p1",
                               .by = blank[i].by,
                               .reason = blank[i].reason,
                               .policy = f->policy};
        int status = 0;
        json_t *res = admin_perform(f->store, &req, 1000, &status, errstr, sizeof(errstr));
        if (res || status != 400 || !strstr(errstr, "'by' (who) and 'reason' (why)"))
            fail_msg("case %zu: status %d, error \"%s\"", i, status, errstr);
    }
    assert_int_equal(pause_rows(f), 0);
}

/* retry/skip of an id that is no failed posting: 404 (the CLI's exit 1, as
 * for trace of an unknown movement), naming the id, saying whether it is
 * unknown or in another state, and where failed postings are listed. */
static void test_retry_or_skip_of_a_posting_that_is_not_failed_says_so(void **state) {
    fx_t *f = *state;
    char errstr[512];
    exec_sql(f, "INSERT INTO postings(posting_id, site, tier, lot_key, state, created_at,"
                " updated_at) VALUES('p-posted', 'PLANT1', 'periodic', 'k', 'posted', 1, 1)");
    for (int action = ADMIN_RETRY; action <= ADMIN_SKIP; action++) {
        admin_request_t req = {
            .action = action, .posting_id = "no-such-id", .by = "carol", .reason = "test"};
        int status = 0;
        assert_null(admin_perform(f->store, &req, 1000, &status, errstr, sizeof(errstr)));
        assert_int_equal(status, 404);
        assert_string_equal(errstr, "no posting 'no-such-id' in this consumer's store; "
                                    "`erp-consumer failed list` (GET /admin/failed) lists the "
                                    "failed postings");
        req.posting_id = "p-posted";
        assert_null(admin_perform(f->store, &req, 1000, &status, errstr, sizeof(errstr)));
        assert_int_equal(status, 404);
        assert_non_null(strstr(errstr, "posting 'p-posted' is posted, not failed: only a failed "
                                       "posting can be "));
        assert_non_null(strstr(errstr, action == ADMIN_RETRY ? "retried" : "skipped"));
        assert_non_null(strstr(errstr, "`erp-consumer failed list`"));
    }
}

static int audit_count(fx_t *f) {
    sqlite3_stmt *st = NULL;
    int n;
    assert_int_equal(
        sqlite3_prepare_v2(store_db(f->store), "SELECT count(*) FROM audit", -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* The audit hash joins fields with 0x1f unescaped: operator text holding a
 * control character is refused (400) naming the field, and nothing is
 * stored or audited. */
static void test_control_characters_in_operator_text_are_refused(void **state) {
    fx_t *f = *state;
    char errstr[512];
    static const struct {
        admin_action_t action;
        const char *site, *tier, *posting_id, *by, *reason;
        const char *want;
    } bad[] = {
        {ADMIN_PAUSE, "PLANT1", "periodic", NULL, "al\x1fice", "upgrade",
         "'by' must not contain control characters (byte 0x1f at position 3)"},
        {ADMIN_PAUSE, "PLANT1", "periodic", NULL, "alice", "ERP\x1f upgrade", "'reason'"},
        {ADMIN_PAUSE, "PLANT1", "periodic", NULL, "alice", "two\nlines", "byte 0x0a"},
        {ADMIN_FLUSH, "PLANT1", "periodic", NULL, "alice\x7f", "x", "byte 0x7f"},
        {ADMIN_PAUSE, "PLANT1\x1f", "periodic", NULL, "alice", "x", "'site'"},
        {ADMIN_PAUSE, "PLANT1", "periodic\x01", NULL, "alice", "x", "'tier'"},
        {ADMIN_RETRY, NULL, NULL, "p1\x1f", "carol", "x", "'posting_id'"},
        {ADMIN_SKIP, NULL, NULL, "p1", "carol", "x\tand tab", "'reason'"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        admin_request_t req = {.action = bad[i].action,
                               .site = bad[i].site,
                               .tier = bad[i].tier,
                               .posting_id = bad[i].posting_id,
                               .by = bad[i].by,
                               .reason = bad[i].reason,
                               .policy = f->policy};
        int status = 0;
        json_t *res = admin_perform(f->store, &req, 1000, &status, errstr, sizeof(errstr));
        if (res || status != 400 || !strstr(errstr, bad[i].want))
            fail_msg("case %zu: status %d, error \"%s\"", i, status, errstr);
    }
    assert_int_equal(pause_rows(f), 0);
    assert_int_equal(audit_count(f), 0);
    /* Printable text (UTF-8 included) is fine. */
    assert_int_equal(perform(f, ADMIN_PAUSE, "PLANT1", "periodic", "Zoë Müller", "ERP-Upgrade: 2/3",
                             f->policy, errstr, sizeof(errstr)),
                     200);
    assert_int_equal(audit_count(f), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_pause_rejects_unknown_site_or_tier_naming_the_valid_ones, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_accepts_known_names_and_wildcards, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_site_named_by_the_policy_can_be_paused_before_it_sends,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_sites_named_in_rules_are_listed_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_site_when_no_site_is_known_yet, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_without_policy_the_tiers_the_store_has_seen_count,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_of_a_paused_tier_keeps_the_first_pause, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_resume_lifts_a_stored_pause_with_an_invalid_name,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_blank_tier_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blank_by_or_reason_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_control_characters_in_operator_text_are_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_retry_or_skip_of_a_posting_that_is_not_failed_says_so,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
