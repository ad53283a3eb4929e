"""Scenario 4: the Kafka broker is unreachable for 60 s under steady load.
kafka.sh stops it cleanly, and restarts it on the same ports and data after
the outage. Meanwhile mes-producer keeps answering 202 (mes-sim fails on
anything else), its backlog shows in /readyz and grows; when the broker is
back the backlog drains, everything arrives, and erp-consumer, never
restarted, recovers by itself. The ERP ends with each accepted movement
once and the simulator's expected on-hand."""

import time

import pytest

from conftest import assert_exactly_once, http, load_json, wait_all_posted, wait_for

from .helpers import (TOKEN, assert_lot_order, assert_nothing_doubled, assert_on_hand,
                      assert_status_settled, gaps_skipped)

pytestmark = pytest.mark.reliability

SITES = "PLANT1,PLANT2,PLANT3"
OUTAGE_S = 60
RATE = 100               # movements per second, steady
BEFORE_S, AFTER_S = 10, 15


def readyz(producer):
    try:
        r = http("GET", producer.base + "/readyz", timeout=5)
        return r.status, r.json()
    except (OSError, AssertionError):
        return None, None


def test_kafka_unreachable_for_60s_under_load(rel):
    stack, kafka = rel.stack, rel.kafka
    seed = rel.rng.randrange(1, 1 << 30)
    movements = RATE * (BEFORE_S + OUTAGE_S + AFTER_S)
    consumer = rel.start_consumer()
    rel.opening(SITES, seed, consumer)
    producer = rel.start_producer()
    expected, summary = stack.path("expected.json"), stack.path("summary.json")
    sim = stack.sim_background("run", "--url", producer.url, "--sites", SITES, "--seed", seed,
                               "--movements", movements, "--rate", RATE, "--batch", 10,
                               "--resend", "0.05", "--token", "*=" + TOKEN,
                               "--expected", expected, "--summary", summary)

    # Normal operation first: movements flow to the ERP.
    stack.wait_for(lambda: (consumer.settled_count() or 0) >= 300, 60,
                   "the consumer to post 300 movements before the outage",
                   detail=lambda: "settled %s" % consumer.settled_count())

    t_stop = time.monotonic()
    kafka.stop()
    down_at = time.monotonic()
    assert not kafka.alive()
    accepted_at_stop = producer.outbox_count()

    # The outage: sample /readyz once a second; the producer must stay ready.
    samples = []
    while time.monotonic() - down_at < OUTAGE_S:
        stack.check_alive()
        assert sim.alive(), "mes-sim stopped during the outage (exit %s): the producer " \
                            "did not answer 202" % sim.proc.returncode
        status, body = readyz(producer)
        assert status == 200 and body and body.get("ready") is True, (
            "producer /readyz during the outage: %s %r" % (status, body))
        samples.append((round(time.monotonic() - down_at, 1), body.get("backlog"), body.get("kafka")))
        time.sleep(1.0)  # sampling pace of the outage window
    accepted_during = producer.outbox_count() - accepted_at_stop
    backlogs = [b for _, b, _ in samples]
    assert backlogs[-1] > backlogs[0] and backlogs[-1] >= 0.8 * accepted_during, (
        "the backlog did not grow with the movements accepted during the outage "
        "(%d accepted; samples %r)" % (accepted_during, samples[::10]))
    assert all(b2 >= b1 for b1, b2 in zip(backlogs, backlogs[1:])), (
        "the backlog shrank while Kafka was down: %r" % samples)
    kafka_states = sorted({k for _, _, k in samples[5:]})

    t_start = time.monotonic()
    kafka.start()
    restarted_in = time.monotonic() - t_start
    stack.wait_for(lambda: (readyz(producer)[1] or {}).get("backlog") == 0, 120,
                   "the producer's backlog to drain after Kafka came back",
                   detail=lambda: "readyz %r" % (readyz(producer)[1],))
    drained_in = time.monotonic() - t_start

    wait_for(lambda: not sim.alive(), 120, "mes-sim run to finish", check=stack.check_alive)
    assert sim.proc.returncode == 0, "mes-sim run exited %s" % sim.proc.returncode
    accepted = load_json(summary)["accepted"]
    assert accepted == movements

    wait_all_posted(stack, consumer, accepted, timeout=180, stall=60)
    st = assert_status_settled(stack, consumer, accepted)
    assert consumer.alive() and len([s for s in stack.services if s.name.startswith("consumer")]) == 1, (
        "the consumer was restarted: it must recover by itself")
    assert_nothing_doubled(consumer.erp)
    assert_exactly_once(consumer, producer)
    assert_on_hand(stack, consumer, expected)
    lots = assert_lot_order(consumer.store, consumer.erp)
    summary_kafka, copies = rel.count_tier_topics()
    rel.record(sequence_gaps_skipped=gaps_skipped(consumer.store),
               movements=accepted, rate_per_s=RATE, outage_s=round(t_start - down_at, 1),
               broker_stop_s=round(down_at - t_stop, 1), broker_restart_s=round(restarted_in, 1),
               accepted_during_outage=accepted_during, backlog_max=max(backlogs),
               kafka_state_reported_during_outage=kafka_states,
               backlog_drained_s_after_restart=round(drained_in, 1),
               reached_kafka_twice=summary_kafka["duplicated"],
               consumer_restarts=0, lot_order_violations=0, duplicates_in_erp=0, lost=0,
               consumer_kafka_up_after=st.get("counters", {}).get("kafka_up"))
