"""Bad input at POST /v1/movements: each case gets its status and a message
naming what was wrong, nothing is stored in the outbox, and nothing reaches
the consumer.

One stack (kafka-mock, erp-consumer, mes-producer with small limits) serves
the whole module; the cases run in order and the last test checks that the
consumer received exactly the movements that were accepted."""

import json
import time
import os

import pytest

from conftest import ERP_SOURCE, Stack, http, movement, query

MAX_BODY = 64 * 1024
MAX_ITEMS = 100


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    st = Stack(tmp_path_factory.mktemp("bad_input"), "test_bad_input")
    st.failed = False
    st.accepted = set()  # movement ids the producer accepted in this module
    st.seq = 0
    try:
        st.start_kafka()
        st.consumer = st.start_consumer()
        st.producer = st.start_producer(overrides={
            "http": {"max_body": "64KiB", "max_items": MAX_ITEMS}})
        # Something valid went through before the bad input starts, so the
        # pipeline is known to be working (and the counts are non-zero).
        st.accepted |= post_ok(st, [good(st), good(st)])
        yield st
    finally:
        st.stop_all()
        unclean = st.unclean_stops()
        if st.failed or unclean:
            print("\nbad-input stack kept in %s" % st.keep())
        assert not unclean, "\n".join(unclean)


@pytest.fixture(autouse=True)
def _attach(request, env):
    request.node._invsync_stack = env
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        env.failed = True


def good(st, site="PLANT1", **kw):
    st.seq += 1
    return movement("BAD-OK-%04d" % st.seq, site, lot="LOT-%d" % (st.seq % 3), **kw)


def post_ok(st, items):
    r = st.producer.post(items)
    assert r.status == 202, "valid movements refused: %r" % r
    body = r.json()
    assert body["accepted"] == len(items), body
    return {it["movement_id"] for it in items}


def check_error(r, status, keywords):
    """The status, a JSON body with an "error" message, and a word naming the problem."""
    if isinstance(status, int):
        status = (status,)
    assert r.status in status, "expected HTTP %s, got %r" % (" or ".join(map(str, status)), r)
    body = r.json()
    assert isinstance(body, dict) and body.get("error"), "no \"error\" message in %r" % body
    text = json.dumps(body).lower()
    assert any(k.lower() in text for k in keywords), (
        "the answer does not say what was wrong (expected one of %r): %s" % (keywords, text))
    return body


class Unchanged:
    """Asserts the outbox row count did not change across the block."""

    def __init__(self, st):
        self.st = st

    def __enter__(self):
        self.before = self.st.producer.outbox_count()
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            after = self.st.producer.outbox_count()
            assert after == self.before, "outbox went from %d to %d rows on a refused request" % (
                self.before, after)


# ---------------------------------------------------------------- the cases --

def test_malformed_json(env):
    with Unchanged(env):
        r = env.producer.post('[{"movement_id": "X-1", "site": "PLANT1", ', site="PLANT1")
        check_error(r, 400, ["json", "malformed", "parse"])


def test_wrong_content_type(env):
    with Unchanged(env):
        r = env.producer.post(json.dumps(good(env)), site="PLANT1", content_type="text/plain")
        check_error(r, 415, ["content-type", "content type", "text/plain"])


def test_oversized_body(env):
    with Unchanged(env):
        items = []
        while len(json.dumps(items)) <= MAX_BODY + 1024:
            items.append(good(env, attributes={"note": "x" * 900}))
        items = items[:MAX_ITEMS]  # too large by bytes, not by count
        assert len(json.dumps(items)) > MAX_BODY
        r = env.producer.post(items)
        check_error(r, 413, ["too large", "max_body", "limit", "bytes", "size"])


def test_too_many_items(env):
    with Unchanged(env):
        items = [good(env) for _ in range(MAX_ITEMS + 1)]
        assert len(json.dumps(items)) < MAX_BODY  # too many by count, not by bytes
        r = env.producer.post(items)
        check_error(r, 413, ["items", str(MAX_ITEMS)])


def test_empty_array(env):
    with Unchanged(env):
        r = env.producer.post("[]", token=env.producer.token("PLANT1"))
        check_error(r, (400, 422), ["empty", "no movement"])


def test_missing_token(env):
    with Unchanged(env):
        r = env.producer.post(json.dumps(good(env)))  # a str body: no token added
        check_error(r, 401, ["token", "authoriz", "bearer"])


def test_authorization_not_bearer(env):
    """An Authorization header that is there but not "Bearer <token>" (another
    scheme, the token without its scheme, no token) is a 401 saying so, not
    "missing bearer token"."""
    for value in ["Basic dXNlcjpwYXNz", env.producer.token("PLANT1"), "Bearer", "Bearer a b"]:
        with Unchanged(env):
            r = env.producer.post(json.dumps(good(env)), headers={"Authorization": value})
            body = check_error(r, 401, ["Bearer <token>"])
            assert "missing" not in body["error"], (value, body)
            assert "tok-plant" not in json.dumps(body), "a token is echoed back: %r" % body


def test_unknown_token(env):
    with Unchanged(env):
        r = env.producer.post(good(env), token="not-a-configured-token")
        check_error(r, 401, ["token", "authoriz", "bearer"])


def test_token_for_another_site(env):
    with Unchanged(env):
        r = env.producer.post(good(env, site="PLANT1"), token=env.producer.token("PLANT2"))
        body = check_error(r, 403, ["PLANT1", "site"])
        assert "tok-plant" not in json.dumps(body), "a token is echoed back: %r" % body


def test_invalid_field_names_index_and_field(env):
    with Unchanged(env):
        m = good(env, quantity="-3")
        r = env.producer.post(m)
        body = check_error(r, 422, ["quantity"])
        errs = body["errors"]
        assert errs and all(e["index"] == 0 for e in errs), errs
        assert any(e["field"] == "quantity" and e["movement_id"] == m["movement_id"] and e["error"]
                   for e in errs), errs


def test_too_many_decimals(env):
    with Unchanged(env):
        r = env.producer.post(good(env, quantity="1.1234567"))  # quantity.max_scale 6
        body = check_error(r, 422, ["quantity"])
        assert any(e["field"] == "quantity" for e in body["errors"]), body


def test_event_time_out_of_range(env):
    """A floor time before 1970, before 2000 (epoch seconds taken for
    milliseconds) or days ahead of the producer's clock (a year typed wrong)
    is refused naming event_time; one within the clock-skew
    allowance and one from last year are accepted."""
    for when, says in [("9999-12-31T00:00:00Z", "more than 24 hours ahead"),
                       ("1969-12-31T23:59:59Z", "before 1970"),
                       # what epoch seconds sent as milliseconds look like
                       ("1970-01-21T10:00:00Z", "before 2000-01-01")]:
        with Unchanged(env):
            body = check_error(env.producer.post(good(env, event_time=when)), 422, ["event_time"])
            assert any(e["field"] == "event_time" and says in e["error"]
                       for e in body["errors"]), body
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 12 * 3600))
    env.accepted |= post_ok(env, [good(env, event_time=soon),
                                  good(env, event_time="2025-11-30T06:00:00Z")])


def test_field_of_another_type_refused(env):
    """to_location on a type other than TRANSFER, the reversal's fields on a
    type other than REVERSAL: the MES meant another type; refused naming the
    field and the type, instead of reaching the ERP."""
    for m, field, says in [
            (good(env, to_location="STOR-2"), "to_location", "only for TRANSFER, not for COMPLETION"),
            (good(env, type="SCRAP", reason_code="DMG", reverses_movement_id="BAD-OK-0001"),
             "reverses_movement_id", "only for REVERSAL, not for SCRAP"),
            (good(env, type="TRANSFER", to_location="STOR-2", reversed_type="COMPLETION"),
             "reversed_type", "only for REVERSAL, not for TRANSFER")]:
        with Unchanged(env):
            body = check_error(env.producer.post(m), 422, [field])
            assert [(e["field"], e["error"]) for e in body["errors"]] == [(field, says)], body


def test_unknown_query_parameter_refused(env):
    """POST /v1/movements takes no query parameter: ?dry_run=1 is a 400
    naming it, not a real store the client believes was a dry run."""
    for q, name in [("?dry_run=1", "dry_run"), ("?validate_only=true", "validate_only")]:
        with Unchanged(env):
            r = http("POST", env.producer.url + q, json.dumps(good(env)),
                     {"Content-Type": "application/json",
                      "Authorization": "Bearer " + env.producer.token("PLANT1")})
            body = check_error(r, 400, [name])
            assert "unknown query parameter '%s'" % name in body["error"], body


def test_invisible_characters_in_codes_refused(env):
    """A zero-width or bidirectional control in a lot makes two lots that look
    alike: refused naming the code point and the byte."""
    for lot, cp in [("LOT\u200b1", "U+200B at byte 3"), ("\u202eLOT-1", "U+202E at byte 0"),
                    ("LOT-1\ufeff", "U+FEFF at byte 5")]:
        with Unchanged(env):
            body = check_error(env.producer.post(dict(good(env), lot=lot)), 422, ["lot"])
            assert any(e["field"] == "lot" and cp in e["error"] for e in body["errors"]), body


def test_unknown_field_is_loud(env):
    with Unchanged(env):
        m = good(env)
        m["materail"] = m.pop("material")
        r = env.producer.post(m)
        check_error(r, (400, 422), ["materail"])


def test_one_bad_item_refuses_the_whole_batch(env):
    items = [good(env) for _ in range(6)]
    del items[3]["material"]
    with Unchanged(env):
        r = env.producer.post(items)
        body = check_error(r, 422, ["material"])
        errs = body["errors"]
        assert errs and all(e["index"] == 3 for e in errs), "errors must name only item 3: %r" % errs
        assert any(e["field"] == "material" and e["movement_id"] == items[3]["movement_id"]
                   for e in errs), errs
    # Nothing of the refused request was stored: the good ones are new, not duplicates.
    good_items = items[:3] + items[4:]
    r = env.producer.post(good_items)
    assert r.status == 202, r
    statuses = [it["status"] for it in r.json()["items"]]
    assert statuses == ["accepted"] * 5, "items of a refused batch were stored: %r" % r.json()
    env.accepted |= {m["movement_id"] for m in good_items}


def test_same_id_different_content_is_409(env):
    m = good(env)
    env.accepted |= post_ok(env, [m])
    with Unchanged(env):
        r = env.producer.post(m)  # identical: a duplicate, 202
        assert r.status == 202, r
        item = r.json()["items"][0]
        assert item["status"] == "duplicate" and item["movement_id"] == m["movement_id"], r.json()
        assert r.json()["duplicates"] == 1 and r.json()["accepted"] == 0, r.json()

        changed = dict(m, quantity="999")
        r = env.producer.post(changed)
        body = check_error(r, 409, [m["movement_id"]])
        assert m["movement_id"] in json.dumps(body.get("conflicts")), body


def test_protobuf_garbage(env):
    with Unchanged(env):
        # Field 1 (movements), length-delimited, with a length far past the end.
        r = env.producer.post(b"\x0a\xff\xff\xff\xff\x0f\x01\x02", site="PLANT1",
                              content_type="application/x-protobuf")
        check_error(r, 400, ["protobuf", "decode", "movementbatch", "invalid"])


def test_erp_origin_source_refused(env):
    with Unchanged(env):
        m = good(env, source=ERP_SOURCE)
        r = env.producer.post(m)
        body = check_error(r, 422, ["source_system", ERP_SOURCE])
        assert any(e["field"] == "source_system" for e in body["errors"]), body


# ------------------------------------------------------------- and finally --

def test_nothing_refused_reached_the_consumer(env):
    """Runs last: the consumer received exactly the accepted movements."""
    sentinel = good(env, site="PLANT2")
    env.accepted |= post_ok(env, [sentinel])
    c = env.consumer
    env.wait_for(lambda: c.posted_count() == len(env.accepted), 60,
                 "the consumer to post the %d accepted movements" % len(env.accepted),
                 interval=0.1, detail=lambda: "ledger has %s" % c.posted_count())
    received = {mid for (mid,) in query(c.store, "SELECT movement_id FROM movements")}
    assert received == env.accepted, "consumer got %d unexpected, missed %d: %r" % (
        len(received - env.accepted), len(env.accepted - received),
        sorted(received ^ env.accepted)[:10])
    assert env.producer.outbox_count() == len(env.accepted)
    assert os.path.exists(c.erp)
