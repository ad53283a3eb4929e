"""Messages a broken or foreign producer could write straight to a tier
topic (not through mes-producer): the consumer dead-letters or ignores
them, commits past them, keeps posting the same partition's later
movements, and its sequence-gap handling is not misled by them."""

import base64
import json
import time

from conftest import binary, movement, pb_ld, pb_varint, pb_vi, query, scalar, wait_all_posted


def _dump(stack, bootstrap, topic):
    r = stack.run([binary("kafka-dump"), "--bootstrap", bootstrap, "dump", "--decode", "--topic",
                   topic, "--timeout", "10s"])
    return [json.loads(l) for l in r.out.splitlines() if l.strip()]


def _produce(stack, bootstrap, topic, value, key, headers=()):
    """value None: a null value (a tombstone)."""
    argv = [binary("kafka-dump"), "--bootstrap", bootstrap, "produce", "--topic", topic,
            "--key", key, "--partition", "0"]
    argv += ["--null-value"] if value is None else ["--value-hex", value.hex()]
    for h in headers:
        argv += ["--header", h]
    r = stack.run(argv)
    return json.loads(r.out.strip().splitlines()[-1])


def _start(stack):
    bootstrap = stack.start_kafka(partitions=1)
    consumer = stack.start_consumer(overrides={"consume": {"gap_timeout": "2s"}})
    producer = stack.start_producer()
    return bootstrap, consumer, producer


def _dlq(stack, bootstrap, site):
    return {(l["headers"].get("invsync-source-topic"),
             int(l["headers"].get("invsync-source-partition", -1)),
             int(l["headers"].get("invsync-source-offset", -1))): l
            for l in _dump(stack, bootstrap, "invsync.%s.dlq" % site)}


def test_movement_on_another_tiers_topic_is_dead_lettered(stack):
    """A movement whose tier is not its topic's (mes-producer publishes each
    on its own tier's topic) is dead-lettered naming both tiers, and the
    partition's later movements are posted. Before the fix it was posted on
    the cadence of the tier it claimed, accounted there."""
    bootstrap, consumer, producer = _start(stack)
    r = producer.post([movement("TIER-%d" % i, "PLANT1", lot="LOT-%d" % i) for i in range(2)])
    assert r.status == 202, r
    wait_all_posted(stack, consumer, 2, timeout=60)
    topic = "invsync.PLANT1.periodic"
    real = [l for l in _dump(stack, bootstrap, topic) if l.get("movement")]
    seq = max(int(l["movement"]["sequence"]) for l in real)
    # A copy with a new id and the next sequence, claiming the realtime tier.
    bad = base64.b64decode(real[0]["value_b64"]) + pb_ld(1, "TIER-BAD") + pb_ld(20, "realtime") + \
        pb_vi(23, seq + 1)
    at = _produce(stack, bootstrap, topic, bad, real[0]["key"])
    r = producer.post([movement("TIER-A%d" % i, "PLANT1", lot="LOT-%d" % i) for i in range(2)])
    assert r.status == 202, r
    stack.wait_for(lambda: scalar(consumer.store, "SELECT count(*) FROM movements WHERE "
                                  "movement_id LIKE 'TIER-A%' AND state = 'posted'") == 2,
                   60, "the movements after it to be posted")
    assert scalar(consumer.store, "SELECT state FROM movements WHERE movement_id = 'TIER-BAD'") \
        == "dead"
    letters = _dlq(stack, bootstrap, "PLANT1")
    l = letters.get((topic, at["partition"], at["offset"]))
    assert l, "not dead-lettered: %r" % sorted(letters)
    assert l["headers"]["invsync-error"] == \
        "movement of tier 'realtime' on topic of tier 'periodic'", l["headers"]
    assert scalar(consumer.store, "SELECT count(*) FROM dead_letters") == 1
    assert scalar(consumer.store, "SELECT count(*) FROM audit WHERE action = "
                                  "'sequence-gap-skipped'") == 0


HEARTBEAT = "content-type=application/x-protobuf; type=invsync.v1.Heartbeat"


def test_heartbeat_of_another_site_and_bogus_sequence_mislead_nothing(stack):
    """A heartbeat on PLANT1's topic that names PLANT9 is dead-lettered: it
    would have made PLANT9 a known site for good (status, metrics, the
    silent-site alert). An invalid movement whose sequence is far ahead of
    its producer's is dead-lettered, and its sequence is not taken for a
    gap: nothing is given up as lost once gap_timeout (2 s) has passed."""
    bootstrap, consumer, producer = _start(stack)
    r = producer.post([movement("HB-%d" % i, "PLANT1", lot="LOT-%d" % i) for i in range(2)])
    assert r.status == 202, r
    wait_all_posted(stack, consumer, 2, timeout=60)
    topic = "invsync.PLANT1.periodic"
    real = [l for l in _dump(stack, bootstrap, topic) if l.get("movement")]
    pid = real[0]["movement"]["producer_id"]
    hb = pb_ld(1, "PLANT9") + pb_ld(2, pid) + pb_vi(3, 1) + pb_vi(4, int(time.time() * 1000))
    hb_at = _produce(stack, bootstrap, topic, hb, "PLANT9/heartbeat", headers=[HEARTBEAT])
    # Quantity -5 (invalid), sequence 10^12.
    bad = base64.b64decode(real[0]["value_b64"]) + pb_ld(1, "HB-BAD") + \
        pb_ld(10, pb_vi(1, (1 << 64) - 5)) + pb_vi(23, 10**12)
    bad_at = _produce(stack, bootstrap, topic, bad, real[0]["key"])
    r = producer.post([movement("HB-A%d" % i, "PLANT1", lot="LOT-%d" % i) for i in range(2)])
    assert r.status == 202, r
    stack.wait_for(lambda: scalar(consumer.store, "SELECT count(*) FROM movements WHERE "
                                  "movement_id LIKE 'HB-A%' AND state = 'posted'") == 2,
                   60, "the movements after them to be posted")
    letters = _dlq(stack, bootstrap, "PLANT1")
    l = letters.get((topic, hb_at["partition"], hb_at["offset"]))
    assert l, "heartbeat not dead-lettered: %r" % sorted(letters)
    assert l["headers"]["invsync-error"] == "heartbeat of site 'PLANT9' on topic of site 'PLANT1'"
    l = letters.get((topic, bad_at["partition"], bad_at["offset"]))
    assert l and "quantity" in l["headers"]["invsync-error"], sorted(letters)
    time.sleep(5)  # gap_timeout 2 s, and the consumer is caught up
    assert scalar(consumer.store, "SELECT count(*) FROM sites WHERE site = 'PLANT9'") == 0
    assert "PLANT9" not in json.dumps(consumer.status())
    assert query(consumer.store, "SELECT detail FROM audit WHERE action = "
                                 "'sequence-gap-skipped'") == []
    assert scalar(consumer.store, "SELECT count(*) FROM dead_letters") == 2
    r = producer.post([movement("HB-Z", "PLANT1", lot="LOT-0")])
    assert r.status == 202, r
    stack.wait_for(lambda: query(consumer.store, "SELECT state FROM movements WHERE "
                                 "movement_id = 'HB-Z'") == [("posted",)], 60, "HB-Z to be posted")


def test_movement_after_a_misrouted_copy_of_it_is_posted(stack):
    """A copy of a movement written to another site's topic is dead-lettered;
    the movement itself, read after it, is posted, not absorbed as the dead
    copy's duplicate (before the fix it never reached the ERP)."""
    bootstrap, consumer, producer = _start(stack)
    r = producer.post([movement("MIS-0", "PLANT1", lot="LOT-0")])
    assert r.status == 202, r
    wait_all_posted(stack, consumer, 1, timeout=60)
    real = [l for l in _dump(stack, bootstrap, "invsync.PLANT1.periodic") if l.get("movement")]
    seq = int(real[0]["movement"]["sequence"])
    copy = base64.b64decode(real[0]["value_b64"]) + pb_ld(1, "MIS-1") + pb_vi(23, seq + 1)
    at = _produce(stack, bootstrap, "invsync.PLANT2.periodic", copy, real[0]["key"])
    stack.wait_for(lambda: scalar(consumer.store, "SELECT count(*) FROM dead_letters") == 1, 60,
                   "the misrouted copy to be dead-lettered")
    r = producer.post([movement("MIS-1", "PLANT1", lot="LOT-0")])
    assert r.status == 202, r
    stack.wait_for(lambda: query(consumer.store, "SELECT state FROM movements WHERE "
                                 "movement_id = 'MIS-1'") == [("posted",)], 60,
                   "MIS-1 to be posted", detail=lambda: query(
                       consumer.store, "SELECT movement_id, state, reason FROM movements"))
    audit = query(consumer.store, "SELECT subject, detail FROM audit WHERE action = "
                                  "'dead-copy-superseded'")
    assert len(audit) == 1 and audit[0][0] == "MIS-1", audit
    assert json.loads(audit[0][1])["dead_offset"] == at["offset"], audit
    assert query(consumer.store, "SELECT detail FROM audit WHERE action = "
                                 "'sequence-gap-skipped'") == []


def test_empty_and_null_values_are_dead_lettered_saying_so(stack):
    """An empty value and a null one (a tombstone) on a tier topic are
    dead-lettered with a reason that says so (they decoded as an empty
    Movement: "movement_id: is required"), and later movements of the same
    partition are posted."""
    bootstrap, consumer, producer = _start(stack)
    topic = "invsync.PLANT1.periodic"
    empty = _produce(stack, bootstrap, topic, b"", "PLANT1/MAT-100/LOT-0")
    null = _produce(stack, bootstrap, topic, None, "PLANT1/MAT-100/LOT-0")
    r = producer.post([movement("EMP-%d" % i, "PLANT1", lot="LOT-%d" % i) for i in range(2)])
    assert r.status == 202, r
    wait_all_posted(stack, consumer, 2, timeout=60)
    got = {(t, p, o): why for t, p, o, why in query(
        consumer.store, "SELECT topic, part, off, reason FROM dead_letters")}
    assert got == {(topic, 0, empty["offset"]): "empty value",
                   (topic, 0, null["offset"]): "null value (a tombstone)"}, got
    letters = _dlq(stack, bootstrap, "PLANT1")
    assert letters[(topic, 0, null["offset"])]["headers"]["invsync-error"] == \
        "null value (a tombstone)", letters
