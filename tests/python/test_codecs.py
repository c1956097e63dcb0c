"""Compression end to end across client libraries: each codec written by librdkafka
(confluent-kafka) is read back by kafka-python byte-exact, and each codec written by
kafka-python (its own gzip/snappy-xerial/lz4/zstd encoders) is read by librdkafka. The broker
validates compressed batches by decompressing them and stores them unchanged."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from kafka import KafkaProducer

from helpers import NUM_PARTITIONS, ck_message_as_msg, consume_confluent, consume_kafka_python, kp_record_as_msg, sample_messages

CODECS = ["gzip", "snappy", "lz4", "zstd"]


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_kafka_compresses_kafka_python_decompresses(bootstrap, topic, codec):
    msgs = sample_messages(120, f"ck-{codec}")
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.codec": codec,
                         "message.timeout.ms": 20000})
    errors = []
    for i, m in enumerate(msgs):
        producer.produce(topic, key=m.key, value=m.value, headers=m.headers, timestamp=m.timestamp,
                         partition=i % NUM_PARTITIONS, on_delivery=lambda err, _m: err and errors.append(err))
    assert producer.flush(20) == 0
    assert errors == []
    got = consume_kafka_python(bootstrap, topic, {p: 0 for p in range(NUM_PARTITIONS)}, len(msgs))
    for p in range(NUM_PARTITIONS):
        assert [r.offset for r in got[p]] == list(range(40))
        assert [kp_record_as_msg(r) for r in got[p]] == msgs[p::NUM_PARTITIONS], f"{codec} partition {p}"


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_compresses_confluent_kafka_decompresses(bootstrap, topic, codec):
    msgs = sample_messages(120, f"kp-{codec}", null_header_values=False)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, compression_type=codec)
    futures = [producer.send(topic, key=m.key, value=m.value, headers=m.headers, timestamp_ms=m.timestamp,
                             partition=i % NUM_PARTITIONS) for i, m in enumerate(msgs)]
    producer.flush(timeout=20)
    producer.close()
    offsets = [(f.get(timeout=10).partition, f.get(timeout=10).offset) for f in futures]
    assert sorted(offsets) == sorted((i % NUM_PARTITIONS, i // NUM_PARTITIONS) for i in range(len(msgs)))
    got = consume_confluent(bootstrap, topic, {p: 0 for p in range(NUM_PARTITIONS)})
    for p in range(NUM_PARTITIONS):
        assert [m.offset() for m in got[p]] == list(range(40))
        assert [ck_message_as_msg(m) for m in got[p]] == msgs[p::NUM_PARTITIONS], f"{codec} partition {p}"
