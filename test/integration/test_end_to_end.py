"""End to end: simulated MES traffic with resends → producer → Kafka →
consumer → embedded ERP ledger, which must end equal to what the simulator
expects, with exactly one posting per unique movement."""

import json
from decimal import Decimal

from conftest import (MES_DOCS, assert_exactly_once, kafka_topics, load_json, policy_prefix, query,
                      scalar, wait_all_posted)

SITES = "PLANT1,PLANT2"
SEED = 4242
MOVEMENTS = 1000  # unique movements; mes-sim sends ~10 % of them a second time on top
TOKENS = ["--token", "PLANT1=tok-plant1", "--token", "PLANT2=tok-plant2"]


def test_end_to_end(stack):
    bootstrap = stack.start_kafka(partitions=3)
    consumer = stack.start_consumer()
    opening = stack.path("opening.json")
    stack.sim("opening", "--sites", SITES, "--seed", SEED, "--out", opening)
    stack.seed_erp(consumer, opening)
    producer = stack.start_producer()

    expected, summary_path = stack.path("expected.json"), stack.path("summary.json")
    stack.sim("run", "--url", producer.url, "--sites", SITES, "--seed", SEED,
              "--movements", MOVEMENTS, "--rate", 0, "--batch", 50, "--resend", "0.10", *TOKENS,
              "--expected", expected, "--summary", summary_path, timeout=240)
    summary = load_json(summary_path)
    accepted, duplicates, sent = summary["accepted"], summary["duplicates"], summary["sent"]
    assert accepted == MOVEMENTS, "%d of %d unique movements accepted: %r" % (accepted, MOVEMENTS, summary)

    # Every resend was answered "duplicate" (mes-sim fails the run otherwise)
    # and nothing else was: the duplicates are exactly the resends.
    resent = sent - MOVEMENTS
    assert duplicates == resent, "%d duplicates for %d resends: %r" % (duplicates, resent, summary)
    assert 0.05 * accepted <= resent <= 0.15 * accepted, (
        "--resend 0.10 gave %d resends for %d movements" % (resent, accepted))

    # Acknowledged means on disk: one outbox row per accepted movement, all forwarded.
    assert producer.outbox_count() == accepted
    stack.wait_for(lambda: producer.outbox_count("WHERE sent_at IS NULL") == 0, 60,
                   "the producer to forward its whole outbox to Kafka",
                   detail=lambda: "%d rows unsent" % producer.outbox_count("WHERE sent_at IS NULL"))

    wait_all_posted(stack, consumer, accepted)
    # The ERP commits a batch of postings before the consumer records them in its
    # store: wait (with a deadline) for the store to catch up with the ledger.
    stack.wait_for(lambda: consumer.store_count("WHERE state NOT IN ('posted', 'cancelled')") == 0,
                   30, "the consumer store to record every posting")

    # The consumer received each movement once and posted (or cancelled) all of them.
    states = dict(query(consumer.store, "SELECT state, count(*) FROM movements GROUP BY state"))
    assert set(states) <= {"posted", "cancelled"} and sum(states.values()) == accepted, (
        "consumer store states: %r" % states)
    status = consumer.status()
    mv = status["movements"]
    assert mv["failed"] == 0 and mv["dead"] == 0, status
    assert mv["posted"] + mv.get("cancelled", 0) == accepted, status
    assert status["postings"]["failed"] == 0, status

    assert_exactly_once(consumer, producer)

    # The ERP's on-hand is what the simulator says it must be.
    rows, actual = stack.on_hand(consumer)
    assert rows, "ERP on-hand is empty"
    r = stack.compare(expected, actual)
    assert r.returncode == 0, "ERP on-hand differs from the simulator's expected on-hand:\n%s%s" % (
        r.out[-4000:], r.err[-2000:])

    # ... and the comparison is not vacuous: a one-unit drift is caught.
    rows[0]["quantity"] = str(Decimal(str(rows[0]["quantity"])) + 1)
    tampered = stack.path("tampered.json")
    with open(tampered, "w") as f:
        json.dump(rows, f)
    assert stack.compare(expected, tampered).returncode == 1, "mes-sim compare missed a difference"

    # The ledger's tiers are tiers of the policy, and the topics are named after them.
    tiers = {t for (t,) in query(consumer.erp, "SELECT DISTINCT tier FROM documents WHERE doc_no IN " + MES_DOCS)}
    assert tiers <= {"realtime", "nearline", "periodic", "shift", "daily"}, tiers
    prefix = policy_prefix()
    topics = kafka_topics(bootstrap)
    for site in SITES.split(","):
        for tier in tiers:
            n = scalar(consumer.erp, "SELECT count(*) FROM documents WHERE site = ? AND tier = ?", (site, tier))
            if n:
                assert "%s.%s.%s" % (prefix, site, tier) in topics, (site, tier, sorted(topics))
