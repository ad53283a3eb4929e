"""The services' command lines: clear errors for a bad configuration,
environment overrides, a clean exit on SIGTERM."""

import json
import os
import re
import signal
import socket
import subprocess

import pytest

from conftest import Service, binary, free_port, http_ok, movement, scalar

# A valid configuration for each service, Kafka pointing at a closed port.
SERVICES = {
    "mes-producer": lambda st: st.producer_config(bootstrap="127.0.0.1:%d" % free_port()),
    "erp-consumer": lambda st: st.consumer_config(bootstrap="127.0.0.1:%d" % free_port()),
}


def run_expecting_failure(stack, argv, timeout=15, env=None):
    """Run a service that must refuse to start, with no INVSYNC_* variables
    but those in env; returns its combined output."""
    try:
        r = subprocess.run(argv, cwd=stack.dir, capture_output=True, timeout=timeout,
                           stdin=subprocess.DEVNULL,
                           env=dict({k: v for k, v in os.environ.items() if not k.startswith("INVSYNC_")},
                                    **(env or {})))
    except subprocess.TimeoutExpired:
        pytest.fail("%s should have refused to start but was still running after %ds"
                    % (" ".join(argv), timeout))
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    with open(stack.path("cli.log"), "a") as f:
        f.write("### %s\n### exit %d\n%s\n" % (" ".join(argv), r.returncode, out))
    assert r.returncode != 0, "%s exited 0 on a bad configuration:\n%s" % (" ".join(argv), out)
    return out


def argv_for(name, config_path):
    return [binary(name)] + (["run"] if name == "erp-consumer" else []) + ["--config", config_path]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_missing_config_file_is_named(stack, name):
    missing = stack.path("missing.yaml")
    out = run_expecting_failure(stack, argv_for(name, missing))
    assert "missing.yaml" in out, "the error does not name the file:\n%s" % out


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_unknown_config_key_is_named(stack, name):
    cfg = SERVICES[name](stack)
    cfg["http"]["lisen"] = "127.0.0.1:1"  # a typo must be loud
    path = stack.write_config(name + "-typo", cfg)
    out = run_expecting_failure(stack, argv_for(name, path))
    assert "http.lisen" in out or "lisen" in out, "the error does not name the key:\n%s" % out
    assert name + "-typo.yaml" in out, "the error does not name the file:\n%s" % out


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_bad_config_value_is_named(stack, name):
    cfg = SERVICES[name](stack)
    cfg["http"]["threads"] = "lots"
    path = stack.write_config(name + "-badvalue", cfg)
    out = run_expecting_failure(stack, argv_for(name, path))
    assert "http.threads" in out and "lots" in out, "the error does not name key and value:\n%s" % out


def test_producer_unreadable_policy_is_named(stack):
    cfg = SERVICES["mes-producer"](stack)
    cfg["policy"]["path"] = stack.path("no-such-policy.yaml")
    path = stack.write_config("producer-nopolicy", cfg)
    out = run_expecting_failure(stack, argv_for("mes-producer", path))
    assert "no-such-policy.yaml" in out, "the error does not name the policy file:\n%s" % out


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_env_overrides_listen_address_and_sigterm_exits_cleanly(stack, name):
    """INVSYNC_HTTP_LISTEN overrides http.listen; SIGTERM → exit 0."""
    cfg = SERVICES[name](stack)
    path = stack.write_config(name, cfg)
    port = free_port()
    svc = Service(stack, name, argv_for(name, path), env={"INVSYNC_HTTP_LISTEN": "127.0.0.1:%d" % port})
    stack.services.append(svc)
    stack.wait_for(lambda: http_ok("http://127.0.0.1:%d/healthz" % port), 20,
                   "%s to answer /healthz on the INVSYNC_HTTP_LISTEN port %d" % (name, port))
    assert not http_ok("http://%s/healthz" % cfg["http"]["listen"]), "the file's address is used too"
    rc = svc.stop(timeout=15)
    assert rc == 0, "%s exited %s on SIGTERM (expected a clean 0)" % (name, rc)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_check_config_validates_and_exits(stack, name):
    """--check-config loads and validates the configuration and the policy,
    prints "configuration ok" and exits 0, or names the error and exits non-zero."""
    cfg = SERVICES[name](stack)
    good = stack.write_config(name + "-good", cfg)
    r = stack.run([binary(name), "--config", good, "--check-config"], timeout=15)
    assert "configuration ok" in r.out, r.out + r.err
    cfg["http"]["threads"] = "lots"
    bad = stack.write_config(name + "-bad", cfg)
    out = run_expecting_failure(stack, [binary(name), "--config", bad, "--check-config"])
    assert "http.threads" in out and "lots" in out, out
    assert "configuration ok" not in out
    cfg = SERVICES[name](stack)
    cfg["kafka"]["no.such.property"] = "1"
    bad = stack.write_config(name + "-badkafka", cfg)
    out = run_expecting_failure(stack, [binary(name), "--config", bad, "--check-config"])
    assert "no.such.property" in out, out
    # The listen address's form is checked too, not only when the service binds it.
    cfg = SERVICES[name](stack)
    cfg["http"]["listen"] = "garbage"
    bad = stack.write_config(name + "-badlisten", cfg)
    out = run_expecting_failure(stack, [binary(name), "--config", bad, "--check-config"])
    assert "http.listen" in out and "bad listen address 'garbage'" in out, out


def test_consumer_check_config_finds_what_start_would_refuse(stack):
    """--check-config reports what would stop the consumer at start: a
    sites_regex that does not compile, a conversions file that is missing or
    wrong, an ERP URL that is no URL — each naming the key."""
    table = stack.path("uom.csv")
    with open(table, "w") as f:
        f.write("mes_uom,erp_uom,factor\nG,KG,0.001\n")
    good = stack.consumer_config(bootstrap="127.0.0.1:1", overrides={"uom": {"conversions": table}})
    r = stack.run([binary("erp-consumer"), "--config", stack.write_config("c-good", good),
                   "--check-config"], timeout=15)
    assert "configuration ok" in r.out, r.out + r.err
    bad_table = stack.path("uom-bad.csv")
    with open(bad_table, "w") as f:
        f.write("G,KG,abc\n")
    for overrides, says in [
            ({"sites_regex": "[unclosed"}, "key 'sites_regex': '[unclosed' is not a valid"),
            ({"uom": {"conversions": stack.path("missing.csv")}}, "key 'uom.conversions': cannot open"),
            ({"uom": {"conversions": bad_table}}, "key 'uom.conversions': %s:1: factor 'abc'" % bad_table),
            ({"erp": {"adapter": "http-json", "http": {"url": "not a url"}}},
             "key 'erp.http.url': 'not a url' must start with http:// or https://")]:
        cfg = stack.consumer_config(bootstrap="127.0.0.1:1", overrides=overrides)
        out = run_expecting_failure(stack, [binary("erp-consumer"), "--config",
                                            stack.write_config("c-bad", cfg), "--check-config"])
        assert says in out, (overrides, out)


def test_consumer_run_refuses_what_check_config_refuses_before_the_store(stack):
    """`run` refuses a bad kafka.* property or conversions table as
    --check-config does: exit 2 naming the key, before the store or the
    ledger is created (or an existing store migrated)."""
    for overrides, says in [
            ({"uom": {"conversions": stack.path("missing.csv")}},
             "key 'uom.conversions': cannot open"),
            ({"kafka": {"no.such.property": "1"}},
             "key 'kafka.no.such.property': kafka.no.such.property: No such configuration property")]:
        cfg = stack.consumer_config(bootstrap="127.0.0.1:1", overrides=overrides, name="c-run-bad")
        path = stack.write_config("c-run-bad", cfg)
        r = subprocess.run([binary("erp-consumer"), "run", "--config", path], cwd=stack.dir,
                           capture_output=True, timeout=15, stdin=subprocess.DEVNULL,
                           env={k: v for k, v in os.environ.items() if not k.startswith("INVSYNC_")})
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        assert r.returncode == 2 and "c-run-bad.yaml" in out and says in out, (overrides, r.returncode, out)
        for f in (cfg["store"]["path"], cfg["erp"]["sqlite"]["path"]):
            assert not os.path.exists(f), "%s was created by a start that failed:\n%s" % (f, out)


def test_consumer_check_config_names_the_environment_variable(stack):
    """A bad value that came from an INVSYNC_* variable is blamed on the
    variable (and its key), not on the configuration file."""
    path = stack.write_config("c-env", stack.consumer_config(bootstrap="127.0.0.1:1"))
    for env, says in [
            ({"INVSYNC_SITES_REGEX": "("},
             "environment INVSYNC_SITES_REGEX (key 'sites_regex'): '(' is not a valid"),
            ({"INVSYNC_UOM_CONVERSIONS": stack.path("missing.csv")},
             "environment INVSYNC_UOM_CONVERSIONS (key 'uom.conversions'): cannot open")]:
        out = run_expecting_failure(stack, [binary("erp-consumer"), "--config", path,
                                            "--check-config"], env=env)
        assert says in out and "c-env.yaml" not in out, (env, out)


def test_producer_kafka_property_names_the_environment_variable(stack):
    """A kafka.* property librdkafka refuses is blamed on what set it: the
    INVSYNC_KAFKA_* variable (and its key), not the configuration file; one
    the file set, on its line."""
    path = stack.write_config("p-env", stack.producer_config(bootstrap="127.0.0.1:1"))
    out = run_expecting_failure(stack, [binary("mes-producer"), "--config", path,
                                        "--check-config"],
                                env={"INVSYNC_KAFKA_BATCH_SIZE": "abc"})
    assert "environment INVSYNC_KAFKA_BATCH_SIZE (key 'kafka.batch.size')" in out, out
    assert "p-env.yaml" not in out, out
    cfg = stack.producer_config(bootstrap="127.0.0.1:1")
    cfg["kafka"]["batch.size"] = "abc"
    out = run_expecting_failure(stack, [binary("mes-producer"), "--config",
                                        stack.write_config("p-file", cfg), "--check-config"])
    assert re.search(r"p-file\.yaml:\d+: key 'kafka\.batch\.size'", out), out


def test_second_instance_on_the_same_file_is_refused(stack):
    """Two producers on one outbox would hand out the same sequence numbers,
    two consumers on one store post from one state twice: the second
    instance of a service on a file that one is using refuses to start,
    naming the file; the first runs on, and a command-line tool still reads
    the file beside it."""
    stack.start_kafka()
    producer = stack.start_producer()
    consumer = stack.start_consumer()
    for svc, name in ((producer, "mes-producer"), (consumer, "erp-consumer")):
        cfg = dict(svc.config, http={"listen": "127.0.0.1:%d" % free_port()})
        path = stack.write_config(name + "-second", cfg)
        argv = [binary(name)] + (["run"] if name == "erp-consumer" else []) + ["--config", path]
        out = run_expecting_failure(stack, argv)
        db = svc.outbox if name == "mes-producer" else svc.store
        assert "%s is in use by another %s" % (db, name) in out, out
        assert svc.alive(), "%s stopped when a second one was refused" % name
    r = stack.run([binary("erp-consumer"), "status", "--config", consumer.config_path], timeout=15)
    assert r.returncode == 0, r.err
    # Once the first one is gone, the file is free again.
    producer.stop()
    stack.start_producer(config=producer.config)


def test_consumer_time_ordered_ids_from_is_a_time(stack):
    """poster.time_ordered_ids_from takes an RFC 3339 time; anything else is
    refused naming the key and the value."""
    cfg = stack.consumer_config(bootstrap="127.0.0.1:1")
    cfg["poster"] = {"time_ordered_ids_from": "2026-12-01T00:00:00Z"}
    good = stack.write_config("consumer-ids-good", cfg)
    r = stack.run([binary("erp-consumer"), "--config", good, "--check-config"], timeout=15)
    assert "configuration ok" in r.out, r.out + r.err
    cfg["poster"] = {"time_ordered_ids_from": "next monday"}
    bad = stack.write_config("consumer-ids-bad", cfg)
    out = run_expecting_failure(stack, [binary("erp-consumer"), "--config", bad, "--check-config"])
    assert "poster.time_ordered_ids_from" in out and "'next monday' is not an RFC 3339 time" in out, out


def test_consumer_time_ordered_ids_from_cannot_move_past_a_posting(stack):
    """The store keeps poster.time_ordered_ids_from. Restarted with the
    setting removed after a movement it covers was posted, the consumer
    refuses to start, naming the value to set back (a posting made again
    would get another id and be booked twice); with it set back, it runs."""
    stack.start_kafka(partitions=1)
    producer = stack.start_producer()
    cfg = stack.consumer_config(overrides={
        "consume": {"mode": "assign", "discovery": "500ms"},
        "poster": {"time_ordered_ids_from": "1970-01-01T00:00:00Z"}})
    consumer = stack.start_consumer(config=cfg)
    assert producer.post([movement("CUT-1", "PLANT1")]).status == 202
    stack.wait_for(lambda: (consumer.posted_count() or 0) == 1, 30, "CUT-1 to be posted")
    consumer.stop()
    moved = dict(cfg)
    del moved["poster"]
    path = stack.write_config("consumer-cut-over-unset", moved)
    # --check-config says so before a restart is tried, and leaves the store as it is.
    r = stack.run([binary("erp-consumer"), "--config", path, "--check-config"], check=False,
                  timeout=15)
    assert r.returncode == 2, (r.returncode, r.out, r.err)
    assert "poster.time_ordered_ids_from is unset" in r.err and "movement CUT-1" in r.err, r.err
    same = stack.write_config("consumer-cut-over-same", cfg)
    r = stack.run([binary("erp-consumer"), "--config", same, "--check-config"], timeout=15)
    assert "configuration ok" in r.out, r.out
    out = run_expecting_failure(stack, [binary("erp-consumer"), "run", "--config", path])
    assert "poster.time_ordered_ids_from is unset" in out, out
    assert "movement CUT-1" in out and "set it back to 1970-01-01T00:00:00.000Z" in out, out
    again = stack.start_consumer(config=cfg)
    assert again.alive()


def test_consumer_help_lists_kafka_once_and_genealogy_depth(stack):
    r = stack.run([binary("erp-consumer"), "--help"], timeout=15)
    assert r.out.count("kafka.*") == 1, r.out
    genealogy = [l for l in r.out.splitlines() if "erp-consumer genealogy" in l]
    assert genealogy and "--depth N" in genealogy[0], r.out


def test_consumer_help_names_the_kafka_defaults_it_sets(stack):
    """README (Stopping, Adding a site) relies on these defaults; --help must show them."""
    r = stack.run([binary("erp-consumer"), "--help"], timeout=15)
    text = " ".join(r.out.split())
    for kv in ("kafka.bootstrap.servers is required", "group.id=invsync-erp-consumer",
               "session.timeout.ms=10000", "topic.metadata.refresh.interval.ms=10000"):
        assert kv in text, (kv, r.out[-800:])


def test_producer_help_names_the_kafka_defaults_it_sets(stack):
    """README (Capacity) says linger.ms defaults to 1 ms; --help must show every default
    the forwarder sets before the kafka.* keys."""
    r = stack.run([binary("mes-producer"), "--help"], timeout=15)
    text = " ".join(r.out.split())
    for kv in ("kafka.bootstrap.servers is required", "enable.idempotence=true", "acks=all",
               "message.timeout.ms=0", "linger.ms=1"):
        assert kv in text, (kv, r.out[-800:])


@pytest.mark.parametrize("argv", [
    ["mes-producer"], ["erp-consumer"],
    *[["erp-consumer", c] for c in ("run", "seed-erp", "on-hand", "status", "pause", "resume",
                                    "flush", "failed", "trace", "audit", "replay", "genealogy",
                                    "reconcile", "policy-check")]])
def test_every_command_answers_help(stack, argv):
    """--help is a request, not a mistake: usage on stdout, exit 0."""
    r = stack.run([binary(argv[0])] + argv[1:] + ["--help"], check=False, timeout=15)
    assert r.returncode == 0 and "usage:" in r.out, (argv, r.returncode, r.out[-500:], r.err[-500:])


def test_consumer_usage_error_is_not_buried_under_the_key_table(stack):
    """A mistyped option or command: the error and the commands, not the 50-line key
    table of --help after them (the error scrolled out of sight)."""
    for argv in (["trace", "--config", "x.yaml", "--document"], ["frobnicate"], ["--bogus"]):
        r = stack.run([binary("erp-consumer")] + argv, check=False, timeout=15)
        assert r.returncode == 2, (argv, r.returncode, r.err)
        assert "usage: erp-consumer" in r.err and "--help also lists" in r.err, (argv, r.err)
        assert "environment overrides shown" not in r.err and "store.path" not in r.err, (argv, r.err)
        assert len(r.err.splitlines()) < 25, (argv, r.err)
    r = stack.run([binary("erp-consumer"), "--help"], timeout=15)
    assert "environment overrides shown" in r.out and "store.path" in r.out, r.out[-500:]


@pytest.mark.parametrize("name", ["mes-producer", "erp-consumer"])
def test_unknown_variable_warning_names_the_service(stack, name):
    """The configuration is read before the level is known; its warnings must still
    carry the service's name (they said "invsync", which a log filter by service loses)."""
    path = stack.write_config(name + "-warn", SERVICES[name](stack))
    env = dict({k: v for k, v in os.environ.items() if not k.startswith("INVSYNC_")},
               INVSYNC_HTPP_LISTEN="127.0.0.1:1")
    r = subprocess.run([binary(name), "--config", path, "--check-config"], cwd=stack.dir,
                       capture_output=True, timeout=15, stdin=subprocess.DEVNULL, env=env)
    err = r.stderr.decode("utf-8", "replace")
    assert r.returncode == 0, (r.returncode, err)
    warnings = [json.loads(line) for line in err.splitlines() if "INVSYNC_HTPP_LISTEN" in line]
    assert warnings and all(w["service"] == name for w in warnings), err


def test_consumer_refuses_extra_arguments(stack):
    """A word the command does not take is a mistake, not something to ignore."""
    cfg = stack.write_config("consumer-extra", stack.consumer_config(bootstrap="127.0.0.1:1"))
    for argv in (["status", "extra"], ["failed", "list", "now", "please"]):
        r = stack.run([binary("erp-consumer")] + argv + ["--config", cfg], check=False, timeout=15)
        assert r.returncode == 2 and "unexpected argument" in r.err, (argv, r.returncode, r.err)


def test_consumer_refuses_options_and_words_a_command_does_not_take(stack):
    """`pause --site P1 periodic` (the tier without --tier) used to pause every tier of P1, and
    `status --site P1` or `failed list --site P1` to answer for every site: an option a command
    does not take, or a word after it, is refused (exit 2) naming it, and nothing is changed."""
    stack.start_kafka(partitions=1)
    consumer = stack.start_consumer()
    stack.wait_for(lambda: os.path.exists(consumer.store), 10, "the consumer's store")
    cases = [
        (["pause", "--site", "*", "--by", "qa", "--reason", "t", "periodic"],
         "pause: unexpected argument 'periodic'"),
        (["flush", "--site", "*", "--tier", "realtime", "--movement", "M-1", "--by", "qa", "--reason", "t"],
         "flush: option '--movement' does not apply to it (it takes --config, --site, --tier, --by, --reason)"),
        (["status", "--site", "PLANT1"], "status: option '--site' does not apply to it (it takes --config)"),
        (["failed", "list", "--site", "PLANT1"], "failed list: option '--site' does not apply"),
        (["failed", "retry", "0123", "--tier", "x", "--by", "qa", "--reason", "t"],
         "failed retry: option '--tier' does not apply to it (it takes --config, --by, --reason)"),
        (["audit", "verify", "now"], "audit: unexpected argument 'now'"),
        (["trace", "--movement", "M-1", "--site", "PLANT1"], "trace: option '--site' does not apply"),
        (["on-hand", "--tier", "realtime"], "on-hand: option '--tier' does not apply"),
    ]
    for argv, says in cases:
        r = stack.consumer_cli(consumer, *argv, check=False)
        assert r.returncode == 2 and says in r.err, (argv, r.returncode, r.err)
    assert scalar(consumer.store, "SELECT count(*) FROM pauses") == 0
    assert scalar(consumer.store, "SELECT count(*) FROM audit WHERE action IN ('pause', 'flush')") == 0


def test_consumer_refuses_an_option_given_twice(stack):
    """`pause --site PLANT1 --site PLANT2` paused PLANT2 only and `replay --lot A --lot B` read
    lot B only: the last value silently replaced the first. An option that takes a value is
    refused when given twice (exit 2), naming it, before anything is read or changed; so is a
    word the investigations do not take, now named."""
    stack.start_kafka(partitions=1)
    consumer = stack.start_consumer()
    stack.wait_for(lambda: os.path.exists(consumer.store), 10, "the consumer's store")
    mes = stack.path("mes.csv")
    with open(mes, "w") as f:
        f.write("site,material,lot,location,stock_status,uom,quantity\nPLANT1,M,L,LOC,,EA,1\n")
    span = ["--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T01:00:00Z"]
    cases = [
        (["pause", "--site", "PLANT1", "--site", "PLANT2", "--by", "qa", "--reason", "t"],
         "erp-consumer: pause: --site is given twice"),
        (["failed", "skip", "0123", "--by", "qa", "--by", "qb", "--reason", "t"],
         "erp-consumer: failed: --by is given twice"),
        (["replay"] + span + ["--lot", "A", "--lot", "B", "--apply", "--by", "qa", "--reason", "t"],
         "erp-consumer replay: --lot is given twice"),
        (["genealogy", "--lot", "A", "--lot", "B"], "erp-consumer genealogy: --lot is given twice"),
        (["reconcile", "--mes", mes, "--site", "PLANT1", "--site", "PLANT2"],
         "erp-consumer reconcile: --site is given twice"),
        (["replay"] + span + ["PLANT1"], "erp-consumer replay: unexpected argument 'PLANT1'"),
        (["genealogy", "--lot", "A", "B"], "erp-consumer genealogy: unexpected argument 'B'"),
        (["reconcile", "--mes", mes, "PLANT1"], "erp-consumer reconcile: unexpected argument 'PLANT1'"),
    ]
    for argv, says in cases:
        r = stack.consumer_cli(consumer, *argv, check=False)
        assert r.returncode == 2 and says in r.err, (argv, r.returncode, r.err)
    assert scalar(consumer.store, "SELECT count(*) FROM pauses") == 0
    assert scalar(consumer.store, "SELECT count(*) FROM audit WHERE action IN ('pause', 'skip', "
                                  "'replay-apply')") == 0


def test_consumer_admin_command_with_a_broken_policy_is_a_configuration_error(stack):
    """pause/resume/flush read the policy (its tiers and sites): a policy.path that cannot be
    read is a configuration error like `status`'s (exit 2, naming the key), not a store failure
    (exit 1), and nothing is paused."""
    stack.start_kafka(partitions=1)
    consumer = stack.start_consumer()
    stack.wait_for(lambda: os.path.exists(consumer.store), 10, "the consumer's store")
    cfg = dict(consumer.config, policy={"path": stack.path("no-such-policy.yaml")})
    path = stack.write_config("consumer-bad-policy", cfg)
    for argv in (["status"], ["pause", "--site", "*", "--by", "qa", "--reason", "t"],
                 ["flush", "--site", "*", "--by", "qa", "--reason", "t"]):
        r = stack.run([binary("erp-consumer"), argv[0], "--config", path] + argv[1:], check=False)
        assert r.returncode == 2, (argv, r.returncode, r.err)
        assert "policy (key 'policy.path')" in r.err and "no-such-policy.yaml" in r.err, (argv, r.err)
    assert scalar(consumer.store, "SELECT count(*) FROM pauses") == 0


def test_sigterm_answers_the_request_in_flight(stack):
    """A batch whose upload is under way when mes-producer is told to stop
    (a rolling restart) is still stored and answered 202: the server stops
    accepting, lets the request finish, then exits 0. Before, the client got
    its connection closed although its batch had been committed."""
    stack.start_kafka()
    producer = stack.start_producer()
    body = json.dumps([movement("DRAIN-%d" % i, "PLANT1") for i in range(500)]).encode()
    s = socket.create_connection(("127.0.0.1", producer.port), timeout=30)
    s.sendall(("POST /v1/movements HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
               "Authorization: Bearer tok-plant1\r\nExpect: 100-continue\r\n"
               "Content-Length: %d\r\n\r\n" % len(body)).encode())
    # "100 Continue": the server has the headers, the request is under way.
    assert s.recv(64).startswith(b"HTTP/1.1 100"), "no 100 Continue"
    producer.proc.send_signal(signal.SIGTERM)
    stack.wait_for(lambda: "finishing the requests in flight" in open(producer.log).read(), 10,
                   "mes-producer to say it finishes the request in flight")
    s.sendall(body)
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = s.recv(65536)
        assert chunk, "connection closed without an answer: %r" % answer
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 202"), answer[:200]
    s.close()
    assert producer.proc.wait(timeout=20) == 0
    producer.expected_exit = True
    assert producer.outbox_count() == 500


def store_commands(stack):
    """Every command that works on the consumer's store, with arguments it accepts."""
    mes = stack.path("mes.csv")
    with open(mes, "w") as f:
        f.write("site,material,lot,location,stock_status,uom,quantity\nPLANT1,M,L,LOC,,EA,1\n")
    return [
        ["audit", "verify"], ["failed", "list"], ["status"], ["trace", "--movement", "M-1"],
        ["pause", "--site", "*", "--by", "qa", "--reason", "test"],
        ["failed", "skip", "0123", "--by", "qa", "--reason", "test"],
        ["genealogy", "--lot", "L"], ["reconcile", "--mes", mes],
        ["replay", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T01:00:00Z",
         "--apply", "--by", "qa", "--reason", "test"],
    ]


@pytest.mark.parametrize("kind", ["empty", "other-database", "not-a-database"])
def test_commands_refuse_a_file_that_is_no_store(stack, kind):
    """store.path names a file, but not a store: an empty file (touched, a
    volume's placeholder), another database (the ERP ledger's path typed for
    the store's) or not a database at all. Before, the first two were given
    the store's tables: `audit verify` passed on the empty file and `pause`
    wrote into it. Every command refuses, names the path, changes nothing."""
    import sqlite3
    cfg = stack.consumer_config(bootstrap="127.0.0.1:%d" % free_port())
    target = stack.path("not-a-store.db")
    if kind == "empty":
        open(target, "w").close()
        says = "is empty (key 'store.path')"
    elif kind == "other-database":
        conn = sqlite3.connect(target)
        conn.execute("CREATE TABLE on_hand (site TEXT, qty INTEGER)")
        conn.commit()
        conn.close()
        says = "is not an erp-consumer store (key 'store.path')"
    else:
        with open(target, "w") as f:
            f.write("consumer_id: oops\n" * 300)
        says = "cannot read store"
    with open(target, "rb") as f:
        before = f.read()
    cfg["store"]["path"] = target
    path = stack.write_config("consumer-no-store", cfg)
    for argv in store_commands(stack):
        r = stack.run([binary("erp-consumer"), argv[0], "--config", path] + argv[1:], check=False, timeout=30)
        assert r.returncode == 1, (argv, r.returncode, r.out[-500:], r.err[-500:])
        assert says in r.err and "not-a-store.db" in r.err, (argv, r.err[-500:])
        with open(target, "rb") as f:
            assert f.read() == before, "%s changed %s" % (argv, target)


def test_commands_refuse_a_store_that_does_not_exist(stack):
    """A mistyped store.path (or a volume not mounted) must not look like an
    empty, healthy consumer: `audit verify` would say the trail is intact,
    `failed list` that nothing failed, `pause` would pause nothing and
    `replay --apply` would queue into a store no consumer reads. Every command
    that works on the store refuses a file that does not exist, names it, and
    creates nothing."""
    cfg = stack.consumer_config(bootstrap="127.0.0.1:%d" % free_port())
    missing = stack.path("no-such-store.db")
    cfg["store"]["path"] = missing
    path = stack.write_config("consumer-missing-store", cfg)
    for argv in store_commands(stack):
        r = stack.run([binary("erp-consumer"), argv[0], "--config", path] + argv[1:], check=False, timeout=30)
        assert r.returncode == 1, (argv, r.returncode, r.out[-500:], r.err[-500:])
        assert "no-such-store.db' does not exist" in r.err, (argv, r.err[-500:])
        assert not os.path.exists(missing), "%s created the store %s" % (argv, missing)


def test_output_that_cannot_be_written_fails_the_command(stack):
    """A report written into a full disk (or a closed pipe) is truncated: the
    command must not exit 0 (or 3, "here is the drift") as if it were there,
    since a scheduler keeps `reconcile … > report.json` by its exit status."""
    consumer = stack.start_consumer(config=stack.consumer_config(bootstrap="127.0.0.1:%d" % free_port()))
    snap = stack.path("snapshot.csv")
    with open(snap, "w") as f:
        f.write("site,material,lot,location,stock_status,uom,quantity\nPLANT1,M,L,LOC,,EA,1\n")
    commands = [["audit", "verify"], ["status"], ["failed", "list"], ["on-hand"],
                ["reconcile", "--mes", snap, "--erp", snap]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVSYNC_")}
    for argv in commands:
        full = [binary("erp-consumer"), argv[0], "--config", consumer.config_path] + argv[1:]
        ok = subprocess.run(full, cwd=stack.dir, capture_output=True, timeout=30, env=env)
        assert ok.returncode == 0, (argv, ok.returncode, ok.stderr[-500:])
        with open("/dev/full", "wb") as devfull:
            r = subprocess.run(full, cwd=stack.dir, stdout=devfull, stderr=subprocess.PIPE, timeout=30, env=env)
        err = r.stderr.decode("utf-8", "replace")
        assert r.returncode == 1, (argv, r.returncode, err[-500:])
        assert "cannot write the output" in err, (argv, err[-500:])
