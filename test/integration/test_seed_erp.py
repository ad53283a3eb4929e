"""`erp-consumer seed-erp`: the ERP's opening stock from an on-hand file,
through both adapters. Rows of several sites each land under their own site
(one opening posting per site), seeding the same file again books nothing,
and a bad file is refused with the row and field named, booking nothing."""

import json
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
    actual, _ = stack.on_hand(consumer)
    assert actual == []
