"""`erp-consumer seed-erp`: the ERP's opening stock from an on-hand file,
through both adapters. Rows of several sites each land under their own site
(one opening posting per site), seeding the same file again books nothing,
and a bad file is refused with the row and field named, booking nothing."""

import hashlib
import json
import sqlite3
import types
from decimal import Decimal

import pytest

from conftest import query
from reliability.helpers import ErpSim

SITES = "PLANT1,PLANT2,PLANT3"


def rows_key(rows):
    return sorted((r["site"], r["material"], r["lot"], r["location"],
                   r.get("stock_status", "UNRESTRICTED"), r["uom"], Decimal(r["quantity"]))
                  for r in rows if Decimal(r["quantity"]) != 0)


def consumer_for(stack, adapter):
    """A consumer config (not started: seed-erp and on-hand need no Kafka)."""
    overrides = None
    ledger = stack.path("consumer-erp.db")
    if adapter == "http-json":
        sim = ErpSim(stack, "erp-sim", stack.path("erp-sim-ledger.db"))
        stack.services.append(sim)
        stack.wait_for(lambda: sim.alive() and _up(sim), 20, "erp-sim to answer")
        ledger = sim.db
        overrides = {"erp": {"adapter": "http-json", "http": {"url": sim.base, "timeout": "5s"}}}
    cfg = stack.consumer_config(bootstrap="127.0.0.1:9", overrides=overrides)
    return types.SimpleNamespace(config=cfg, config_path=stack.write_config("consumer", cfg)), ledger


def _up(sim):
    from conftest import http_ok
    return http_ok(sim.base + "/healthz")


@pytest.mark.parametrize("adapter", ["sqlite", "http-json"])
def test_seed_books_each_site_under_its_own_site_once(stack, adapter):
    consumer, ledger = consumer_for(stack, adapter)
    opening = stack.path("opening.json")
    stack.sim("opening", "--sites", SITES, "--seed", 41, "--out", opening)
    with open(opening) as f:
        rows = json.load(f)
    assert {r["site"] for r in rows} == set(SITES.split(","))

    out = stack.seed_erp(consumer, opening).out
    docs = [json.loads(l) for l in out.splitlines() if l.strip()]
    assert sorted(d["site"] for d in docs) == sorted(SITES.split(","))
    assert sum(d["lines"] for d in docs) == len(rows)

    actual, _ = stack.on_hand(consumer)
    assert rows_key(actual) == rows_key(rows)
    for site in SITES.split(","):
        per_site, _ = stack.on_hand(consumer, site=site, out_name="actual-%s.json" % site)
        assert rows_key(per_site) == rows_key([r for r in rows if r["site"] == site])

    # The same file again: the references exist, nothing is booked twice.
    again = [json.loads(l) for l in stack.seed_erp(consumer, opening).out.splitlines() if l.strip()]
    assert sorted(d["document"] for d in again) == sorted(d["document"] for d in docs)
    actual2, _ = stack.on_hand(consumer, out_name="actual-again.json")
    assert rows_key(actual2) == rows_key(rows)
    assert query(ledger, "SELECT count(*) FROM documents")[0][0] == len(docs)


def test_seed_refuses_a_bad_row_and_books_nothing(stack):
    consumer, ledger = consumer_for(stack, "sqlite")
    bad = stack.path("bad.json")
    with open(bad, "w") as f:
        json.dump([{"site": "PLANT1", "material": "RM-101", "lot": "L1", "location": "WH-01",
                    "uom": "KG", "quantity": "5"},
                   {"site": "PLANT2", "material": "RM-101", "lot": "L2", "location": "WH-01",
                    "uom": "KG", "quantity": "five"}], f)
    r = stack.consumer_cli(consumer, "seed-erp", bad, check=False)
    assert r.returncode == 2
    assert "row 1" in r.err and "quantity 'five'" in r.err, r.err
    missing = stack.path("missing.json")
    with open(missing, "w") as f:
        json.dump([{"material": "RM-101", "lot": "L1", "location": "WH-01", "uom": "KG",
                    "quantity": "5"}], f)
    r = stack.consumer_cli(consumer, "seed-erp", missing, check=False)
    assert r.returncode == 2
    assert "row 0" in r.err and "'site'" in r.err, r.err
    # The rules a movement's fields meet at ingest: a site that is not
    # topic-safe, a control character in a lot.
    ok_row = {"site": "PLANT1", "material": "RM-101", "lot": "L1", "location": "WH-01",
              "uom": "KG", "quantity": "5"}
    for field, value, says in [("site", " ", "must contain only letters, digits"),
                               ("site", "PLANT 1", "must contain only letters, digits"),
                               ("lot", "L\tX", "must not contain control characters"),
                               ("uom", "K" * 300, "is longer than")]:
        path = write_rows(stack.path("bad-%s.json" % field), [ok_row, dict(ok_row, **{field: value})])
        r = stack.consumer_cli(consumer, "seed-erp", path, check=False)
        assert r.returncode == 2, (field, value, r.err)
        assert "row 1: '%s' %s" % (field, says) in r.err and "nothing was booked" in r.err, r.err
    # A misspelt key, a quantity that is no stock, rows that are not rows.
    typo = dict(ok_row, stock_satus="BLOCKED")
    for rows, says in [([ok_row, typo], "row 1: unknown key 'stock_satus'"),
                       ([dict(ok_row, quantity="-5")], "row 0: quantity '-5' is below zero"),
                       ([ok_row, "PLANT1,RM-101"], "row 1: expected an object"),
                       ([], "no on-hand rows: nothing to book")]:
        path = write_rows(stack.path("bad.json"), rows)
        r = stack.consumer_cli(consumer, "seed-erp", path, check=False)
        assert r.returncode == 2 and says in r.err, (rows, r.returncode, r.err)
    dup = stack.path("dup.json")
    with open(dup, "w") as f:
        f.write('[{"site":"PLANT1","material":"RM-101","lot":"L1","location":"WH-01","uom":"KG",'
                '"quantity":"5","quantity":"50"}]')
    r = stack.consumer_cli(consumer, "seed-erp", dup, check=False)
    assert r.returncode == 2 and "duplicate object key" in r.err, r.err
    # In a long export the repeated key is found by its line and row, on one line or many.
    row = '{"site":"PLANT1","material":"RM-101","lot":"L%d","location":"WH-01","uom":"KG","quantity":"5"}'
    bad = row.replace('"quantity"', '"lot":"L9","quantity"') % 2
    for sep, where in [(",\n", "dup.json:4:"), (",", "dup.json:2:")]:
        with open(dup, "w") as f:
            f.write("[\n" + sep.join([row % 0, row % 1, bad, row % 3]) + "\n]\n")
        r = stack.consumer_cli(consumer, "seed-erp", dup, check=False)
        assert r.returncode == 2, r.err
        assert where in r.err and "row 2: duplicate object key near '\"lot\"'" in r.err, r.err
        assert "nothing was booked" in r.err, r.err
    actual, _ = stack.on_hand(consumer)
    assert actual == []
    # Empty bins (quantity 0) are skipped, the rest booked.
    path = write_rows(stack.path("zeros.json"), [ok_row, dict(ok_row, lot="L0", quantity="0")])
    r = stack.consumer_cli(consumer, "seed-erp", path)
    assert "1 row(s) with quantity 0 skipped" in r.err, r.err
    actual, _ = stack.on_hand(consumer)
    assert rows_key(actual) == rows_key([ok_row])


def test_seed_refused_by_the_erp_for_one_site_says_what_was_booked(stack):
    """Rows pass every local check, but the ERP refuses one site's posting
    (the embedded ledger keeps 6 decimals): the sites before it are booked,
    the message says so, and running the corrected file books nothing twice."""
    consumer, ledger = consumer_for(stack, "sqlite")
    p1 = {"site": "PLANT1", "material": "RM-101", "lot": "L1", "location": "WH-01",
          "uom": "KG", "quantity": "5"}
    p2 = dict(p1, site="PLANT2", quantity="1.123456789")
    path = write_rows(stack.path("opening.json"), [p1, p2])
    r = stack.consumer_cli(consumer, "seed-erp", path, check=False)
    assert r.returncode == 1, (r.returncode, r.err)
    assert "the opening posting of site PLANT2: the ERP refused it" in r.err, r.err
    assert "the sites printed above were booked" in r.err, r.err
    assert [json.loads(l)["site"] for l in r.out.splitlines()] == ["PLANT1"], r.out
    assert "IS_ERR" not in r.err, r.err
    write_rows(path, [p1, dict(p2, quantity="1.123456")])
    stack.consumer_cli(consumer, "seed-erp", path)
    actual, _ = stack.on_hand(consumer)
    assert rows_key(actual) == rows_key([p1, dict(p2, quantity="1.123456")])
    assert len(documents(ledger)) == 2


def documents(ledger):
    return query(ledger, "SELECT posting_id, doc_no FROM documents ORDER BY doc_no")


def write_rows(path, rows, **dump_args):
    with open(path, "w") as f:
        json.dump(rows, f, **dump_args)
    return path


@pytest.mark.parametrize("adapter", ["sqlite", "http-json"])
def test_seed_same_rows_reformatted_or_reordered_books_nothing_twice(stack, adapter):
    """The reference is the rows' content, not the file's bytes: the same rows
    re-indented, in another order, with keys in another order, quantities with
    trailing zeros and the status in another case (or absent for UNRESTRICTED)
    are the same opening stock. Different rows are a new posting."""
    consumer, ledger = consumer_for(stack, adapter)
    rows = [{"site": "PLANT1", "material": "RM-101", "lot": "L1", "location": "WH-01",
             "uom": "KG", "quantity": "3"},
            {"site": "PLANT1", "material": "RM-102", "lot": "L2", "location": "WH-01",
             "uom": "KG", "quantity": "1.5", "stock_status": "QUALITY"},
            {"site": "PLANT2", "material": "RM-101", "lot": "L3", "location": "WH-02",
             "uom": "EA", "quantity": "7", "stock_status": "BLOCKED"}]
    first = write_rows(stack.path("opening.json"), rows)
    stack.seed_erp(consumer, first)
    booked = documents(ledger)
    assert len(booked) == 2
    expected = rows_key(rows)
    assert rows_key(stack.on_hand(consumer)[0]) == expected

    same = [dict(reversed(list(r.items()))) for r in reversed(rows)]
    same[0]["stock_status"] = "blocked"
    same[1]["quantity"] = "1.500"
    same[2]["stock_status"] = "Unrestricted"
    same[2]["quantity"] = "3.0"
    second = write_rows(stack.path("opening-reformatted.json"), same, indent=4, sort_keys=True)
    out = [json.loads(l) for l in stack.seed_erp(consumer, second).out.splitlines() if l.strip()]
    assert sorted(d["document"] for d in out) == sorted(doc for _, doc in booked)
    assert documents(ledger) == booked, "the same rows were booked again"
    assert rows_key(stack.on_hand(consumer, out_name="actual-again.json")[0]) == expected

    # Different rows for a site are different content: a new posting for that
    # site only (the other site's rows are unchanged and not booked again).
    more = rows + [{"site": "PLANT2", "material": "RM-103", "lot": "L4", "location": "WH-02",
                    "uom": "EA", "quantity": "2"}]
    third = write_rows(stack.path("opening-more.json"), more)
    stack.seed_erp(consumer, third)
    after = documents(ledger)
    assert len(after) == 3
    new_sites = query(ledger, "SELECT site FROM documents WHERE doc_no NOT IN (%s)"
                      % ",".join("'%s'" % doc for _, doc in booked))
    assert new_sites == [("PLANT2",)]


def test_seed_file_booked_by_an_earlier_version_is_not_booked_again(stack):
    """Before content references, a seed's reference hashed the file's bytes
    and the site. A file seeded by that version must not book again."""
    consumer, ledger = consumer_for(stack, "sqlite")
    rows = [{"site": "PLANT1", "material": "RM-101", "lot": "L1", "location": "WH-01",
             "uom": "KG", "quantity": "3"}]
    path = write_rows(stack.path("opening.json"), rows)
    stack.seed_erp(consumer, path)
    with open(path, "rb") as f:
        file_hex = hashlib.sha256(f.read()).hexdigest()
    legacy = "seed-" + hashlib.sha256(("%s\x1fPLANT1" % file_hex).encode()).hexdigest()[:27]
    conn = sqlite3.connect(ledger)
    with conn:
        conn.execute("UPDATE documents SET posting_id = ?", (legacy,))
    conn.close()
    assert documents(ledger)[0][0] == legacy

    stack.seed_erp(consumer, path)
    assert len(documents(ledger)) == 1, "a file seeded by the earlier version was booked again"
    assert rows_key(stack.on_hand(consumer)[0]) == rows_key(rows)


def test_seed_stock_status_any_case_and_unknown_refused(stack):
    consumer, ledger = consumer_for(stack, "sqlite")
    good = write_rows(stack.path("blocked.json"), [
        {"site": "PLANT1", "material": "RM-101", "lot": "L1", "location": "WH-01", "uom": "KG",
         "quantity": "3", "stock_status": "blocked"},
        {"site": "PLANT1", "material": "RM-101", "lot": "L2", "location": "WH-01", "uom": "KG",
         "quantity": "4", "stock_status": "Quality"}])
    stack.seed_erp(consumer, good)
    statuses = sorted((r["lot"], r["stock_status"]) for r in stack.on_hand(consumer)[0])
    assert statuses == [("L1", "BLOCKED"), ("L2", "QUALITY")]

    for value in ("FROZEN", "STOCK_STATUS_UNSPECIFIED"):
        bad = write_rows(stack.path("frozen.json"), [
            {"site": "PLANT2", "material": "RM-101", "lot": "L3", "location": "WH-01",
             "uom": "KG", "quantity": "5"},
            {"site": "PLANT2", "material": "RM-101", "lot": "L4", "location": "WH-01",
             "uom": "KG", "quantity": "6", "stock_status": value}])
        r = stack.consumer_cli(consumer, "seed-erp", bad, check=False)
        assert r.returncode == 2, r.err
        assert "row 1" in r.err and "'%s'" % value in r.err, r.err
        for name in ("UNRESTRICTED", "QUALITY", "BLOCKED"):
            assert name in r.err, "the error does not list the valid values: %s" % r.err
    # A quantity the ERP cannot hold (12 digits before the point at most).
    bad = write_rows(stack.path("huge.json"), [
        {"site": "PLANT2", "material": "RM-101", "lot": "L5", "location": "WH-01",
         "uom": "KG", "quantity": "1"},
        {"site": "PLANT2", "material": "RM-101", "lot": "L6", "location": "WH-01",
         "uom": "KG", "quantity": "9223372036854"}])
    r = stack.consumer_cli(consumer, "seed-erp", bad, check=False)
    assert r.returncode != 0 and "row 1" in r.err and "out of range" in r.err, r.err
    assert [r for r in stack.on_hand(consumer, out_name="after.json")[0]
            if r["site"] == "PLANT2"] == [], "a refused file booked some rows"
    assert len(documents(ledger)) == 1
