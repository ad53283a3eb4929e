"""Fixtures of the reliability suite (pytest -m reliability).

* ``kafka`` (session): one real Apache Kafka 4.1 broker (deploy/kafka/kafka.sh)
  for the whole suite, started on first use, stopped at the end. Tests are
  isolated by topic prefix and consumer group, not by broker; a test that
  stops the broker (the outage scenario) restarts it on the same ports and
  data, and every test makes sure it is up before it starts.
* ``rel`` (per test): a helpers.Rel on top of the harness's ``stack``
  fixture: the test's own policy copy (topic prefix), group id, figure sheet.

Figures: each test records what it measured (movements, kills, faults,
duplicates) with ``rel.record(...)``. At the end of the session they are
written to ``$INVSYNC_BUILD/reliability-figures.json`` and printed in the
summary; docs/RELIABILITY.md quotes them.

Randomness (kill moments, simulator seeds) comes from one seed per test,
derived from ``INVSYNC_RELIABILITY_SEED`` (default: the time). It is printed
with the figures so a run can be repeated.
"""

import json
import os
import random
import time

import pytest

from conftest import BUILD

from .helpers import KafkaBroker, Rel

_FIGURES = {}
_SEED = int(os.environ.get("INVSYNC_RELIABILITY_SEED") or int(time.time()) % 1000000)
_HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_configure(config):
    config.addinivalue_line("markers", "reliability: needs a real Apache Kafka broker "
                                       "(the reliability suite; run with -m reliability)")


def pytest_collection_modifyitems(config, items):
    # Everything in this folder needs the real broker: never let a test of it
    # slip into the embedded suite (-m "not reliability") unmarked.
    for item in items:
        if str(item.fspath).startswith(_HERE + os.sep):
            item.add_marker(pytest.mark.reliability)


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    t0 = time.monotonic()
    broker.start()
    _FIGURES.setdefault("_session", {})["kafka_start_s"] = round(time.monotonic() - t0, 1)
    yield broker
    try:
        broker.stop()
    except AssertionError as e:
        print("stopping the Kafka broker: %s" % e)


@pytest.fixture
def rel(request, stack, kafka):
    kafka.ensure_up()
    seed = _SEED * 1000 + sum(map(ord, request.node.name)) % 1000
    figures = {"seed": seed}
    _FIGURES[request.node.name] = figures
    t0 = time.monotonic()
    r = Rel(stack, kafka, request.node.name, random.Random(seed), figures)
    yield r
    figures["duration_s"] = round(time.monotonic() - t0, 1)
    failed = any(getattr(getattr(request.node, "rep_" + w, None), "failed", False)
                 for w in ("setup", "call"))
    figures["result"] = "failed" if failed else "passed"
    if failed:
        # The stack fixture copies its work dir to test/out/ after this: add the broker's log.
        try:
            with open(stack.path("kafka-server.log.tail"), "w") as f:
                f.write(kafka.log_tail(400))
        except OSError:
            pass
    if not kafka.alive():  # a test that failed mid-outage: the next one needs the broker
        try:
            kafka.start()
        except AssertionError as e:
            print("restarting the Kafka broker: %s" % e)


def pytest_sessionfinish(session, exitstatus):
    if not [k for k in _FIGURES if not k.startswith("_")]:
        return
    _FIGURES["_session"] = dict(_FIGURES.get("_session", {}), seed=_SEED,
                                finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    path = os.path.join(BUILD, "reliability-figures.json")
    try:
        with open(path, "w") as f:
            json.dump(_FIGURES, f, indent=1, sort_keys=True)
    except OSError:
        pass


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    tests = {k: v for k, v in _FIGURES.items() if not k.startswith("_")}
    if not tests:
        return
    tr = terminalreporter
    tr.section("reliability figures (seed %d; also in %s)" % (
        _SEED, os.path.join(BUILD, "reliability-figures.json")))
    for name in sorted(tests):
        tr.write_line("%s: %s" % (name, json.dumps(tests[name], sort_keys=True)))
