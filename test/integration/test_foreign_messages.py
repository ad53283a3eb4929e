"""Messages a broken or foreign producer could write straight to a tier
topic (not through mes-producer): the consumer dead-letters or ignores
them, commits past them, keeps posting the same partition's later
movements, and its sequence-gap handling is not misled by them."""

import base64
import json

from conftest import binary, movement, query, scalar, wait_all_posted


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _ld(field, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _vi(field, n):
    return _varint(field << 3) + _varint(n)


def _dump(stack, bootstrap, topic):
    r = stack.run([binary("kafka-dump"), "--bootstrap", bootstrap, "dump", "--decode", "--topic",
                   topic, "--timeout", "10s"])
    return [json.loads(l) for l in r.out.splitlines() if l.strip()]


def _produce(stack, bootstrap, topic, value, key):
    r = stack.run([binary("kafka-dump"), "--bootstrap", bootstrap, "produce", "--topic", topic,
                   "--value-hex", value.hex() or "", "--key", key, "--partition", "0"]
                  if value else
                  [binary("kafka-dump"), "--bootstrap", bootstrap, "produce", "--topic", topic,
                   "--value", "", "--key", key, "--partition", "0"])
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
    bad = base64.b64decode(real[0]["value_b64"]) + _ld(1, "TIER-BAD") + _ld(20, "realtime") + \
        _vi(23, seq + 1)
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
