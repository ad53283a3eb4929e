"""Scenario 5: a flaky ERP. The http-json ERP simulator answers 30 % of the
postings with 503, holds 5 % until the client times out, and for 3 % books
the posting and then answers 503 anyway (the lost answer the idempotency key
must cover). Retries back off with jitter; a lot whose posting failed waits
while other lots flow. The run must still end with the exact expected
on-hand, nothing booked twice, and every lot's movements in the ERP in
acceptance order."""

import pytest

from conftest import assert_exactly_once, load_json, wait_all_posted

from .helpers import (TOKEN, assert_lot_order, assert_nothing_doubled, assert_on_hand,
                      assert_status_settled, gaps_skipped)

pytestmark = pytest.mark.reliability

SITES = "PLANT1,PLANT2"
MOVEMENTS = 1500
FAULTS = {"error_rate": 0.30, "error_status": 503, "timeout_rate": 0.05, "timeout_ms": 900,
          "fail_after_commit_rate": 0.03}


def test_erp_503s_and_timeouts(rel):
    stack = rel.stack
    seed = rel.rng.randrange(1, 1 << 30)
    erp = rel.start_erp_sim()
    consumer = rel.start_consumer(erp_sim=erp, overrides={"erp": {"http": {"timeout": "500ms"}}})
    rel.opening(SITES, seed, erp_sim=erp)
    erp.faults(**FAULTS)
    producer = rel.start_producer()
    expected, summary = stack.path("expected.json"), stack.path("summary.json")
    sim = stack.sim_background("run", "--url", producer.url, "--sites", SITES, "--seed", seed,
                               "--movements", MOVEMENTS, "--rate", 500, "--batch", 20,
                               "--resend", "0.05", "--token", "*=" + TOKEN,
                               "--expected", expected, "--summary", summary)
    stack.wait_for(lambda: not sim.alive(), 120, "mes-sim run to finish")
    assert sim.proc.returncode == 0, "mes-sim run exited %s" % sim.proc.returncode
    accepted = load_json(summary)["accepted"]

    wait_all_posted(stack, consumer, accepted, timeout=240, stall=60)
    st = assert_status_settled(stack, consumer, accepted)
    stats = erp.stats()
    erp.faults(error_rate=0, timeout_rate=0, fail_after_commit_rate=0)

    assert_nothing_doubled(consumer.erp)
    assert_exactly_once(consumer, producer)
    assert_on_hand(stack, consumer, expected)
    lots = assert_lot_order(consumer.store, consumer.erp)
    assert stats.get("faults_injected", 0) > 0.2 * accepted, "few faults were injected: %r" % stats
    rel.record(sequence_gaps_skipped=gaps_skipped(consumer.store),
               movements=accepted, faults=FAULTS, erp_posts=stats.get("posts"),
               faults_injected=stats.get("faults_injected"), erp_replays=stats.get("replayed"),
               consumer_retries=st.get("counters", {}).get("retried"),
               lots_checked_for_order=lots, lot_order_violations=0,
               duplicates_in_erp=0, lost=0)
