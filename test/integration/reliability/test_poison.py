"""Scenario 7: messages on a tier topic that are not valid movements. Raw
bytes that do not decode as a Movement, a value labelled Heartbeat that is
not one, and a real Movement put on another site's topic go to the site's
dead-letter topic with the evidence headers (the value unchanged), and the
consumer goes on: movements sent after them are posted."""

import base64

import pytest

from conftest import assert_exactly_once, movement, query, wait_all_posted

from .helpers import TOKEN, assert_nothing_doubled

pytestmark = pytest.mark.reliability

POISON = b"\x00\xffthis is not an invsync.v1.Movement\x07\x07"


def batch(prefix, site, n):
    return [movement("%s-%02d" % (prefix, i), site, type="COMPLETION", material="RM-101",
                     lot="LOT-%d" % (i % 3), quantity="2") for i in range(n)]


def test_poison_messages_dead_lettered_and_consumption_goes_on(rel):
    stack = rel.stack
    consumer = rel.start_consumer()
    producer = rel.start_producer()

    before = batch("POI-B", "PLANT1", 20) + batch("POI-B2", "PLANT2", 10)
    for site in ("PLANT1", "PLANT2"):
        r = producer.post([m for m in before if m["site"] == site], token=TOKEN)
        assert r.status == 202, r
    wait_all_posted(stack, consumer, 30, timeout=90)

    rt1, rt2 = rel.topic("PLANT1", "periodic"), rel.topic("PLANT2", "periodic")
    real = [l for l in rel.dump("--topic", rt1) if l.get("movement")]
    assert real, "no movement on %s to copy" % rt1
    poisons = [
        ("undecodable bytes", rt1, rel.produce_raw(rt1, POISON.hex(), key="PLANT1/RM-101/LOT-0"),
         POISON),
        ("not a Heartbeat", rt1, rel.produce_raw(
            rt1, b"\x01\x02garbage".hex(), key="PLANT1",
            headers=["content-type=application/x-protobuf; type=invsync.v1.Heartbeat"]),
         b"\x01\x02garbage"),
        # A genuine PLANT1 movement on PLANT2's topic: invalid there.
        ("movement of another site", rt2, rel.produce_raw(
            rt2, base64.b64decode(real[0]["value_b64"]).hex(), key=real[0]["key"]),
         base64.b64decode(real[0]["value_b64"])),
    ]

    after = batch("POI-A", "PLANT1", 20) + batch("POI-A2", "PLANT2", 10)
    for site in ("PLANT1", "PLANT2"):
        r = producer.post([m for m in after if m["site"] == site], token=TOKEN)
        assert r.status == 202, r
    wait_all_posted(stack, consumer, 60, timeout=90)
    stack.check_alive()

    # Each poison message is in its site's dead-letter topic, value unchanged,
    # headers naming the error and where it was read.
    found = {}
    for site in ("PLANT1", "PLANT2"):
        for l in rel.dump("--topic", rel.topic(site, "dlq")):
            found[(l["headers"].get("invsync-source-topic"),
                   int(l["headers"].get("invsync-source-partition", -1)),
                   int(l["headers"].get("invsync-source-offset", -1)))] = l
    for what, topic, at, value in poisons:
        key = (topic, at["partition"], at["offset"])
        assert key in found, "%s (%s [%d] @%d) is not in the dead-letter topic; dead letters: %r" % (
            what, topic, at["partition"], at["offset"], sorted(found))
        l = found[key]
        assert base64.b64decode(l["value_b64"]) == value, "%s: dead letter value differs" % what
        assert l["headers"].get("invsync-error"), "%s: no invsync-error header: %r" % (what, l["headers"])
    dead = query(consumer.store, "SELECT topic, part, off, reason FROM dead_letters ORDER BY id")
    assert len(dead) == len(poisons), "consumer store dead_letters: %r" % dead

    assert_nothing_doubled(consumer.erp)
    assert_exactly_once(consumer, producer)
    st = consumer.status()
    assert st["movements"]["posted"] + st["movements"].get("cancelled", 0) == 60, st["movements"]
    rel.record(poison_messages=len(poisons), dead_lettered=len(dead),
               reasons=[r for *_, r in dead], movements_after_poison_posted=30)
