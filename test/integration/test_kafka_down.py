"""Kafka unreachable: the producer keeps accepting (202, committed to the
outbox), the backlog shows in /readyz, and once Kafka is reachable the
backlog drains and the consumer posts everything."""

import socket
import threading

from conftest import find_key, free_port, http, movement


class BootstrapProxy:
    """A TCP forwarder on a fixed loopback port, started late: until start()
    nothing listens there (connection refused, as with a broker down)."""

    def __init__(self, port):
        self.port = port
        self.stopping = False
        self.sock = None

    def start(self, target_host, target_port):
        self.target = (target_host, target_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self):
        self.stopping = True
        if self.sock:
            self.sock.close()


def test_producer_accepts_while_kafka_is_down(stack):
    port = free_port()  # nothing listens here yet
    proxy = BootstrapProxy(port)
    bootstrap = "127.0.0.1:%d" % port
    producer = stack.start_producer(config=stack.producer_config(
        bootstrap=bootstrap, overrides={"kafka": {"reconnect.backoff.max.ms": 1000}}))

    ids = []
    for batch in range(3):
        items = [movement("DOWN-%d-%02d" % (batch, i), "PLANT1", lot="LOT-%d" % (i % 4))
                 for i in range(10)]
        r = producer.post(items)
        assert r.status == 202, "Kafka down: a valid batch was refused: %r" % r
        assert r.json()["accepted"] == 10, r.json()
        ids += [m["movement_id"] for m in items]

    assert producer.outbox_count() == 30
    assert producer.outbox_count("WHERE sent_at IS NULL") == 30, "rows marked sent with Kafka down"

    # Still ready (it accepts), and the backlog is visible.
    r = http("GET", producer.base + "/readyz")
    backlog = find_key(r.json(), "backlog", "outbox_backlog")
    assert backlog == 30, "/readyz does not show the backlog of 30 unsent movements: %r" % r
    assert http("GET", producer.base + "/healthz").status == 200

    # Kafka comes back (the bootstrap address starts answering).
    real = stack.start_kafka()
    host, rport = real.split(",")[0].rsplit(":", 1)
    proxy.start(host, int(rport))
    try:
        consumer = stack.start_consumer(overrides={"kafka": {"bootstrap.servers": real}})
        stack.wait_for(lambda: producer.outbox_count("WHERE sent_at IS NULL") == 0, 60,
                       "the outbox backlog to drain once Kafka is reachable",
                       detail=lambda: "%d unsent" % producer.outbox_count("WHERE sent_at IS NULL"))
        stack.wait_for(lambda: consumer.posted_count() == 30, 60,
                       "the consumer to post the 30 movements accepted while Kafka was down",
                       detail=lambda: "ledger has %s" % consumer.posted_count())
    finally:
        proxy.stop()
