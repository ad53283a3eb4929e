"""The consumer's loop guard: movements whose source system is the ERP
itself (loop_guard.erp_sources) are stored as ignored and never posted back,
whatever the case of the name (a producer older than the producer's own
case-insensitive guard, or one without a guard, may have let them through)."""

from conftest import movement


def test_consumer_ignores_erp_sources_in_any_case(stack):
    stack.start_kafka()
    consumer = stack.start_consumer(overrides={"loop_guard": {"erp_sources": ["ERP-SAP"]}})
    # A producer without its own guard: the consumer's is the last line.
    producer = stack.start_producer(overrides={"loop_guard": {"refused_sources": []}})
    batch = [movement("LG-ECHO-1", "PLANT1", source="erp-sap", lot="LOT-LG"),
             movement("LG-ECHO-2", "PLANT1", source="ERP-SAP", lot="LOT-LG"),
             movement("LG-MES-1", "PLANT1", lot="LOT-LG2")]
    r = producer.post(batch)
    assert r.status == 202 and r.json()["accepted"] == 3, r
    stack.wait_for(lambda: consumer.store_count() == 3, 60, "the consumer to store 3 movements")
    stack.wait_for(lambda: consumer.posted_count() == 1, 60, "the MES movement to post")
    ignored = consumer.store_count("WHERE state = 'ignored'")
    assert ignored == 2, "ERP echoes not ignored: %s" % ignored
