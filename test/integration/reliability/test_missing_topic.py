"""A site whose topics nobody created, on a broker that does not create
topics on first use (auto.create.topics.enable=false, as most production
clusters run): the producer must say which topic is missing, for which site
and tier, how many movements wait and what to do, count it in
invsync_kafka_topics_missing and list it in /readyz; once the topic is
created the movement goes out by itself and the producer says so.

The session broker auto-creates topics (and that setting cannot be changed
on a running broker), so this test starts its own broker with
KAFKA_AUTO_CREATE_TOPICS=false (a few seconds with the cached jars), shared
by the cases of this module:

* created soon after the WARN, while librdkafka still holds the message;
* created after librdkafka gave up on it (topic.metadata.propagation.max.ms,
  30 s: the delivery fails, the forwarder retries with backoff and librdkafka
  refuses new produce calls for a topic it believes absent). The producer's
  own metadata check refreshes that belief, so the movement goes out within
  seconds of the creation, not at librdkafka's next periodic refresh
  (topic.metadata.refresh.interval.ms, 5 minutes).

A third case has more missing topics than the producer asks about one by
one in a check (TOPIC_ASKS_PER_ROUND): the rest are found through its one
all-topics metadata request.
"""

import json
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import FIXTURES, REPO, http, kafka_topics, movement

from .helpers import TOKEN, KafkaBroker, kafka_dump

WARN = "kafka topic missing; movements wait for it"
INFO = "kafka topic missing no more"


def log_records(producer, msg):
    with open(producer.log, "rb") as f:
        lines = f.read().decode("utf-8", "replace").splitlines()
    out = []
    for line in lines:
        if line.startswith("{") and '"msg":"%s"' % msg in line:
            out.append(json.loads(line))
    return out


def metric(producer, name):
    r = http("GET", producer.base + "/metrics", timeout=10)
    assert r.status == 200, r
    m = re.search(r"^%s (\d+)$" % name, r.text, re.M)
    assert m, "no %s in /metrics" % name
    return int(m.group(1))


def gauge(producer):
    return metric(producer, "invsync_kafka_topics_missing")


def start_producer(stack, broker, prefix):
    """A producer on broker whose policy names topics <prefix>.<site>.<tier>."""
    policy_dir = stack.path("policy")
    os.makedirs(policy_dir)
    shutil.copy(os.path.join(FIXTURES, "materials.csv"), policy_dir)
    with open(os.path.join(FIXTURES, "policy.yaml")) as f:
        text = re.sub(r"(?m)^topic_prefix:.*$", "topic_prefix: " + prefix, f.read())
    policy = os.path.join(policy_dir, "policy.yaml")
    with open(policy, "w") as f:
        f.write(text)
    return stack.start_producer(config=stack.producer_config(
        bootstrap=broker.bootstrap, overrides={"policy": {"path": policy},
                                               "auth": {"tokens": {"*": TOKEN}}}))


def topic_asks_per_round():
    """TOPIC_ASKS_PER_ROUND from mes-producer/forwarder.c: the per-topic
    metadata requests of one check before the one all-topics request."""
    with open(os.path.join(REPO, "mes-producer", "forwarder.c")) as f:
        m = re.search(r"^#define TOPIC_ASKS_PER_ROUND (\d+)", f.read(), re.M)
    assert m, "no TOPIC_ASKS_PER_ROUND in mes-producer/forwarder.c"
    return int(m.group(1))


@pytest.fixture(scope="module")
def broker_without_auto_create(tmp_path_factory):
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka-no-auto-create"),
                         env={"KAFKA_AUTO_CREATE_TOPICS": "false"})
    broker.start()
    yield broker
    broker.stop()


@pytest.mark.parametrize("create", ["after_warn", "after_librdkafka_gave_up"])
def test_missing_topic_is_named_and_resolves_once_created(stack, broker_without_auto_create, create):
    broker = broker_without_auto_create
    prefix = "rel-missing-%s-%04x" % (create.replace("_", "-"), os.getpid() % 0x10000)
    producer = start_producer(stack, broker, prefix)
    t0 = time.monotonic()
    r = producer.post(movement("MISSING-1", "NEWSITE"), token=TOKEN)
    assert r.status == 202, r
    tier = r.json()["items"][0]["tier"]
    topic = "%s.NEWSITE.%s" % (prefix, tier)
    assert topic not in kafka_topics(broker.bootstrap)

    # Within a deadline: the WARN naming everything, the gauge, /readyz.
    stack.wait_for(lambda: log_records(producer, WARN), 40,
                   "the producer to log %r for %s" % (WARN, topic))
    warn = log_records(producer, WARN)[0]
    assert warn["level"] == "warn", warn
    assert (warn["topic"], warn["site"], warn["tier"], warn["waiting"]) == (
        topic, "NEWSITE", tier, "1"), warn
    assert warn["fix"] == "create the topic: README 'Adding a site'", warn
    assert gauge(producer) == 1
    ready = http("GET", producer.base + "/readyz", timeout=10)
    assert ready.status == 200, ready  # one missing site does not make the producer unready
    missing = ready.json()["topics_missing"]
    assert [(m["topic"], m["site"], m["tier"], m["waiting"]) for m in missing] == [
        (topic, "NEWSITE", tier, 1)], missing
    assert producer.outbox_count("WHERE sent_at IS NULL") == 1

    deliver_within = 60
    if create == "after_librdkafka_gave_up":
        # The broker's refusal reached the delivery report (after 30 s) and a
        # retry was refused locally: librdkafka now holds the topic absent.
        stack.wait_for(lambda: metric(producer, "invsync_kafka_delivery_errors_total") >= 2, 90,
                       "librdkafka to fail the movement and a retry of it")
        deliver_within = 20  # librdkafka alone would wait for its 5-minute refresh

    # Created: the movement goes out on its own, the gauge falls, INFO.
    broker.create_topic(topic)
    stack.wait_for(lambda: producer.outbox_count("WHERE sent_at IS NULL") == 0, deliver_within,
                   "the waiting movement to be delivered once %s exists" % topic)
    stack.wait_for(lambda: gauge(producer) == 0, 30, "invsync_kafka_topics_missing to go to 0")
    stack.wait_for(lambda: log_records(producer, INFO), 30, "the producer to log %r" % INFO)
    info = log_records(producer, INFO)[0]
    assert info["level"] == "info" and info["topic"] == topic, info
    assert http("GET", producer.base + "/readyz", timeout=10).json()["topics_missing"] == []
    dumped = kafka_dump(broker.bootstrap, "dump", "--decode", "--topic", topic)
    assert '"movement_id":"MISSING-1"' in dumped.replace(" ", ""), dumped[-2000:]

    # Rate-limited: at most one WARN a minute while it lasted.
    minutes = (time.monotonic() - t0) / 60.0
    assert len(log_records(producer, WARN)) <= 1 + int(minutes), log_records(producer, WARN)


def test_more_missing_topics_than_per_topic_asks_are_all_found(stack, broker_without_auto_create):
    """Past TOPIC_ASKS_PER_ROUND per-topic requests in one check, the rest of
    the topics are answered from one all-topics metadata request, in which a
    missing topic is simply absent. Two sites more than the per-topic asks:
    every one of their topics must be named missing (gauge, WARN, /readyz),
    not only those asked about one by one; then all of them are created and
    everything goes out."""
    broker = broker_without_auto_create
    n = topic_asks_per_round() + 2
    prefix = "rel-missing-many-%04x" % (os.getpid() % 0x10000)
    producer = start_producer(stack, broker, prefix)
    topics = []
    for i in range(n):
        site = "NEWSITE%02d" % (i + 1)
        r = producer.post(movement("MANY-%d" % (i + 1), site), token=TOKEN)
        assert r.status == 202, r
        topics.append("%s.%s.%s" % (prefix, site, r.json()["items"][0]["tier"]))
    existing = kafka_topics(broker.bootstrap)
    assert not [t for t in topics if t in existing], existing

    stack.wait_for(lambda: gauge(producer) == n, 60,
                   "invsync_kafka_topics_missing to reach %d" % n,
                   interval=0.5, detail=lambda: "gauge %d" % gauge(producer))
    warned = {w["topic"] for w in log_records(producer, WARN)}
    assert warned == set(topics), sorted(warned)
    missing = http("GET", producer.base + "/readyz", timeout=10).json()["topics_missing"]
    assert sorted(m["topic"] for m in missing) == sorted(topics), missing
    assert all(m["waiting"] == 1 for m in missing), missing

    with ThreadPoolExecutor(max_workers=n) as pool:  # one JVM per topic: in parallel
        list(pool.map(broker.create_topic, topics))
    stack.wait_for(lambda: producer.outbox_count("WHERE sent_at IS NULL") == 0, 60,
                   "the %d waiting movements to be delivered once their topics exist" % n)
    stack.wait_for(lambda: gauge(producer) == 0, 30, "invsync_kafka_topics_missing to go to 0")
    assert http("GET", producer.base + "/readyz", timeout=10).json()["topics_missing"] == []
