"""Deployment artefacts: they must be valid, agree with each other and with
what the services really expose.

* deploy/prometheus: `promtool check config`, `promtool check rules`,
  `promtool test rules` (alerts_test.yml exercises every alert); every alert
  carries severity, summary, description and a runbook.
* /metrics of a running mes-producer and erp-consumer passes
  `promtool check metrics` and carries every metric family the alerts and
  the dashboard use.
* deploy/grafana: the dashboard's queries parse as PromQL, panels do not
  overlap, provisioning points where docker-compose.yml mounts the files.
* docker-compose.yml: `docker-compose config` (Debian's docker-compose
  1.29). No Docker engine runs here, so the stack is validated, not
  started; the topic-creation job's script is run with a stand-in for
  kafka-topics.sh and must create exactly the policy's tier topics.
* deploy/Dockerfile: the runtime stage installs a package for every shared
  library the binaries link, the build stage one for every pkg-config module
  of the Makefile; non-root, health check, volume.
* deploy/config/*.yaml load in the real binaries, with paths overridden
  through INVSYNC_* environment variables as in the containers.

promtool comes from Debian's prometheus package (deploy/install-deps.sh);
tests that need it are skipped, saying so, only when it is missing.
"""

import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import REPO, binary, http, movement

DEPLOY = os.path.join(REPO, "deploy")
PROM = os.path.join(DEPLOY, "prometheus")
GRAFANA = os.path.join(DEPLOY, "grafana")
DASHBOARD = os.path.join(GRAFANA, "dashboards", "invsync.json")
COMPOSE = os.path.join(REPO, "docker-compose.yml")
DOCKERFILE = os.path.join(DEPLOY, "Dockerfile")
POLICY = os.path.join(DEPLOY, "policy.yaml")

# The metric families each service exposes (issue 5); alerts and dashboard
# are written against exactly these names.
PRODUCER_METRICS = {
    "invsync_movements_total", "invsync_http_requests_total", "invsync_outbox_backlog",
    "invsync_outbox_oldest_unsent_age_seconds", "invsync_kafka_delivery_errors_total",
    "invsync_kafka_up", "invsync_heartbeats_sent_total", "invsync_kafka_topics_missing",
    "invsync_db_checkpoints_total", "invsync_db_wal_pages",
}
CONSUMER_METRICS = {
    "invsync_consumer_messages_total", "invsync_consumer_movements_total",
    "invsync_heartbeats_received_total", "invsync_site_last_heartbeat_timestamp_seconds",
    "invsync_site_last_movement_timestamp_seconds", "invsync_queue_depth",
    "invsync_oldest_unposted_age_seconds", "invsync_tier_stale", "invsync_tier_stale_after_seconds",
    "invsync_last_posting_timestamp_seconds", "invsync_failed_postings", "invsync_dead_letters",
    "invsync_paused", "invsync_erp_postings_total", "invsync_erp_call_duration_seconds",
    "invsync_consumer_lag", "invsync_watermark_gap_age_seconds", "invsync_kafka_up",
    "invsync_db_checkpoints_total", "invsync_db_wal_pages", "invsync_sequences_skipped_total",
}
# Written by `erp-consumer reconcile --metrics-file` (node_exporter's textfile collector).
RECONCILE_METRICS = {"invsync_reconcile_differences", "invsync_reconcile_last_run_timestamp_seconds"}
# Used with a fallback (`or vector(30)`) until mes-producer publishes it.
OPTIONAL_METRICS = {"invsync_heartbeat_interval_seconds"}
HISTOGRAMS = {"invsync_erp_call_duration_seconds"}

# What the issue asks alerts for; every alert of alerts.yml must also fire in alerts_test.yml.
REQUIRED_ALERTS = {
    "InvsyncTierStale", "InvsyncSiteSilent", "InvsyncSiteQuiet", "InvsyncPostingsFailed",
    "InvsyncErpRetriesSustained", "InvsyncDeadLettersGrowing", "InvsyncOutboxBacklogGrowing",
    "InvsyncConsumerLagHigh", "InvsyncWatermarkGapNotClosing", "InvsyncTierPausedTooLong",
}

NO_ENGINE = ("no Docker engine runs here: docker-compose.yml is validated with "
             "`docker-compose config`, the stack is not started")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def promtool():
    path = shutil.which("promtool")
    if not path:
        pytest.skip("promtool is missing (Debian package prometheus): run `make deps`")
    return path


def run(argv, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 120)
    return subprocess.run(argv, **kw)


def metric_names(expr):
    """invsync_* metric names in a PromQL expression (histogram series → family)."""
    names = set()
    for n in re.findall(r"\binvsync_[a-z0-9_]+", expr):
        for suffix in ("_bucket", "_sum", "_count"):
            if n.endswith(suffix) and n[: -len(suffix)] in HISTOGRAMS:
                n = n[: -len(suffix)]
        names.add(n)
    return names


def alert_blocks():
    """{alert name: its text in alerts.yml}."""
    text = read(os.path.join(PROM, "alerts.yml"))
    parts = re.split(r"^\s*- alert:\s*", text, flags=re.M)[1:]
    return {p.split("\n", 1)[0].strip(): p for p in parts}


def alert_exprs():
    """{alert name: its expr}, one-line or block (`expr: |`)."""
    out = {}
    for name, block in alert_blocks().items():
        lines = block.splitlines()
        i = next((i for i, l in enumerate(lines) if re.match(r"^\s*expr:", l)), None)
        assert i is not None, "alert %s has no expr" % name
        head = lines[i].split("expr:", 1)[1].strip()
        if head != "|":
            out[name] = head
            continue
        indent = len(lines[i]) - len(lines[i].lstrip())
        body = []
        for l in lines[i + 1:]:
            if l.strip() and len(l) - len(l.lstrip()) <= indent:
                break
            body.append(l)
        out[name] = "\n".join(body)
        assert out[name].strip(), "alert %s has an empty expr" % name
    return out


def dashboard():
    with open(DASHBOARD, encoding="utf-8") as f:
        return json.load(f)


def dashboard_exprs(d):
    exprs = []
    for p in d["panels"]:
        for t in p.get("targets", []):
            exprs.append((p["title"], t["expr"]))
    return exprs


def policy_tiers(path=POLICY):
    """Tier names of a policy file, in order (`tiers:` mapping keys)."""
    tiers, inside = [], False
    for line in read(path).splitlines():
        if re.match(r"^tiers:\s*$", line):
            inside = True
            continue
        if inside and re.match(r"^\S", line):
            break
        m = re.match(r"^  ([a-z0-9_-]+):", line)
        if inside and m:
            tiers.append(m.group(1))
    assert tiers, "no tiers found in %s" % path
    return tiers


# ------------------------------------------------------------ Prometheus ----

def test_prometheus_config_and_rules_are_valid():
    r = run([promtool(), "check", "config", os.path.join(PROM, "prometheus.yml")])
    assert r.returncode == 0, r.stdout + r.stderr
    r = run([promtool(), "check", "rules", os.path.join(PROM, "alerts.yml")])
    assert r.returncode == 0, r.stdout + r.stderr
    print(r.stdout.strip())


def test_alert_rules_unit_tests_pass():
    r = run([promtool(), "test", "rules", os.path.join(PROM, "alerts_test.yml")])
    assert r.returncode == 0, "promtool test rules failed:\n" + r.stdout + r.stderr


def test_every_alert_is_documented_and_tested():
    blocks = alert_blocks()
    assert REQUIRED_ALERTS <= set(blocks), "missing alerts: %s" % sorted(REQUIRED_ALERTS - set(blocks))
    for name, block in blocks.items():
        assert re.search(r"^\s*severity:\s*(critical|warning|info)\s*$", block, re.M), name
        for key in ("summary", "description", "runbook"):
            assert re.search(r"^\s*%s:\s*\S" % key, block, re.M), "alert %s has no %s" % (name, key)

    # A firing case per alert: an alert_rule_test with exp_labels.
    tests = read(os.path.join(PROM, "alerts_test.yml"))
    firing = set()
    for case in re.split(r"^\s*- eval_time:", tests, flags=re.M)[1:]:
        m = re.search(r"alertname:\s*(\w+)", case)
        if m and "exp_labels:" in case:
            firing.add(m.group(1))
    assert set(blocks) <= firing, "alerts never seen firing in alerts_test.yml: %s" % sorted(set(blocks) - firing)


def test_rules_and_dashboard_use_only_existing_metrics():
    known = PRODUCER_METRICS | CONSUMER_METRICS | OPTIONAL_METRICS | RECONCILE_METRICS
    used = {}
    for name, expr in alert_exprs().items():
        for m in metric_names(expr):
            used.setdefault(m, []).append("alert " + name)
    d = dashboard()
    for title, expr in dashboard_exprs(d):
        for m in metric_names(expr):
            used.setdefault(m, []).append("panel '%s'" % title)
    for v in d["templating"]["list"]:
        for m in metric_names(json.dumps(v.get("query", ""))):
            used.setdefault(m, []).append("variable " + v["name"])
    unknown = {m: where for m, where in used.items() if m not in known}
    assert not unknown, "metrics no service exposes: %r" % unknown
    # The optional ones always have a fallback.
    for name, expr in alert_exprs().items():
        if metric_names(expr) & OPTIONAL_METRICS:
            assert "or on () vector(" in expr, "alert %s needs a fallback for %s" % (name, OPTIONAL_METRICS)


def test_live_metrics_pass_promtool_and_carry_every_family(stack):
    """Both services, after one movement went end to end, expose every
    metric family the rules and the dashboard rely on, and pass
    `promtool check metrics` (naming conventions, HELP, TYPE)."""
    tool = promtool()
    stack.start_kafka()
    producer = stack.start_producer()
    r = producer.post(movement("deploy-metrics-1", "PLANT1"))
    assert r.status < 300, r
    # The topics exist before the consumer subscribes: it is assigned at once.
    stack.wait_for(lambda: producer.outbox_count("WHERE sent_at IS NULL") == 0, 30,
                   "the producer to deliver the movement to Kafka")
    # assign mode: no consumer-group join, which the mock cluster makes slow.
    consumer = stack.start_consumer(overrides={"consume": {"mode": "assign", "discovery": "500ms"}})
    stack.wait_for(lambda: consumer.posted_count() == 1, 60, "the movement to be posted")
    stack.wait_for(lambda: any(s.get("last_heartbeat_at") for s in consumer.status().get("sites", [])), 30,
                   "a heartbeat of PLANT1 at the consumer")

    problems = []
    for svc, expected in ((producer, PRODUCER_METRICS), (consumer, CONSUMER_METRICS)):
        resp = http("GET", svc.base + "/metrics")
        assert resp.status == 200, "%s /metrics: %r" % (svc.name, resp)
        assert resp.headers.get("content-type", "").startswith("text/plain"), resp.headers
        with open(stack.path(svc.name + ".metrics.txt"), "wb") as f:
            f.write(resp.body)
        lint = run([tool, "check", "metrics"], input=resp.text)
        if lint.returncode != 0 or lint.stdout.strip() or lint.stderr.strip():
            problems.append("%s: promtool check metrics (exit %d):\n%s%s" % (
                svc.name, lint.returncode, lint.stdout, lint.stderr))
        families = set(re.findall(r"^# TYPE (\S+) \S+$", resp.text, re.M))
        missing = expected - families
        if missing:
            problems.append("%s /metrics lacks %s" % (svc.name, sorted(missing)))
        for line in resp.text.splitlines():
            # Bounded labels only: never a movement, lot or material.
            if re.search(r'\b(movement_id|movement|lot|material|posting_id)="', line):
                problems.append("%s: unbounded label in %r" % (svc.name, line))
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- Grafana ----

def test_dashboard_queries_parse_as_promql(tmp_path):
    """Every panel query, with the dashboard variables substituted, is a
    valid PromQL expression (checked by promtool as recording rules)."""
    tool = promtool()
    d = dashboard()
    exprs = dashboard_exprs(d)
    assert len(exprs) >= 15
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, (_, expr) in enumerate(exprs):
        e = expr.replace("$__rate_interval", "5m").replace("$site", ".*").replace("$tier", ".*")
        assert "$" not in e, "unknown variable in %r" % expr
        lines += ["      - record: dashboard_query_%d" % i, "        expr: %s" % json.dumps(e)]
    rules = tmp_path / "dashboard_rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    r = run([tool, "check", "rules", str(rules)])
    assert r.returncode == 0, "a dashboard query does not parse:\n%s%s" % (r.stdout, r.stderr)


def test_dashboard_layout_and_provisioning():
    d = dashboard()
    assert d["uid"] and d["title"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    cells = {}
    for p in d["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for y in range(g["y"], g["y"] + g["h"]):
            for x in range(g["x"], g["x"] + g["w"]):
                assert (x, y) not in cells, "panels '%s' and '%s' overlap" % (cells[(x, y)], p["title"])
                cells[(x, y)] = p["title"]
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert p.get("targets"), "panel '%s' has no query" % p["title"]
    titles = " ".join(p["title"].lower() for p in d["panels"])
    for want in ("freshness", "latency", "failed", "dead letters", "lag", "outbox", "postings"):
        assert want in titles, "no panel about %s" % want

    # The data source uid the dashboard defaults to is the provisioned one.
    ds_var = next(v for v in d["templating"]["list"] if v["type"] == "datasource")
    ds_yaml = read(os.path.join(GRAFANA, "provisioning", "datasources", "prometheus.yaml"))
    assert re.search(r"^\s*uid:\s*%s\s*$" % re.escape(ds_var["current"]["value"]), ds_yaml, re.M)
    # The dashboard provider reads where compose mounts the dashboards.
    prov = read(os.path.join(GRAFANA, "provisioning", "dashboards", "invsync.yaml"))
    path = re.search(r"^\s*path:\s*(\S+)", prov, re.M).group(1)
    assert "./deploy/grafana/dashboards:%s:ro" % path in read(COMPOSE)


# ---------------------------------------------------------------- compose ----

def compose_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("INVSYNC_") and k != "GRAFANA_ADMIN_PASSWORD"}
    env.update(extra)
    return env


SECRETS = {"INVSYNC_ADMIN_TOKEN": "test-admin", "INVSYNC_ERP_TOKEN": "test-erp",
           "GRAFANA_ADMIN_PASSWORD": "test-grafana"}


def docker_compose(*args, env=None):
    dc = shutil.which("docker-compose")
    if not dc:
        pytest.fail("docker-compose is missing (Debian package docker-compose): run `make deps`")
    return run([dc, "-f", COMPOSE] + list(args), cwd=REPO, env=env or compose_env(**SECRETS))


def test_compose_file_is_valid():
    print(NO_ENGINE)
    r = docker_compose("config", "-q")
    assert r.returncode == 0, "docker-compose config: %s%s" % (r.stdout, r.stderr)
    r = docker_compose("config", "--services")
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.split()) == {"kafka", "kafka-init", "erp-sim", "mes-producer", "erp-consumer",
                                     "prometheus", "grafana"}, r.stdout

    # Secrets have no defaults: without them the file does not resolve.
    r = docker_compose("config", "-q", env=compose_env())
    assert r.returncode != 0 and "INVSYNC_" in r.stderr, (r.returncode, r.stderr)

    text = read(COMPOSE)
    for src in re.findall(r"^\s*-\s*\./([^:\s]+):", text, re.M):
        assert os.path.exists(os.path.join(REPO, src)), "compose mounts missing ./%s" % src
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", read(DOCKERFILE), re.M | re.I))
    for target in re.findall(r"^\s*target:\s*(\S+)", text, re.M):
        assert target in stages, "compose builds target %s, the Dockerfile has %s" % (target, sorted(stages))
    for image in re.findall(r"^\s*image:\s*(\S+)", text, re.M):
        tag = image.rsplit(":", 1)[-1] if ":" in image else ""
        assert tag and tag != "latest", "image %s is not pinned" % image
    assert "image: apache/kafka:4.1." in text


def test_topic_creation_job_creates_the_policy_topics(tmp_path):
    """The kafka-init command of docker-compose.yml, run by bash with a
    stand-in for kafka-topics.sh, creates <prefix>.<site>.<tier> for every
    tier of deploy/policy.yaml and the dead-letter topic, for every site."""
    text = read(COMPOSE)
    svc = text[text.index("\n  kafka-init:"):]
    svc = svc[: re.search(r"\n  [a-z]", svc[1:]).start() + 1]
    m = re.search(r"^    command:\n      - \|\n((?:        .*\n|\s*\n)+)", svc, re.M)
    assert m, "kafka-init has no block command"
    script = "\n".join(l[8:] for l in m.group(1).splitlines()).replace("$$", "$")
    env = {k: re.search(r'^      %s:\s*"?([^"\n]*)"?$' % k, svc, re.M).group(1)
           for k in ("INVSYNC_TIERS", "INVSYNC_TOPIC_PREFIX", "INVSYNC_PARTITIONS")}
    calls = tmp_path / "calls.txt"
    stub = 'kafka_topics() { printf "%%s\\n" "$*" >>%s; }\n' % calls
    script = stub + script.replace("/opt/kafka/bin/kafka-topics.sh", "kafka_topics")
    env.update(PATH=os.environ["PATH"], INVSYNC_SITES="PLANT1,PLANT2 PLANT3")
    r = run(["bash", "-ec", script], env=env)
    assert r.returncode == 0, r.stderr
    created = set()
    for line in calls.read_text().splitlines():
        if "--create" in line:
            assert "--if-not-exists" in line, line  # rerunnable after adding a site
            created.add(re.search(r"--topic (\S+)", line).group(1))
    prefix = re.search(r"^topic_prefix:\s*(\S+)", read(POLICY), re.M).group(1)
    assert env["INVSYNC_TOPIC_PREFIX"] == prefix
    want = {"%s.%s.%s" % (prefix, s, t) for s in ("PLANT1", "PLANT2", "PLANT3")
            for t in policy_tiers() + ["dlq"]} | {"%s._unknown.dlq" % prefix}
    assert created == want, "created %s, the policy needs %s" % (sorted(created), sorted(want))


# ------------------------------------------------------------- Dockerfile ----

def dockerfile_stage(name):
    text = read(DOCKERFILE)
    m = re.search(r"^FROM\s+\S+\s+AS\s+%s\s*$(.*?)(?=^FROM\s|\Z)" % re.escape(name), text, re.M | re.S | re.I)
    assert m, "Dockerfile has no stage %s" % name
    return m.group(1)


def apt_packages(stage_text):
    m = re.search(r"apt-get install[^\n]*\\\n(.*?)&&", stage_text, re.S)
    assert m, "no apt-get install in the stage"
    return set(re.findall(r"[a-z0-9][a-z0-9.+-]+", m.group(1).replace("\\", " ")))


def dpkg_owner(path):
    r = run(["dpkg", "-S", os.path.realpath(path)])
    if r.returncode != 0:
        r = run(["dpkg", "-S", path])
    assert r.returncode == 0, "no Debian package owns %s: %s" % (path, r.stderr)
    return r.stdout.split(":", 1)[0].split(",")[0].strip()


def test_dockerfile_runtime_has_every_linked_library():
    runtime = apt_packages(dockerfile_stage("runtime"))
    text = read(DOCKERFILE)
    assert re.search(r"^ARG DEBIAN_IMAGE=debian:bookworm-slim$", text, re.M)
    assert "USER invsync" in dockerfile_stage("runtime") and "HEALTHCHECK" in dockerfile_stage("runtime")
    assert 'VOLUME ["/var/lib/invsync"]' in text
    missing = {}
    for prog in ("mes-producer", "erp-consumer", "erp-sim"):
        path = binary(prog)
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]", run(["readelf", "-d", path]).stdout)
        resolved = dict(re.findall(r"^\s*(\S+) => (\S+)", run(["ldd", path]).stdout, re.M))
        for soname in needed:
            assert soname in resolved, "%s: cannot resolve %s" % (prog, soname)
            pkg = dpkg_owner(resolved[soname])
            if pkg not in runtime and pkg != "libc6":  # libc6 is in every Debian image
                missing.setdefault(pkg, []).append("%s (%s)" % (soname, prog))
    assert not missing, "deploy/Dockerfile runtime stage lacks packages: %r" % missing


def test_dockerfile_build_stage_has_every_build_dependency():
    build = apt_packages(dockerfile_stage("build"))
    pkgs = re.search(r"^PKGS\s*:=\s*(.+)$", read(os.path.join(REPO, "Makefile")), re.M).group(1).split()
    missing = {}
    for mod in pkgs:
        r = run(["pkg-config", "--variable=pcfiledir", mod])
        assert r.returncode == 0, "pkg-config does not know %s" % mod
        pkg = dpkg_owner(os.path.join(r.stdout.strip(), mod + ".pc"))
        if pkg not in build:
            missing[mod] = pkg
    for tool in ("protoc-c", "xxd"):
        pkg = dpkg_owner(shutil.which(tool) or "/usr/bin/" + tool)
        if pkg not in build:
            missing[tool] = pkg
    assert not missing, "deploy/Dockerfile build stage lacks packages: %r" % missing
    for src in re.findall(r"^COPY\s+(?!--from)(.+?)\s+\S+\s*$", read(DOCKERFILE), re.M):
        for s in src.split():
            assert os.path.exists(os.path.join(REPO, s)), "Dockerfile copies missing %s" % s


def test_ports_agree_between_configs_dockerfile_compose_and_prometheus():
    compose, prom = read(COMPOSE), read(os.path.join(PROM, "prometheus.yml"))
    for svc, cfg in (("mes-producer", "producer.yaml"), ("erp-consumer", "consumer.yaml")):
        port = re.search(r'^\s*listen:\s*"?0\.0\.0\.0:(\d+)"?', read(os.path.join(DEPLOY, "config", cfg)), re.M).group(1)
        assert "HEALTHCHECK_URL=http://127.0.0.1:%s/healthz" % port in dockerfile_stage(svc), svc
        assert '"127.0.0.1:%s:%s"' % (port, port) in compose, svc
        assert '"%s:%s"' % (svc, port) in prom, svc


# ------------------------------------------------------- container configs ----

def test_container_configs_load_with_environment_overrides(tmp_path):
    """deploy/config/*.yaml are valid for the real binaries; the paths that
    only exist in the container are overridden the way compose overrides
    values (INVSYNC_* variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVSYNC_")}
    env.update(INVSYNC_POLICY_PATH=POLICY, INVSYNC_OUTBOX_PATH=str(tmp_path / "outbox.db"),
               INVSYNC_STORE_PATH=str(tmp_path / "store.db"), INVSYNC_ADMIN_TOKEN="x",
               INVSYNC_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    r = run([binary("mes-producer"), "--config", os.path.join(DEPLOY, "config", "producer.yaml"),
             "--check-config"], env=env, cwd=str(tmp_path))
    assert r.returncode == 0, "producer.yaml: %s%s" % (r.stdout, r.stderr)
    # --check-config, not `status`: status reads a store, and refuses one that
    # does not exist yet (only `erp-consumer run` creates it).
    r = run([binary("erp-consumer"), "--config", os.path.join(DEPLOY, "config", "consumer.yaml"),
             "--check-config"], env=env, cwd=str(tmp_path))
    assert r.returncode == 0, "consumer.yaml: %s%s" % (r.stdout, r.stderr)
    assert r.stdout.startswith("configuration ok (policy "), r.stdout
