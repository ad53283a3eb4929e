"""Movements Kafka lost before the consumer read them (retention, an offset
reset, a deleted topic) are given up by the consumer after
consume.gap_timeout — counted in invsync_sequences_skipped_total, named in
its audit trail — and recovered with `mes-producer republish`, which
publishes them again, unchanged, from the producer's outbox while it runs.

The loss is made real: the consumer starts after the first movements were
delivered and reads from the end of the topics (auto.offset.reset=latest),
so it never sees them, exactly as after retention deleted them."""

import json
import re

from conftest import binary, http, query, wait_all_posted

LOST, KEPT = 5, 5


def skipped_total(consumer):
    body = http("GET", consumer.base + "/metrics").text
    m = re.search(r"^invsync_sequences_skipped_total (\d+)$", body, re.M)
    assert m, "no invsync_sequences_skipped_total in /metrics"
    return int(m.group(1))


def batch(prefix, n, first=1):
    return [{
        "movement_id": "%s-%d" % (prefix, i), "source_system": "MES-TEST", "site": "PLANT1",
        "type": "COMPLETION", "material": "MAT-100", "lot": "LOT-R", "location": "STOR-1",
        "quantity": "5", "uom": "EA", "order_id": "ORD-1",
    } for i in range(first, first + n)]


def test_lost_movements_are_counted_and_republished(stack):
    stack.start_kafka()
    producer = stack.start_producer()
    r = producer.post(batch("LOST", LOST))
    assert r.status == 202, r
    stack.wait_for(lambda: producer.outbox_count("WHERE sent_at IS NULL") == 0, 30,
                   "the producer to deliver the first movements to Kafka")

    consumer = stack.start_consumer(overrides={
        "consume": {"gap_timeout": "2s"},
        "kafka": {"auto.offset.reset": "latest"}})
    # A heartbeat read means the consumer is assigned and reading (from the end).
    stack.wait_for(lambda: any(s.get("last_heartbeat_at") for s in consumer.status().get("sites", [])),
                   60, "a heartbeat of PLANT1 at the consumer")
    r = producer.post(batch("KEPT", KEPT))
    assert r.status == 202, r
    wait_all_posted(stack, consumer, KEPT, what="the consumer to post the movements after the loss")
    stack.wait_for(lambda: skipped_total(consumer) == LOST, 60,
                   "the consumer to give up on the %d lost movements" % LOST,
                   detail=lambda: "invsync_sequences_skipped_total %d" % skipped_total(consumer))
    (detail,) = query(consumer.store, "SELECT detail FROM audit WHERE action = 'sequence-gap-skipped'")[0]
    d = json.loads(detail)
    assert (d["site"], d["missing_from"], d["missing_to"]) == ("PLANT1", 1, LOST), d

    argv = [binary("mes-producer"), "republish", "--config", producer.config_path, "--site", "PLANT1"]
    who = ["--by", "qa", "--reason", "lost in Kafka"]
    # A range beyond what the site accepted, or a site it never had, changes nothing.
    bad = stack.run(argv + ["--from", "1", "--to", "99"] + who, check=False)
    assert bad.returncode == 2 and "beyond site PLANT1's last sequence %d" % (LOST + KEPT) in bad.err, bad.err
    bad = stack.run(argv[:-1] + ["NOSUCH", "--from", "1", "--to", "2"] + who, check=False)
    assert bad.returncode == 2 and "site 'NOSUCH' has accepted no movement" in bad.err, bad.err
    bad = stack.run(argv + ["--from", "3", "--to", "2"] + who, check=False)
    assert bad.returncode == 2 and "--from 3 is after --to 2" in bad.err, bad.err
    bad = stack.run(argv + ["--from", "1", "--to", "2"], check=False)
    assert bad.returncode == 2 and "--by and --reason are required" in bad.err, bad.err
    assert producer.outbox_count("WHERE sent_at IS NULL") == 0

    ok = stack.run(argv + ["--from", "1", "--to", str(LOST)] + who)
    assert "%d movement(s) will be published again" % LOST in ok.out, ok.out
    # The running producer publishes them again; the consumer posts them.
    wait_all_posted(stack, consumer, LOST + KEPT,
                    what="the republished movements to reach the ERP")
    assert query(consumer.erp, "SELECT qty_units FROM on_hand WHERE lot = 'LOT-R'") == [
        ((LOST + KEPT) * 5 * 1000000,)]
    # Publishing the same range again books nothing twice.
    stack.run(argv + ["--from", "1", "--to", str(LOST + KEPT)] + who)
    stack.wait_for(lambda: producer.outbox_count("WHERE sent_at IS NULL") == 0, 30,
                   "the producer to publish the range again")
    stack.wait_for(lambda: consumer.status()["counters"]["duplicates"] >= LOST + KEPT, 30,
                   "the consumer to absorb the second copies",
                   detail=lambda: "counters %r" % consumer.status()["counters"])
    assert query(consumer.erp, "SELECT count(*) FROM doc_movements") == [(LOST + KEPT,)]
    assert skipped_total(consumer) == LOST


def test_outbox_retention_deletes_delivered_movements(stack):
    """outbox.retention: at start (and every minute) the producer deletes
    movements delivered to Kafka and accepted longer ago than the retention,
    counts them in invsync_outbox_pruned_total, and keeps the rest; the
    site's sequences go on."""
    import sqlite3
    stack.start_kafka()
    producer = stack.start_producer()
    assert producer.post(batch("OLD", 4)).status == 202
    assert producer.post(batch("NEW", 2, first=5)).status == 202
    stack.wait_for(lambda: producer.outbox_count("WHERE sent_at IS NULL") == 0, 30,
                   "the producer to deliver the movements to Kafka")
    producer.stop()
    # As if OLD-* had been accepted two hours ago.
    db = sqlite3.connect(producer.outbox)
    with db:
        db.execute("UPDATE outbox SET accepted_at = accepted_at - 7200000"
                   " WHERE movement_id LIKE 'OLD-%'")
    db.close()
    cfg = dict(producer.config, outbox=dict(producer.config["outbox"], retention="1h"))
    restarted = stack.start_producer(config=cfg, name="producer-retention")

    def pruned():
        m = re.search(r"^invsync_outbox_pruned_total (\d+)$",
                      http("GET", restarted.base + "/metrics").text, re.M)
        return int(m.group(1)) if m else -1
    stack.wait_for(lambda: pruned() == 4, 30, "the four old movements to be deleted",
                   detail=lambda: "pruned %d" % pruned())
    assert sorted(m for (m,) in query(producer.outbox, "SELECT movement_id FROM outbox")) == [
        "NEW-5", "NEW-6"]
    r = restarted.post(batch("LATER", 1, first=7))
    assert r.status == 202 and r.json()["items"][0]["sequence"] == 7, r.json()
    # The deleted ones cannot be republished: said, and exit 1.
    rp = stack.run([binary("mes-producer"), "republish", "--config", restarted.config_path,
                    "--site", "PLANT1", "--from", "3", "--to", "6", "--by", "qa", "--reason", "t"],
                   check=False)
    assert rp.returncode == 1, (rp.returncode, rp.err)
    assert "2 movement(s) will be published again" in rp.out, rp.out
    assert "2 movement(s) of the range are no longer in the outbox" in rp.err, rp.err


def test_republish_refuses_an_outbox_that_does_not_exist(stack):
    """A mistyped outbox.path (or the wrong configuration) is said, exit 1, and no empty
    outbox is created: before, republish made one (pinned to the config's producer_id)
    and answered that the site had accepted no movement."""
    import os
    cfg = stack.producer_config(bootstrap="127.0.0.1:1")
    missing = stack.path("no-such-outbox.db")
    cfg["outbox"]["path"] = missing
    path = stack.write_config("producer-missing-outbox", cfg)
    rp = stack.run([binary("mes-producer"), "republish", "--config", path, "--site", "PLANT1",
                    "--from", "1", "--to", "2", "--by", "qa", "--reason", "t"], check=False)
    assert rp.returncode == 1, (rp.returncode, rp.err)
    assert "outbox '%s' does not exist (key 'outbox.path')" % missing in rp.err, rp.err
    assert not os.path.exists(missing), "republish created an outbox"


def metric(consumer, pattern):
    m = re.search(pattern, http("GET", consumer.base + "/metrics").text, re.M)
    return int(float(m.group(1))) if m else -1


def test_store_retention_prunes_and_parks_redelivered_movements(stack):
    """store.retention: the consumer deletes finished movements accepted longer
    ago than the retention (invsync_store_pruned_total) and records the pruned
    horizon. The same movements published again (mes-producer republish, as
    a Kafka replay would) are then unknown to the store but accepted before
    the horizon: parked (dead row, dead letter, audit), never posted twice.
    A new movement still posts."""
    stack.start_kafka()
    producer = stack.start_producer()
    consumer = stack.start_consumer(overrides={
        "store": {"retention": "2s", "prune_interval": "200ms"}})
    assert producer.post(batch("OLD", 3)).status == 202

    def erp_movements():
        return query(consumer.erp, "SELECT count(*) FROM doc_movements")[0][0]
    stack.wait_for(lambda: erp_movements() == 3, 60, "the three movements to reach the ERP")
    stack.wait_for(lambda: metric(consumer, r"^invsync_store_pruned_total (\d+)$") == 3, 30,
                   "the consumer to prune the three posted movements",
                   detail=lambda: "pruned %d" % metric(consumer, r"^invsync_store_pruned_total (\d+)$"))
    assert query(consumer.store, "SELECT count(*) FROM movements") == [(0,)]
    assert query(consumer.store, "SELECT count(*) FROM postings WHERE state = 'posted'") == [(3,)]
    status = consumer.status()
    assert status["retention"]["store_retention_s"] == 2, status["retention"]
    assert status["retention"]["pruned_before"], status["retention"]
    assert metric(consumer, r"^invsync_store_pruned_before_timestamp_seconds ([0-9.]+)$") > 0
    # trace says why it finds nothing.
    tr = stack.run([binary("erp-consumer"), "trace", "--config", consumer.config_path,
                    "--movement", "OLD-1"], check=False)
    assert tr.returncode != 0 and "have been pruned (store.retention)" in tr.err, tr.err

    # The same movements again, unchanged (their old accepted time).
    stack.run([binary("mes-producer"), "republish", "--config", producer.config_path,
               "--site", "PLANT1", "--from", "1", "--to", "3", "--by", "qa", "--reason", "replay"])
    horizon = r'^invsync_consumer_movements_total\{outcome="before_horizon"\} (\d+)$'
    stack.wait_for(lambda: metric(consumer, horizon) == 3, 30,
                   "the consumer to park the three redelivered movements",
                   detail=lambda: "before_horizon %d" % metric(consumer, horizon))
    assert query(consumer.store, "SELECT count(*) FROM audit WHERE action = 'movement-before-horizon'"
                 ) == [(3,)]
    reasons = query(consumer.store, "SELECT reason FROM dead_letters ORDER BY movement_id")
    assert len(reasons) == 3 and all("before the store's pruned horizon" in r for (r,) in reasons), reasons

    # A new movement posts as before; the old ones are still in the ERP once.
    assert producer.post(batch("NEW", 1, first=4)).status == 202
    stack.wait_for(lambda: erp_movements() == 4, 60, "the new movement to reach the ERP")
    assert query(consumer.erp, "SELECT count(*), count(DISTINCT movement_id) FROM doc_movements"
                 ) == [(4, 4)]
    assert query(consumer.erp, "SELECT qty_units FROM on_hand WHERE lot = 'LOT-R'") == [
        (4 * 5 * 1000000,)]
