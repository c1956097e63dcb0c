"""Cross-client: what one client library writes, the other reads back byte-exact (keys, values,
headers in order, timestamps) — the broker stores and serves the record batches untouched."""

from __future__ import annotations

from confluent_kafka import Producer
from kafka import KafkaProducer

from helpers import NUM_PARTITIONS, ck_message_as_msg, consume_confluent, consume_kafka_python, kp_record_as_msg, sample_messages


def test_confluent_kafka_writes_kafka_python_reads(bootstrap, topic):
    msgs = sample_messages(150, "ck-to-kp")  # includes null header values
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "message.timeout.ms": 20000})
    delivered = {}

    def on_delivery(err, m):
        assert err is None, err
        delivered.setdefault(m.partition(), []).append(m.offset())

    for i, m in enumerate(msgs):
        producer.produce(topic, key=m.key, value=m.value, headers=m.headers, timestamp=m.timestamp,
                         partition=i % NUM_PARTITIONS, on_delivery=on_delivery)
    assert producer.flush(20) == 0
    assert {p: sorted(o) for p, o in delivered.items()} == {p: list(range(50)) for p in range(NUM_PARTITIONS)}

    got = consume_kafka_python(bootstrap, topic, {p: 0 for p in range(NUM_PARTITIONS)}, len(msgs))
    for p in range(NUM_PARTITIONS):
        assert [r.offset for r in got[p]] == list(range(50))
        assert [kp_record_as_msg(r) for r in got[p]] == msgs[p::NUM_PARTITIONS], f"partition {p}"


def test_kafka_python_writes_confluent_kafka_reads(bootstrap, topic):
    msgs = sample_messages(150, "kp-to-ck", null_header_values=False)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5, enable_idempotence=False)
    futures = [producer.send(topic, key=m.key, value=m.value, headers=m.headers, timestamp_ms=m.timestamp,
                             partition=i % NUM_PARTITIONS) for i, m in enumerate(msgs)]
    producer.flush(timeout=20)
    producer.close()
    assert [(f.get(timeout=10).partition, f.get(timeout=10).offset) for f in futures] == \
        [(i % NUM_PARTITIONS, i // NUM_PARTITIONS) for i in range(len(msgs))]

    got = consume_confluent(bootstrap, topic, {p: 0 for p in range(NUM_PARTITIONS)})
    for p in range(NUM_PARTITIONS):
        assert [m.offset() for m in got[p]] == list(range(50))
        assert [ck_message_as_msg(m) for m in got[p]] == msgs[p::NUM_PARTITIONS], f"partition {p}"
