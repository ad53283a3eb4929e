"""Integration-test harness: real processes on loopback, polled with deadlines.

Everything a test needs to run invsync end to end:

* ``stack`` (fixture): one per test. Starts kafka-mock, mes-producer and
  erp-consumer as real processes in the test's tmp dir, each on a free
  loopback port, logs to ``<name>.log``; stops them all at teardown. When a
  test fails, the tails of the logs are attached to the report and the whole
  work dir (logs, configs, databases, simulator files) is copied to
  ``test/out/<test name>/`` (git-ignored).
* ``wait_for(predicate, timeout, what)``: the only way a test waits. Polls
  until the predicate returns something truthy and raises, naming *what* did
  not happen, when the deadline passes. With ``stack.wait_for`` it also fails
  at once when a service died.
* Small stdlib-only clients: HTTP (``http``), SQLite read-only queries
  (``query``), a Kafka Metadata request (``kafka_topics``), a YAML writer for
  service configs (``to_yaml``).

Binaries come from ``$INVSYNC_BUILD/bin`` (test/run-integration.sh sets it;
default ``<repo>/build/bin``).
"""

import http.client as httpclient
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import time
import urllib.parse

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.environ.get("INVSYNC_BUILD") or os.path.join(REPO, "build"))
BIN = os.path.join(BUILD, "bin")
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
POLICY = os.path.join(FIXTURES, "policy.yaml")
OUT_DIR = os.path.join(REPO, "test", "out")

ADMIN_TOKEN = "admin-secret-token"
ERP_SOURCE = "ERP-SAP"  # loop guard: movements from this source are refused


# ---------------------------------------------------------------- waiting --

class WaitTimeout(AssertionError):
    pass


def wait_for(predicate, timeout, what, interval=0.05, check=None, detail=None):
    """Poll predicate() until it returns a truthy value (returned) or the
    deadline passes (WaitTimeout naming `what`). check() runs before each
    poll and may raise (e.g. a service died). detail() adds the current state
    to the timeout message."""
    deadline = time.monotonic() + timeout
    delay = interval
    while True:
        if check is not None:
            check()
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            msg = "timed out after %.0fs waiting for %s" % (timeout, what)
            if detail is not None:
                try:
                    msg += " (%s)" % detail()
                except Exception as e:  # the detail must not hide the timeout
                    msg += " (detail unavailable: %s)" % e
            raise WaitTimeout(msg)
        time.sleep(delay)  # polling interval, not a wait for a condition
        delay = min(delay * 1.5, 0.5)


# ------------------------------------------------------------------- misc --

def binary(name):
    path = os.path.join(BIN, name)
    if not os.access(path, os.X_OK):
        pytest.fail("binary %s is missing: build it first (make all)" % path)
    return path


def free_port():
    """A port nothing listens on right now (bind port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sanitize(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:120]


def tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)
    return "\n".join(data.splitlines()[-lines:])


# ------------------------------------------------------------------- YAML --

_PLAIN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./:@+-]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if _PLAIN.match(s) and s.lower() not in _YAML_WORDS:
        return s
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj, indent=0):
    """Block-style YAML for nested dicts / lists of scalars (enough for configs)."""
    pad = "  " * indent
    out = []
    for k, v in obj.items():
        key = _scalar(k)
        if isinstance(v, dict):
            if not v:
                out.append("%s%s: {}" % (pad, key))
            else:
                out.append("%s%s:" % (pad, key))
                out.append(to_yaml(v, indent + 1))
        elif isinstance(v, (list, tuple)):
            if not v:
                out.append("%s%s: []" % (pad, key))
            else:
                out.append("%s%s:" % (pad, key))
                out.extend("%s  - %s" % (pad, _scalar(i)) for i in v)
        else:
            out.append("%s%s: %s" % (pad, key, _scalar(v)))
    return "\n".join(out)


def merge(base, extra):
    """Deep-merge extra into a copy of base; a None value deletes the key."""
    out = dict(base)
    for k, v in (extra or {}).items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


# ------------------------------------------------------------------- HTTP --

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError("response %d is not JSON (%s): %r" % (self.status, e, self.body[:500]))

    def __repr__(self):
        return "<HTTP %d %s>" % (self.status, self.body[:300])


def http(method, url, body=None, headers=None, timeout=30):
    """One request on a fresh connection; returns a Response for any status.
    Raises OSError / http.client errors only when there is no answer."""
    u = urllib.parse.urlsplit(url)
    conn = httpclient.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        path = u.path + ("?" + u.query if u.query else "")
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def http_ok(url):
    try:
        return http("GET", url, timeout=2).status == 200
    except (OSError, httpclient.HTTPException):
        return False


# ----------------------------------------------------------------- SQLite --

def query(path, sql, args=()):
    """Rows of a read-only query on a service's SQLite file (WAL-safe)."""
    conn = sqlite3.connect("file:%s?mode=ro" % urllib.parse.quote(path), uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def scalar(path, sql, args=()):
    return query(path, sql, args)[0][0]


def try_query(path, sql, args=()):
    """Like query() but None while the file or table does not exist yet."""
    if not os.path.exists(path):
        return None
    try:
        return query(path, sql, args)
    except sqlite3.Error:
        return None


def try_scalar(path, sql, args=()):
    """Like scalar() but None while the file or table does not exist yet."""
    if not os.path.exists(path):
        return None
    try:
        return scalar(path, sql, args)
    except sqlite3.Error:
        return None


# ------------------------------------------------------------------ Kafka --

def _kstr(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise OSError("kafka closed the connection")
        buf += chunk
    return buf


def kafka_topics(bootstrap, timeout=5):
    """Names of all topics in the cluster, by a Metadata v1 request (all
    topics: a null topic array, which does not auto-create anything)."""
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    corr = 7
    req = struct.pack(">hhi", 3, 1, corr) + _kstr("invsync-tests") + struct.pack(">i", -1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(struct.pack(">i", len(req)) + req)
        (size,) = struct.unpack(">i", _recv_exact(s, 4))
        data = _recv_exact(s, size)
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return vals[0] if len(vals) == 1 else vals

    def string():
        nonlocal pos
        n = take(">h")
        if n < 0:
            return None
        s = data[pos:pos + n].decode()
        pos += n
        return s

    assert take(">i") == corr
    for _ in range(take(">i")):  # brokers
        take(">i"); string(); take(">i"); string()
    take(">i")  # controller id
    topics = set()
    for _ in range(take(">i")):
        take(">h")
        name = string()
        take(">b")
        for _ in range(take(">i")):  # partitions
            take(">hii")
            for _ in range(take(">i")):
                take(">i")
            for _ in range(take(">i")):
                take(">i")
        topics.add(name)
    return topics


def policy_prefix(path=POLICY):
    with open(path) as f:
        for line in f:
            m = re.match(r"^topic_prefix:\s*['\"]?([A-Za-z0-9_.-]+)", line)
            if m:
                return m.group(1)
    return "invsync"


# -------------------------------------------------------------- movements --

# ---- protobuf wire format by hand (messages a foreign writer could send) ----

def pb_varint(n):
    """A base-128 varint."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_ld(field, payload):
    """A length-delimited field (wire type 2)."""
    if isinstance(payload, str):
        payload = payload.encode()
    return pb_varint(field << 3 | 2) + pb_varint(len(payload)) + payload


def pb_vi(field, n):
    """A varint field (wire type 0)."""
    return pb_varint(field << 3) + pb_varint(n)


def movement(mid, site, type="COMPLETION", material="MAT-100", lot="LOT-1",
             location="STOR-1", quantity="5", uom="EA", source="MES-TEST", **extra):
    """A valid MES movement in the JSON form of the API (proto field names)."""
    m = {
        "movement_id": mid, "source_system": source, "site": site, "type": type,
        "material": material, "lot": lot, "location": location,
        "quantity": quantity, "uom": uom, "event_time": "2026-01-05T08:00:00Z",
    }
    if type in ("COMPLETION", "GOODS_ISSUE"):
        m["order_id"] = "ORD-1"
    if type == "SCRAP":
        m["reason_code"] = "DAMAGED"
    m.update(extra)
    return m


# --------------------------------------------------------------- services --

class Service:
    def __init__(self, stack, name, argv, env=None, stdout_path=None):
        self.stack = stack
        self.name = name
        self.argv = argv
        self.log = os.path.join(stack.dir, name + ".log")
        self.expected_exit = False
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("INVSYNC_")}
        child_env.update(env or {})
        with open(self.log, "ab") as logf:
            logf.write(("### %s: %s\n" % (time.strftime("%H:%M:%S"), " ".join(argv))).encode())
            logf.flush()
            out = open(stdout_path, "wb") if stdout_path else logf
            try:
                self.proc = subprocess.Popen(argv, stdout=out, stderr=logf, stdin=subprocess.DEVNULL,
                                             cwd=stack.dir, env=child_env, start_new_session=True)
            finally:
                if stdout_path:
                    out.close()

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def check(self):
        if not self.expected_exit and self.proc.poll() is not None:
            raise AssertionError("%s exited unexpectedly with code %s; last lines of %s:\n%s"
                                 % (self.name, self.proc.returncode, self.log, tail(self.log, 25)))

    def kill(self):
        """SIGKILL (a crash), and wait for it to be gone."""
        self.expected_exit = True
        if self.alive():
            self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self, timeout=15):
        """SIGTERM, SIGKILL after timeout. Returns the exit code. A service of
        ours that did not exit 0 on SIGTERM (a crash or a sanitizer report at
        shutdown, or no exit at all) is remembered in unclean_stop."""
        self.expected_exit = True
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                with open(self.log, "ab") as f:
                    f.write(b"### harness: no exit %ds after SIGTERM, killed\n" % timeout)
                self.unclean_stop = "no exit %d s after SIGTERM" % timeout
            if self.proc.returncode != 0 and not getattr(self, "unclean_stop", None) and \
                    os.path.basename(self.argv[0]) in ("mes-producer", "erp-consumer"):
                self.unclean_stop = "exit code %s after SIGTERM" % self.proc.returncode
        return self.proc.returncode


class Producer(Service):
    def __init__(self, stack, name, config, config_path, env=None):
        self.config = config
        self.config_path = config_path
        self.port = int(config["http"]["listen"].rsplit(":", 1)[1])
        self.base = "http://127.0.0.1:%d" % self.port
        self.url = self.base + "/v1/movements"
        self.outbox = config["outbox"]["path"]
        super().__init__(stack, name, [binary("mes-producer"), "--config", config_path], env)

    def token(self, site):
        toks = self.config["auth"]["tokens"]
        return toks.get(site) or toks.get("*")

    def post(self, body, site=None, token=None, content_type="application/json", headers=None):
        """POST /v1/movements. body: dict/list (JSON-encoded) or bytes/str as is.
        The token defaults to the configured one of `site` (or of the first movement's site)."""
        if isinstance(body, (dict, list)):
            if site is None:
                first = body if isinstance(body, dict) else (body[0] if body else {})
                site = first.get("site") if isinstance(first, dict) else None
            body = json.dumps(body)
        h = {"Content-Type": content_type}
        if token is None and site is not None:
            token = self.token(site)
        if token:
            h["Authorization"] = "Bearer " + token
        h.update(headers or {})
        return http("POST", self.url, body, h)

    def outbox_count(self, where=""):
        return scalar(self.outbox, "SELECT count(*) FROM outbox " + where)


class Consumer(Service):
    def __init__(self, stack, name, config, config_path, env=None):
        self.config = config
        self.config_path = config_path
        self.port = int(config["http"]["listen"].rsplit(":", 1)[1])
        self.base = "http://127.0.0.1:%d" % self.port
        self.store = config["store"]["path"]
        self.erp = config["erp"]["sqlite"]["path"]
        super().__init__(stack, name, [binary("erp-consumer"), "run", "--config", config_path], env)

    def status(self):
        r = http("GET", self.base + "/v1/status", timeout=10)
        assert r.status == 200, "GET /v1/status: %r" % r
        return r.json()

    # -- the embedded ERP ledger --
    def posted_count(self):
        """Distinct movements with an ERP document (None before the ledger exists)."""
        return try_scalar(self.erp, "SELECT count(DISTINCT movement_id) FROM doc_movements "
                                    "WHERE doc_no IN " + MES_DOCS)

    def settled_count(self):
        """MES movements the consumer is done with: in an ERP document, or
        cancelled (a REVERSAL and its original netted to nothing inside the
        window, so neither reaches the ERP). None before both files exist."""
        posted = self.posted_count()
        cancelled = try_scalar(self.store, "SELECT count(*) FROM movements WHERE state = 'cancelled'")
        if posted is None or cancelled is None:
            return None
        return posted + cancelled

    def store_count(self, where=""):
        return try_scalar(self.store, "SELECT count(*) FROM movements " + where)


class Stack:
    """The processes of one test and its work dir."""

    def __init__(self, workdir, test_name):
        self.dir = str(workdir)
        self.test_name = test_name
        self.services = []
        self.bootstrap = None
        self.kafka = None
        self._n = {}

    # -- bookkeeping --
    def _name(self, base):
        n = self._n.get(base, 0) + 1
        self._n[base] = n
        return base if n == 1 else "%s-%d" % (base, n)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def check_alive(self):
        for s in self.services:
            s.check()

    def wait_for(self, predicate, timeout, what, **kw):
        """wait_for that also fails at once when a service died."""
        return wait_for(predicate, timeout, what, check=self.check_alive, **kw)

    def stop_all(self):
        for s in reversed(self.services):
            try:
                s.stop()
            except Exception as e:  # keep stopping the others
                print("stopping %s: %s" % (s.name, e), file=sys.stderr)

    def unclean_stops(self):
        """Services of ours that did not shut down cleanly, with their log tails."""
        return ["%s: %s; last lines of %s:\n%s" % (s.name, s.unclean_stop, s.log, tail(s.log, 15))
                for s in self.services if getattr(s, "unclean_stop", None)]

    def log_tails(self, lines=40):
        parts = []
        for fn in sorted(os.listdir(self.dir)):
            if fn.endswith(".log"):
                parts.append("----- %s (last %d lines) -----\n%s" % (fn, lines, tail(self.path(fn), lines)))
        return "\n".join(parts) or "(no service logs)"

    def keep(self):
        """Copy the work dir to test/out/<test name>/ for a post-mortem."""
        dest = os.path.join(OUT_DIR, sanitize(self.test_name))
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(self.dir, dest, ignore=shutil.ignore_patterns("*.sock"), dirs_exist_ok=True)
        return dest

    # -- processes --
    def start_kafka(self, brokers=1, partitions=3, extra_args=()):
        name = self._name("kafka-mock")
        out = self.path(name + ".out")
        # --exit-after: a safety net should the harness itself be killed.
        argv = [binary("kafka-mock"), "--brokers", str(brokers), "--partitions", str(partitions),
                "--exit-after", "20m"]
        svc = Service(self, name, argv + list(extra_args), stdout_path=out)
        self.services.append(svc)

        def bootstrap():
            try:
                with open(out) as f:
                    for line in f:
                        line = line.strip()
                        if re.match(r"^[\w.-]+:\d+(,[\w.-]+:\d+)*$", line):
                            return line
            except OSError:
                pass
            return None

        self.bootstrap = self.wait_for(bootstrap, 20, "kafka-mock to print its bootstrap address on stdout")
        self.kafka = svc
        return self.bootstrap

    def producer_config(self, bootstrap=None, overrides=None, name="producer"):
        cfg = {
            "producer_id": "test-" + name,
            "log": {"level": "info"},
            "http": {"listen": "127.0.0.1:%d" % free_port(), "threads": 4},
            "outbox": {"path": self.path(name + "-outbox.db"), "sync": "normal"},
            "policy": {"path": POLICY},
            "auth": {"tokens": {"PLANT1": "tok-plant1", "PLANT2": "tok-plant2"}},
            "loop_guard": {"refused_sources": [ERP_SOURCE]},
            "heartbeat": {"interval": "1s"},
            "kafka": {"bootstrap.servers": bootstrap or self.bootstrap},
        }
        return merge(cfg, overrides)

    def consumer_config(self, bootstrap=None, overrides=None, name="consumer"):
        cfg = {
            "consumer_id": "test-" + name,
            "log": {"level": "info"},
            "http": {"listen": "127.0.0.1:%d" % free_port()},
            "store": {"path": self.path(name + "-store.db"), "sync": "normal"},
            "policy": {"path": POLICY},
            "erp": {"adapter": "sqlite", "sqlite": {"path": self.path(name + "-erp.db")}},
            "admin": {"token": ADMIN_TOKEN},
            "kafka": {
                "bootstrap.servers": bootstrap or self.bootstrap,
                "group.id": "invsync-test-" + name,
                # New topics (a new site) are seen within a second.
                "topic.metadata.refresh.interval.ms": 1000,
                # The mock cluster re-joins a group slowly otherwise (DESIGN.md §8).
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500,
            },
        }
        return merge(cfg, overrides)

    def write_config(self, name, cfg):
        path = self.path(name + ".yaml")
        with open(path, "w") as f:
            f.write(to_yaml(cfg) + "\n")
        return path

    def start_producer(self, overrides=None, config=None, wait=True, name="producer", env=None):
        cfg = config or self.producer_config(overrides=overrides, name=name)
        path = self.write_config(name, cfg)
        p = Producer(self, self._name(name), cfg, path, env)
        self.services.append(p)
        if wait:
            self.wait_for(lambda: http_ok(p.base + "/healthz"), 20,
                          "mes-producer GET %s/healthz to answer 200" % p.base)
        return p

    def start_consumer(self, overrides=None, config=None, wait=True, name="consumer", env=None):
        """Start (or, with config=, restart) an erp-consumer."""
        cfg = config or self.consumer_config(overrides=overrides, name=name)
        path = self.write_config(name, cfg)
        c = Consumer(self, self._name(name), cfg, path, env)
        self.services.append(c)
        if wait:
            self.wait_for(lambda: http_ok(c.base + "/healthz"), 20,
                          "erp-consumer GET %s/healthz to answer 200" % c.base)
        return c

    # -- command-line tools --
    def run(self, argv, timeout=60, check=True, what=None):
        """Run a CLI to completion; output goes to the test's cli.log too."""
        try:
            r = subprocess.run(argv, cwd=self.dir, capture_output=True, timeout=timeout,
                               stdin=subprocess.DEVNULL,
                               env={k: v for k, v in os.environ.items() if not k.startswith("INVSYNC_")})
        except subprocess.TimeoutExpired as e:
            raise AssertionError("%s did not finish within %ds:\n%s" % (
                " ".join(argv), timeout, (e.stderr or b"")[-3000:].decode("utf-8", "replace")))
        out = r.stdout.decode("utf-8", "replace")
        err = r.stderr.decode("utf-8", "replace")
        with open(self.path("cli.log"), "a") as f:
            f.write("### %s\n### exit %d\n%s%s\n" % (" ".join(argv), r.returncode,
                                                    out[-20000:], err[-20000:]))
        if check and r.returncode != 0:
            raise AssertionError("%s exited %d:\n%s\n%s" % (what or " ".join(argv), r.returncode,
                                                           out[-3000:], err[-3000:]))
        r.out, r.err = out, err
        return r

    def sim(self, *args, timeout=180, check=True):
        return self.run([binary("mes-sim")] + [str(a) for a in args], timeout=timeout, check=check)

    def sim_background(self, *args):
        name = self._name("mes-sim")
        svc = Service(self, name, [binary("mes-sim")] + [str(a) for a in args])
        svc.expected_exit = True  # it finishes by itself; check its code explicitly
        self.services.append(svc)
        return svc

    def consumer_cli(self, consumer, *args, timeout=60, check=True):
        sub = args[0]
        return self.run([binary("erp-consumer"), sub, "--config", consumer.config_path] + list(args[1:]),
                        timeout=timeout, check=check)

    def seed_erp(self, consumer, opening_path):
        return self.consumer_cli(consumer, "seed-erp", opening_path)

    def on_hand(self, consumer, site=None, out_name="actual.json"):
        args = ["on-hand"] + (["--site", site] if site else [])
        r = self.consumer_cli(consumer, *args)
        try:
            rows = json.loads(r.out)
        except ValueError as e:
            raise AssertionError("erp-consumer on-hand did not print JSON (%s): %r" % (e, r.out[:500]))
        path = self.path(out_name)
        with open(path, "w") as f:
            f.write(r.out)
        return rows, path

    def compare(self, expected_path, actual_path):
        """mes-sim compare; returns the CompletedProcess (0 equal, 1 differ)."""
        return self.sim("compare", expected_path, actual_path, check=False, timeout=60)


# ------------------------------------------------------ shared assertions --

# The ERP documents made from MES movements: `erp-consumer seed-erp` posts
# the opening stock as its own document (posting_id "seed-…", tier
# "opening"), which is not an MES movement.
MES_DOCS = "(SELECT doc_no FROM documents WHERE posting_id NOT LIKE 'seed-%')"


def assert_exactly_once(consumer, producer):
    """Every movement the producer accepted (its outbox) is in exactly one ERP
    document, or was cancelled together with its REVERSAL before posting;
    nothing else is in the ledger."""
    erp = consumer.erp
    accepted = {mid for (mid,) in query(producer.outbox, "SELECT movement_id FROM outbox")}
    doubled = query(erp, "SELECT movement_id, group_concat(DISTINCT doc_no) FROM doc_movements "
                         "GROUP BY movement_id HAVING count(DISTINCT doc_no) > 1 LIMIT 10")
    assert not doubled, "movements posted in more than one ERP document: %r" % doubled
    posted = {mid for (mid,) in query(erp, "SELECT DISTINCT movement_id FROM doc_movements "
                                           "WHERE doc_no IN " + MES_DOCS)}
    cancelled = dict(query(consumer.store, "SELECT movement_id, type FROM movements WHERE state = 'cancelled'"))
    both = posted & set(cancelled)
    assert not both, "movements both posted and cancelled: %r" % sorted(both)[:10]
    # Cancelling takes a REVERSAL (type 8) and its original: always pairs.
    reversals = sum(1 for t in cancelled.values() if t == 8)
    assert 2 * reversals == len(cancelled), "cancelled movements are not REVERSAL/original pairs: %r" % (
        sorted(cancelled.items())[:10])
    done = posted | set(cancelled)
    assert done == accepted, (
        "producer accepted %d movements; ERP posted %d, %d cancelled; missing %r, unexpected %r" % (
            len(accepted), len(posted), len(cancelled),
            sorted(accepted - done)[:5], sorted(done - accepted)[:5]))
    links = scalar(erp, "SELECT count(*) FROM (SELECT DISTINCT movement_id, doc_no FROM doc_movements "
                        "WHERE doc_no IN " + MES_DOCS + ")")
    assert links == len(posted), "ERP ledger links %d (movement, document) pairs for %d movements" % (
        links, len(posted))
    dup_refs = query(erp, "SELECT posting_id, count(*) FROM documents GROUP BY posting_id HAVING count(*) > 1")
    assert not dup_refs, "posting_id used by several documents: %r" % dup_refs


def consumer_state(consumer):
    """One line on where the consumer's movements are, for failure messages."""
    states = try_query(consumer.store, "SELECT state, count(*) FROM movements GROUP BY state")
    errors = try_query(consumer.store, "SELECT last_error, count(*) FROM postings WHERE state = 'failed' "
                                       "GROUP BY last_error LIMIT 3")
    return "ERP ledger has %s MES movements; consumer store by state: %s%s" % (
        consumer.posted_count(), states, "; failed postings: %s" % errors if errors else "")


def wait_all_posted(stack, consumer, expected, timeout=120, stall=30, what=None):
    """Wait until the consumer settled `expected` MES movements (posted to the
    ERP or cancelled with their REVERSAL, see settled_count). Fails at once
    when the consumer holds a permanently failed or dead movement (it would
    never get there) and when nothing moved for `stall` seconds."""
    what = what or "the ERP ledger to hold all %d accepted movements" % expected
    progress = {"n": None, "at": time.monotonic()}

    def done():
        n = consumer.settled_count()
        if n == expected:
            return True
        stuck = try_scalar(consumer.store, "SELECT count(*) FROM movements WHERE state IN ('failed', 'dead')")
        if stuck:
            raise AssertionError("waiting for %s: %d movement(s) failed permanently or were "
                                 "dead-lettered (%s)" % (what, stuck, consumer_state(consumer)))
        if n != progress["n"]:
            progress.update(n=n, at=time.monotonic())
        elif time.monotonic() - progress["at"] > stall:
            raise WaitTimeout("waiting for %s: no progress for %ds (%s)" % (what, stall, consumer_state(consumer)))
        return False

    stack.wait_for(done, timeout, what, interval=0.2, detail=lambda: consumer_state(consumer))


# -------------------------------------------------------- pytest plumbing --

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    st = getattr(item, "_invsync_stack", None)
    if st is not None and rep.failed and rep.when in ("setup", "call"):
        rep.sections.append(("service logs (tails; all files kept in %s)"
                             % os.path.join(OUT_DIR, sanitize(item.name)), st.log_tails()))


@pytest.fixture
def stack(request, tmp_path):
    st = Stack(tmp_path, request.node.name)
    request.node._invsync_stack = st
    shutil.rmtree(os.path.join(OUT_DIR, sanitize(request.node.name)), ignore_errors=True)
    yield st
    st.stop_all()
    unclean = st.unclean_stops()
    failed = unclean or any(getattr(getattr(request.node, "rep_" + w, None), "failed", False)
                            for w in ("setup", "call"))
    if failed:
        dest = st.keep()
        print("\nservice logs and work files kept in %s" % dest)
    # A service that crashes or reports a leak when it is stopped fails the test.
    assert not unclean, "\n".join(unclean)


def load_json(path):
    with open(path) as f:
        return json.load(f)


def find_key(obj, *names):
    """First value under any of names anywhere in nested JSON (status output
    naming is free-form); None when absent."""
    if isinstance(obj, dict):
        for n in names:
            if n in obj and not isinstance(obj[n], (dict, list)):
                return obj[n]
        for v in obj.values():
            r = find_key(v, *names)
            if r is not None:
                return r
    elif isinstance(obj, list):
        for v in obj:
            r = find_key(v, *names)
            if r is not None:
                return r
    return None
