"""Helpers of the reliability suite: the real Kafka broker, per-test topic
prefixes and policies, the ERP simulator, kafka-dump, a crash-tolerant load
generator, and the assertions every scenario ends with.

Everything builds on the integration harness (test/integration/conftest.py,
imported as `conftest`): its Stack starts and stops the processes, keeps
their logs and work files on failure, and its wait_for is the only way a test
waits for a condition.
"""

import http.client as httpclient
import json
import os
import re
import shutil
import subprocess
import threading
import time
import types

from conftest import (FIXTURES, MES_DOCS, REPO, Service, binary, free_port, http, http_ok, merge,
                      query)

KAFKA_SH = os.path.join(REPO, "deploy", "kafka", "kafka.sh")
TOKEN = "tok-reliability"  # the producer's "*" token: every site
TIERS = ("realtime", "nearline", "periodic", "shift", "daily")


# ------------------------------------------------------------------ Kafka --

class KafkaBroker:
    """The real Apache Kafka broker of the session (deploy/kafka/kafka.sh):
    one single-node KRaft cluster on loopback. stop()/start() keep its ports
    and data, which is how a broker outage is simulated. env: kafka.sh's
    broker settings (KAFKA_AUTO_CREATE_TOPICS=false for a broker that, like
    most production ones, does not create topics on first use)."""

    def __init__(self, workdir, env=None):
        self.dir = str(workdir)
        self.bootstrap = None
        self.starts = 0
        self.env = dict(os.environ, **(env or {}))

    def _kafka_sh(self, cmd, timeout):
        try:
            r = subprocess.run(["bash", KAFKA_SH, cmd, self.dir], capture_output=True,
                               timeout=timeout, stdin=subprocess.DEVNULL, env=self.env)
        except subprocess.TimeoutExpired:
            raise AssertionError("kafka.sh %s %s did not finish within %ds" % (cmd, self.dir, timeout))
        out, err = r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
        if r.returncode != 0:
            raise AssertionError("kafka.sh %s %s exited %d:\n%s\n%s" % (
                cmd, self.dir, r.returncode, out[-3000:], err[-3000:]))
        return out

    def start(self):
        out = self._kafka_sh("start", 300)
        lines = [l.strip() for l in out.splitlines() if re.match(r"^[\w.-]+:\d+$", l.strip())]
        assert lines, "kafka.sh start printed no bootstrap address: %r" % out[-500:]
        if self.bootstrap is not None:
            assert lines[-1] == self.bootstrap, (
                "the broker came back on %s, not on %s" % (lines[-1], self.bootstrap))
        self.bootstrap = lines[-1]
        self.starts += 1
        return self.bootstrap

    def stop(self):
        self._kafka_sh("stop", 120)

    def pid(self):
        try:
            with open(os.path.join(self.dir, "pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def alive(self):
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False

    def ensure_up(self):
        if not self.alive():
            self.start()
        return self.bootstrap

    def create_topic(self, topic, partitions=3, timeout=60):
        """kafka-topics.sh --create, run from the jars kafka.sh cached (no
        download): Kafka's own TopicCommand."""
        libs = os.path.join(self.env.get("INVSYNC_KAFKA_CACHE") or
                            os.path.join(os.path.dirname(KAFKA_SH), "cache"), "libs")
        argv = ["java", "-Xmx256m", "-cp", os.path.join(libs, "*"), "org.apache.kafka.tools.TopicCommand",
                "--bootstrap-server", self.bootstrap, "--create", "--topic", topic,
                "--partitions", str(partitions), "--replication-factor", "1"]
        r = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        assert r.returncode == 0 and "Created topic" in out, (
            "kafka-topics --create %s exited %d:\n%s" % (topic, r.returncode, out[-3000:]))

    def log_tail(self, lines=60):
        path = os.path.join(self.dir, "server.log")
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 128 * 1024))
                data = f.read().decode("utf-8", "replace")
        except OSError as e:
            return "(no broker log: %s)" % e
        return "\n".join(data.splitlines()[-lines:])


_HELP = {}


def consumer_supports(key):
    """Whether this erp-consumer build knows a configuration key (its --help
    lists every key), so the suite can set keys that are being added."""
    if "consumer" not in _HELP:
        r = subprocess.run([binary("erp-consumer"), "--help"], capture_output=True, timeout=30)
        _HELP["consumer"] = r.stdout.decode("utf-8", "replace") + r.stderr.decode("utf-8", "replace")
    return key in _HELP["consumer"]


# ------------------------------------------------------------ the ERP sim --

class ErpSim(Service):
    """test/tools/erp-sim: the http-json ERP with fault knobs, on a free port,
    over its own ledger (the same schema as the sqlite adapter's)."""

    def __init__(self, stack, name, db, allow_negative=False, seed=0):
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.db = db
        argv = [binary("erp-sim"), "--listen", "127.0.0.1:%d" % self.port, "--db", db,
                "--seed", str(seed)]
        if allow_negative:
            argv.append("--allow-negative")
        super().__init__(stack, name, argv)

    def faults(self, **knobs):
        r = http("POST", self.base + "/_faults", json.dumps(knobs),
                 {"Content-Type": "application/json"}, timeout=10)
        assert r.status == 200, "erp-sim POST /_faults %r: %r" % (knobs, r)
        return r.json()

    def stats(self):
        r = http("GET", self.base + "/_stats", timeout=10)
        assert r.status == 200, "erp-sim GET /_stats: %r" % r
        return r.json()


# ------------------------------------------------------------- kafka-dump --

def kafka_dump(bootstrap, *args, timeout=90):
    argv = [binary("kafka-dump"), "--bootstrap", bootstrap] + [str(a) for a in args]
    r = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    out, err = r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")
    assert r.returncode == 0, "%s exited %d:\n%s" % (" ".join(argv), r.returncode, err[-3000:])
    return out


# ------------------------------------------------------- the test context --

class Rel:
    """One reliability test: its own topic prefix (policy copy), consumer
    group and ERP, on the session's broker, inside the harness's Stack."""

    def __init__(self, stack, kafka, name, rng, figures):
        self.stack = stack
        self.kafka = kafka
        self.rng = rng
        self.figures = figures
        short = re.sub(r"[^a-z0-9]+", "-", name.lower().replace("test_", ""))[:24].strip("-")
        self.prefix = "rel-%s-%04x" % (short, rng.randrange(0x10000))
        self.group = "grp-" + self.prefix
        self.policy = self.write_policy()

    # -- configuration --
    def write_policy(self):
        """The harness policy (every tier immediate) under this test's topic prefix."""
        d = self.stack.path("policy")
        os.makedirs(d, exist_ok=True)
        shutil.copy(os.path.join(FIXTURES, "materials.csv"), os.path.join(d, "materials.csv"))
        with open(os.path.join(FIXTURES, "policy.yaml")) as f:
            text = f.read()
        text = re.sub(r"(?m)^topic_prefix:.*$", "topic_prefix: %s" % self.prefix, text)
        path = os.path.join(d, "policy.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def tier_regex(self):
        return r"^%s\.[^.]+\.(%s)$" % (re.escape(self.prefix), "|".join(TIERS))

    def topic(self, site, tier):
        return "%s.%s.%s" % (self.prefix, site, tier)

    def producer_config(self, name="producer", overrides=None):
        base = {
            "policy": {"path": self.policy},
            "auth": {"tokens": {"*": TOKEN}},
            "heartbeat": {"interval": "1s"},
            "kafka": {"bootstrap.servers": self.kafka.bootstrap},
        }
        return self.stack.producer_config(bootstrap=self.kafka.bootstrap, name=name,
                                          overrides=merge(base, overrides))

    def consumer_config(self, name="consumer", erp_sim=None, overrides=None):
        base = {
            "policy": {"path": self.policy},
            "retry": {"base": "100ms", "max": "2s"},
            "consume": {"mode": "group"},
            "kafka": {
                "bootstrap.servers": self.kafka.bootstrap,
                "group.id": self.group,
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 1000,
                "topic.metadata.refresh.interval.ms": 2000,
            },
        }
        if consumer_supports("consume.gap_timeout"):
            base["consume"]["gap_timeout"] = "5s"
        if erp_sim is not None:
            # The harness reads the ERP ledger at erp.sqlite.path; point it at
            # the simulator's ledger (same schema). The http-json adapter does
            # not open that file.
            base["erp"] = {"adapter": "http-json", "sqlite": {"path": erp_sim.db},
                           "http": {"url": erp_sim.base, "timeout": "2s"}}
        return self.stack.consumer_config(bootstrap=self.kafka.bootstrap, name=name,
                                          overrides=merge(base, overrides))

    def config_only(self, cfg, name="consumer"):
        """The consumer's config file without starting it: enough for the
        harness's CLI helpers (seed_erp, consumer_cli), which need config_path."""
        return types.SimpleNamespace(config=cfg, config_path=self.stack.write_config(name, cfg))

    # -- processes --
    def start_producer(self, name="producer", overrides=None, env=None, config=None):
        """Start a producer; config= restarts one (same port, same outbox)."""
        cfg = config or self.producer_config(name, overrides)
        return self.stack.start_producer(config=cfg, name=name, env=env)

    def start_consumer(self, name="consumer", erp_sim=None, overrides=None, env=None, config=None,
                       wait=True):
        cfg = config or self.consumer_config(name, erp_sim, overrides)
        return self.stack.start_consumer(config=cfg, name=name, env=env, wait=wait)

    def start_erp_sim(self, name="erp-sim", allow_negative=False, seed=None):
        sim = ErpSim(self.stack, self.stack._name(name), self.stack.path(name + "-ledger.db"),
                     allow_negative=allow_negative,
                     seed=seed if seed is not None else self.rng.randrange(1, 1 << 30))
        self.stack.services.append(sim)
        self.stack.wait_for(lambda: http_ok(sim.base + "/healthz"), 20,
                            "erp-sim GET %s/healthz to answer 200" % sim.base)
        return sim

    def opening(self, sites, seed, consumer=None, erp_sim=None):
        """Opening stock from the simulator, booked in the ERP: with
        `erp-consumer seed-erp` (sqlite ledger) or POST /seed (erp-sim)."""
        path = self.stack.path("opening.json")
        self.stack.sim("opening", "--sites", sites, "--seed", seed, "--out", path)
        if erp_sim is not None:
            with open(path, "rb") as f:
                r = http("POST", erp_sim.base + "/seed", f.read(),
                         {"Content-Type": "application/json"}, timeout=30)
            assert r.status in (200, 201), "erp-sim POST /seed: %r" % r
        else:
            self.stack.seed_erp(consumer, path)
        return path

    # -- Kafka --
    def dump(self, *args, **kw):
        out = kafka_dump(self.kafka.bootstrap, "dump", "--decode", *args, **kw)
        return [json.loads(l) for l in out.splitlines() if l.strip()]

    def count_tier_topics(self, ids_name="kafka-ids.tsv"):
        """kafka-dump count over this test's tier topics: the summary and
        {movement_id: copies in Kafka}."""
        path = self.stack.path(ids_name)
        out = kafka_dump(self.kafka.bootstrap, "count", "--regex", self.tier_regex(), "--ids", path)
        summary = json.loads(out.strip().splitlines()[-1])
        copies = {}
        with open(path) as f:
            for line in f:
                mid, n = line.rstrip("\n").split("\t")
                copies[mid] = int(n)
        return summary, copies

    def produce_raw(self, topic, value_hex, key=None, headers=()):
        args = ["produce", "--topic", topic, "--value-hex", value_hex]
        if key:
            args += ["--key", key]
        for h in headers:
            args += ["--header", h]
        return json.loads(kafka_dump(self.kafka.bootstrap, *args).strip().splitlines()[-1])

    # -- fault pacing --
    def random_pause(self, lo, hi):
        """Pick a random moment for the next fault: pacing the fault injector,
        not waiting for a condition (conditions use wait_for)."""
        time.sleep(self.rng.uniform(lo, hi))

    # -- figures for docs/RELIABILITY.md --
    def record(self, **figures):
        self.figures.update(figures)


# ------------------------------------------------------------ assertions --

def doubled_movements(ledger):
    """Movements in more than one ERP posting line (the issue's check)."""
    return query(ledger, "SELECT movement_id, count(*) FROM doc_movements GROUP BY movement_id "
                         "HAVING count(*) > 1 LIMIT 20")


def assert_nothing_doubled(ledger):
    doubled = doubled_movements(ledger)
    assert not doubled, "movements in two ERP postings: %r" % doubled
    refs = query(ledger, "SELECT posting_id, count(*) FROM documents GROUP BY posting_id "
                         "HAVING count(*) > 1 LIMIT 20")
    assert not refs, "ERP references booked twice: %r" % refs


def assert_on_hand(stack, consumer, expected, name="actual.json"):
    _, actual = stack.on_hand(consumer, out_name=name)
    r = stack.compare(expected, actual)
    assert r.returncode == 0, "the ERP's on-hand differs from the simulator's expected:\n%s%s" % (
        r.out[-4000:], r.err[-1000:])


def assert_status_settled(stack, consumer, accepted, timeout=60):
    """/v1/status: posted + cancelled == accepted unique, nothing failed or
    dead. Waits for the store to agree with the ERP first: the ledger can
    already hold a posting whose outcome the consumer is still recording
    (an in-flight posting resolved by lookup after a restart)."""
    def settled():
        mv = consumer.status()["movements"]
        return mv["posting"] == 0 and mv["posted"] + mv.get("cancelled", 0) >= accepted
    stack.wait_for(settled, timeout, "the consumer's store (/v1/status) to record every movement "
                   "as posted or cancelled", interval=0.2,
                   detail=lambda: "movements %r" % consumer.status()["movements"])
    st = consumer.status()
    mv = st["movements"]
    assert mv["posted"] + mv.get("cancelled", 0) == accepted, (
        "status: %d posted + %d cancelled for %d accepted: %r" % (
            mv["posted"], mv.get("cancelled", 0), accepted, mv))
    assert mv["failed"] == 0 and mv["dead"] == 0, "status: %r" % mv
    return st


def ledger_positions(ledger):
    """movement_id -> (document number, line) in the ERP ledger, MES documents only."""
    return {mid: (int(doc), line) for mid, doc, line in query(
        ledger, "SELECT movement_id, doc_no, line_no FROM doc_movements WHERE doc_no IN " + MES_DOCS)}


def lot_order_violations(store, ledger):
    """Per lot, the ERP must hold the lot's movements in acceptance order:
    walking a lot's posted movements by (producer, sequence), their ledger
    positions (document, line) never go back. Returns (lots checked,
    violations [(lot, earlier id, its position, later id, its position)])."""
    pos = ledger_positions(ledger)
    rows = query(store, "SELECT lot_key, producer_id, seq, movement_id FROM movements "
                        "WHERE state = 'posted' ORDER BY lot_key, producer_id, seq")
    lots = {}
    for lot, _producer, _seq, mid in rows:
        lots.setdefault(lot, []).append(mid)
    bad = []
    for lot, mids in lots.items():
        prev = None
        for mid in mids:
            p = pos.get(mid)
            assert p is not None, "movement %s is posted in the store but not in the ERP ledger" % mid
            if prev is not None and p < prev[1]:
                bad.append((lot, prev[0], prev[1], mid, p))
            prev = (mid, p)
    return len(lots), bad


def wait_progress(stack, count, target, timeout, stall, what, detail=None):
    """Wait until count() reaches target; fail early, naming `what`, when it
    has not moved for `stall` seconds."""
    seen = {"n": None, "at": time.monotonic()}

    def done():
        n = count()
        if n >= target:
            return True
        if n != seen["n"]:
            seen.update(n=n, at=time.monotonic())
        elif time.monotonic() - seen["at"] > stall:
            raise AssertionError("waiting for %s: no progress for %ds (%s)" % (
                what, stall, detail() if detail else "at %s of %s" % (n, target)))
        return False

    stack.wait_for(done, timeout, what, interval=0.5, detail=detail)


def assert_lot_order(store, ledger):
    """No lot's movements in the ERP out of acceptance order (see
    lot_order_violations). The message names the sequence gaps the consumer
    skipped, the usual way a movement gets ahead of an earlier one."""
    lots, bad = lot_order_violations(store, ledger)
    if bad:
        gaps = query(store, "SELECT at, subject, detail FROM audit "
                            "WHERE action = 'sequence-gap-skipped' ORDER BY id LIMIT 10")
        raise AssertionError(
            "%d movements reached the ERP before an earlier movement of their lot "
            "(lot, earlier id, its (document, line), later id, its (document, line)): %r; "
            "sequence gaps the consumer skipped (consume.gap_timeout): %d, first %r" % (
                len(bad), bad[:5], gaps_skipped(store), gaps))
    return lots


def gaps_skipped(store):
    """Sequence gaps the consumer gave up on (consume.gap_timeout), from its audit trail."""
    return len(query(store, "SELECT id FROM audit WHERE action = 'sequence-gap-skipped'"))


def count_log_lines(services, needle):
    n = 0
    for s in services:
        try:
            with open(s.log, "rb") as f:
                n += f.read().decode("utf-8", "replace").count(needle)
        except OSError:
            pass
    return n


# ------------------------------------------------------- load generation --

class Loader(threading.Thread):
    """Posts a mes-sim `gen` file (JSON lines) to mes-producer in order, in
    batches, at a steady rate, from one thread (acceptance order = file
    order). A batch without an answer (the producer was killed, or is
    restarting) is sent again until it is answered: the answer is then
    `accepted` or `duplicate` per item, and either way the movement is
    acknowledged. `acked` holds every movement id answered with a 202."""

    def __init__(self, url, lines, batch=50, rate=1000.0, deadline_s=300):
        super().__init__(daemon=True)
        self.url = url
        self.lines = lines
        self.batch = batch
        self.rate = rate
        self.deadline = time.monotonic() + deadline_s
        self.acked = set()
        self.accepted = 0
        self.duplicates = 0
        self.requests = 0
        self.unanswered = 0    # requests that got no answer (connection refused/reset)
        self.error = None
        self.statuses = {}
        self.sent_lines = 0

    def run(self):
        try:
            self._run()
        except Exception as e:  # reported by the test through .error
            self.error = "loader crashed: %r" % e

    def _post(self, body):
        while True:
            if time.monotonic() > self.deadline:
                raise AssertionError("loader deadline passed")
            self.requests += 1
            try:
                r = http("POST", self.url, body, {"Content-Type": "application/json",
                                                  "Authorization": "Bearer " + TOKEN}, timeout=15)
            except (OSError, httpclient.HTTPException):
                self.unanswered += 1
                time.sleep(0.05)  # the producer is down: retry pacing
                continue
            self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
            if r.status == 202:
                return r.json()
            if r.status in (500, 503):
                time.sleep(0.05)
                continue
            raise AssertionError("producer answered %d: %s" % (r.status, r.text[:500]))

    def _run(self):
        t0 = time.monotonic()
        for i in range(0, len(self.lines), self.batch):
            chunk = self.lines[i:i + self.batch]
            ans = self._post("[" + ",".join(chunk) + "]")
            for item in ans.get("items", []):
                if item.get("status") in ("accepted", "duplicate"):
                    self.acked.add(item["movement_id"])
            self.accepted += ans.get("accepted", 0)
            self.duplicates += ans.get("duplicates", 0)
            self.sent_lines = i + len(chunk)
            if self.rate:
                ahead = t0 + self.sent_lines / self.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)  # load pacing


def read_lines(path):
    with open(path) as f:
        return [l.strip() for l in f if l.strip()]
