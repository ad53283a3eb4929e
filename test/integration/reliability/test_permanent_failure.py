"""Scenario 6: the ERP refuses a posting for good (insufficient stock in the
embedded ledger). The posting is marked failed, its movement goes to the
site's dead-letter topic with headers naming the error, the ERP's answer and
the source topic/partition/offset; later movements of that lot wait while
other lots keep flowing. An operator lists the failed postings, retries one
after correcting the stock (CLI) and skips another (token-protected HTTP);
both actions are in the hash-chained audit trail with who and why."""

import json
from decimal import Decimal

import pytest

from conftest import ADMIN_TOKEN, binary, http, movement, query, scalar

from .helpers import TOKEN

pytestmark = pytest.mark.reliability

SITE = "PLANT1"
MAT = "RM-101"


def mv(mid, lot, type, qty, **kw):
    return movement(mid, SITE, type=type, material=MAT, lot=lot, location="STOR-1",
                    quantity=str(qty), **kw)


def states(consumer, ids):
    rows = dict(query(consumer.store, "SELECT movement_id, state FROM movements WHERE movement_id IN (%s)"
                      % ",".join("?" * len(ids)), ids))
    return [rows.get(i) for i in ids]


def on_hand(stack, consumer, lot):
    rows, _ = stack.on_hand(consumer, site=SITE, out_name="on-hand-%s.json" % lot)
    return sum(Decimal(r["quantity"]) for r in rows
               if r.get("material") == MAT and r.get("lot") == lot and r.get("location") == "STOR-1"
               and r.get("stock_status", "UNRESTRICTED") == "UNRESTRICTED")


def test_refused_posting_dead_lettered_lot_held_then_retried_and_skipped(rel):
    stack = rel.stack
    consumer = rel.start_consumer()
    producer = rel.start_producer()

    first = [mv("PF-A1", "LOT-A", "COMPLETION", 10), mv("PF-A2", "LOT-A", "GOODS_ISSUE", 25),
             mv("PF-A3", "LOT-A", "COMPLETION", 5), mv("PF-A4", "LOT-A", "GOODS_ISSUE", 3),
             mv("PF-C1", "LOT-C", "COMPLETION", 4), mv("PF-C2", "LOT-C", "SCRAP", 9),
             mv("PF-C3", "LOT-C", "COMPLETION", 1)]
    r = producer.post(first, token=TOKEN)
    assert r.status == 202 and r.json()["accepted"] == len(first), r

    def failed_postings():
        return query(consumer.store, "SELECT posting_id, lot_key, last_error FROM postings "
                                     "WHERE state = 'failed' ORDER BY lot_key")
    stack.wait_for(lambda: len(failed_postings()) == 2 and
                   states(consumer, ["PF-A1", "PF-C1"]) == ["posted", "posted"], 60,
                   "the ERP to refuse PF-A2 and PF-C2 (insufficient stock) and post PF-A1, PF-C1",
                   detail=lambda: "failed %r; states %r" % (failed_postings(), states(
                       consumer, [m["movement_id"] for m in first])))
    (a_pid, a_lot, a_err), (c_pid, c_lot, c_err) = failed_postings()
    assert a_lot.endswith("/LOT-A") and c_lot.endswith("/LOT-C"), failed_postings()
    assert "insufficient stock" in a_err, a_err

    # Another lot keeps flowing while LOT-A and LOT-C are held.
    second = [mv("PF-B1", "LOT-B", "COMPLETION", 7), mv("PF-B2", "LOT-B", "GOODS_ISSUE", 2)]
    r = producer.post(second, token=TOKEN)
    assert r.status == 202, r
    stack.wait_for(lambda: states(consumer, ["PF-B1", "PF-B2"]) == ["posted", "posted"], 60,
                   "another lot (LOT-B) to be posted while LOT-A and LOT-C are held",
                   detail=lambda: "states %r" % states(consumer, ["PF-B1", "PF-B2"]))
    assert states(consumer, ["PF-A2", "PF-A3", "PF-A4", "PF-C2", "PF-C3"]) == [
        "failed", "queued", "queued", "failed", "queued"], (
        "later movements of the held lots must wait: %r" % states(
            consumer, ["PF-A2", "PF-A3", "PF-A4", "PF-C2", "PF-C3"]))

    # The dead-letter topic: the refused movements with the evidence headers.
    src = {mid: (t, p, o) for mid, t, p, o in query(
        consumer.store, "SELECT movement_id, topic, part, off FROM movements "
                        "WHERE movement_id IN ('PF-A2', 'PF-C2')")}
    dlq_topic = rel.topic(SITE, "dlq")
    letters = stack.wait_for(lambda: (lambda d: d if len(d) >= 2 else None)(rel.dump("--topic", dlq_topic)),
                             60, "two dead letters on %s" % dlq_topic)
    assert len(letters) == 2, "dead letters: %r" % letters
    by_id = {}
    for l in letters:
        h = l["headers"]
        mid = h.get("movement-id") or (l.get("movement") or {}).get("movement_id")
        by_id[mid] = l
        for name in ("invsync-error", "invsync-erp-answer", "invsync-source-topic",
                     "invsync-source-partition", "invsync-source-offset"):
            assert h.get(name), "dead letter of %s lacks header %s: %r" % (mid, name, h)
        assert "insufficient stock" in h["invsync-erp-answer"], h
        assert (l.get("movement") or {}).get("movement_id") == mid, (
            "the dead letter's value is not the refused Movement: %r" % l)
    assert set(by_id) == {"PF-A2", "PF-C2"}, sorted(by_id)
    for mid, (t, p, o) in src.items():
        h = by_id[mid]["headers"]
        assert (h["invsync-source-topic"], int(h["invsync-source-partition"]),
                int(h["invsync-source-offset"])) == (t, p, o), (
            "dead letter of %s names source %r, the consumer read it at %r" % (
                mid, (h["invsync-source-topic"], h["invsync-source-partition"],
                      h["invsync-source-offset"]), (t, p, o)))
    for mid, pid in (("PF-A2", a_pid), ("PF-C2", c_pid)):
        assert pid in by_id[mid]["headers"]["invsync-error"], (
            "the dead letter of %s does not name its posting %s: %r" % (mid, pid, by_id[mid]["headers"]))

    # The operator's view: CLI and HTTP list both failed postings.
    listed = stack.consumer_cli(consumer, "failed", "list").out
    assert a_pid in listed and c_pid in listed, "failed list:\n%s" % listed
    r = http("GET", consumer.base + "/admin/failed", headers={"Authorization": "Bearer " + ADMIN_TOKEN})
    assert r.status == 200 and a_pid in r.text and c_pid in r.text, r
    r = http("POST", consumer.base + "/admin/failed/%s/skip" % c_pid,
             json.dumps({"by": "mallory", "reason": "no token"}), {"Content-Type": "application/json"})
    assert r.status == 401, "admin skip without a token: %r" % r

    # Retry after correcting the stock (CLI): LOT-A flows again, in order.
    extra = stack.path("stock-correction.json")
    with open(extra, "w") as f:
        json.dump([{"site": SITE, "material": MAT, "lot": "LOT-A", "location": "STOR-1",
                    "stock_status": "UNRESTRICTED", "uom": "EA", "quantity": "20"}], f)
    stack.seed_erp(consumer, extra)
    stack.run([binary("erp-consumer"), "failed", "retry", a_pid, "--config", consumer.config_path,
               "--by", "carol", "--reason", "stock corrected"])
    stack.wait_for(lambda: states(consumer, ["PF-A2", "PF-A3", "PF-A4"]) == ["posted"] * 3, 60,
                   "LOT-A to be posted after the retry",
                   detail=lambda: "states %r" % states(consumer, ["PF-A2", "PF-A3", "PF-A4"]))

    # Skip (HTTP, with the admin token): LOT-C's later movement goes on.
    r = http("POST", consumer.base + "/admin/failed/%s/skip" % c_pid,
             json.dumps({"by": "dave", "reason": "posted by hand"}),
             {"Content-Type": "application/json", "Authorization": "Bearer " + ADMIN_TOKEN})
    assert r.status == 200, "admin skip: %r" % r
    stack.wait_for(lambda: states(consumer, ["PF-C2", "PF-C3"]) == ["skipped", "posted"], 60,
                   "LOT-C's later movement to be posted after the skip",
                   detail=lambda: "states %r" % states(consumer, ["PF-C2", "PF-C3"]))

    # The audit trail: who, what, why; the chain verifies.
    audit = query(consumer.store, "SELECT actor, action, subject, detail FROM audit "
                                  "WHERE action IN ('retry', 'skip') ORDER BY id")
    assert [(a, b, c) for a, b, c, _ in audit] == [("carol", "retry", a_pid), ("dave", "skip", c_pid)], audit
    assert "stock corrected" in audit[0][3] and "posted by hand" in audit[1][3], audit
    assert not query(consumer.store, "SELECT id FROM audit WHERE actor = 'mallory'")
    stack.consumer_cli(consumer, "audit", "verify")

    # The ERP: LOT-A 20 + 10 - 25 + 5 - 3, LOT-B 7 - 2, LOT-C 4 + 1 (the scrap skipped).
    assert (on_hand(stack, consumer, "LOT-A"), on_hand(stack, consumer, "LOT-B"),
            on_hand(stack, consumer, "LOT-C")) == (Decimal(7), Decimal(5), Decimal(5))
    doubled = query(consumer.erp, "SELECT movement_id FROM doc_movements GROUP BY movement_id "
                                  "HAVING count(*) > 1")
    assert not doubled, doubled
    st = consumer.status()["movements"]
    assert st["failed"] == 0 and st["skipped"] == 1 and st["posted"] == 8, st
    rel.record(movements=9, refused=2, dead_letters=len(letters), retried_by_cli=1,
               skipped_by_http=1, unauthorized_refused=1,
               audit_rows=scalar(consumer.store, "SELECT count(*) FROM audit"))

