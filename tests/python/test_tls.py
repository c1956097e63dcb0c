"""confluent-kafka and kafka-python over an SSL listener (issue #18): one broker with a
PLAINTEXT and an SSL listener; both clients produce and consume byte-exact over TLS, checking
the server certificate (CA made at test time with the openssl CLI) and its 127.0.0.1 name;
Metadata over the SSL port names the SSL port."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition

from conftest import _start_broker, _stop_broker, free_port

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def ca_and_keystore(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"), "-days", "2",
             "-subj", "/CN=sluice pytest CA")
    _openssl("req", *ec, "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"), "-subj", "/CN=localhost")
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
             "-CAcreateserial", "-out", str(d / "server.pem"), "-days", "2", "-extfile", str(d / "ext"))
    keystore = d / "keystore.pem"
    keystore.write_text((d / "server.pem").read_text() + (d / "server.key").read_text())
    return d / "ca.pem", keystore


@pytest.fixture(scope="module")
def ssl_bootstrap(tmp_path_factory, ca_and_keystore):
    """The SSL listener of a broker that also has a PLAINTEXT one (its --listen port)."""
    _, keystore = ca_and_keystore
    ssl_port = free_port()
    broker = _start_broker(tmp_path_factory.mktemp("sluice-tls"), [
        "--set", f"listeners=PLAINTEXT://127.0.0.1:{free_port()},SSL://127.0.0.1:{ssl_port}",
        "--set", "ssl.keystore.type=PEM", "--set", f"ssl.keystore.location={keystore}"])
    try:
        yield f"127.0.0.1:{ssl_port}"
    finally:
        _stop_broker(broker)


def _values(n: int) -> list[bytes]:
    return [f"tls-{i}-".encode() + bytes(range(256)) * (i % 40) for i in range(n)]


def test_confluent_kafka_over_ssl(ssl_bootstrap, ca_and_keystore):
    ca, _ = ca_and_keystore
    ssl = {"bootstrap.servers": ssl_bootstrap, "security.protocol": "SSL", "ssl.ca.location": str(ca)}
    metadata = AdminClient(ssl).list_topics(timeout=10)
    assert [b.port for b in metadata.brokers.values()] == [int(ssl_bootstrap.rsplit(":", 1)[1])]
    topic = f"tls-ck-{uuid.uuid4().hex[:8]}"
    values = _values(200)
    producer = Producer({**ssl, "acks": "all"})
    errors = []
    for v in values:
        producer.produce(topic, value=v, on_delivery=lambda err, _msg: err and errors.append(err))
    assert producer.flush(30) == 0 and not errors, errors
    consumer = Consumer({**ssl, "group.id": "tls-unused", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    got, deadline = [], time.monotonic() + 30
    while len(got) < len(values) and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    consumer.close()
    assert got == values


def test_kafka_python_over_ssl(ssl_bootstrap, ca_and_keystore):
    ca, _ = ca_and_keystore
    ssl = {"bootstrap_servers": ssl_bootstrap, "security_protocol": "SSL", "ssl_cafile": str(ca)}
    topic = f"tls-kp-{uuid.uuid4().hex[:8]}"
    values = _values(100)
    producer = KafkaProducer(enable_idempotence=False, acks=1, **ssl)
    for v in values:
        producer.send(topic, value=v)
    producer.flush(timeout=30)
    producer.close()
    consumer = KafkaConsumer(enable_auto_commit=False, consumer_timeout_ms=10_000, **ssl)
    tp = KafkaTopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got = []
    for record in consumer:
        got.append(record.value)
        if len(got) == len(values):
            break
    consumer.close()
    assert got == values
