"""The consumer is SIGKILLed mid-stream (movements still arriving, part of
them posted) and restarted on the same store: no posting is lost or doubled
and the ERP ends equal to the simulator's expected on-hand."""

from conftest import assert_exactly_once, load_json, wait_all_posted, wait_for

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
    # ~1,500 movements at 250/s: the simulator runs for about 6 s, so the
    # kill below lands while movements are still arriving.
    sim = stack.sim_background("run", "--url", producer.url, "--sites", SITES, "--seed", SEED,
                               "--movements", 1500, "--rate", 250, "--batch", 10,
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
