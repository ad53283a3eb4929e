"""The erp-consumer status page in a real browser.

A running consumer is brought into the state an operator must see at a
glance: site PLANT1's realtime tier is stale because the ERP refused a goods
issue (no stock: a permanently failed posting), while PLANT2 posts normally.
Headless Chromium (Debian's `chromium`, driven by playwright-core from npm,
see status_page.js) loads the page from the consumer and must show the stale
cell with its failed posting; with the admin token it lists the failed
posting, retries it (asking who and why) once the stock is in the ERP, sees
it leave the list and the tier turn fresh, and pauses, resumes and flushes
a tier. The
consumer's store and the ERP ledger are checked afterwards: the page's
actions really happened and were audited with who and why.

Screenshots: test/out/status_page/*.png (git-ignored).

playwright-core is installed on first use into <repo>/.cache/node (git-
ignored); Chromium and Node come from deploy/install-deps.sh.
"""

import json
import os
import shutil
import subprocess

import pytest

from conftest import ADMIN_TOKEN, OUT_DIR, REPO, http, movement, query, try_scalar

# 1.61 is the newest release that still runs on Debian bookworm's Node.js 18
# (1.62 needs Node 20); it drives Chromium 156 fine.
PLAYWRIGHT_VERSION = "1.61.0"
NODE_DIR = os.path.join(REPO, ".cache", "node")
CHROMIUM = "/usr/bin/chromium"
HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = os.path.join(REPO, "erp-consumer", "status_page.html")
SHOTS = os.path.join(OUT_DIR, "status_page")

# Two tiers, both posting immediately; realtime is stale after 2 seconds so
# a refused posting makes it stale within the test.
POLICY = """\
topic_prefix: invsync
materials: materials.csv
tiers:
  realtime: {cadence: immediate, stale_after: 2s}
  periodic: {cadence: immediate, stale_after: 1h}
rules:
  - when: {type: [GOODS_ISSUE]}
    tier: realtime
default_tier: periodic
"""


def playwright_core():
    """Path of the playwright-core package, installed on first use."""
    pkg = os.path.join(NODE_DIR, "node_modules", "playwright-core")
    try:
        with open(os.path.join(pkg, "package.json")) as f:
            version = json.load(f).get("version")
    except (OSError, ValueError):
        version = None
    if version != PLAYWRIGHT_VERSION:
        npm = shutil.which("npm")
        if not npm:
            pytest.fail("npm is missing: it installs playwright-core for the browser test (make deps)")
        os.makedirs(NODE_DIR, exist_ok=True)
        r = subprocess.run([npm, "install", "--prefix", NODE_DIR, "--no-audit", "--no-fund",
                            "--save-exact", "--loglevel=error", "playwright-core@" + PLAYWRIGHT_VERSION],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            pytest.fail("npm install playwright-core@%s failed:\n%s%s" % (PLAYWRIGHT_VERSION, r.stdout, r.stderr))
    return pkg


def admin(consumer, method, path, body=None):
    h = {"Authorization": "Bearer " + ADMIN_TOKEN}
    if body is not None:
        h["Content-Type"] = "application/json"
        body = json.dumps(body)
    return http(method, consumer.base + path, body, h)


def failed_postings(consumer):
    r = admin(consumer, "GET", "/admin/failed")
    assert r.status == 200, "GET /admin/failed: %r" % r
    return r.json()["failed"]


def grid_cell(status, site, tier):
    for c in status.get("grid") or status.get("backlog") or []:
        if c.get("site") == site and c.get("tier") == tier:
            return c
    return None


@pytest.mark.slow
def test_status_page_shows_stale_tier_and_retries_failed_posting(stack):
    node = shutil.which("node")
    if not node:
        pytest.fail("node is missing: the browser test runs playwright-core on Node.js (make deps)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("%s is missing: install Debian's chromium (make deps)" % CHROMIUM)
    pw = playwright_core()

    policy = stack.path("policy.yaml")
    with open(policy, "w") as f:
        f.write(POLICY)
    shutil.copy(os.path.join(HERE, "fixtures", "materials.csv"), stack.path("materials.csv"))

    stack.start_kafka()
    # assign mode: no consumer-group join, which the mock cluster makes slow.
    consumer = stack.start_consumer(overrides={"policy": {"path": policy},
                                               "consume": {"mode": "assign", "discovery": "500ms"}})
    producer = stack.start_producer(overrides={"policy": {"path": policy}})

    # PLANT1: a goods issue from a lot the ERP holds no stock of → refused for
    # good (failed posting, realtime). PLANT2: a completion → posted.
    issue = movement("sp-issue-1", "PLANT1", type="GOODS_ISSUE", material="RM-101", lot="LOT-SP",
                     location="STOR-1", quantity="5", uom="KG")
    done = movement("sp-completion-1", "PLANT2", type="COMPLETION", material="RM-102", lot="LOT-OK",
                    location="STOR-1", quantity="7", uom="KG")
    for m in (issue, done):
        r = producer.post(m)
        assert r.status < 300, "POST %s: %r" % (m["movement_id"], r)

    failed = stack.wait_for(lambda: failed_postings(consumer), 60,
                            "the ERP to refuse PLANT1's goods issue (a failed posting)",
                            detail=lambda: consumer.status())
    assert len(failed) == 1 and failed[0]["site"] == "PLANT1" and failed[0]["tier"] == "realtime", failed
    posting_id = failed[0]["posting_id"]
    stack.wait_for(lambda: (grid_cell(consumer.status(), "PLANT1", "realtime") or {}).get("stale"), 30,
                   "PLANT1/realtime to be reported stale in /v1/status")
    stack.wait_for(lambda: consumer.posted_count() == 1, 60, "PLANT2's completion to be posted")

    # The fix an operator makes before retrying: the stock is in the ERP now.
    opening = stack.path("opening.json")
    with open(opening, "w") as f:
        json.dump([{"site": "PLANT1", "material": "RM-101", "lot": "LOT-SP", "location": "STOR-1",
                    "stock_status": "UNRESTRICTED", "uom": "KG", "quantity": "100"}], f)
    stack.seed_erp(consumer, opening)

    # The page as the consumer serves it at GET /, or — until that route is
    # wired — the file from the repository served at the consumer's origin.
    r = http("GET", consumer.base + "/")
    with open(PAGE, "rb") as f:
        page_bytes = f.read()
    if r.status == 200:
        assert r.headers.get("content-type", "").startswith("text/html"), r.headers
        assert r.body == page_bytes, "erp-consumer serves a different status page than %s (stale build?)" % PAGE
        html = None
    else:
        print("erp-consumer does not serve GET / yet (%d): the test serves %s at its origin" % (r.status, PAGE))
        html = PAGE

    shutil.rmtree(SHOTS, ignore_errors=True)
    cfg = {"playwright": pw, "chromium": CHROMIUM, "base": consumer.base, "token": ADMIN_TOKEN,
           "html": html, "site": "PLANT1", "tier": "realtime", "other_site": "PLANT2",
           "other_tier": "periodic", "posting_id": posting_id, "out_dir": SHOTS}
    cfg_path = stack.path("status_page.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    run = subprocess.run([node, os.path.join(HERE, "status_page.js"), cfg_path], capture_output=True,
                         text=True, timeout=240, cwd=stack.dir)
    with open(stack.path("status_page.log"), "w") as f:
        f.write(run.stderr)
    assert run.returncode == 0, "browser steps failed (screenshots in %s):\n%s" % (SHOTS, run.stderr[-6000:])
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    print("status page: %s" % json.dumps(seen, indent=1))

    # What the browser saw.
    assert seen["stale_cell"]["failed"] >= 1 and seen["stale_cell"]["has_failed_class"], seen["stale_cell"]
    assert "stale" in seen["stale_cell"]["text"].lower(), seen["stale_cell"]
    assert seen["other_cell_state"] != "stale", seen
    assert seen["pause_disabled_without_token"], "admin buttons are enabled without a token"
    assert seen["failed_rows_before"] == 1, seen
    assert seen["token_in_session_storage"] and not seen["token_in_local_storage"], seen
    assert seen["cell_state_after_retry"] in ("idle", "ok"), seen
    assert seen["selected"] == ["PLANT2", "periodic"], seen
    assert not seen["foreign_requests"], "the page loaded something from elsewhere: %r" % seen["foreign_requests"]
    assert not seen["console_errors"], "errors in the browser console: %r" % seen["console_errors"]
    for shot in ("status_page_stale_failed.png", "status_page_paused.png", "status_page_after.png"):
        assert os.path.getsize(os.path.join(SHOTS, shot)) > 10000, shot

    # What the consumer and the ERP did: the retried posting went through...
    assert failed_postings(consumer) == []
    stack.wait_for(lambda: consumer.posted_count() == 2, 60, "the retried goods issue to be in the ERP ledger")
    assert try_scalar(consumer.store, "SELECT state FROM movements WHERE movement_id = 'sp-issue-1'") == "posted"
    assert not consumer.status().get("paused"), "PLANT2/periodic is still paused"
    # ... and every action is in the audit trail with who and why.
    audit = query(consumer.store, "SELECT action, subject, actor, detail FROM audit "
                                  "WHERE actor = 'status-page-test' ORDER BY id")
    assert [(a, s) for a, s, _, _ in audit] == [
        ("retry", posting_id), ("pause", "PLANT2/periodic"), ("resume", "PLANT2/periodic"),
        ("flush", "PLANT2/periodic")], audit
    assert [json.loads(d)["reason"] for _, _, _, d in audit] == [
        "stock seeded in the ERP; retry", "ERP maintenance window", "maintenance over",
        "post the window before the MRP run"], audit
