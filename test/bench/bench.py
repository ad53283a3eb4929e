#!/usr/bin/env python3
"""invsync benchmark harness — what `make bench` runs (via test/bench/run.sh).

Starts real processes on loopback (kafka-mock or Apache Kafka, mes-producer,
erp-consumer, the bench tools in test/tools), drives the scenarios of issue 6
and docs/PERFORMANCE.md in one run, prints a table and writes the figures as
JSON to bench/results/ (git-ignored):

  1 ingest     HTTP batches → movements/s acknowledged (outbox.sync full) and
               through to Kafka delivery (outbox sent_at), JSON and protobuf
  2 apply      pre-filled topics → movements/s posted into the embedded sqlite
               ERP, netted tier (`every 1s`) and real-time tier (one posting each)
  3 latency    real-time tier at offered rates: accepted_time → ERP posted_at
  4 baselines  librdkafka producer/consumer and SQLite insert loops (ceilings)
  5 memory     peak RSS (VmHWM), store bytes per million keys, restart → first posting

Environment (all optional):
  BENCH_N            movements pre-filled for the netted apply (default 1000000)
  BENCH_N_RT         real-time apply movements (default min(BENCH_N, 50000))
  BENCH_N_INGEST     ingest movements per format (default min(BENCH_N, 200000))
  BENCH_SITES        number of sites P1..Pn (default 4)
  BENCH_KAFKA        mock (default) | real (deploy/kafka/kafka.sh)
  BENCH_WORKDIR      scratch directory (default: a new one under /tmp, removed at the end)
  BENCH_KEEP         1 = keep the scratch directory
  BENCH_LATENCY_S    seconds of offered load per latency rate (default 10)
  BENCH_LATENCY_WARM_S  paced warm-up at the same rate before measuring (default 5;
                     30 with BENCH_KAFKA=real, whose JVM needs it)
  BENCH_RATES        offered rates for scenario 3 (default "1000,10000")
  BENCH_RT_TIMEBOX_S longest real-time apply measurement (default 60)
  BENCH_APPLY_TIMEOUT_S longest netted apply measurement (default 420)
  BENCH_ONLY         comma list of scenarios to run: ingest,apply,latency,baselines
  BENCH_CONSUMER_KAFKA  extra kafka.* settings for erp-consumer, "k=v,k=v" (experiments)
  BENCH_CONSUMER_SET    other erp-consumer settings, "poster.batch=50,consume.batch=500"
  BENCH_SOURCE_DIR   source tree the binaries were built from (for the digest; default: this repo)

Waiting is always polling a condition with a deadline; nothing sleeps for a
fixed time to let something happen.
"""

import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOKEN = "bench-token"


# ------------------------------------------------------------------ utils --

def env_int(name, default):
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else default


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout, what, interval=0.05, check=None):
    deadline = time.monotonic() + timeout
    while True:
        if check:
            check()
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(interval)  # polling interval


def child_env():
    """The services read INVSYNC_* overrides: never let the caller's leak in."""
    return {k: v for k, v in os.environ.items() if not k.startswith("INVSYNC_")}


def yaml(obj, indent=0):
    """Block-style YAML for nested dicts of scalars (enough for the configs)."""
    pad = "  " * indent
    out = []
    for k, v in obj.items():
        k = k if re.match(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", k) else json.dumps(k)
        if isinstance(v, dict):
            out.append("%s%s:" % (pad, k))
            out.append(yaml(v, indent + 1))
        elif isinstance(v, list):
            out.append("%s%s: [%s]" % (pad, k, ", ".join(json.dumps(x) for x in v)))
        elif isinstance(v, bool):
            out.append("%s%s: %s" % (pad, k, "true" if v else "false"))
        elif isinstance(v, (int, float)):
            out.append("%s%s: %s" % (pad, k, v))
        else:
            out.append("%s%s: %s" % (pad, k, json.dumps(str(v))))
    return "\n".join(out)


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def http_ok(url):
    try:
        return http_get(url, 1)[0] == 200
    except OSError:
        return False


def ro(path):
    """A read-only connection (the services own the files; WAL lets us read)."""
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    db.execute("PRAGMA busy_timeout=10000")
    return db


def q1(path, sql, args=()):
    db = ro(path)
    try:
        return db.execute(sql, args).fetchone()
    finally:
        db.close()


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, int(round(p * (len(sorted_vals) - 1))))
    return sorted_vals[i]


def file_size(*paths):
    return sum(os.path.getsize(p) for p in paths if os.path.exists(p))


# -------------------------------------------------------------- processes --

class Proc:
    def __init__(self, name, argv, workdir, stdout=None):
        self.name = name
        self.log_path = os.path.join(workdir, name + ".log")
        self.log = open(self.log_path, "ab")
        self.t_start = time.time()
        self.p = subprocess.Popen(argv, cwd=workdir, env=child_env(),
                                  stdout=open(stdout, "wb") if stdout else self.log,
                                  stderr=self.log, start_new_session=True)

    def alive(self):
        return self.p.poll() is None

    def check(self):
        if not self.alive():
            raise RuntimeError("%s exited with %s (log: %s)" % (self.name, self.p.returncode,
                                                               self.log_path))

    def vmhwm_kib(self):
        """Peak resident set size so far (kernel's high-water mark)."""
        try:
            with open("/proc/%d/status" % self.p.pid) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None

    def cpu_s(self):
        """User + system CPU seconds used so far (all threads)."""
        try:
            with open("/proc/%d/stat" % self.p.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))
        except (OSError, IndexError, ValueError):
            return None

    def stop(self, timeout=120):
        """SIGTERM, wait; returns seconds it took (SIGKILL after timeout)."""
        t = time.monotonic()
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()
        return time.monotonic() - t


class Bench:
    def __init__(self, build):
        self.build = os.path.abspath(build)
        self.bin = os.path.join(self.build, "bin")
        self.n = env_int("BENCH_N", 1000000)
        self.n_rt = env_int("BENCH_N_RT", min(self.n, 50000))
        self.n_ingest = env_int("BENCH_N_INGEST", min(self.n, 200000))
        self.n_sites = env_int("BENCH_SITES", 4)
        self.sites = ["P%d" % (i + 1) for i in range(self.n_sites)]
        self.kafka_kind = os.environ.get("BENCH_KAFKA", "mock") or "mock"
        self.latency_s = env_int("BENCH_LATENCY_S", 10)
        # Paced warm-up at the offered rate before each latency measurement:
        # a broker JVM needs tens of seconds of traffic before its JIT settles
        # (the first seconds on a cold Apache Kafka are 10x slower).
        self.latency_warm_s = env_int("BENCH_LATENCY_WARM_S",
                                      30 if self.kafka_kind == "real" else 5)
        self.rates = [int(x) for x in os.environ.get("BENCH_RATES", "1000,10000").split(",") if x]
        self.rt_timebox = env_int("BENCH_RT_TIMEBOX_S", 60)
        self.apply_timeout = env_int("BENCH_APPLY_TIMEOUT_S", 420)
        self.wrap_tool = os.environ.get("BENCH_WRAP", "")
        self.profile_dir = os.environ.get("BENCH_PROFILE_DIR", "")
        # Under valgrind everything is ~50x slower: stretch every deadline.
        self.slow = 30 if self.wrap_tool else 1
        only = os.environ.get("BENCH_ONLY", "")
        self.only = set(x.strip() for x in only.split(",") if x.strip())
        wd = os.environ.get("BENCH_WORKDIR")
        self.own_workdir = not wd
        self.work = os.path.abspath(wd) if wd else tempfile.mkdtemp(prefix="invsync-bench-")
        os.makedirs(self.work, exist_ok=True)
        self.procs = []
        self.kafka = None
        self.kafka_dir = None
        self.bootstrap = None
        self.results = {"scenarios": {}}
        self.rows = []  # (scenario, what, value, unit, config)

    def want(self, s):
        return not self.only or s in self.only

    def path(self, name):
        return os.path.join(self.work, name)

    def tool(self, name):
        p = os.path.join(self.bin, name)
        if not os.access(p, os.X_OK):
            raise RuntimeError("missing %s: build with make (BUILD=%s)" % (p, self.build))
        return p

    def run_tool(self, argv, timeout=900, what=None):
        t = time.monotonic()
        r = subprocess.run(argv, cwd=self.work, env=child_env(), capture_output=True,
                           timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError("%s failed (%d): %s" % (what or argv[0], r.returncode,
                                                       r.stderr.decode()[-2000:]))
        out = r.stdout.decode()
        try:
            start = out.index("{")
            return json.loads(out[start:]), time.monotonic() - t
        except ValueError:
            return {"stdout": out}, time.monotonic() - t

    def row(self, scenario, what, value, unit, config=""):
        self.rows.append((scenario, what, value, unit, config))

    # ------------------------------------------------------------ setup --

    def machine(self):
        model = "?"
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        model = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        mem = 0
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) // 1024
        load = os.getloadavg()
        libs = {}
        for pkg in ("rdkafka", "sqlite3", "libmicrohttpd", "libprotobuf-c", "jansson"):
            try:
                libs[pkg] = subprocess.run(["pkg-config", "--modversion", pkg],
                                           capture_output=True, text=True).stdout.strip()
            except OSError:
                pass
        fs = subprocess.run(["df", "-T", self.work], capture_output=True, text=True).stdout
        fs = fs.splitlines()[-1].split()[1] if fs else "?"
        return {"nproc": os.cpu_count(), "cpu_model": model, "mem_mib": mem,
                "source_digest": self.source_digest(),
                "kernel": platform.release(), "loadavg_at_start": [round(x, 2) for x in load],
                "libs": libs, "workdir_fs": fs, "fsyncs_per_s": self.fsync_rate()}

    @staticmethod
    def source_digest():
        """SHA-256 over the service sources measured (no git here): which code ran."""
        import hashlib
        h = hashlib.sha256()
        src = os.environ.get("BENCH_SOURCE_DIR") or REPO
        for d in ("common", "mes-producer", "erp-consumer", "proto"):
            base = os.path.join(src, d)
            for f in sorted(os.listdir(base)):
                if f.endswith((".c", ".h", ".proto")):
                    h.update(f.encode())
                    with open(os.path.join(base, f), "rb") as fh:
                        h.update(fh.read())
        return h.hexdigest()[:16]

    def fsync_rate(self):
        """4 KiB write + fsync per iteration for 1 s: the disk's commit ceiling."""
        p = self.path("fsync-probe")
        fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
        n, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < 1.0:
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
            n += 1
        os.close(fd)
        os.unlink(p)
        return round(n / (time.monotonic() - t0))

    def policies(self):
        """Bench policies: one topic prefix per scenario, so runs never mix."""
        shutil.copy(os.path.join(REPO, "deploy", "materials.csv"), self.path("materials.csv"))
        with open(os.path.join(REPO, "deploy", "policy.yaml")) as f:
            text = f.read()
        # Scenario 1: the documented default policy (real routing), prefix b1.
        with open(self.path("policy-ingest.yaml"), "w") as f:
            f.write(re.sub(r"(?m)^topic_prefix: .*$", "topic_prefix: b1", text))
        for name, prefix, tiers, default in (
                ("netted", "b2n", [("netted", "every 1s"), ("realtime", "immediate")], "netted"),
                ("rt", "b2r", [("realtime", "immediate")], "realtime"),
                ("lat", "b3", [("realtime", "immediate")], "realtime")):
            with open(self.path("policy-%s.yaml" % name), "w") as f:
                f.write("topic_prefix: %s\ntiers:\n" % prefix)
                for t, cad in tiers:
                    f.write("  %s: {cadence: %s, stale_after: 1h}\n" % (t, cad))
                f.write("default_tier: %s\n" % default)

    def generate(self):
        """Simulator traffic (mes-sim gen, deterministic) for every scenario."""
        lots = max(20, int(math.ceil(self.n / len(self.sites) / 2500.0)))
        specs = [("apply.jsonl", self.n, 1, lots),
                 ("rt.jsonl", self.n_rt, 2, 20),
                 ("ingest.jsonl", self.n_ingest, 3, max(20, self.n_ingest // len(self.sites) // 2500)),
                 ("ingest-pb.jsonl", self.n_ingest, 4, max(20, self.n_ingest // len(self.sites) // 2500))]
        for rate in self.rates:
            n = rate * self.latency_s
            specs.append(("lat-%d.jsonl" % rate, n, 10 + rate, max(20, n // len(self.sites) // 2500)))
            nw = rate * self.latency_warm_s
            if nw:
                specs.append(("lat-%d-paced-warm.jsonl" % rate, nw, 20 + rate,
                              max(20, nw // len(self.sites) // 2500)))
        self.results["inputs"] = {}
        for name, n, seed, lots in specs:
            out = self.path(name)
            argv = [self.tool("mes-sim"), "gen", "--sites", ",".join(self.sites), "--seed",
                    str(seed), "--movements", str(n), "--lots-per-site", str(lots), "--resend",
                    "0", "--out", out]
            r = subprocess.run(argv, cwd=self.work, capture_output=True, timeout=600)
            if r.returncode != 0:
                raise RuntimeError("mes-sim gen: %s" % r.stderr.decode()[-1000:])
            self.results["inputs"][name] = {"movements": n, "seed": seed, "lots_per_site": lots}
        # Movement ids must be unique per source: seeds differ, but ids are
        # <site>-<n>-<k>; make each file's ids distinct by a prefix.
        for name, _, seed, _ in specs:
            self.prefix_ids(self.path(name), "s%d-" % seed)

    @staticmethod
    def prefix_ids(path, prefix):
        tmp = path + ".tmp"
        with open(path) as src, open(tmp, "w") as dst:
            for line in src:
                dst.write(line.replace('"movement_id":"', '"movement_id":"' + prefix, 1)
                          .replace('"reverses_movement_id":"', '"reverses_movement_id":"' + prefix, 1))
        os.replace(tmp, path)

    def mock_partitions_for(self, jsonl):
        """The mock keeps at most 5 MiB per partition and silently drops the
        oldest message sets beyond that (librdkafka 2.0.2 rdkafka_mock.c:
        max_size = 5 MiB, max_cnt = 100000), and the simulator's lots are
        uneven (the fullest partition held ~3x the mean; at a 2 MiB mean
        BENCH_N = 600,000 lost messages). So: the fewest partitions (>= 4)
        that keep every partition of every site's topic under 4 MiB for the
        movements of jsonl (~450 bytes a message): bench-kit fill
        keys a message by its lot key "<site>/<material>/<lot>" and
        librdkafka's default partitioner (consistent_random) puts it in
        partition crc32(key) % count. Few partitions is what a plant runs;
        each one costs the consumer (more fetch queues: the netted tier read
        15 % less at 132 partitions than at 68 for 300,000 movements).
        bench-kit fill checks nothing was dropped, so a wrong guess here
        fails loudly."""
        import collections
        import zlib
        keys = collections.Counter()
        with open(self.path(jsonl)) as f:
            for line in f:
                m = json.loads(line)
                keys[(m.get("site", ""), "%s/%s/%s" % (m.get("site", ""), m.get("material", ""),
                                                       m.get("lot", "")))] += 1
        crcs = [(site, zlib.crc32(k.encode()), c) for (site, k), c in keys.items()]
        limit = (4 << 20) / 450.0  # messages of ~450 bytes with headers and key
        for count in range(4, 1025):
            per = collections.Counter()  # (site, partition) -> messages
            for site, crc, c in crcs:
                per[(site, crc % count)] += c
            if max(per.values() or [0]) <= limit:
                return count
        return 1024

    def start_kafka(self):
        if self.kafka_kind == "real":
            self.kafka_dir = self.path("kafka")
            env = child_env()
            env["KAFKA_PARTITIONS"] = os.environ.get("KAFKA_PARTITIONS", "8")
            r = subprocess.run(["bash", os.path.join(REPO, "deploy", "kafka", "kafka.sh"), "start",
                                self.kafka_dir], capture_output=True, text=True, env=env,
                               timeout=300)
            if r.returncode != 0:
                raise RuntimeError("kafka.sh start: %s" % r.stderr[-2000:])
            self.bootstrap = r.stdout.strip().splitlines()[-1]
            self.results["kafka"] = {"kind": "Apache Kafka (deploy/kafka/kafka.sh)",
                                     "partitions_per_topic": int(env["KAFKA_PARTITIONS"])}
            return
        p_apply = self.mock_partitions_for("apply.jsonl")
        p_rt = self.mock_partitions_for("rt.jsonl")
        topics = []
        for s in self.sites:
            topics += ["b2n.%s.netted:%d" % (s, p_apply), "b2n.%s.realtime:1" % s,
                       "b2r.%s.realtime:%d" % (s, p_rt), "b3.%s.realtime:4" % s]
        argv = [self.tool("kafka-mock"), "--exit-after", "60m"]
        for t in topics:
            argv += ["--topic", t]
        out = self.path("kafka-mock.out")
        self.kafka = Proc("kafka-mock", argv, self.work, stdout=out)
        self.procs.append(self.kafka)

        def boot():
            self.kafka.check()
            try:
                with open(out) as f:
                    line = f.readline().strip()
                    return line if re.match(r"^[\w.-]+:\d+", line) else None
            except OSError:
                return None
        self.bootstrap = wait_for(boot, 20, "kafka-mock's bootstrap address")
        self.results["kafka"] = {"kind": "embedded (kafka-mock, librdkafka mock cluster)",
                                 "partitions_apply_topic": p_apply,
                                 "note": "mock keeps <= 5 MiB per partition in memory; topics "
                                         "pre-created with enough partitions for BENCH_N"}

    # --------------------------------------------------------- services --

    def start_producer(self, name, policy, extra=None):
        port = free_port()
        cfg = {"producer_id": "bench-" + name, "log": {"level": "warn"},
               "http": {"listen": "127.0.0.1:%d" % port, "threads": 4},
               "outbox": {"path": self.path(name + "-outbox.db"), "sync": "full"},
               "policy": {"path": self.path(policy)},
               "auth": {"tokens": {"*": TOKEN}},
               "heartbeat": {"interval": "1s"},
               "kafka": {"bootstrap.servers": self.bootstrap}}
        for k, v in (extra or {}).items():
            cfg[k] = v
        path = self.path(name + ".yaml")
        with open(path, "w") as f:
            f.write(yaml(cfg) + "\n")
        p = Proc(name, self.wrap(name, [self.tool("mes-producer"), "--config", path]), self.work)
        p.cfg = cfg
        p.url = "http://127.0.0.1:%d" % port
        self.procs.append(p)
        wait_for(lambda: http_ok(p.url + "/healthz"), 20 * self.slow, name + " /healthz",
                 check=p.check)
        return p

    def consumer_config(self, name, policy, extra=None):
        cfg = {"consumer_id": "bench-" + name, "log": {"level": "warn"},
               "http": {"listen": "127.0.0.1:%d" % free_port()},
               "store": {"path": self.path(name + "-store.db"), "sync": "full"},
               "policy": {"path": self.path(policy)},
               # allow_negative: the benchmark measures posting, not stock
               # checks (the bucket is still read and written either way).
               "erp": {"adapter": "sqlite",
                       "sqlite": {"path": self.path(name + "-erp.db"), "allow_negative": True}},
               # A new installation's setting: time-ordered posting ids for
               # every movement (PERFORMANCE.md §5.10). Measure the hash ids
               # with BENCH_CONSUMER_SET=poster.time_ordered_ids_from=
               "poster": {"time_ordered_ids_from": "1970-01-01T00:00:00Z"},
               "kafka": {"bootstrap.servers": self.bootstrap,
                         "group.id": "bench-" + name,
                         # The mock elects a group leader 3 s after the first
                         # JoinGroup and expires members whose session ends
                         # before that: below ~3.5 s a consumer never joins
                         # (rdkafka_mock_cgrp.c, librdkafka 2.0.2).
                         "session.timeout.ms": (4000 if self.kafka_kind == "mock" else 6000)
                         * (5 if self.wrap_tool else 1),
                         "heartbeat.interval.ms": 500,
                         "max.poll.interval.ms": (10000 if self.kafka_kind == "mock" else 60000)
                         * (10 if self.wrap_tool else 1),
                         "topic.metadata.refresh.interval.ms": 1000}}
        if self.kafka_kind == "mock":
            # The mock answers an empty Fetch only after the full MaxWait and
            # does not cut it short when data arrives (rdkafka_mock_handlers.c);
            # Apache Kafka answers as soon as fetch.min.bytes are there. Keep
            # that artefact out of the latency figures.
            cfg["kafka"]["fetch.wait.max.ms"] = 10
        for kv in filter(None, os.environ.get("BENCH_CONSUMER_KAFKA", "").split(",")):
            k, v = kv.split("=", 1)
            cfg["kafka"][k.strip()] = v.strip()
        for kv in filter(None, os.environ.get("BENCH_CONSUMER_SET", "").split(",")):
            k, v = kv.split("=", 1)
            node, parts = cfg, k.strip().split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = v.strip()
        for k, v in (extra or {}).items():
            cfg[k] = v
        return cfg

    def start_consumer(self, name, cfg):
        path = self.path(name + ".yaml")
        with open(path, "w") as f:
            f.write(yaml(cfg) + "\n")
        c = Proc(name, self.wrap(name, [self.tool("erp-consumer"), "run", "--config", path]),
                 self.work)
        c.cfg = cfg
        c.store = cfg["store"]["path"]
        c.erp = cfg["erp"]["sqlite"]["path"]
        c.url = "http://" + cfg["http"]["listen"]
        self.procs.append(c)
        return c

    def wrap(self, name, argv):
        """BENCH_WRAP=callgrind runs the services under valgrind (profile.sh)."""
        if self.wrap_tool != "callgrind":
            return argv
        self.n_wrapped = getattr(self, "n_wrapped", 0) + 1
        out = os.path.join(self.profile_dir, "callgrind.%02d.%s.out" % (self.n_wrapped, name))
        return ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                "--dump-instr=no", "--separate-threads=no"] + argv

    @staticmethod
    def log_time(path, msg):
        """Epoch ms of the first JSON log line whose msg is `msg`, or None."""
        import calendar
        try:
            with open(path) as f:
                for line in f:
                    if '"msg":"%s"' % msg in line:
                        ts = json.loads(line)["ts"]  # 2026-11-30T00:28:05.883Z
                        t = calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))
                        return t * 1000.0 + float("0" + ts[19:-1]) * 1000.0
        except (OSError, ValueError, KeyError):
            pass
        return None

    def stop(self, p):
        if p in self.procs:
            self.procs.remove(p)
        return p.stop()

    # ------------------------------------------------- scenario helpers --

    def wait_applied(self, c, expect, timeout, quiet_s=1.5, stall_s=60):
        """Until `expect` movements are stored and none is pending. Cheap polls
        (max rowid) while work is flowing; the exact count only at the end.
        Gives up at the deadline, or when nothing moved for stall_s."""
        deadline = time.monotonic() + timeout
        last_links, last_change = -1, time.monotonic()
        last_progress, progress_at = None, time.monotonic()
        peak = 0
        while True:
            c.check()
            peak = max(peak, c.vmhwm_kib() or 0)
            received = links = 0
            if os.path.exists(c.store):
                try:
                    received = q1(c.store, "SELECT coalesce(max(id), 0) FROM movements")[0]
                except sqlite3.OperationalError:
                    received = 0
            if os.path.exists(c.erp):
                try:
                    links = q1(c.erp, "SELECT coalesce(max(rowid), 0) FROM doc_movements")[0]
                except sqlite3.OperationalError:
                    links = 0
            if links != last_links:
                last_links, last_change = links, time.monotonic()
            if (received, links) != last_progress:
                last_progress, progress_at = (received, links), time.monotonic()
            elif time.monotonic() - progress_at > stall_s:
                log("%s: no progress for %ds (received %d, posted links %d); giving up"
                    % (c.name, stall_s, received, links))
                return False, peak
            if received >= expect and time.monotonic() - last_change >= quiet_s:
                pending = q1(c.store, "SELECT count(*) FROM movements WHERE state IN"
                                      " ('queued', 'posting', 'retry')")[0]
                if pending == 0:
                    return True, peak
            if time.monotonic() > deadline:
                return False, peak
            time.sleep(0.25)  # polling interval

    def apply_figures(self, c, n_expected):
        st = ro(c.store)
        try:
            states = dict(st.execute("SELECT state, count(*) FROM movements GROUP BY state"))
            t_recv0, t_recv1 = st.execute("SELECT min(received_at), max(received_at)"
                                          " FROM movements").fetchone()
            postings = st.execute("SELECT count(*) FROM postings WHERE state = 'posted'").fetchone()[0]
        finally:
            st.close()
        erp = ro(c.erp)
        try:
            docs, t_post1 = erp.execute("SELECT count(*), max(posted_at) FROM documents").fetchone()
            lines = erp.execute("SELECT count(*) FROM doc_lines").fetchone()[0]
        finally:
            erp.close()
        done = states.get("posted", 0) + states.get("cancelled", 0)
        el = ((t_post1 or t_recv1) - t_recv0) / 1000.0 if t_recv0 else None
        el_recv = (t_recv1 - t_recv0) / 1000.0 if t_recv0 else None
        return {"movements_expected": n_expected, "states": states,
                "movements_done": done, "erp_documents": docs, "erp_lines": lines,
                "postings_posted": postings,
                "elapsed_s": el, "movements_per_s": done / el if el else None,
                "postings_per_s": docs / el if el else None,
                "consume_elapsed_s": el_recv,
                "stored_per_s": sum(states.values()) / el_recv if el_recv else None}

    # --------------------------------------------------------- scenarios --

    def scenario_baselines(self):
        log("baselines: SQLite insert loops (outbox and store row shapes)")
        res = {}
        n = min(self.n, 200000)
        for shape in ("outbox", "store"):
            db = self.path("ceiling-%s.db" % shape)
            for p in (db, db + "-wal", db + "-shm"):
                if os.path.exists(p):
                    os.unlink(p)
            r, _ = self.run_tool([self.tool("bench-kit"), "sqlite", "--shape", shape, "--db", db,
                                  "--policy", self.path("policy-netted.yaml"), "--in",
                                  self.path("apply.jsonl"), "--max", str(n)], what="sqlite " + shape)
            res["sqlite_" + shape] = r
            self.row("4 baselines", "SQLite insert, %s rows (batch %d)" % (shape, r["batch"]),
                     r["rows_per_s"], "rows/s", "WAL, synchronous=FULL, %d rows" % n)
        self.results["scenarios"]["baselines"] = res

    def scenario_ingest(self):
        res = {}
        for fmt, src in (("json", "ingest.jsonl"), ("protobuf", "ingest-pb.jsonl")):
            name = "ingest-" + fmt
            log("ingest: %d movements, %s, batches of 1000, 4 clients" % (self.n_ingest, fmt))
            p = self.start_producer(name, "policy-ingest.yaml")
            r, _ = self.run_tool([self.tool("bench-load"), "--url", p.url + "/v1/movements",
                                  "--token", TOKEN, "--in", self.path(src), "--format", fmt,
                                  "--batch", "1000", "--clients", "4"], what="bench-load")
            outbox = p.cfg["outbox"]["path"]
            # Through to Kafka: every row sent (delivery report in, marked).
            ok = wait_for(lambda: q1(outbox, "SELECT count(*) FROM outbox WHERE sent_at IS NULL")[0] == 0,
                          300 * self.slow, "the outbox to drain into Kafka", interval=0.25,
                          check=p.check)
            t_sent1 = q1(outbox, "SELECT max(sent_at) FROM outbox")[0]
            n_rows = q1(outbox, "SELECT count(*) FROM outbox")[0]
            rss = p.vmhwm_kib()
            cpu = p.cpu_s()
            size = file_size(outbox, outbox + "-wal")
            self.stop(p)
            el_deliv = (t_sent1 - r["first_send_ms"]) / 1000.0
            res[fmt] = {"load": r, "outbox_rows": n_rows, "delivered_elapsed_s": el_deliv,
                        "delivered_per_s": n_rows / el_deliv, "producer_vmhwm_kib": rss,
                        "producer_cpu_s": cpu,
                        "producer_cpu_us_per_movement": cpu * 1e6 / n_rows if cpu else None,
                        "outbox_bytes": size, "drained": bool(ok)}
            cfg = "%d mvts, batch 1000, 4 clients, %s" % (self.n_ingest, fmt)
            self.row("1 ingest", "acknowledged (%s)" % fmt, r["movements_per_s"], "mvt/s", cfg)
            self.row("1 ingest", "delivered to Kafka (%s)" % fmt, n_rows / el_deliv, "mvt/s", cfg)
            self.row("1 ingest", "request latency p50/p99 (%s)" % fmt,
                     "%.0f / %.0f" % (r["req_p50_ms"], r["req_p99_ms"]), "ms", cfg)
            self.row("1 ingest", "producer CPU per movement (%s)" % fmt,
                     res[fmt]["producer_cpu_us_per_movement"], "us", cfg + "; HTTP+outbox+Kafka")
            self.row("5 memory", "producer peak RSS, ingest (%s)" % fmt, rss / 1024.0, "MiB", cfg)
        self.results["scenarios"]["ingest"] = res

    def fill(self, policy, src, extra=(), seq_state=None):
        argv = [self.tool("bench-kit"), "fill", "--bootstrap", self.bootstrap, "--policy",
                self.path(policy), "--in", self.path(src), "--producer-id", "bench-fill"]
        if seq_state:
            argv += ["--seq-state", self.path(seq_state)]
        r, _ = self.run_tool(argv + list(extra), what="bench-kit fill")
        return r

    def scenario_apply(self):
        res = {}
        # -- netted tier, N movements ------------------------------------
        log("apply: filling %d movements into b2n.<site>.netted (bench-kit fill)" % self.n)
        fill = self.fill("policy-netted.yaml", "apply.jsonl", seq_state="seq-netted.json")
        res["fill"] = fill
        self.row("4 baselines", "Kafka producer (librdkafka, idempotent, acks=all)",
                 fill["messages_per_s"], "msg/s", "%d msgs, %.0f B payload" %
                 (fill["messages"], fill["avg_payload_bytes"]))
        topics = []
        for s in self.sites:
            topics += ["--topic", "b2n.%s.netted" % s]
        cons, _ = self.run_tool([self.tool("bench-kit"), "consume", "--bootstrap", self.bootstrap,
                                 "--expect", str(self.n), "--timeout", "300s"] + topics,
                                what="bench-kit consume")
        res["kafka_consume"] = cons
        self.row("4 baselines", "Kafka consumer (librdkafka, assign, no decode)",
                 cons["messages_per_s"], "msg/s", "%d msgs, %d partitions" %
                 (cons["messages"], cons["partitions"]))

        log("apply: erp-consumer, netted tier (every 1s), %d movements" % self.n)
        cfg = self.consumer_config("apply-netted", "policy-netted.yaml")
        c = self.start_consumer("apply-netted", cfg)
        t0 = time.time()
        ok, peak = self.wait_applied(c, self.n, timeout=self.apply_timeout * self.slow,
                                     stall_s=60 * self.slow)
        fig = self.apply_figures(c, self.n)
        fig["complete"] = ok
        fig["consumer_vmhwm_kib"] = c.vmhwm_kib()
        fig["consumer_cpu_s"] = c.cpu_s()
        fig["consumer_cpu_us_per_movement"] = (fig["consumer_cpu_s"] * 1e6 / fig["movements_done"]
                                               if fig["consumer_cpu_s"] and fig["movements_done"]
                                               else None)
        fig["wall_from_start_s"] = time.time() - t0
        res["netted"] = fig
        conf = "%d mvts, %d sites, every 1s, store+ERP sync full%s" % (
            self.n, len(self.sites),
            "" if ok else " (time-boxed %ds: %d done)" % (self.apply_timeout, fig["movements_done"]))
        self.row("2 apply", "netted: movements posted", fig["movements_per_s"], "mvt/s", conf)
        self.row("2 apply", "netted: consumed into store", fig["stored_per_s"], "mvt/s", conf)
        self.row("2 apply", "netted: ERP documents", fig["postings_per_s"], "docs/s", conf)
        self.row("2 apply", "netted: consumer CPU per movement", fig["consumer_cpu_us_per_movement"],
                 "us", conf)
        self.row("5 memory", "consumer peak RSS, netted apply", fig["consumer_vmhwm_kib"] / 1024.0,
                 "MiB", conf)

        # -- restart with N keys in the store ------------------------------
        log("restart: stopping the consumer with %d keys in its store" % self.n)
        stop_s = self.stop(c)
        size = file_size(c.store, c.store + "-wal")
        keys = q1(c.store, "SELECT count(*) FROM movements")[0]
        restart = {"keys_in_store": keys, "store_bytes": size,
                   "store_bytes_per_million_keys": size * 1e6 / keys, "stop_s": stop_s}
        # consume.mode group (the default) and assign (one owner per site;
        # on the mock it skips the coordinator's fixed first-join delay).
        for mode in ("group", "assign"):
            cfg2 = dict(cfg, log={"level": "info"},  # to see when partitions are assigned
                        consume={"mode": mode})
            restart[mode] = self.restart_probe("apply-netted-restart-" + mode, cfg2)
        res["restart"] = restart
        self.row("5 memory", "store bytes per 1M keys (movements incl. payload)",
                 size * 1e6 / keys / 1048576.0, "MiB", "%d keys, file %0.f MiB" %
                 (keys, size / 1048576.0))
        for mode in ("group", "assign"):
            r = restart[mode]
            join_s = r["to_partitions_assigned_s"]
            self.row("5 memory", "consumer restart -> first posting (%s)" % mode,
                     r["restart_to_first_posting_s"], "s",
                     "%d keys in store; consume.mode %s; %s s of it to partitions assigned" %
                     (keys, mode, "%.2f" % join_s if join_s is not None else "?"))

        # -- real-time tier -----------------------------------------------
        log("apply: filling %d movements into b2r.<site>.realtime" % self.n_rt)
        self.fill("policy-rt.yaml", "rt.jsonl")
        log("apply: erp-consumer, real-time tier (one posting each), up to %ds" % self.rt_timebox)
        cfg = self.consumer_config("apply-rt", "policy-rt.yaml")
        c = self.start_consumer("apply-rt", cfg)
        ok, peak = self.wait_applied(c, self.n_rt, timeout=self.rt_timebox * self.slow,
                                     stall_s=60 * self.slow)
        fig = self.apply_figures(c, self.n_rt)
        fig["complete"] = ok
        fig["consumer_vmhwm_kib"] = c.vmhwm_kib()
        fig["consumer_cpu_s"] = c.cpu_s()
        fig["consumer_cpu_us_per_posting"] = (fig["consumer_cpu_s"] * 1e6 / fig["erp_documents"]
                                              if fig["consumer_cpu_s"] and fig["erp_documents"]
                                              else None)
        self.stop(c)
        res["realtime"] = fig
        conf = "%d mvts%s, immediate, store+ERP sync full%s" % (  # noqa: E501
            self.n_rt, "" if ok else " (time-boxed %ds: %d done)" % (self.rt_timebox,
                                                                      fig["movements_done"]),
            ", time-ordered ids" if c.cfg.get("poster", {}).get("time_ordered_ids_from") else "")
        self.row("2 apply", "real-time: ERP postings", fig["postings_per_s"], "postings/s", conf)
        self.row("2 apply", "real-time: consumed into store", fig["stored_per_s"], "mvt/s", conf)
        self.row("2 apply", "real-time: consumer CPU per posting", fig["consumer_cpu_us_per_posting"],
                 "us", conf)
        self.row("5 memory", "consumer peak RSS, real-time apply",
                 fig["consumer_vmhwm_kib"] / 1024.0, "MiB", conf)
        self.results["scenarios"]["apply"] = res

    def restart_probe(self, name, cfg):
        """Put one more stamped real-time movement (the next P1 sequence) into
        Kafka, start a consumer on the existing store and time spawn -> that
        movement's ERP posting; the 'partition(s) assigned' log line splits
        it. Returns the figures; stops the consumer."""
        probe = self.path(name + "-probe.jsonl")
        pid = "PROBE-%s-%d" % (name, int(time.time() * 1000))
        with open(probe, "w") as f:
            f.write(json.dumps({"movement_id": pid, "source_system": "MES-SIM", "site": self.sites[0],
                                "type": "COMPLETION", "material": "FG-399", "lot": "PROBE-LOT",
                                "location": "FG-STAGE", "quantity": "1", "uom": "EA",
                                "order_id": "ORD-PROBE", "to_status": "UNRESTRICTED",
                                "event_time": "2026-01-05T06:00:00.000Z"}) + "\n")
        self.fill("policy-netted.yaml", os.path.basename(probe), extra=["--tier", "realtime"],
                  seq_state="seq-netted.json")
        c2 = self.start_consumer(name, cfg)
        t_start_ms = c2.t_start * 1000.0

        def probe_posted():
            c2.check()
            try:
                return q1(c2.erp, "SELECT d.posted_at FROM doc_movements m JOIN documents d"
                                  " ON d.doc_no = m.doc_no WHERE m.movement_id = ?", (pid,))
            except sqlite3.OperationalError:
                return None
        row = wait_for(probe_posted, 120 * self.slow, "the probe movement to be posted after restart",
                       interval=0.02)
        assigned_ms = self.log_time(c2.log_path, "partition assigned") or \
            self.log_time(c2.log_path, "partitions assigned")
        out = {"restart_to_first_posting_s": (row[0] - t_start_ms) / 1000.0,
               "to_partitions_assigned_s": (assigned_ms - t_start_ms) / 1000.0
               if assigned_ms else None,
               "assigned_to_first_posting_s": (row[0] - assigned_ms) / 1000.0
               if assigned_ms else None,
               "consumer_vmhwm_kib_after_restart": c2.vmhwm_kib()}
        self.stop(c2)
        return out

    def scenario_latency(self):
        res = {}
        for rate in self.rates:
            name = "lat-%d" % rate
            n = rate * self.latency_s
            batch = max(1, rate // 100)  # a request every 10 ms
            log("latency: %d movements/s offered for %ds (batches of %d every 10 ms)" %
                (rate, self.latency_s, batch))
            p = self.start_producer(name + "-producer", "policy-lat.yaml")
            cfg = self.consumer_config(name + "-consumer", "policy-lat.yaml")
            if self.kafka_kind == "mock" and \
                    "fetch.wait.max.ms" not in os.environ.get("BENCH_CONSUMER_KAFKA", ""):
                # An empty Fetch parks on the mock for the whole MaxWait even when a
                # message arrives meanwhile (Apache Kafka answers at once), so here
                # MaxWait is the mock's idle delay: 10 ms added ~5 ms on average
                # and up to 10 ms to every movement (p99 41 -> 28 ms at 1,000/s).
                # Shorter costs the mock CPU: it walks a partition's message sets
                # linearly on every Fetch, so keep this scenario's runs short.
                cfg["kafka"]["fetch.wait.max.ms"] = 2
            c = self.start_consumer(name + "-consumer", cfg)
            wait_for(lambda: http_ok(c.url + "/healthz"), 20, "consumer /healthz", check=c.check)
            # Warm-up (not measured): topics, group join, metadata, first postings.
            warm = self.path(name + "-warm.jsonl")
            with open(warm, "w") as f:
                for i, s in enumerate(self.sites):
                    f.write(json.dumps({"movement_id": "WARM-%d-%d" % (rate, i),
                                        "source_system": "MES-SIM", "site": s, "type": "COMPLETION",
                                        "material": "FG-398", "lot": "WARM-%s" % s,
                                        "location": "FG-STAGE", "quantity": "1", "uom": "EA",
                                        "order_id": "ORD-WARM", "to_status": "UNRESTRICTED",
                                        "event_time": "2026-01-05T06:00:00.000Z"}) + "\n")
            self.run_tool([self.tool("bench-load"), "--url", p.url + "/v1/movements", "--token",
                           TOKEN, "--in", warm, "--batch", "100", "--clients", "1"], what="warm-up")

            def warm_done():
                c.check()
                try:
                    return q1(c.erp, "SELECT count(*) FROM documents")[0] >= len(self.sites)
                except sqlite3.OperationalError:
                    return False
            wait_for(warm_done, 60, "warm-up movements posted", interval=0.1)
            warm_n = 0
            if self.latency_warm_s:
                # Steady state first: the same rate, not measured.
                log("latency: %ds paced warm-up at %d/s (not measured)" % (self.latency_warm_s, rate))
                warm_n = rate * self.latency_warm_s
                self.run_tool([self.tool("bench-load"), "--url", p.url + "/v1/movements",
                               "--token", TOKEN, "--in", self.path(name + "-paced-warm.jsonl"),
                               "--batch", str(batch), "--clients", "2", "--rate", str(rate)],
                              what="bench-load paced warm-up")
                self.wait_applied(c, warm_n + len(self.sites), timeout=max(60, 3 * self.latency_warm_s))
            r, _ = self.run_tool([self.tool("bench-load"), "--url", p.url + "/v1/movements",
                                  "--token", TOKEN, "--in", self.path(name + ".jsonl"),
                                  "--batch", str(batch), "--clients", "2", "--rate", str(rate)],
                                 what="bench-load paced")
            drain = max(60, 3 * self.latency_s)
            ok, peak = self.wait_applied(c, n + warm_n + len(self.sites), timeout=drain)
            t_end = time.time() * 1000.0
            ob = ro(p.cfg["outbox"]["path"])
            measured = "s%d-%%" % (10 + rate)  # the measured file's id prefix (generate)
            acc = dict(ob.execute("SELECT movement_id, accepted_at FROM outbox"
                                  " WHERE movement_id LIKE ?", (measured,)))
            sent = dict(ob.execute("SELECT movement_id, sent_at FROM outbox"
                                   " WHERE movement_id LIKE ?", (measured,)))
            ob.close()
            erp = ro(c.erp)
            posted = dict(erp.execute("SELECT m.movement_id, min(d.posted_at) FROM doc_movements m"
                                      " JOIN documents d ON d.doc_no = m.doc_no"
                                      " GROUP BY m.movement_id"))
            erp.close()
            # A REVERSAL queued together with its original cancels it: neither
            # reaches the ERP, so neither has a posting latency.
            cancelled = set(r[0] for r in ro(c.store).execute(
                "SELECT movement_id FROM movements WHERE state = 'cancelled'"))
            lat, to_kafka, unposted = [], [], 0
            for mid, a in acc.items():
                if mid in cancelled:
                    continue
                if mid in posted:
                    lat.append(posted[mid] - a)
                else:
                    unposted += 1
                    lat.append(t_end - a)  # censored: at least this long
                if sent.get(mid):
                    to_kafka.append(sent[mid] - a)
            lat.sort()
            to_kafka.sort()
            fig = {"offered_per_s": rate, "movements": len(acc), "batch": batch,
                   "cancelled_reversal_pairs": len(cancelled),
                   "load": r, "unposted_at_deadline": unposted, "complete": ok,
                   "p50_ms": pct(lat, .5), "p95_ms": pct(lat, .95), "p99_ms": pct(lat, .99),
                   "max_ms": lat[-1] if lat else None,
                   "to_kafka_p50_ms": pct(to_kafka, .5), "to_kafka_p99_ms": pct(to_kafka, .99),
                   "producer_vmhwm_kib": p.vmhwm_kib(), "consumer_vmhwm_kib": c.vmhwm_kib()}
            res[str(rate)] = fig
            self.stop(p)
            self.stop(c)
            conf = "%d/s offered %ds after %ds warm-up, batch %d /10ms, 2 clients%s" % (
                rate, self.latency_s, self.latency_warm_s, batch,
                "" if ok else "; %d not posted after %ds drain (lower bounds)" % (unposted, drain))
            self.row("3 latency", "accepted -> ERP posted p50/p95/p99/max @%d/s" % rate,
                     "%s / %s / %s / %s" % tuple("%.0f" % v for v in
                                                 (fig["p50_ms"], fig["p95_ms"], fig["p99_ms"],
                                                  fig["max_ms"])), "ms", conf)
            self.row("3 latency", "accepted -> Kafka delivered p50/p99 @%d/s" % rate,
                     "%.0f / %.0f" % (fig["to_kafka_p50_ms"] or 0, fig["to_kafka_p99_ms"] or 0),
                     "ms", conf)
            self.row("5 memory", "producer / consumer peak RSS @%d/s" % rate,
                     "%.1f / %.1f" % (fig["producer_vmhwm_kib"] / 1024.0,
                                      fig["consumer_vmhwm_kib"] / 1024.0), "MiB", conf)
        self.results["scenarios"]["latency"] = res

    # ----------------------------------------------------------- report --

    def ratios(self):
        s = self.results["scenarios"]
        b = s.get("baselines", {})
        out = {}
        if "ingest" in s and "sqlite_outbox" in b:
            for fmt in ("json", "protobuf"):
                if fmt in s["ingest"]:
                    out["ingest_%s_ack / sqlite_outbox" % fmt] = (
                        s["ingest"][fmt]["load"]["movements_per_s"] / b["sqlite_outbox"]["rows_per_s"])
        if "apply" in s:
            a = s["apply"]
            if "sqlite_store" in b and a.get("netted", {}).get("stored_per_s"):
                out["apply_netted_stored / sqlite_store"] = (
                    a["netted"]["stored_per_s"] / b["sqlite_store"]["rows_per_s"])
            if a.get("netted", {}).get("movements_per_s"):
                out["apply_netted_posted / kafka_consume"] = (
                    a["netted"]["movements_per_s"] / a["kafka_consume"]["messages_per_s"])
            if "ingest" in s:
                out["ingest_json_delivered / kafka_produce"] = (
                    s["ingest"]["json"]["delivered_per_s"] / a["fill"]["messages_per_s"])
            if a.get("realtime", {}).get("postings_per_s"):
                out["apply_realtime_postings / fsyncs_per_s"] = (
                    a["realtime"]["postings_per_s"] / self.results["machine"]["fsyncs_per_s"])
        self.results["ratios"] = out
        for k, v in out.items():
            self.row("4 ratio", k, v, "x", "same run")

    def table(self):
        def fmt(v):
            if isinstance(v, float):
                return "%.0f" % v if v >= 100 else ("%.2f" % v if v < 10 else "%.1f" % v)
            return str(v)
        rows = [("scenario", "measure", "value", "unit", "configuration")]
        rows += [(a, b, fmt(c) if c is not None else "n/a", d, e) for a, b, c, d, e in self.rows]
        w = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = []
        for i, r in enumerate(rows):
            lines.append("| " + " | ".join(r[k].ljust(w[k]) if k != 2 else r[k].rjust(w[k])
                                           for k in range(5)) + " |")
            if i == 0:
                lines.append("|" + "|".join("-" * (w[k] + 2) for k in range(5)) + "|")
        return "\n".join(lines)

    def run(self):
        t0 = time.time()
        self.results["started"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.results["machine"] = self.machine()
        self.results["config"] = {"BENCH_N": self.n, "BENCH_N_RT": self.n_rt,
                                  "BENCH_N_INGEST": self.n_ingest, "sites": self.sites,
                                  "BENCH_KAFKA": self.kafka_kind, "rates": self.rates,
                                  "latency_s": self.latency_s, "rt_timebox_s": self.rt_timebox}
        m = self.results["machine"]
        log("machine: %s x%d, %s MiB, fsync %d/s; work dir %s" %
            (m["cpu_model"], m["nproc"], m["mem_mib"], m["fsyncs_per_s"], self.work))
        self.policies()
        log("generating simulator traffic (mes-sim gen)")
        self.generate()
        self.start_kafka()
        log("kafka: %s at %s" % (self.results["kafka"]["kind"], self.bootstrap))
        try:
            for name, fn in (("baselines", self.scenario_baselines),
                             ("ingest", self.scenario_ingest),
                             ("apply", self.scenario_apply),
                             ("latency", self.scenario_latency)):
                if self.want(name) or (name == "baselines" and self.want("apply")):
                    fn()
        finally:
            for p in list(self.procs):
                p.stop()
            if self.kafka_dir:
                subprocess.run(["bash", os.path.join(REPO, "deploy", "kafka", "kafka.sh"), "stop",
                                self.kafka_dir], capture_output=True)
        self.ratios()
        self.results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        self.results["elapsed_s"] = time.time() - t0
        self.results["table"] = self.table()
        return self.results

    def save(self):
        out_dir = os.path.join(REPO, "bench", "results")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        paths = [os.path.join(out_dir, "bench-%s.json" % stamp),
                 os.path.join(out_dir, "latest.json")]
        if self.wrap_tool:  # a profile run: its rates are valgrind's, keep them apart
            out_dir = self.profile_dir or out_dir
            paths = [os.path.join(out_dir, "profile-run-%s.json" % stamp)]
        os.makedirs(out_dir, exist_ok=True)
        path = paths[0]
        for p in paths:
            with open(p, "w") as f:
                json.dump(self.results, f, indent=1, sort_keys=True, default=str)
        logs = os.path.join(out_dir, "logs-%s" % stamp)
        os.makedirs(logs, exist_ok=True)
        for f in os.listdir(self.work):
            if f.endswith((".log", ".yaml")):
                shutil.copy(os.path.join(self.work, f), logs)
        return path

    def cleanup(self):
        if self.own_workdir and os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(self.work, ignore_errors=True)


def main():
    if len(sys.argv) != 2:
        print("usage: bench.py BUILD_DIR", file=sys.stderr)
        return 2
    b = Bench(sys.argv[1])
    rc = 0
    try:
        b.run()
    except Exception as e:  # report what we have, then fail
        log("FAILED: %s" % e)
        b.results["error"] = str(e)
        b.results["table"] = b.table()
        rc = 1
    path = b.save()
    print()
    print(b.results["table"])
    print()
    print("machine: %(cpu_model)s, %(nproc)d cores, %(mem_mib)d MiB, fsync %(fsyncs_per_s)d/s"
          % b.results["machine"])
    print("results: %s (elapsed %.0f s)" % (path, b.results.get("elapsed_s", 0)))
    if rc:
        print("work dir kept for inspection: %s" % b.work)
    else:
        b.cleanup()
    return rc


if __name__ == "__main__":
    sys.exit(main())
