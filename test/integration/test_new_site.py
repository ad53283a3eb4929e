"""A site never seen before starts sending while everything runs: its
topics are created and the consumer (regex subscription) posts its
movements without a restart."""

from conftest import MES_DOCS, kafka_topics, policy_prefix, query, wait_all_posted



def test_new_site_picked_up_without_restart(stack):
    bootstrap = stack.start_kafka()
    consumer = stack.start_consumer()
    producer = stack.start_producer(overrides={
        "auth": {"tokens": {"PLANT1": "tok-plant1", "*": "tok-all"}}})
    prefix = policy_prefix()

    # Opening stock for both sites is in the ERP from the start; Kafka and the
    # consumer have never heard of NEWSITE.
    for site, seed in (("PLANT1", 11), ("NEWSITE", 12)):
        path = stack.path("opening-%s.json" % site)
        stack.sim("opening", "--sites", site, "--seed", seed, "--out", path)
        stack.seed_erp(consumer, path)

    # Phase 1: an existing site flows end to end.
    stack.sim("run", "--url", producer.url, "--sites", "PLANT1", "--seed", 11, "--movements", 200,
              "--batch", 20, "--token", "PLANT1=tok-plant1", "--expected", stack.path("expected-PLANT1.json"),
              "--summary", stack.path("summary-PLANT1.json"))
    n1 = producer.outbox_count()
    wait_all_posted(stack, consumer, n1, what="the consumer to post PLANT1's %d movements" % n1)
    assert not [t for t in kafka_topics(bootstrap) if t.startswith(prefix + ".NEWSITE.")]
    consumer_pid = consumer.pid

    # Phase 2: the new site, in protobuf this time.
    stack.sim("run", "--url", producer.url, "--sites", "NEWSITE", "--seed", 12, "--movements", 200,
              "--batch", 20, "--format", "protobuf", "--token", "*=tok-all",
              "--expected", stack.path("expected-NEWSITE.json"),
              "--summary", stack.path("summary-NEWSITE.json"))
    n2 = producer.outbox_count() - n1
    assert n2 > 0

    wait_all_posted(stack, consumer, n1 + n2,
                    what="the consumer to post NEWSITE's %d movements without a restart" % n2)
    assert consumer.alive() and consumer.pid == consumer_pid, "the consumer was restarted"

    new_topics = {t for t in kafka_topics(bootstrap) if t.startswith(prefix + ".NEWSITE.")}
    new_tiers = {t for (t,) in query(consumer.erp, "SELECT DISTINCT tier FROM documents WHERE site = 'NEWSITE' AND doc_no IN " + MES_DOCS)}
    assert new_tiers, "no ERP document for NEWSITE"
    for tier in new_tiers:
        assert "%s.NEWSITE.%s" % (prefix, tier) in new_topics, (tier, sorted(new_topics))

    for site in ("PLANT1", "NEWSITE"):
        _, actual = stack.on_hand(consumer, site=site, out_name="actual-%s.json" % site)
        r = stack.compare(stack.path("expected-%s.json" % site), actual)
        assert r.returncode == 0, "%s: ERP on-hand differs from expected:\n%s%s" % (
            site, r.out[-3000:], r.err[-1000:])
