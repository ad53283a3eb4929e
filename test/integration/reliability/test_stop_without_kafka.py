"""A rolling restart while the broker is gone: SIGTERM must still stop both
services promptly with exit 0 (README, Operations: "Stopping"), not hang
until a container runtime's SIGKILL. erp-consumer in group mode leaves its
group on the way out; rd_kafka_consumer_close() has no time limit of its
own and, with the brokers down, waited minutes. What it could not commit to
Kafka is safe: the store holds what was read, and a restart with the same
store posts nothing twice."""

import time

import pytest

from conftest import movement, wait_all_posted

from .helpers import TOKEN

pytestmark = pytest.mark.reliability

STOP_WITHIN_S = 20  # the consumer's 5 s group-leave limit and the producer's 10 s flush, with slack


def stop_timed(svc):
    t0 = time.monotonic()
    code = svc.stop(timeout=60)
    return code, time.monotonic() - t0


def test_sigterm_with_the_broker_down_stops_both_services(rel):
    stack, kafka = rel.stack, rel.kafka
    # librdkafka's default session timeout (the harness shortens it to 6 s):
    # what a deployment runs with, and what bounded the old, unlimited close.
    consumer = rel.start_consumer(overrides={"kafka": {"session.timeout.ms": 45000,
                                                       "heartbeat.interval.ms": 3000}})
    producer = rel.start_producer()
    batch = [movement("STOP-%d" % i, "PLANT1", lot="LOT-STOP") for i in range(5)]
    assert producer.post(batch, token=TOKEN).status == 202
    wait_all_posted(stack, consumer, 5, what="the movements to be posted while Kafka is up")

    kafka.stop()
    assert not kafka.alive()
    # Accepted while the broker is gone: stays in the outbox for the next start.
    late = [movement("STOP-LATE-%d" % i, "PLANT1", lot="LOT-STOP") for i in range(3)]
    assert producer.post(late, token=TOKEN).status == 202

    code, took = stop_timed(consumer)
    assert code == 0 and took < STOP_WITHIN_S, (
        "erp-consumer after SIGTERM with the broker down: exit %s after %.1f s (%s)" % (
            code, took, getattr(consumer, "unclean_stop", "")))
    with open(consumer.log) as f:
        assert "did not confirm leaving the consumer group" in f.read()
    code, took = stop_timed(producer)
    assert code == 0 and took < STOP_WITHIN_S, (
        "mes-producer after SIGTERM with the broker down: exit %s after %.1f s" % (code, took))

    # Back: nothing lost, nothing doubled.
    kafka.start()
    producer = rel.start_producer(config=producer.config)
    consumer = rel.start_consumer(config=consumer.config)
    # The first instance could not leave the group: the restarted one is
    # assigned once the broker drops it (session.timeout.ms, 45 s).
    wait_all_posted(stack, consumer, 8, timeout=150, stall=120,
                    what="the movements accepted during the outage to be posted after it")
    assert consumer.posted_count() == 8
