"""Operating the consumer through its admin HTTP API and CLI, end to end:
pause holds a tier while consumption continues, flush closes a window now,
resume catches up; a permanently refused posting holds its lot only, shows
in /admin/failed, and posts after an audited retry; the audit chain
verifies; policy-check previews a policy change on simulator traffic."""

import datetime
import json
import os

import sqlite3

from conftest import ADMIN_TOKEN, REPO, binary, free_port, http, movement, query, scalar, try_scalar

DEPLOY_POLICY = os.path.join(REPO, "deploy", "policy.yaml")
ADMIN = {"Authorization": "Bearer " + ADMIN_TOKEN, "Content-Type": "application/json"}


def admin(consumer, path, body=None, token=ADMIN_TOKEN):
    h = {"Content-Type": "application/json"}
    if token:
        h["Authorization"] = "Bearer " + token
    return http("POST" if body is not None else "GET", consumer.base + path,
                json.dumps(body) if body is not None else None, h)


def grid_cell(consumer, site, tier):
    for c in consumer.status()["grid"]:
        if c["site"] == site and c["tier"] == tier:
            return c
    return None


def test_pause_flush_resume_over_http(stack):
    stack.start_kafka()
    policy = {"policy": {"path": DEPLOY_POLICY}}  # real windows: periodic every 30m
    consumer = stack.start_consumer(overrides=dict(policy, consume={"mode": "assign", "discovery": "500ms"}))
    producer = stack.start_producer(overrides=policy)
    # Completions of RM material: default tier periodic (a 30-minute window).
    batch = [movement("OPS-%d" % i, "PLANT1", material="RM-101", lot="LOT-OPS",
                      location="WH-01", uom="KG") for i in range(5)]
    r = producer.post(batch)
    assert r.status == 202, r
    assert {i["tier"] for i in r.json()["items"]} == {"periodic"}
    stack.wait_for(lambda: consumer.store_count() == 5, 60, "the consumer to store 5 movements")
    assert consumer.posted_count() in (None, 0), "posted before the window closed"

    # Admin needs the token.
    assert admin(consumer, "/admin/pause", {"site": "PLANT1", "tier": "periodic", "by": "t",
                                            "reason": "x"}, token=None).status == 401
    assert admin(consumer, "/admin/pause", {"site": "PLANT1", "tier": "periodic", "by": "t",
                                            "reason": "x"}, token="wrong").status == 401
    # Who and why are required.
    r = admin(consumer, "/admin/pause", {"site": "PLANT1", "tier": "periodic"})
    assert r.status == 400 and "by" in r.json()["error"], r

    # Only names that exist: a tier of the policy, a site the store knows, or "*";
    # blank who/why and unknown fields are refused, naming the culprit.
    for body, culprit in [
            ({"site": "PLANT1", "tier": "hourly", "by": "a", "reason": "r"}, "tier 'hourly'"),
            ({"site": "PLANT9", "tier": "periodic", "by": "a", "reason": "r"}, "site 'PLANT9'"),
            ({"site": "plant1", "tier": "periodic", "by": "a", "reason": "r"}, "site 'plant1'"),
            ({"site": "PLANT1", "tier": "periodic", "by": " ", "reason": "r"}, "'by'"),
            ({"site": "PLANT1", "tier": "periodic", "by": "a", "reason": "r", "until": "x"},
             "unknown field 'until'")]:
        r = admin(consumer, "/admin/pause", body)
        assert r.status == 400 and culprit in r.json()["error"], (body, r)
    assert "PLANT1" in admin(consumer, "/admin/pause", {"site": "PLANT9", "tier": "*", "by": "a",
                                                        "reason": "r"}).json()["error"]
    r = stack.consumer_cli(consumer, "pause", "--site", "PLANT1", "--tier", "hourly", "--by", "a",
                           "--reason", "r", check=False)
    assert r.returncode == 2 and "unknown tier 'hourly'" in r.err, (r.returncode, r.err)
    assert consumer.status()["paused"] == [], "a refused pause was stored"
    # The CLI knows the policy's tiers too, also one no movement has used yet.
    for cmd in ("pause", "resume"):
        r = stack.consumer_cli(consumer, cmd, "--site", "PLANT1", "--tier", "daily", "--by", "a",
                               "--reason", "r", check=False)
        assert r.returncode == 0, (cmd, r.returncode, r.err)

    r = admin(consumer, "/admin/pause", {"site": "PLANT1", "tier": "periodic", "by": "alice",
                                         "reason": "ERP upgrade"})
    assert r.status == 200, r
    stack.wait_for(lambda: grid_cell(consumer, "PLANT1", "periodic")["paused"], 10,
                   "the status grid to show PLANT1/periodic paused")
    # A partial pause keeps the consumer ready, and /readyz says what is paused.
    r = http("GET", consumer.base + "/readyz")
    assert r.status == 200 and r.json()["posting"] == "paused for PLANT1/periodic", r
    assert r.json()["paused"] == [{"site": "PLANT1", "tier": "periodic"}], r
    # Flush closes the window, but the tier is paused: still nothing posted.
    r = admin(consumer, "/admin/flush", {"site": "PLANT1", "tier": "periodic", "by": "bob",
                                         "reason": "manual shift end"})
    assert r.status == 200 and r.json()["movements"] == 5, r
    # Consumption continues while paused.
    assert producer.post(movement("OPS-5", "PLANT1", material="RM-101", lot="LOT-OPS",
                                  location="WH-01", uom="KG")).status == 202
    stack.wait_for(lambda: consumer.store_count() == 6, 30, "the consumer to keep consuming while paused")
    assert consumer.posted_count() in (None, 0), "posted while paused"
    cell = grid_cell(consumer, "PLANT1", "periodic")
    assert cell["unposted"] == 6 and cell["oldest_unposted_age_s"] > 0

    r = admin(consumer, "/admin/resume", {"site": "PLANT1", "tier": "periodic", "by": "alice",
                                          "reason": "upgrade done"})
    assert r.status == 200, r
    # The five flushed movements post (netted: one document); OPS-5 waits for its window.
    stack.wait_for(lambda: (consumer.posted_count() or 0) == 5, 30, "the flushed movements to post")
    docs = scalar(consumer.erp, "SELECT count(*) FROM documents WHERE posting_id NOT LIKE 'seed-%'")
    lines = scalar(consumer.erp, "SELECT count(*) FROM doc_lines")
    assert docs == 1 and lines == 1, "5 completions of one lot should net into 1 line (docs %d lines %d)" % (docs, lines)

    actions = [r[0] for r in query(consumer.store, "SELECT action FROM audit WHERE action IN"
                                                   " ('pause', 'flush', 'resume') ORDER BY id")]
    # The CLI's pause and resume of PLANT1/daily come first (above).
    assert actions == ["pause", "resume", "pause", "flush", "resume"], actions
    r = admin(consumer, "/admin/audit/verify")
    assert r.status == 200 and r.json()["ok"] is True, r
    # Tampering is detected.
    stack.stop_all()
    db = sqlite3.connect(consumer.store)
    db.execute("UPDATE audit SET actor = 'mallory' WHERE action = 'pause'")
    db.commit()
    db.close()
    r = stack.run([binary("erp-consumer"), "audit", "verify", "--config", consumer.config_path],
                  check=False)
    assert r.returncode == 1 and '"ok": false' in r.out, r.out


def test_failed_posting_holds_its_lot_and_retries_over_http(stack):
    stack.start_kafka()
    consumer = stack.start_consumer(overrides={"retry": {"base": "100ms", "max": "1s"}})
    producer = stack.start_producer()
    # An issue from a lot the ERP has no stock of: refused, permanent.
    bad = movement("FAIL-1", "PLANT1", type="GOODS_ISSUE", material="RM-101", lot="LOT-EMPTY",
                   location="LINE-1", quantity="3", uom="KG")
    later = movement("FAIL-2", "PLANT1", type="COMPLETION", material="RM-101", lot="LOT-EMPTY",
                     location="LINE-1", quantity="1", uom="KG")
    other = movement("OK-1", "PLANT1", type="COMPLETION", material="RM-102", lot="LOT-OTHER",
                     location="LINE-1", quantity="1", uom="KG")
    for m in (bad, later, other):
        assert producer.post(m).status == 202
    stack.wait_for(lambda: consumer.store_count("WHERE state = 'failed'") == 1, 60,
                   "the refused posting to fail")
    stack.wait_for(lambda: consumer.posted_count() == 1, 30, "the other lot to keep flowing")
    assert consumer.store_count("WHERE movement_id = 'FAIL-2' AND state = 'queued'") == 1, \
        "the later movement of the failed lot must wait"

    r = admin(consumer, "/admin/failed")
    assert r.status == 200, r
    failed = r.json()["failed"]
    assert len(failed) == 1 and "insufficient stock" in failed[0]["error"], failed
    assert failed[0]["movements"] == ["FAIL-1"]
    # The time in RFC 3339 beside the epoch milliseconds the status page uses.
    when = datetime.datetime.strptime(failed[0]["updated_time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert abs(when.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000
               - failed[0]["updated_at"]) < 1, failed[0]
    posting_id = failed[0]["posting_id"]
    cell = grid_cell(consumer, "PLANT1", [c for c in consumer.status()["grid"] if c["failed"]][0]["tier"])
    assert "insufficient stock" in (cell["last_error"] or "")

    # The stock is booked in the ERP; the operator retries.
    opening = stack.path("fix.json")
    with open(opening, "w") as f:
        json.dump([{"site": "PLANT1", "material": "RM-101", "lot": "LOT-EMPTY", "location": "LINE-1",
                    "stock_status": "UNRESTRICTED", "uom": "KG", "quantity": "3"}], f)
    stack.seed_erp(consumer, opening)
    r = admin(consumer, "/admin/failed/%s/retry" % posting_id, {"by": "carol", "reason": "stock booked"})
    assert r.status == 200, r
    stack.wait_for(lambda: consumer.posted_count() == 3, 30, "the retried posting and the held movement to post")
    assert admin(consumer, "/admin/failed/%s/retry" % posting_id, {"by": "carol", "reason": "again"}).status == 404
    rows = query(consumer.store, "SELECT actor, detail FROM audit WHERE action = 'retry'")
    assert len(rows) == 1 and rows[0][0] == "carol" and "stock booked" in rows[0][1]


def flush_periodic_and_wait(stack, consumer, n):
    """Wait for n movements in the store, flush PLANT1/periodic, wait for all n posted."""
    stack.wait_for(lambda: consumer.store_count() == n, 60, "the consumer to store %d movements" % n)
    r = admin(consumer, "/admin/flush", {"site": "PLANT1", "tier": "periodic", "by": "t", "reason": "test"})
    assert r.status == 200 and r.json()["movements"] == n, r
    stack.wait_for(lambda: (consumer.posted_count() or 0) == n, 30, "the flushed movements to post",
                   detail=lambda: query(consumer.store, "SELECT posting_id, state, last_error FROM postings"))


def test_flushed_window_nets_only_what_one_line_can_carry(stack):
    """A window of completions netted at flush: serial numbers keep their own
    lines (a line carries its first movement's serial), and quantities each
    within the 12-digit limit are not summed into a line beyond it (ten of
    them overflowed the sum: the posting failed and held the lot)."""
    stack.start_kafka()
    policy = {"policy": {"path": DEPLOY_POLICY}}  # periodic: every 30m, netted
    consumer = stack.start_consumer(overrides=dict(policy, consume={"mode": "assign", "discovery": "500ms"}))
    producer = stack.start_producer(overrides=policy)
    big = "999999999999.999999"
    batch = [movement("SER-%d" % i, "PLANT1", material="RM-101", lot="LOT-SER", location="WH-01",
                      quantity="1", uom="EA", serial="SN-%d" % (i % 2)) for i in range(4)]
    batch += [movement("BIG-%d" % i, "PLANT1", material="RM-101", lot="LOT-BIG", location="WH-01",
                       quantity=big, uom="KG") for i in range(5)]
    r = producer.post(batch)
    assert r.status == 202 and {i["tier"] for i in r.json()["items"]} == {"periodic"}, r
    flush_periodic_and_wait(stack, consumer, 9)
    lines = query(consumer.erp, "SELECT serial, quantity, movement_ids FROM doc_lines WHERE lot = 'LOT-SER'"
                                " ORDER BY serial")
    assert [(s, q, sorted(json.loads(ids))) for s, q, ids in lines] == [
        ("SN-0", "2", ["SER-0", "SER-2"]), ("SN-1", "2", ["SER-1", "SER-3"])], lines
    big_lines = query(consumer.erp, "SELECT quantity FROM doc_lines WHERE lot = 'LOT-BIG'")
    assert len(big_lines) > 1, big_lines
    assert all(len(q.split(".")[0]) <= 12 for (q,) in big_lines), big_lines
    units = sum(int(q.replace(".", "")) for (q,) in big_lines)  # all at 6 decimals
    assert units == 5 * 999999999999999999, big_lines
    assert scalar(consumer.store, "SELECT count(*) FROM postings WHERE state = 'failed'") == 0


def test_trace_names_each_chunk_document_of_a_posting_cut_by_max_lines(stack):
    """A posting cut by max_lines is one ERP document per chunk, and trace
    (HTTP and CLI, both directions) names the chunk's own document: five
    completions of one lot with different orders, max_lines 2, are three
    documents. Before, the store kept only "<first>+2": every movement traced
    to that, the second and third documents were not found (404), and the
    first listed all five movements."""
    stack.start_kafka()
    with open(DEPLOY_POLICY) as f:
        text = f.read()
    periodic = "  periodic:\n    cadence: every 30m\n    stale_after: 90m\n"
    assert periodic in text
    policy_path = stack.path("policy-chunked.yaml")
    with open(policy_path, "w") as f:
        f.write(text.replace(periodic, periodic + "    max_lines: 2\n"))
    os.symlink(os.path.join(REPO, "deploy", "materials.csv"), stack.path("materials.csv"))
    policy = {"policy": {"path": policy_path}}
    consumer = stack.start_consumer(overrides=dict(policy, consume={"mode": "assign", "discovery": "500ms"}))
    producer = stack.start_producer(overrides=policy)
    ids = ["CHUNK-%d" % i for i in range(1, 6)]
    r = producer.post([movement(mid, "PLANT1", material="RM-101", lot="LOT-CHUNK", location="WH-01",
                                quantity="1", uom="KG", order_id="ORD-%s" % mid) for mid in ids])
    assert r.status == 202 and {i["tier"] for i in r.json()["items"]} == {"periodic"}, r
    flush_periodic_and_wait(stack, consumer, 5)
    # What the ERP booked: three documents, each under its chunk reference.
    booked = query(consumer.erp, "SELECT dm.movement_id, d.doc_no, d.posting_id FROM doc_movements dm"
                                 " JOIN documents d USING (doc_no) ORDER BY d.doc_no, dm.movement_id")
    doc_of = {mid: doc for mid, doc, _ in booked}
    assert sorted(doc_of) == ids, booked
    docs = sorted(set(doc_of.values()))
    assert len(docs) == 3 and all(ref.rsplit("-", 1)[1] in "123" for _, _, ref in booked), booked
    held = {doc: sorted(m for m in ids if doc_of[m] == doc) for doc in docs}
    stored = scalar(consumer.store, "SELECT erp_doc FROM postings")
    assert stored == docs[0] + "+2", stored  # the posting's own document is unchanged

    for mid in ids:
        r = http("GET", consumer.base + "/v1/trace?movement_id=" + mid)
        assert r.status == 200, r
        assert r.json()[0]["document"] == doc_of[mid], (mid, r.json())
        t = json.loads(stack.consumer_cli(consumer, "trace", "--movement", mid).out)
        assert t[0]["document"] == doc_of[mid], (mid, t)
    for doc in docs:
        r = http("GET", consumer.base + "/v1/trace?document=" + doc)
        assert r.status == 200, (doc, r)
        rows = r.json()["postings"]
        assert len(rows) == 1 and sorted(rows[0]["movements"]) == held[doc], (doc, rows)
        t = json.loads(stack.consumer_cli(consumer, "trace", "--document", doc).out)
        assert [sorted(p["movements"]) for p in t["postings"]] == [held[doc]], (doc, t)
    # The posting as a whole, by the document it is recorded under.
    r = http("GET", consumer.base + "/v1/trace?document=" + stored.replace("+", "%2B"))
    assert r.status == 200 and sorted(r.json()["postings"][0]["movements"]) == ids, r
    # Unencoded, the query's '+' is a space: the 404 says how to write it.
    r = http("GET", consumer.base + "/v1/trace?document=" + stored)
    assert r.status == 404 and "write it %2B" in r.json()["error"], r


def test_policy_check_previews_a_change(stack):
    sample = stack.path("day.jsonl")
    stack.sim("gen", "--sites", "PLANT1,PLANT2", "--seed", 11, "--movements", 3000, "--out", sample)
    new = stack.path("new-policy.yaml")
    with open(DEPLOY_POLICY) as f:
        text = f.read()
    assert "type: [ADJUSTMENT]" in text
    with open(new, "w") as f:
        f.write(text.replace("type: [ADJUSTMENT]", "type: [ADJUSTMENT, SCRAP]"))
    # materials.csv is relative to the policy file
    os.symlink(os.path.join(REPO, "deploy", "materials.csv"), stack.path("materials.csv"))
    # Two lines that are not valid movements: named on stderr, counted, skipped.
    with open(sample) as f:
        n_lines = sum(1 for _ in f)
    with open(sample, "a") as f:
        f.write('{"movement_id":"X-1","source_system":"MES","site":"PLANT1","type":"SCRAP"}\n')
        f.write('{"movement_id":"X-2","source_system":"MES","site":"PLANT1","type":"BOGUS"}\n')
    r = stack.run([binary("erp-consumer"), "policy-check", "--policy", new, "--against", DEPLOY_POLICY,
                   "--sample", sample, "--json"])
    doc = json.loads(r.out)
    # The simulator resends ~10 %: each movement counts once, as in the producer.
    assert doc["valid"] is True and doc["sample"]["movements"] == 3000, doc["sample"]
    assert doc["sample"]["resends"] == n_lines - 3000 > 0, doc["sample"]
    assert doc["sample"]["invalid"] == 2, doc["sample"]
    assert "day.jsonl: line %d: not a valid movement, skipped: material: is required" % (n_lines + 1) \
        in r.err, r.err
    assert "line %d: not a valid movement, skipped: type" % (n_lines + 2) in r.err, r.err
    moves = {(m["from"], m["to"]): m["movements"] for m in doc["moves"]}
    assert list(moves) == [("periodic", "daily")] and moves[("periodic", "daily")] > 0, moves
    # A broken policy names the file, line and key.
    bad = stack.path("bad.yaml")
    with open(bad, "w") as f:
        f.write("tiers:\n  fast: {cadence: every 5q, stale_after: 1m}\ndefault_tier: fast\n")
    r = stack.run([binary("erp-consumer"), "policy-check", "--policy", bad], check=False)
    assert r.returncode == 2 and "bad.yaml:2" in r.err and "'5q'" in r.err, r.err


def test_posting_that_cannot_be_sent_is_dead_lettered_as_not_posted(stack):
    """A posting that fails before the ERP is asked (here: no unit
    conversion for its unit) is held and dead-lettered like a refusal, but
    the dead letter and the log say it was not posted, and carry no ERP
    answer: the ERP team is not sent looking for a refusal it never made."""
    from conftest import policy_prefix
    bootstrap = stack.start_kafka()
    table = stack.path("uom.csv")
    with open(table, "w") as f:
        f.write("mes_uom,erp_uom,factor\nG,KG,0.001\n")
    consumer = stack.start_consumer(overrides={"uom": {"conversions": table}})
    producer = stack.start_producer()
    r = producer.post(movement("NOUNIT-1", "PLANT1", uom="EA"))
    assert r.status == 202, r
    stack.wait_for(lambda: scalar(consumer.store, "SELECT count(*) FROM postings WHERE state = 'failed'") == 1,
                   60, "the posting to fail")
    dump = stack.run([binary("kafka-dump"), "--bootstrap", bootstrap, "dump", "--topic",
                      "%s.PLANT1.dlq" % policy_prefix(), "--timeout", "10s"])
    letters = [json.loads(l) for l in dump.out.splitlines() if l.strip()]
    assert len(letters) == 1, dump.out
    headers = letters[0]["headers"]
    assert headers["invsync-error"].startswith(
        "not posted: no unit conversion for material 'MAT-100' from MES unit 'EA'"), headers
    assert "invsync-erp-answer" not in headers, headers
    log = open(consumer.log).read()
    assert "posting cannot be sent to the ERP; lot held" in log
    assert "ERP refused posting" not in log


def test_consumer_ready_on_an_idle_cluster(stack):
    """An idle plant (no producer running, no message in Kafka): the
    consumer's /readyz turns 200 once it has joined its group, not at the
    first message; before that it says Kafka is what is not ready."""
    stack.start_kafka()
    consumer = stack.start_consumer()
    stack.wait_for(lambda: http("GET", consumer.base + "/readyz").status == 200, 60,
                   "the consumer to be ready without any message",
                   detail=lambda: http("GET", consumer.base + "/readyz").text)


def test_admin_commands_on_an_unknown_id_exit_1_naming_it(stack):
    """`failed retry|skip` of an id that is no failed posting exits 1 like
    `trace` of an unknown movement (not found), naming the id and where the
    failed postings are listed."""
    consumer = stack.start_consumer(config=stack.consumer_config(bootstrap="127.0.0.1:%d" % free_port()))
    for action in ("retry", "skip"):
        r = stack.consumer_cli(consumer, "failed", action, "0123abcd", "--by", "qa", "--reason", "test",
                               check=False)
        assert r.returncode == 1, (action, r.returncode, r.err)
        assert "no posting '0123abcd' in this consumer's store" in r.err, r.err
        assert "erp-consumer failed list" in r.err, r.err
        assert r.out == "", r.out
    r = stack.consumer_cli(consumer, "trace", "--movement", "NO-SUCH-MOVEMENT", check=False)
    assert r.returncode == 1 and "'NO-SUCH-MOVEMENT'" in r.err, (r.returncode, r.err)
    r = admin(consumer, "/admin/failed/0123abcd/retry", {"by": "qa", "reason": "test"})
    assert r.status == 404 and "no posting '0123abcd'" in r.json()["error"], r
    r = stack.run([binary("erp-consumer"), "--help"], check=False)
    assert "1 nothing to act on" in r.out, r.out


def test_control_characters_in_audited_text_are_refused(stack):
    """The audit hash joins its fields with 0x1f unescaped: --by, --reason and
    every other operator text that reaches the audit trail is refused with a
    control character in it (CLI exit 2, HTTP 400), naming the option, and
    nothing is audited."""
    consumer = stack.start_consumer(config=stack.consumer_config(bootstrap="127.0.0.1:%d" % free_port()))
    for args, option in [
            (["pause", "--site", "*", "--by", "al\x1fice", "--reason", "r"], "--by"),
            (["pause", "--site", "*", "--by", "alice", "--reason", "ERP\x1fupgrade"], "--reason"),
            (["resume", "--site", "*", "--tier", "x\x7f", "--by", "a", "--reason", "r"], "--tier"),
            (["failed", "skip", "p\x1f1", "--by", "a", "--reason", "r"], "POSTING_ID"),
            (["replay", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T01:00:00Z", "--apply",
              "--by", "qa", "--reason", "lost\nday"], "--reason")]:
        r = stack.consumer_cli(consumer, *args, check=False)
        assert r.returncode == 2, (args, r.returncode, r.err)
        assert "%s must not contain control characters" % option in r.err, (args, r.err)
    r = admin(consumer, "/admin/pause", {"site": "*", "tier": "*", "by": "a", "reason": "x\x1fy"})
    assert r.status == 400 and "'reason' must not contain control characters" in r.json()["error"], r
    assert scalar(consumer.store, "SELECT count(*) FROM audit") == 0
    assert scalar(consumer.store, "SELECT count(*) FROM pauses") == 0


def test_genealogy_follows_an_issue_whose_reversal_was_refused_and_skipped(stack):
    """A REVERSAL that does not match its original (sent before it, so the producer could
    not check it) fails at the consumer; skipped, it never reaches the ERP, which keeps the
    issue. Genealogy from the store subtracted it anyway: the issue looked reversed in full,
    was not followed, and the finished lot had no inputs (a recall of the issued lot
    missed it)."""
    stack.start_kafka()
    consumer = stack.start_consumer()
    producer = stack.start_producer()
    gi = dict(lot="LOT-RM", location="LINE-1", quantity="7", order_id="ORD-G")
    assert producer.post([movement("C0", "PLANT1", lot="LOT-RM", location="LINE-1", quantity="10",
                                   order_id="ORD-0")]).status == 202  # the stock to issue
    stack.wait_for(lambda: consumer.store_count("WHERE state = 'posted'") == 1, 30, "C0 to be posted")
    stack.consumer_cli(consumer, "pause", "--site", "PLANT1", "--tier", "periodic", "--by", "qa",
                       "--reason", "hold the window")
    assert producer.post([movement("RV-G1", "PLANT1", type="REVERSAL", reverses_movement_id="G1",
                                   reversed_type="GOODS_ISSUE", **dict(gi, location="LINE-2"))]).status == 202
    assert producer.post([movement("G1", "PLANT1", type="GOODS_ISSUE", **gi)]).status == 202
    assert producer.post([movement("C1", "PLANT1", lot="LOT-FG", quantity="7", order_id="ORD-G")]).status == 202
    stack.wait_for(lambda: consumer.store_count() == 4, 30, "the consumer to store the four movements")
    stack.consumer_cli(consumer, "resume", "--site", "PLANT1", "--tier", "periodic", "--by", "qa",
                       "--reason", "go")
    stack.wait_for(lambda: try_scalar(consumer.store, "SELECT state FROM movements WHERE movement_id = 'RV-G1'")
                   == "failed", 30, "the mismatched reversal to fail")
    pid = scalar(consumer.store, "SELECT posting_id FROM movements WHERE movement_id = 'RV-G1'")
    stack.consumer_cli(consumer, "failed", "skip", pid, "--by", "qa", "--reason", "MES bug")
    stack.wait_for(lambda: try_scalar(consumer.store, "SELECT state FROM movements WHERE movement_id = 'G1'")
                   == "posted", 30, "the issue to be posted")
    doc = json.loads(stack.consumer_cli(consumer, "genealogy", "--lot", "LOT-FG").out)
    assert [i["id"] for i in doc["inputs"]] == ["lot:PLANT1/MAT-100/LOT-RM"], doc
    edge = [e for e in doc["edges"] if e["to"] == "order:PLANT1/ORD-G" and e["kind"] == "consumed"]
    assert [(e["quantity"], e["movements"]) for e in edge] == [("7", ["G1"])], doc
    doc = json.loads(stack.consumer_cli(consumer, "genealogy", "--lot", "LOT-RM", "--direction",
                                        "forward").out)
    assert "lot:PLANT1/MAT-100/LOT-FG" in [o["id"] for o in doc["outputs"]], doc
