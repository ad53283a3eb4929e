"""Reconciliation against the embedded ERP ledger: after a simulated day the
MES snapshot (mes-sim's expected on-hand) and the ERP agree; then each kind
of drift is injected into the ledger's on_hand table (or held back in the
consumer's queue) and `erp-consumer reconcile` must put each one in its
class, list the unexplained first, exit 3 while unexplained drift exists
and 0 once it is gone, and write the metrics textfile."""

import csv
import json
import os

from conftest import load_json, movement, query, wait_all_posted

SITE = "PLANT1"
SEED = 777
MOVEMENTS = 300
TOKENS = ["--token", "PLANT1=tok-plant1"]
SCALE = 10 ** 6  # the ledger keeps on-hand as integer units of 10^-6
COLUMNS = ["site", "material", "lot", "location", "stock_status", "uom", "quantity"]


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


def reconcile(stack, consumer, *args, check_exit=None):
    r = stack.consumer_cli(consumer, "reconcile", *args, check=False)
    if check_exit is not None:
        assert r.returncode == check_exit, "reconcile exited %d, expected %d:\n%s\n%s" % (
            r.returncode, check_exit, r.out[-3000:], r.err[-3000:])
    return r


def by_key(doc):
    return {(d["lot"], d["location"], d["stock_status"], d["uom"]): d for d in doc["differences"]}


def ledger(consumer, sql, args=()):
    """Write to the ERP ledger while the consumer runs (WAL: the poster's connection waits)."""
    import sqlite3
    conn = sqlite3.connect(consumer.erp, timeout=30)
    try:
        with conn:
            conn.execute(sql, args)
    finally:
        conn.close()


def run_day(stack):
    stack.start_kafka(partitions=3)
    consumer = stack.start_consumer()
    opening = stack.path("opening.json")
    stack.sim("opening", "--sites", SITE, "--seed", SEED, "--out", opening)
    stack.seed_erp(consumer, opening)
    producer = stack.start_producer()
    expected = stack.path("expected.json")
    summary = stack.path("summary.json")
    stack.sim("run", "--url", producer.url, "--sites", SITE, "--seed", SEED, "--movements", MOVEMENTS,
              "--rate", 0, "--batch", 50, "--resend", "0", *TOKENS, "--expected", expected,
              "--summary", summary, timeout=240)
    accepted = load_json(summary)["accepted"]
    wait_all_posted(stack, consumer, accepted)
    return consumer, producer, load_json(expected)


def pick_lots(consumer, n):
    """n on-hand rows (material, lot, location, uom, qty_units) of n distinct lots, the first
    two in KG: unrestricted, positive, and alone in their lot/location (no other status)."""
    rows = query(consumer.erp, "SELECT material, lot, location, uom, qty_units FROM on_hand o"
                               " WHERE site = ? AND status = 'UNRESTRICTED' AND qty_units > 0 AND NOT EXISTS"
                               " (SELECT 1 FROM on_hand x WHERE x.site = o.site AND x.material = o.material"
                               "  AND x.lot = o.lot AND x.location = o.location AND x.status != o.status)"
                               " ORDER BY material, lot, location", (SITE,))
    picked, lots = [], set()
    for want_kg in (True, True) + (False,) * (n - 2):
        for r in rows:
            if (r[0], r[1]) not in lots and (r[3] == "KG") == want_kg:
                picked.append(r)
                lots.add((r[0], r[1]))
                break
    assert len(picked) == n, "not enough distinct lots to inject drift into: %r" % rows
    return picked


def test_reconcile_classifies_each_kind_of_drift(stack):
    consumer, producer, expected = run_day(stack)
    mes_csv = write_csv(stack.path("mes_onhand.csv"), expected)
    metrics = stack.path("reconcile.prom")

    # A clean day: everything agrees, exit 0, no differences.
    r = reconcile(stack, consumer, "--mes", mes_csv, "--metrics-file", metrics, check_exit=0)
    doc = json.loads(r.out)
    assert doc["differences"] == [], doc["differences"][:5]
    assert doc["matched"] == len(expected), (doc["matched"], len(expected))
    assert 'invsync_reconcile_differences{class="unexplained"} 0' in open(metrics).read()

    # Inject one drift of each kind, each into a lot of its own.
    (m_uom, l_uom, loc_uom, _, q_uom), (m_x1000, l_x1000, loc_x1000, _, q_x1000), \
        (m_sign, l_sign, loc_sign, u_sign, q_sign), (m_stat, l_stat, loc_stat, u_stat, q_stat), \
        (m_miss, l_miss, loc_miss, u_miss, q_miss), (m_drift, l_drift, loc_drift, u_drift, q_drift) = \
        pick_lots(consumer, 6)
    key = "site = ? AND material = ? AND lot = ? AND location = ? AND status = 'UNRESTRICTED'"
    # uom: the ERP holds the lot in grams (the same quantity in another unit) ...
    ledger(consumer, "UPDATE on_hand SET uom = 'G', qty_units = qty_units * 1000 WHERE " + key,
           (SITE, m_uom, l_uom, loc_uom))
    # ... and another lot booked ×1000 under the right unit label.
    ledger(consumer, "UPDATE on_hand SET qty_units = qty_units * 1000 WHERE " + key,
           (SITE, m_x1000, l_x1000, loc_x1000))
    # sign: posted negated.
    ledger(consumer, "UPDATE on_hand SET qty_units = -qty_units WHERE " + key, (SITE, m_sign, l_sign, loc_sign))
    # status: the MES quarantined the lot, the ERP never heard of it.
    ledger(consumer, "UPDATE on_hand SET status = 'BLOCKED' WHERE " + key, (SITE, m_stat, l_stat, loc_stat))
    # missing-lot: the ERP lost one lot (all its rows) and has one the MES never had.
    miss_keys = [(r[0], r[1], r[2]) for r in query(consumer.erp, "SELECT location, status, uom FROM on_hand"
                                                                 " WHERE site = ? AND material = ? AND lot = ?",
                                                   (SITE, m_miss, l_miss))]
    ledger(consumer, "DELETE FROM on_hand WHERE site = ? AND material = ? AND lot = ?", (SITE, m_miss, l_miss))
    ledger(consumer, "INSERT INTO on_hand(site, material, lot, location, status, uom, qty_units)"
                     " VALUES(?, 'RM-999', 'GHOST-1', 'WH-01', 'UNRESTRICTED', 'KG', 2500000)", (SITE,))
    # unexplained: 1.5 more in the ERP than anyone can account for.
    ledger(consumer, "UPDATE on_hand SET qty_units = qty_units + 1500000 WHERE " + key,
           (SITE, m_drift, l_drift, loc_drift))
    # pending: a completion the MES made, held in the consumer's queue (site paused).
    stack.consumer_cli(consumer, "pause", "--site", SITE, "--by", "qa", "--reason", "reconcile test")
    pend = movement("REC-PEND-1", SITE, type="COMPLETION", material="FG-399", lot="PEND-LOT-1",
                    location="FG-STAGE", quantity="7.5", uom="EA")
    assert producer.post([pend]).status == 202
    stack.wait_for(lambda: consumer.store_count("WHERE movement_id = 'REC-PEND-1' AND state = 'queued'") == 1,
                   30, "the paused consumer to queue REC-PEND-1")
    mes_rows = expected + [{"site": SITE, "material": "FG-399", "lot": "PEND-LOT-1", "location": "FG-STAGE",
                            "stock_status": "UNRESTRICTED", "uom": "EA", "quantity": "7.5"}]
    write_csv(mes_csv, mes_rows)

    r = reconcile(stack, consumer, "--mes", mes_csv, "--metrics-file", metrics, check_exit=3)
    doc = json.loads(r.out)
    diffs = by_key(doc)
    classes = {k: d["class"] for k, d in diffs.items()}
    expect = {
        (l_uom, loc_uom, "UNRESTRICTED", "KG"): "uom",
        (l_x1000, loc_x1000, "UNRESTRICTED", "KG"): "uom",
        (l_sign, loc_sign, "UNRESTRICTED", u_sign): "sign",
        (l_stat, loc_stat, "UNRESTRICTED", u_stat): "status",
        (l_stat, loc_stat, "BLOCKED", u_stat): "status",
        ("GHOST-1", "WH-01", "UNRESTRICTED", "KG"): "missing-lot",
        (l_drift, loc_drift, "UNRESTRICTED", u_drift): "unexplained",
        ("PEND-LOT-1", "FG-STAGE", "UNRESTRICTED", "EA"): "pending",
    }
    for loc, status, uom in miss_keys:
        expect[(l_miss, loc, status, uom)] = "missing-lot"
    assert classes == expect, "got %s" % json.dumps(doc["differences"], indent=1)
    assert diffs[(l_uom, loc_uom, "UNRESTRICTED", "KG")]["erp_uom"] == "G"
    assert diffs[(l_drift, loc_drift, "UNRESTRICTED", u_drift)]["difference"] == "-1.5"
    assert "REC-PEND-1" in diffs[("PEND-LOT-1", "FG-STAGE", "UNRESTRICTED", "EA")]["explanation"]
    assert doc["differences"][0]["class"] == "unexplained", "unexplained drift must be listed first"
    assert doc["summary"]["status"]["count"] == 2
    assert doc["summary"]["missing-lot"]["count"] == len(miss_keys) + 1
    assert doc["summary"]["unexplained"] == {"count": 1, "abs_quantity": "1.5"}
    assert doc["summary"]["pending"] == {"count": 1, "abs_quantity": "7.5"}
    assert "reconcile: unexplained" in r.err and "reconcile: missing-lot" in r.err, r.err
    text = open(metrics).read()
    for line in ['invsync_reconcile_differences{class="unexplained"} 1',
                 'invsync_reconcile_differences{class="pending"} 1',
                 'invsync_reconcile_differences{class="status"} 2',
                 'invsync_reconcile_abs_quantity{class="unexplained"} 1.5',
                 "# TYPE invsync_reconcile_abs_quantity gauge"]:
        assert line in text, "%r not in the metrics file:\n%s" % (line, text)

    # The same run as CSV, and with the ERP side from a snapshot file instead of the adapter.
    r = reconcile(stack, consumer, "--mes", mes_csv, "--format", "csv", check_exit=3)
    rows = list(csv.DictReader(r.out.splitlines()))
    assert rows[0]["class"] == "unexplained" and len(rows) == len(expect), rows
    _, erp_json = stack.on_hand(consumer, out_name="erp_onhand.json")
    r = reconcile(stack, consumer, "--mes", mes_csv, "--erp", erp_json, check_exit=3)
    assert {k: d["class"] for k, d in by_key(json.loads(r.out)).items()} == expect

    # Fix the unexplained drift: the rest is explained, so the exit status says "fine".
    ledger(consumer, "UPDATE on_hand SET qty_units = qty_units - 1500000 WHERE " + key,
           (SITE, m_drift, l_drift, loc_drift))
    r = reconcile(stack, consumer, "--mes", mes_csv, "--metrics-file", metrics, check_exit=0)
    assert json.loads(r.out)["summary"]["unexplained"]["count"] == 0
    assert 'invsync_reconcile_differences{class="unexplained"} 0' in open(metrics).read()

    # Resuming posts the pending completion: it is no longer a difference at all.
    stack.consumer_cli(consumer, "resume", "--site", SITE, "--by", "qa", "--reason", "reconcile test done")
    stack.wait_for(lambda: consumer.store_count("WHERE movement_id = 'REC-PEND-1' AND state = 'posted'") == 1,
                   30, "REC-PEND-1 to be posted after resume")
    r = reconcile(stack, consumer, "--mes", mes_csv, check_exit=0)
    assert ("PEND-LOT-1", "FG-STAGE", "UNRESTRICTED", "EA") not in by_key(json.loads(r.out))


def test_reconcile_bad_input_exits_2_naming_the_problem(stack):
    stack.start_kafka(partitions=1)
    consumer = stack.start_consumer()
    bad = stack.path("bad.csv")
    with open(bad, "w") as f:
        f.write("site,material,lot,location,stock_status,uom,quantity\nPLANT1,M,L1,WH,FROZEN,EA,1\n")
    r = reconcile(stack, consumer, "--mes", bad, check_exit=2)
    assert "bad.csv:2: unknown stock_status 'FROZEN'" in r.err, r.err
    with open(bad, "w") as f:
        f.write("site,material,lot,location,uom,quantity\n")
    r = reconcile(stack, consumer, "--mes", bad, check_exit=2)
    assert "no column 'stock_status'" in r.err, r.err
    r = reconcile(stack, consumer, "--mes", stack.path("nope.csv"), check_exit=2)
    assert "cannot open" in r.err and "nope.csv" in r.err, r.err
    r = reconcile(stack, consumer, check_exit=2)
    assert "--mes FILE" in r.err, r.err
    good = write_csv(stack.path("good.csv"), [])
    r = reconcile(stack, consumer, "--mes", good, "--format", "xml", check_exit=2)
    assert "--format must be json or csv" in r.err, r.err
    # An empty MES against an empty ERP: nothing to say, exit 0.
    r = reconcile(stack, consumer, "--mes", good, check_exit=0)
    assert json.loads(r.out)["differences"] == []
    assert os.path.exists(consumer.store)


def test_reconcile_refuses_empty_snapshot_and_flags_unknown_sites(stack):
    """A truncated (header-only) MES export must not pass as "every lot missing, exit 0"; a
    --site nobody knows is refused naming the sites; MES rows of a site neither the consumer nor
    the ERP knows are unexplained (exit 3) and named on stderr."""
    stack.start_kafka(partitions=1)
    consumer = stack.start_consumer()
    opening = stack.path("opening.json")
    stack.sim("opening", "--sites", SITE, "--seed", SEED, "--out", opening)
    stack.seed_erp(consumer, opening)
    erp_rows, _ = stack.on_hand(consumer, out_name="erp_onhand.json")
    assert erp_rows, "seed-erp left the ledger empty"

    header_only = write_csv(stack.path("header_only.csv"), [])
    r = reconcile(stack, consumer, "--mes", header_only, check_exit=2)
    assert "header_only.csv: no rows" in r.err and "refusing to compare an empty snapshot" in r.err, r.err
    # The same file for a site that has ERP stock, and as a JSON array with no rows.
    r = reconcile(stack, consumer, "--mes", header_only, "--site", SITE, check_exit=2)
    assert "no rows" in r.err, r.err
    empty_json = stack.path("empty.json")
    with open(empty_json, "w") as f:
        f.write("[]\n")
    r = reconcile(stack, consumer, "--mes", empty_json, check_exit=2)
    assert "empty.json: no rows" in r.err, r.err

    r = reconcile(stack, consumer, "--mes", header_only, "--site", "NOPE", check_exit=2)
    assert "unknown site 'NOPE': the sites are %s" % SITE in r.err, r.err

    mes_rows = erp_rows + [{"site": "PLANT7", "material": "FG-301", "lot": "L7-1", "location": "FG-STAGE",
                            "stock_status": "UNRESTRICTED", "uom": "EA", "quantity": "5"}]
    mes_csv = write_csv(stack.path("mes_plant7.csv"), mes_rows)
    metrics = stack.path("reconcile.prom")
    r = reconcile(stack, consumer, "--mes", mes_csv, "--metrics-file", metrics, check_exit=3)
    doc = json.loads(r.out)
    assert doc["unknown_sites"] == [{"site": "PLANT7", "mes_rows": 1}], doc["unknown_sites"]
    assert [(d["class"], d["site"]) for d in doc["differences"]] == [("unexplained", "PLANT7")], doc
    assert "site PLANT7 is unknown" in doc["differences"][0]["explanation"]
    assert "unknown to the consumer and the ERP" in r.err and "PLANT7 (1 row(s))" in r.err, r.err
    assert "invsync_reconcile_unknown_site_rows 1" in open(metrics).read()
    # Narrowed to the known site, the same snapshot is clean.
    r = reconcile(stack, consumer, "--mes", mes_csv, "--site", SITE, check_exit=0)
    assert json.loads(r.out)["unknown_sites"] == []


def test_reconcile_accepts_a_site_only_the_policy_names(stack):
    """Adding a site: its opening stock may be compared before its first movement. A --site the
    policy names (under `sites:`) is accepted although neither the consumer nor the ERP knows it
    yet; a site nobody names is still refused, listing the policy's sites too."""
    from conftest import POLICY, FIXTURES
    with open(POLICY) as f:
        text = f.read().replace("materials: materials.csv",
                                "materials: " + os.path.join(FIXTURES, "materials.csv"))
    policy = stack.path("policy-plant7.yaml")
    with open(policy, "w") as f:
        f.write(text + "sites:\n  PLANT7: {timezone: UTC}\n")
    stack.start_kafka(partitions=1)
    consumer = stack.start_consumer(overrides={"policy": {"path": policy}})
    mes = write_csv(stack.path("mes_plant7.csv"), [
        {"site": "PLANT7", "material": "FG-301", "lot": "L7-1", "location": "FG-STAGE",
         "stock_status": "UNRESTRICTED", "uom": "EA", "quantity": "5"}])
    r = reconcile(stack, consumer, "--mes", mes, "--site", "PLANT7", check_exit=3)
    doc = json.loads(r.out)
    assert [(d["class"], d["site"]) for d in doc["differences"]] == [("unexplained", "PLANT7")], doc
    r = reconcile(stack, consumer, "--mes", mes, "--site", "PLANT8", check_exit=2)
    assert ("unknown site 'PLANT8': no site has sent a heartbeat or movement yet and the ERP has "
            "no stock; the policy names PLANT7") in r.err, r.err
    assert r.out == "", r.out
