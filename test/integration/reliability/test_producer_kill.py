"""Scenario 3: mes-producer is SIGKILLed under load several times and
restarted each time on the same outbox (synchronous=FULL). Every movement it
acknowledged with a 202 must reach Kafka (checked by reading the tier topics
back with kafka-dump), however many times; the consumer absorbs the copies,
and the ERP holds each movement once with the simulator's expected on-hand.
The load generator is this test (helpers.Loader): mes-sim's `gen` traffic,
posted in order, each unanswered batch sent again until answered."""

import pytest

from conftest import assert_exactly_once, http, wait_all_posted, wait_for

from .helpers import (Loader, assert_lot_order, assert_nothing_doubled, assert_on_hand,
                      assert_status_settled, gaps_skipped, read_lines)

pytestmark = pytest.mark.reliability

SITES = "PLANT1,PLANT2,PLANT3"
MOVEMENTS = 6000
RATE = 600
KILLS = 5


def readyz(producer):
    try:
        r = http("GET", producer.base + "/readyz", timeout=5)
        return r.json() if r.status in (200, 503) else None
    except OSError:
        return None


def test_producer_killed_under_load(rel):
    stack = rel.stack
    seed = rel.rng.randrange(1, 1 << 30)
    consumer = rel.start_consumer()
    rel.opening(SITES, seed, consumer)
    producer = rel.start_producer(overrides={"outbox": {"sync": "full"}})

    movements, expected = stack.path("movements.jsonl"), stack.path("expected.json")
    stack.sim("gen", "--sites", SITES, "--seed", seed, "--movements", MOVEMENTS,
              "--resend", "0.05", "--out", movements, "--expected", expected)
    loader = Loader(producer.url, read_lines(movements), batch=25, rate=RATE, deadline_s=240)
    loader.start()

    kills = []
    for k in range(KILLS):
        # Kill while the instance both accepts and forwards: after it has
        # accepted and delivered more since its start, at a random moment.
        accepted0 = producer.outbox_count()
        sent0 = producer.outbox_count("WHERE sent_at IS NOT NULL")
        stack.wait_for(lambda: (producer.outbox_count() >= accepted0 + 150 and
                                producer.outbox_count("WHERE sent_at IS NOT NULL") >= sent0 + 150)
                       or not loader.is_alive(), 60,
                       "the producer (instance %d) to accept and forward more movements" % (k + 1),
                       detail=lambda: "outbox %d rows, %d unsent" % (
                           producer.outbox_count(), producer.outbox_count("WHERE sent_at IS NULL")))
        if not loader.is_alive():
            break
        rel.random_pause(0.0, 0.4)
        producer.kill()
        kills.append({"outbox_rows": producer.outbox_count(),
                      "unsent_at_kill": producer.outbox_count("WHERE sent_at IS NULL")})
        producer = rel.start_producer(config=producer.config)

    wait_for(lambda: not loader.is_alive(), 240, "the load generator to finish",
             check=stack.check_alive)
    assert loader.error is None, loader.error
    assert len(kills) == KILLS, "the load ended after %d of %d kills: slow it down" % (len(kills), KILLS)
    acked = loader.acked
    assert len(acked) == MOVEMENTS, "%d of %d movements acknowledged" % (len(acked), MOVEMENTS)
    assert producer.outbox_count() == MOVEMENTS

    stack.wait_for(lambda: (readyz(producer) or {}).get("backlog") == 0, 90,
                   "the producer's outbox backlog (/readyz) to drain to 0",
                   detail=lambda: "readyz %r" % readyz(producer))

    # Everything acknowledged is in Kafka; count the copies.
    summary, copies = rel.count_tier_topics()
    missing = acked - set(copies)
    assert not missing, "%d acknowledged movements never reached Kafka, e.g. %r" % (
        len(missing), sorted(missing)[:10])
    unexpected = set(copies) - acked
    assert not unexpected, "movements in Kafka that were never acknowledged: %r" % sorted(unexpected)[:10]
    twice = sorted(m for m, n in copies.items() if n > 1)

    wait_all_posted(stack, consumer, MOVEMENTS, timeout=180)
    st = assert_status_settled(stack, consumer, MOVEMENTS)
    assert_nothing_doubled(consumer.erp)
    assert_exactly_once(consumer, producer)
    absorbed = st.get("counters", {}).get("duplicates", 0)
    assert absorbed >= summary["extra_copies"], (
        "Kafka holds %d extra copies but the consumer absorbed only %d duplicates" % (
            summary["extra_copies"], absorbed))
    assert_on_hand(stack, consumer, expected)
    lots = assert_lot_order(consumer.store, consumer.erp)
    rel.record(sequence_gaps_skipped=gaps_skipped(consumer.store),
               movements=MOVEMENTS, sites=3, producer_kills=len(kills), kills=kills,
               requests=loader.requests, requests_unanswered=loader.unanswered,
               answered_duplicate=loader.duplicates,
               reached_kafka_twice=len(twice), extra_copies_in_kafka=summary["extra_copies"],
               reached_kafka_twice_examples=twice[:5],
               duplicates_absorbed_by_consumer=absorbed, lot_order_violations=0,
               duplicates_in_erp=0, lost=0)
