"""Unknown protobuf fields are skipped (README, the HTTP API): not stored,
not forwarded, not part of what tells a resend from a conflict.

Before the fix a movement carrying a 2 MB unknown field was answered 202,
then never left the outbox (librdkafka: "Message size too large", retried
for ever), and the consumer held the site's later movements behind the
sequence gap; and a resend carrying an extra unknown field was a 409."""

import json

from conftest import movement, pb_ld, pb_varint, query


def _movement_pb(m, unknown=b""):
    """The JSON movement m (strings, type COMPLETION, integer quantity) as a
    protobuf Movement, with `unknown` appended as field 99."""
    strings = [("movement_id", 1), ("source_system", 2), ("site", 3), ("material", 5),
               ("lot", 6), ("location", 8), ("uom", 11), ("order_id", 12)]
    b = b"".join(pb_ld(n, m[k]) for k, n in strings)
    b += pb_varint(4 << 3) + pb_varint(2)  # type = COMPLETION
    b += pb_ld(10, pb_varint(1 << 3) + pb_varint(int(m["quantity"])))  # Decimal{units}
    if unknown:
        b += pb_ld(99, unknown)
    return b


def _batch(*movements):
    return b"".join(pb_ld(1, mv) for mv in movements)


def test_unknown_protobuf_fields_are_skipped_end_to_end(stack):
    stack.start_kafka()
    consumer = stack.start_consumer()
    producer = stack.start_producer()
    big = movement("PBU-BIG", "PLANT1", lot="LOT-PBU")
    after = movement("PBU-AFTER", "PLANT1", lot="LOT-PBU")

    r = producer.post(_batch(_movement_pb(big, b"x" * 2_000_000)), site="PLANT1",
                      content_type="application/x-protobuf")
    assert r.status == 202, r
    r = producer.post(_batch(_movement_pb(after)), site="PLANT1",
                      content_type="application/x-protobuf")
    assert r.status == 202, r
    # The resend of a movement with one more field this producer does not know.
    r = producer.post(_batch(_movement_pb(after, b"from a newer MES")), site="PLANT1",
                      content_type="application/x-protobuf")
    assert r.status == 202, r
    assert r.json()["duplicates"] == 1, r

    rows = query(producer.outbox, "SELECT movement_id, length(payload) FROM outbox "
                                  "WHERE movement_id LIKE 'PBU-%' ORDER BY id")
    assert [m for m, _ in rows] == ["PBU-BIG", "PBU-AFTER"]
    assert all(n < 4096 for _, n in rows), rows
    stack.wait_for(lambda: producer.outbox_count("WHERE movement_id LIKE 'PBU-%' AND "
                                                 "sent_at IS NOT NULL") == 2,
                   30, "both movements delivered to Kafka",
                   detail=lambda: json.dumps(rows))
    stack.wait_for(lambda: consumer.store_count("WHERE movement_id LIKE 'PBU-%'") == 2,
                   30, "the consumer to store both movements")
