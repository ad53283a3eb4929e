"""Replay by time (`erp-consumer replay`, `genealogy --from/--to`) against
real Apache Kafka: the embedded mock cannot look offsets up by time
(DESIGN.md §8), which one test here proves gives a clear message.

The broker is started once per session with deploy/kafka/kafka.sh (the
first run fetches the jars with mvn, ~30 s; set INVSYNC_TEST_APACHE_KAFKA=
host:port to use a broker that is already running). Tests share it, so each
uses a site of its own (its own topics) and a consumer group of its own.

The lost interface day: the ERP loses the last third of the day's
documents; `replay --apply` over the day puts them back, nothing doubled,
on-hand equal to the simulator's. And the store that never received some
movements: `--apply` queues exactly those."""

import csv
import datetime
import json
import os
import subprocess

import pytest

from conftest import REPO, binary, load_json, movement, query, scalar, try_scalar

KAFKA_SH = os.path.join(REPO, "deploy", "kafka", "kafka.sh")
KAFKA_LIBS = os.path.join(os.environ.get("INVSYNC_KAFKA_CACHE") or os.path.join(REPO, "deploy", "kafka", "cache"),
                          "libs")
MOVEMENTS = 240
SEED = 31
MES_DOCS = "(SELECT doc_no FROM documents WHERE posting_id NOT LIKE 'seed-%')"


def utc(dt=None):
    dt = dt or datetime.datetime.now(datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


def utc_in(seconds):
    return utc(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds))


@pytest.fixture(scope="session")
def apache_kafka(tmp_path_factory):
    existing = os.environ.get("INVSYNC_TEST_APACHE_KAFKA")
    if existing:
        yield existing
        return
    d = str(tmp_path_factory.mktemp("apache-kafka"))
    try:
        r = subprocess.run(["bash", KAFKA_SH, "start", d], capture_output=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.fail("deploy/kafka/kafka.sh start did not finish within 15 minutes")
    if r.returncode != 0:
        pytest.fail("deploy/kafka/kafka.sh start failed (%d):\n%s" % (r.returncode, r.stderr.decode()[-3000:]))
    yield r.stdout.decode().strip().splitlines()[-1]
    subprocess.run(["bash", KAFKA_SH, "stop", d], capture_output=True, timeout=120)


# ------------------------------------------------------------------ helpers --

def start_site(stack, bootstrap, site, allow_negative=False):
    """A consumer owning only `site` (the broker is shared), its ERP seeded, a producer."""
    stack.bootstrap = bootstrap
    overrides = {"sites_regex": site, "kafka": {"group.id": "invsync-test-" + site}}
    if allow_negative:
        overrides["erp"] = {"sqlite": {"allow_negative": True}}
    consumer = stack.start_consumer(overrides=overrides)
    opening = stack.path("opening.json")
    stack.sim("opening", "--sites", site, "--seed", SEED, "--out", opening)
    stack.seed_erp(consumer, opening)
    producer = stack.start_producer(overrides={"auth": {"tokens": {site: "tok-" + site}}})
    return consumer, producer


def run_day(stack, consumer, producer, site, movements=MOVEMENTS):
    """Simulated traffic, all forwarded and posted. Returns (from, to, expected path, posted ids)."""
    start = utc_in(-1)
    expected, summary = stack.path("expected.json"), stack.path("summary.json")
    stack.sim("run", "--url", producer.url, "--sites", site, "--seed", SEED, "--movements", movements,
              "--rate", 0, "--batch", 40, "--resend", "0", "--token", "%s=tok-%s" % (site, site),
              "--expected", expected, "--summary", summary, timeout=240)
    accepted = load_json(summary)["accepted"]
    stack.wait_for(lambda: producer.outbox_count("WHERE sent_at IS NULL") == 0, 60,
                   "the producer to forward its outbox to Kafka")
    stack.wait_for(lambda: consumer.store_count("WHERE state NOT IN ('queued', 'posting', 'retry')") == accepted,
                   120, "the consumer to receive and post all %d movements" % accepted,
                   detail=lambda: str(query(consumer.store, "SELECT state, count(*) FROM movements GROUP BY state")))
    end = utc_in(1)
    return start, end, expected, accepted


def ledger_movements(consumer):
    return {mid for (mid,) in query(consumer.erp, "SELECT DISTINCT movement_id FROM doc_movements WHERE doc_no IN "
                                                  + MES_DOCS)}


def assert_nothing_doubled(consumer):
    doubled = query(consumer.erp, "SELECT movement_id, group_concat(DISTINCT doc_no) FROM doc_movements"
                                  " GROUP BY movement_id HAVING count(DISTINCT doc_no) > 1 LIMIT 10")
    assert not doubled, "movements in more than one ERP document: %r" % doubled
    dup_refs = query(consumer.erp, "SELECT posting_id FROM documents GROUP BY posting_id HAVING count(*) > 1")
    assert not dup_refs, "posting ids used by several documents: %r" % dup_refs


def delete_postings(path, posting_ids):
    """What erp_sqlite_delete_posting does, for a list: the documents vanish and their
    on-hand effects are reversed (even below zero) — a lost interface day."""
    import sqlite3
    conn = sqlite3.connect(path, timeout=30)
    try:
        with conn:
            for pid in posting_ids:
                (doc,) = conn.execute("SELECT doc_no FROM documents WHERE posting_id = ?", (pid,)).fetchone()
                for site, mat, lot, loc, st, uom, delta in conn.execute(
                        "SELECT site, material, lot, location, status, uom, delta_units FROM doc_effects"
                        " WHERE doc_no = ? ORDER BY seq DESC", (doc,)).fetchall():
                    conn.execute("INSERT INTO on_hand(site, material, lot, location, status, uom, qty_units)"
                                 " VALUES(?,?,?,?,?,?,?) ON CONFLICT DO UPDATE SET qty_units = qty_units + ?",
                                 (site, mat, lot, loc, st, uom, -delta, -delta))
                conn.execute("DELETE FROM on_hand WHERE qty_units = 0")
                for table in ("doc_movements", "doc_effects", "doc_lines", "documents"):
                    conn.execute("DELETE FROM %s WHERE doc_no = ?" % table, (doc,))
    finally:
        conn.close()


def replay(stack, consumer, *args, check_exit=0):
    r = stack.consumer_cli(consumer, "replay", *args, check=False, timeout=120)
    if check_exit is not None:
        assert r.returncode == check_exit, "replay %s exited %d, expected %d:\n%s\n%s" % (
            " ".join(args), r.returncode, check_exit, r.out[-2000:], r.err[-3000:])
    return r


def timeline(r):
    return [json.loads(line) for line in r.out.splitlines() if line.strip()]


def on_hand_matches(stack, consumer, expected, name):
    _, actual = stack.on_hand(consumer, out_name=name)
    return stack.compare(expected, actual)


# -------------------------------------------------------------------- tests --

@pytest.mark.reliability
def test_replay_timeline_and_genealogy_from_kafka(stack, apache_kafka):
    site = "RPLAY1"
    consumer, producer = start_site(stack, apache_kafka, site)
    t1, t2, _, accepted = run_day(stack, consumer, producer, site)
    summary_path = stack.path("replay-summary.json")

    r = replay(stack, consumer, "--from", t1, "--to", t2, "--site", site, "--summary", summary_path)
    rows = timeline(r)
    ids = [row["movement_id"] for row in rows]
    outbox = {mid for (mid,) in query(producer.outbox, "SELECT movement_id FROM outbox")}
    assert len(ids) == len(set(ids)) == accepted and set(ids) == outbox, (
        "the timeline must hold every accepted movement once: %d rows, %d accepted" % (len(ids), accepted))
    order = [(row["accepted_time"], int(row["sequence"])) for row in rows]
    assert order == sorted(order), "the timeline is in acceptance order"
    states = dict(query(consumer.store, "SELECT movement_id, state FROM movements"))
    docs = dict(query(consumer.erp, "SELECT movement_id, doc_no FROM doc_movements"))
    by_id = {row["movement_id"]: row for row in rows}
    for row in rows:
        assert row["topic"] == "invsync.%s.%s" % (site, row["tier"]), row
        assert isinstance(row["partition"], int) and isinstance(row["offset"], int), row
        assert len(row["policy_version"]) == 64, row
        assert t1 <= row["timestamp"] <= t2, row
        expect = {"posted": "posted", "cancelled": "cancelled"}[states[row["movement_id"]]]
        assert row["status"] == expect, row
        if expect == "posted":
            assert row["erp_document"] == docs[row["movement_id"]] and row["posting_id"], row
        else:
            assert "inside the window" in row["detail"], row
        # A REVERSAL names what it reverses (from the Kafka message); other types leave it empty.
        if row["type"] == "REVERSAL":
            original = by_id.get(row["reverses_movement_id"])
            assert original and row["reversed_type"] == original["type"], (row, original)
        else:
            assert row["reverses_movement_id"] == "" and row["reversed_type"] == "", row
    assert any(row["type"] == "REVERSAL" for row in rows), "the simulated day has reversals"
    summary = load_json(summary_path)
    assert summary["matched"] == accepted and summary["not_in_store"] == 0, summary
    assert summary["already_posted"] == sum(1 for s in states.values() if s == "posted"), summary
    assert summary["read"] == summary["movements"] + summary["heartbeats"], summary  # heartbeats are skipped
    assert "replay: read" in r.err and "matched the filters" in r.err, r.err

    # Filters: one lot's history, in order; one movement type; CSV.
    lot = max({row["lot"] for row in rows}, key=lambda l: sum(1 for x in rows if x["lot"] == l))
    r = replay(stack, consumer, "--from", t1, "--to", t2, "--lot", lot)
    lot_rows = timeline(r)
    assert lot_rows and all(x["lot"] == lot for x in lot_rows)
    assert len(lot_rows) == sum(1 for x in rows if x["lot"] == lot)
    seqs = [int(x["sequence"]) for x in lot_rows]
    assert seqs == sorted(seqs), "a lot's movements replay in acceptance order: %r" % seqs
    r = replay(stack, consumer, "--from", t1, "--to", t2, "--type", "completion", "--format", "csv")
    crows = list(csv.DictReader(r.out.splitlines()))
    assert crows and all(x["type"] == "COMPLETION" for x in crows)
    assert len(crows) == sum(1 for x in rows if x["type"] == "COMPLETION")
    assert {"topic", "partition", "offset", "status", "erp_document", "policy_version"} <= set(crows[0])
    header = r.out.splitlines()[0].split(",")
    assert header[-4:] == ["apply_action", "detail", "reverses_movement_id", "reversed_type"], header

    # A narrower time window holds a subset, never something outside it.
    mid = rows[len(rows) // 2]["timestamp"]
    part = timeline(replay(stack, consumer, "--from", t1, "--to", mid, "--site", site))
    assert 0 < len(part) < len(rows) and all(x["timestamp"] <= mid for x in part)

    # Genealogy of a finished lot: the same inputs from the store and from Kafka.
    fg = next(x for x in rows if x["type"] == "COMPLETION" and x["status"] == "posted")
    g_store = json.loads(stack.consumer_cli(consumer, "genealogy", "--lot", fg["lot"], "--material",
                                            fg["material"]).out)
    g_kafka = json.loads(stack.consumer_cli(consumer, "genealogy", "--lot", fg["lot"], "--material",
                                            fg["material"], "--from", t1, "--to", t2).out)
    assert g_store["roots"] == ["lot:%s/%s/%s" % (site, fg["material"], fg["lot"])]
    assert g_kafka["source"] == "kafka" and g_store["source"] == "store"
    assert sorted(i["id"] for i in g_store["inputs"]) == sorted(i["id"] for i in g_kafka["inputs"])
    orders = {x["order_id"] for x in rows if x["lot"] == fg["lot"] and x["type"] == "COMPLETION"}
    assert {n["order_id"] for n in g_store["nodes"] if n["kind"] == "order"} >= orders
    dot = stack.consumer_cli(consumer, "genealogy", "--lot", fg["lot"], "--format", "dot").out
    assert dot.startswith("digraph genealogy {") and fg["lot"] in dot


@pytest.mark.reliability
def test_replay_apply_restores_a_lost_interface_day(stack, apache_kafka):
    site = "RPLAY2"
    consumer, producer = start_site(stack, apache_kafka, site)
    t1, t2, expected, accepted = run_day(stack, consumer, producer, site)
    before = ledger_movements(consumer)
    assert on_hand_matches(stack, consumer, expected, "before.json").returncode == 0

    # The ERP is restored from a backup taken mid-day: the last third of the day's
    # documents are gone (later documents of a lot go with the earlier ones, as in a
    # real restore, so re-posting them in order is always feasible).
    postings = [pid for (pid,) in query(consumer.erp, "SELECT posting_id FROM documents WHERE doc_no IN "
                                                      + MES_DOCS + " ORDER BY doc_no")]
    lost = postings[-len(postings) // 3:]
    lost_movements = {mid for (mid,) in query(
        consumer.erp, "SELECT DISTINCT movement_id FROM doc_movements JOIN documents USING (doc_no)"
                      " WHERE posting_id IN (%s)" % ",".join("?" * len(lost)), lost)}
    delete_postings(consumer.erp, lost)
    assert ledger_movements(consumer) == before - lost_movements
    assert on_hand_matches(stack, consumer, expected, "lost.json").returncode == 1, "the loss must show"

    # A dry run names what is missing and changes nothing.
    states_before = query(consumer.store, "SELECT movement_id, state, posting_id FROM movements ORDER BY id")
    check = stack.path("check.json")
    r = replay(stack, consumer, "--from", t1, "--to", t2, "--site", site, "--check-erp", "--summary", check)
    missing_rows = {x["movement_id"] for x in timeline(r) if x["status"] == "posted-missing-in-erp"}
    assert missing_rows == lost_movements
    assert load_json(check)["postings_missing_in_erp"] == len(lost)
    assert query(consumer.store, "SELECT movement_id, state, posting_id FROM movements ORDER BY id") == states_before

    # --apply: the lost postings go back to the queue; the poster re-posts exactly them.
    applied = stack.path("apply.json")
    r = replay(stack, consumer, "--from", t1, "--to", t2, "--site", site, "--apply", "--by", "qa.lead",
               "--reason", "ERP restored from the 14:00 backup", "--summary", applied)
    s = load_json(applied)
    assert s["requeued"] == len(lost_movements) and s["newly_queued"] == 0, s
    assert s["already_known"] == accepted - len(lost_movements), s
    assert "re-queued" in r.err, r.err
    stack.wait_for(lambda: ledger_movements(consumer) == before, 120,
                   "the ERP to hold every posted movement again",
                   detail=lambda: "%d of %d" % (len(ledger_movements(consumer)), len(before)))
    stack.wait_for(lambda: consumer.store_count("WHERE state IN ('queued', 'posting', 'retry')") == 0, 30,
                   "the consumer's queue to drain")
    assert_nothing_doubled(consumer)
    r = on_hand_matches(stack, consumer, expected, "after.json")
    assert r.returncode == 0, "ERP on-hand after replay --apply differs:\n%s" % r.out[-3000:]
    assert consumer.store_count("WHERE state = 'failed'") == 0

    # The apply is in the audit trail, and the chain still verifies.
    audit = query(consumer.store, "SELECT actor, subject, detail FROM audit WHERE action = 'replay-apply'")
    assert len(audit) == 1 and audit[0][0] == "qa.lead" and audit[0][1] == "%s..%s" % (t1, t2), audit
    detail = json.loads(audit[0][2])
    assert detail["requeued_movements"] == len(lost_movements) and detail["reason"].startswith("ERP restored")
    assert detail["site"] == site and all(detail[k] is None for k in ("tier", "material", "lot", "order", "type")), \
        "the audit row names the whole selection: %r" % detail
    assert json.loads(stack.consumer_cli(consumer, "audit", "verify").out)["ok"] is True

    # Applying again finds nothing to do and posts nothing.
    docs = scalar(consumer.erp, "SELECT count(*) FROM documents")
    r = replay(stack, consumer, "--from", t1, "--to", t2, "--site", site, "--apply", "--by", "qa.lead",
               "--reason", "second pass", "--summary", applied)
    s = load_json(applied)
    assert s["requeued"] == 0 and s["newly_queued"] == 0 and s["already_known"] == accepted, s
    assert scalar(consumer.erp, "SELECT count(*) FROM documents") == docs

    # A narrower apply (--type): the audit row says so, not "everything of the site".
    replay(stack, consumer, "--from", t1, "--to", t2, "--site", site, "--type", "completion", "--apply",
           "--by", "qa.lead", "--reason", "completions only", "--summary", applied)
    s = load_json(applied)
    (detail,) = [json.loads(d) for (d,) in query(consumer.store, "SELECT detail FROM audit WHERE action ="
                                                                 " 'replay-apply' ORDER BY id DESC LIMIT 1")]
    assert detail["type"] == "COMPLETION" and detail["site"] == site, detail
    assert s["matched"] == s["already_known"] + s["newly_queued"] + s["not_valid"] + s["not_owned"], s


@pytest.mark.reliability
def test_replay_apply_queues_what_the_store_never_received(stack, apache_kafka):
    site = "RPLAY3"
    # Re-posting a few movements out of their lot's order may dip stock below zero
    # on the way; the end state is what this test is about.
    consumer, producer = start_site(stack, apache_kafka, site, allow_negative=True)
    t1, t2, expected, accepted = run_day(stack, consumer, producer, site)
    before = ledger_movements(consumer)

    # The consumer's store lost some movements (say, restored from an old copy while
    # its offsets say they were read) and the ERP never got them either.
    consumer.stop()
    gone = query(consumer.store, "SELECT m.movement_id, m.posting_id FROM movements m WHERE m.state = 'posted'"
                                 " AND (SELECT count(*) FROM movements x WHERE x.posting_id = m.posting_id) = 1"
                                 " ORDER BY m.id")[::7]
    assert len(gone) >= 5, gone
    delete_postings(consumer.erp, [pid for _, pid in gone])
    import sqlite3
    conn = sqlite3.connect(consumer.store, timeout=30)
    with conn:
        for mid, pid in gone:
            conn.execute("DELETE FROM movements WHERE movement_id = ?", (mid,))
            conn.execute("DELETE FROM postings WHERE posting_id = ?", (pid,))
    conn.close()
    consumer = stack.start_consumer(config=consumer.config)
    gone_ids = {mid for mid, _ in gone}
    assert ledger_movements(consumer) == before - gone_ids

    applied = stack.path("apply.json")
    r = replay(stack, consumer, "--from", t1, "--to", t2, "--site", site, "--apply", "--by", "ops",
               "--reason", "store restored from an old copy", "--summary", applied)
    s = load_json(applied)
    assert s["newly_queued"] == len(gone) and s["requeued"] == 0, s
    assert s["not_in_store"] == len(gone), s
    queued = {x["movement_id"] for x in timeline(r) if x["apply_action"] == "queued"}
    assert queued == gone_ids
    stack.wait_for(lambda: ledger_movements(consumer) == before, 120, "the ERP to receive the queued movements",
                   detail=lambda: "%d of %d" % (len(ledger_movements(consumer)), len(before)))
    assert_nothing_doubled(consumer)
    r = on_hand_matches(stack, consumer, expected, "after.json")
    assert r.returncode == 0, "ERP on-hand after replay --apply differs:\n%s" % r.out[-3000:]


@pytest.mark.reliability
def test_replay_finds_a_republished_movement_in_its_time_slot(stack, apache_kafka):
    """`mes-producer republish` publishes a movement again with its accepted
    time as the Kafka timestamp, so it lands at the end of the log, after
    later movements. A replay of its original time range must still list
    it (the reader used to stop at the first message after --to)."""
    site = "RPLAY5"
    consumer, producer = start_site(stack, apache_kafka, site)
    t1 = utc_in(-1)
    # One type and one lot: one topic and one partition for all of them.
    early = [movement("EARLY-%d" % i, site, lot="LOT-RP") for i in range(1, 4)]
    late = [movement("LATE-%d" % i, site, lot="LOT-RP") for i in range(1, 4)]
    assert producer.post(early).status == 202
    stack.wait_for(lambda: producer.outbox_count("WHERE sent_at IS NULL") == 0, 60,
                   "the producer to forward the early movements")
    t_mid = utc()
    stack.wait_for(lambda: utc() > t_mid, 5, "the clock to pass the end of the early range")
    assert producer.post(late).status == 202
    stack.wait_for(lambda: producer.outbox_count("WHERE sent_at IS NULL") == 0, 60,
                   "the producer to forward the late movements")
    seqs = [s for (s,) in query(producer.outbox, "SELECT site_seq FROM outbox WHERE movement_id LIKE"
                                                      " 'EARLY-%' ORDER BY site_seq")]
    assert len(seqs) == 3, seqs
    stack.run([binary("mes-producer"), "republish", "--config", producer.config_path, "--site", site,
               "--from", str(seqs[0]), "--to", str(seqs[-1]), "--by", "qa", "--reason", "test"])
    stack.wait_for(lambda: producer.outbox_count("WHERE sent_at IS NULL") == 0, 60,
                   "the producer to publish the early movements again")

    summary_path = stack.path("republished-summary.json")
    rows = timeline(replay(stack, consumer, "--from", t1, "--to", t_mid, "--site", site,
                           "--summary", summary_path))
    ids = sorted(row["movement_id"] for row in rows)
    assert ids == sorted(["EARLY-1", "EARLY-2", "EARLY-3"] * 2), (
        "each early movement twice (the first copy and the republished one), no late one: %r" % ids)
    offsets = {(row["partition"], row["offset"]) for row in rows}
    assert len(offsets) == 6, rows
    assert all(t1 <= row["timestamp"] <= t_mid for row in rows), rows
    assert load_json(summary_path)["outside_range"] >= 3


@pytest.mark.reliability
def test_genealogy_from_kafka_ignores_a_reversal_that_does_not_match_its_original(stack, apache_kafka):
    """Kafka holds no posting state: a REVERSAL sent before its original and naming another
    location (the consumer fails it as invalid; the ERP keeps the issue) is on the topic like
    any other. Genealogy --from/--to let it cancel the issue's edge: the finished lot had no
    inputs and a recall of the issued lot missed it. It undoes nothing now and is reported."""
    site = "RPLAY6"
    consumer, producer = start_site(stack, apache_kafka, site)
    t1 = utc_in(-1)
    gi = dict(lot="LOT-RG", location="LINE-1", quantity="7", order_id="ORD-G")
    assert producer.post([movement("RV-G1", site, type="REVERSAL", reverses_movement_id="G1",
                                   reversed_type="GOODS_ISSUE", **dict(gi, location="LINE-2"))]).status == 202
    assert producer.post([movement("G1", site, type="GOODS_ISSUE", **gi)]).status == 202
    assert producer.post([movement("C1", site, lot="LOT-FG", quantity="7", order_id="ORD-G")]).status == 202
    stack.wait_for(lambda: producer.outbox_count("WHERE sent_at IS NULL") == 0, 60,
                   "the producer to forward the three movements")
    t2 = utc_in(1)
    stack.wait_for(lambda: utc() > t2, 5, "the clock to pass the end of the range")
    r = stack.consumer_cli(consumer, "genealogy", "--lot", "LOT-FG", "--site", site, "--from", t1, "--to", t2)
    doc = json.loads(r.out)
    assert doc["source"] == "kafka" and doc["genealogy_movements"] == 3, doc
    assert [i["id"] for i in doc["inputs"]] == ["lot:%s/MAT-100/LOT-RG" % site], doc
    edge = [e for e in doc["edges"] if e["to"] == "order:%s/ORD-G" % site and e["kind"] == "consumed"]
    assert [(e["quantity"], e["movements"]) for e in edge] == [("7", ["G1"])], doc
    assert [(x["movement_id"], x["reverses"]) for x in doc["ignored_reversals"]] == [("RV-G1", "G1")], doc
    assert "location is LINE-2, the original's is LINE-1" in doc["ignored_reversals"][0]["reason"], doc
    assert "RV-G1 undoes nothing here" in r.err, r.err
    doc = json.loads(stack.consumer_cli(consumer, "genealogy", "--lot", "LOT-RG", "--site", site,
                                        "--direction", "forward", "--from", t1, "--to", t2).out)
    assert "lot:%s/MAT-100/LOT-FG" % site in [o["id"] for o in doc["outputs"]], doc


@pytest.mark.reliability
def test_replay_edge_cases_have_clear_messages(stack, apache_kafka):
    site = "RPLAY4"
    consumer, producer = start_site(stack, apache_kafka, site)

    r = replay(stack, consumer, "--from", "2026-01-02T00:00:00Z", "--to", "2026-01-01T00:00:00Z", check_exit=2)
    assert "end of the range (2026-01-01T00:00:00.000Z) is before its start" in r.err, r.err
    r = replay(stack, consumer, "--from", utc_in(3600), "--to", utc_in(7200), check_exit=2)
    assert "entirely in the future" in r.err, r.err
    r = replay(stack, consumer, "--from", "2026-01-01T00:00:00+01:00", "--to", utc(), "--site", "NOSUCHSITE",
               check_exit=2)
    assert "no topics for site 'NOSUCHSITE'" in r.err, r.err
    r = replay(stack, consumer, "--from", "last tuesday", "--to", utc(), check_exit=2)
    assert "is not an RFC 3339 time" in r.err, r.err
    r = replay(stack, consumer, "--from", "2026-01-01T00:00:00Z", "--to", utc(), "--apply", check_exit=2)
    assert "--apply needs --by WHO and --reason WHY" in r.err, r.err

    # Retention: the oldest half of each partition is deleted (DeleteRecords moves the
    # log start offset at once, as retention would after a week).
    t1, t2, _, accepted = run_day(stack, consumer, producer, site, movements=60)
    # An empty result says why on stderr, and is still a success (exit 0).
    r = replay(stack, consumer, "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T01:00:00Z",
               "--site", site)
    assert timeline(r) == [], r.out
    assert "no movements between 2026-01-01T00:00:00.000Z and 2026-01-01T01:00:00.000Z in " in r.err, r.err
    assert "topic(s) invsync.%s.<tier>; the first message after 2026-01-01T00:00:00.000Z is at 20" % site \
        in r.err, r.err
    r = replay(stack, consumer, "--from", t1, "--to", t2, "--site", site, "--lot", "NO-SUCH-LOT")
    assert timeline(r) == [] and "none matches the filters" in r.err, r.err
    # Half of this run's messages per partition (the topics may hold older runs' data too).
    cut = {(t, p): (lo + hi + 1) // 2 for t, p, lo, hi in query(
        consumer.store, "SELECT topic, part, min(off), max(off) FROM movements GROUP BY topic, part") if hi > lo}
    assert cut, "no partition with two messages or more"
    spec = stack.path("delete-records.json")
    with open(spec, "w") as f:
        json.dump({"version": 1, "partitions": [{"topic": t, "partition": p, "offset": o}
                                                for (t, p), o in cut.items()]}, f)
    d = subprocess.run(["java", "-cp", os.path.join(KAFKA_LIBS, "*"), "org.apache.kafka.tools.DeleteRecordsCommand",
                        "--bootstrap-server", apache_kafka, "--offset-json-file", spec],
                       capture_output=True, timeout=120)
    assert d.returncode == 0, d.stderr.decode()[-2000:]
    r = replay(stack, consumer, "--from", t1, "--to", t2, "--site", site, check_exit=3)
    assert "is no longer in Kafka (retention)" in r.err and "data before 20" in r.err, r.err
    rows = timeline(r)
    assert rows, "what Kafka still holds is replayed"
    for row in rows:
        assert row["offset"] >= cut.get((row["topic"], row["partition"]), 0), row
    # A range that starts after the deleted data is complete again.
    late = utc_in(-0.5)
    replay(stack, consumer, "--from", late, "--to", utc(), "--site", site, check_exit=0)


def test_replay_without_config_names_the_option(stack):
    """No --config: name the option, not a configuration key the user never set."""
    r = stack.run([binary("erp-consumer"), "replay", "--from", "2026-01-01T00:00:00Z",
                   "--to", "2026-01-02T00:00:00Z"], check=False)
    assert r.returncode == 2, r.err
    assert "--config FILE is required" in r.err and "policy.path" not in r.err, r.err


def test_replay_on_the_embedded_mock_says_it_cannot(stack):
    """No time lookup in librdkafka's mock cluster: say so instead of replaying nothing."""
    stack.start_kafka(partitions=1)
    consumer = stack.start_consumer()
    producer = stack.start_producer()
    assert producer.post([movement("MOCK-1", "PLANT1")]).status == 202
    stack.wait_for(lambda: try_scalar(consumer.store, "SELECT count(*) FROM movements") == 1, 30,
                   "the consumer to receive MOCK-1")
    r = replay(stack, consumer, "--from", utc_in(-3600), "--to", utc(), check_exit=1)
    assert "cannot look up offsets by time" in r.err and "Apache Kafka" in r.err, r.err


def test_replay_of_an_unknown_tier_names_the_tiers_with_topics(stack):
    """A mistyped --tier names the tiers that have topics, as a mistyped --site names the
    sites (the topics are chosen before any time lookup, so the embedded mock answers)."""
    stack.start_kafka(partitions=1)
    consumer = stack.start_consumer()
    producer = stack.start_producer()
    assert producer.post([movement("TIER-1", "PLANT1")]).status == 202
    stack.wait_for(lambda: try_scalar(consumer.store, "SELECT count(*) FROM movements") == 1, 30,
                   "the consumer to receive TIER-1")
    tier = scalar(consumer.store, "SELECT tier FROM movements WHERE movement_id = 'TIER-1'")
    r = replay(stack, consumer, "--from", utc_in(-3600), "--to", utc(), "--tier", "perodic",
               check_exit=2)
    assert "no topics invsync.<site>.perodic in Kafka; tiers with topics: " in r.err, r.err
    assert tier in r.err.split("tiers with topics: ")[1], r.err
    r = replay(stack, consumer, "--from", utc_in(-3600), "--to", utc(), "--site", "PLANT1",
               "--tier", "perodic", check_exit=2)
    assert "site 'PLANT1' has no topic invsync.PLANT1.perodic; its tiers with topics: " in r.err, r.err
    assert tier in r.err.split("its tiers with topics: ")[1], r.err
