"""The consumer is SIGKILLed mid-stream (movements still arriving, part of
them posted) and restarted on the same store: no posting is lost or doubled
and the ERP ends equal to the simulator's expected on-hand."""

import copy
import time

import pytest

from conftest import (assert_exactly_once, free_port, load_json, movement, query, wait_all_posted,
                      wait_for)

SITES = "PLANT1,PLANT2"
SEED = 777
TOKENS = ["--token", "PLANT1=tok-plant1", "--token", "PLANT2=tok-plant2"]


def test_consumer_killed_mid_stream_and_restarted(stack):
    stack.start_kafka(partitions=3)
    consumer = stack.start_consumer()
    opening = stack.path("opening.json")
    stack.sim("opening", "--sites", SITES, "--seed", SEED, "--out", opening)
    stack.seed_erp(consumer, opening)
    producer = stack.start_producer()

    expected, summary = stack.path("expected.json"), stack.path("summary.json")
    # ~2,000 movements at 200/s: the simulator runs for about 10 s, so the
    # kill below lands while movements are still arriving. (At 6 s, a
    # loaded machine once let the consumer find the new topics and join
    # only after the simulator had finished: nothing was left to cut off.)
    sim = stack.sim_background("run", "--url", producer.url, "--sites", SITES, "--seed", SEED,
                               "--movements", 2000, "--rate", 200, "--batch", 10,
                               "--resend", "0.10", *TOKENS,
                               "--expected", expected, "--summary", summary)

    stack.wait_for(lambda: (consumer.posted_count() or 0) >= 150, 60,
                   "the consumer to post its first 150 movements",
                   interval=0.05, detail=lambda: "ledger has %s" % consumer.posted_count())
    consumer.kill()
    posted_at_kill = consumer.settled_count()
    accepted_at_kill = producer.outbox_count()
    # Not asserted (timing), but shown: postings cut off between "marked
    # posting" and "recorded posted" exercise the in-flight recovery.
    print("killed with %s settled, %s in flight, %d accepted so far" % (
        posted_at_kill, consumer.store_count("WHERE state = 'posting'"), accepted_at_kill))

    # While it is down, more movements pile up in Kafka.
    stack.wait_for(lambda: producer.outbox_count() >= accepted_at_kill + 100 or not sim.alive(), 60,
                   "more movements to be accepted while the consumer is down")

    restarted = stack.start_consumer(config=consumer.config)

    wait_for(lambda: not sim.alive(), 120, "mes-sim run to finish", check=stack.check_alive)
    assert sim.proc.returncode == 0, "mes-sim run exited %s" % sim.proc.returncode
    accepted = load_json(summary)["accepted"]
    assert producer.outbox_count() == accepted
    assert posted_at_kill < accepted, (
        "the kill came after everything was posted (%d of %d): the test proved nothing"
        % (posted_at_kill, accepted))

    wait_all_posted(stack, restarted, accepted)
    assert_exactly_once(restarted, producer)
    n = restarted.store_count()
    assert n == accepted, "consumer store has %d movements for %d accepted" % (n, accepted)

    _, actual = stack.on_hand(restarted)
    r = stack.compare(expected, actual)
    assert r.returncode == 0, "ERP on-hand differs after the restart:\n%s%s" % (r.out[-4000:], r.err[-1000:])


@pytest.mark.parametrize("cut_over", ["unset", "after", "epoch-both"])
def test_store_rebuilt_rereads_and_books_nothing_twice(stack, cut_over):
    """A second store (a failover instance, a store rebuilt from Kafka, or the
    store of a consumer upgraded after the first one posted) re-reads what the
    first instance already booked, against the same ERP: each movement is
    still booked once, under the same posting id. With
    poster.time_ordered_ids_from set later than the movements were accepted
    the second instance makes the hash ids the first (default) one made;
    with the same cut-over on both, both make the time-ordered ones."""
    stack.start_kafka(partitions=1)
    producer = stack.start_producer()
    assign = {"consume": {"mode": "assign", "discovery": "500ms"}}
    if cut_over == "epoch-both":
        assign["poster"] = {"time_ordered_ids_from": "1970-01-01T00:00:00Z"}
    cfg_a = stack.consumer_config(overrides=assign, name="a")
    a = stack.start_consumer(config=cfg_a, name="a")
    r = producer.post([movement("RB-1", "PLANT1", material="PKG-1"),
                       movement("RB-2", "PLANT1", material="PKG-2", lot="LOT-2")])
    assert r.status == 202, r
    stack.wait_for(lambda: (a.posted_count() or 0) == 2, 30, "instance A to post both")
    ids_a = sorted(row[0] for row in query(a.erp, "SELECT posting_id FROM documents"))
    a.stop()

    cfg_b = copy.deepcopy(cfg_a)
    cfg_b["store"]["path"] = stack.path("b-store.db")  # a new store, the same ERP
    cfg_b["http"]["listen"] = "127.0.0.1:%d" % free_port()
    cfg_b["kafka"]["group.id"] = "invsync-test-b"
    if cut_over == "after":
        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        cfg_b["poster"] = {"time_ordered_ids_from": later}
    b = stack.start_consumer(config=cfg_b, name="b")
    stack.wait_for(lambda: query(b.store, "SELECT count(*) FROM movements"
                                          " WHERE state = 'posted'")[0][0] == 2,
                   30, "instance B to post both again")
    doubled = query(b.erp, "SELECT movement_id, count(DISTINCT doc_no) FROM doc_movements"
                           " GROUP BY movement_id HAVING count(DISTINCT doc_no) > 1")
    assert not doubled, "booked twice in the ERP: %r" % doubled
    assert sorted(row[0] for row in query(b.erp, "SELECT posting_id FROM documents")) == ids_a
    assert sorted(row[0] for row in query(b.store, "SELECT posting_id FROM postings")) == ids_a
    # movement() stamps event_time 2026-01-05T08:00:00Z: the time-ordered
    # form begins with it, the hash form does not.
    prefix = "%011x" % 1767600000000
    assert all(i.startswith(prefix) == (cut_over == "epoch-both") for i in ids_a), ids_a
