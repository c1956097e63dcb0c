"""confluent-kafka (librdkafka, bundled in the wheel) against sluice: delivery reports for every
message, group-less consumers assigned at explicit offsets, byte-exact content and timestamps,
watermarks and offsets_for_times, metadata."""

from __future__ import annotations

import pytest
from confluent_kafka import (OFFSET_BEGINNING, OFFSET_END, TIMESTAMP_CREATE_TIME, Producer,
                             TopicPartition)

from helpers import NUM_PARTITIONS, T0, ck_message_as_msg, confluent_consumer, consume_confluent, sample_messages


def make_producer(bootstrap, **extra) -> Producer:
    config = {"bootstrap.servers": bootstrap, "linger.ms": 5, "message.timeout.ms": 20000,
              "socket.timeout.ms": 10000}
    config.update(extra)
    return Producer(config)


def produce_all(producer, topic, msgs, partition_of):
    """Produces every message with a delivery callback; returns the reports in callback order
    as (error, partition, offset, timestamp, key, value, Msg)."""
    reports = []
    for i, m in enumerate(msgs):
        def on_delivery(err, delivered, m=m):
            reports.append((err, delivered.partition(), delivered.offset(), delivered.timestamp(),
                            delivered.key(), delivered.value(), m))
        kwargs = {} if partition_of(i) is None else {"partition": partition_of(i)}
        producer.produce(topic, key=m.key, value=m.value, headers=m.headers, timestamp=m.timestamp,
                         on_delivery=on_delivery, **kwargs)
        producer.poll(0)
    assert producer.flush(20) == 0, "every message delivered or failed within 20 s"
    assert len(reports) == len(msgs), "one delivery report per message"
    return reports


def test_delivery_callbacks_report_every_partition_and_offset(bootstrap, topic):
    msgs = sample_messages(300, "ck-delivery")
    # A third pinned to partition 1, the rest placed by librdkafka's partitioner (by key).
    reports = produce_all(make_producer(bootstrap), topic, msgs, lambda i: 1 if i % 3 == 0 else None)
    per_partition = {}
    for err, partition, offset, timestamp, key, value, m in reports:
        assert err is None, err
        assert 0 <= partition < NUM_PARTITIONS
        assert (key, value) == (m.key, m.value)
        assert timestamp == (TIMESTAMP_CREATE_TIME, m.timestamp)
        per_partition.setdefault(partition, []).append((offset, m))
    assert set(per_partition) == set(range(NUM_PARTITIONS))
    for partition, delivered in per_partition.items():
        # Callbacks come in offset order per partition, offsets dense from 0.
        assert [o for o, _ in delivered] == list(range(len(delivered))), partition
    assert sum(len(d) for d in per_partition.values()) == 300
    index_of = lambda m: int.from_bytes(m.headers[0][1], "big")  # the "idx" header
    assert all(partition == 1 for _, partition, _, _, _, _, m in reports if index_of(m) % 3 == 0)

    got = consume_confluent(bootstrap, topic, {p: 0 for p in range(NUM_PARTITIONS)})
    for partition, delivered in per_partition.items():
        assert [m.offset() for m in got[partition]] == [o for o, _ in delivered]
        assert [ck_message_as_msg(m) for m in got[partition]] == [m for _, m in delivered]


def test_assign_at_explicit_offsets_reads_byte_exact(bootstrap, topic):
    msgs = sample_messages(60, "ck-assign")
    reports = produce_all(make_producer(bootstrap), topic, msgs, lambda i: i % 3)
    assert all(r[0] is None for r in reports)
    by_partition = {p: [m for i, m in enumerate(msgs) if i % 3 == p] for p in range(3)}  # 20 each

    got = consume_confluent(bootstrap, topic, {0: 7, 1: OFFSET_BEGINNING, 2: 19})
    assert [m.offset() for m in got[0]] == list(range(7, 20))
    assert [m.offset() for m in got[1]] == list(range(0, 20))
    assert [m.offset() for m in got[2]] == [19]
    for partition, first in ((0, 7), (1, 0), (2, 19)):
        back = [ck_message_as_msg(m) for m in got[partition]]
        assert back == by_partition[partition][first:]
        assert all(m.timestamp()[0] == TIMESTAMP_CREATE_TIME for m in got[partition])
        assert all(m.topic() == topic and m.error() is None for m in got[partition])

    # At the end: nothing, and no error.
    got = consume_confluent(bootstrap, topic, {0: OFFSET_END})
    assert got == {}


def test_watermarks_and_offsets_for_times(bootstrap, topic):
    # One message per request (flush after each), so every batch holds one record.
    producer = make_producer(bootstrap, **{"linger.ms": 0})
    for i in range(8):
        producer.produce(topic, key=b"k%d" % i, value=b"v%d" % i, partition=0, timestamp=T0 + 1000 * i)
        assert producer.flush(10) == 0
    consumer = confluent_consumer(bootstrap)
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False) == (0, 8)
        assert consumer.get_watermark_offsets(TopicPartition(topic, 1), timeout=10, cached=False) == (0, 0)

        def offset_for(ts):
            [tp] = consumer.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
            assert tp.error is None, tp.error
            return tp.offset

        assert offset_for(0) == 0
        assert offset_for(T0) == 0
        assert offset_for(T0 + 1) == 1
        assert offset_for(T0 + 2500) == 3
        assert offset_for(T0 + 7000) == 7
        assert offset_for(T0 + 7001) == -1, "no message at or after it: Kafka answers -1"
        # Several partitions at once.
        answers = consumer.offsets_for_times(
            [TopicPartition(topic, 0, T0 + 4000), TopicPartition(topic, 1, T0)], timeout=10)
        assert [(tp.partition, tp.offset) for tp in answers] == [(0, 4), (1, -1)]
    finally:
        consumer.close()


def test_offsets_for_times_inside_one_batch(bootstrap, topic):
    # Kafka finds the first record with timestamp >= target inside the batch.
    producer = make_producer(bootstrap, **{"linger.ms": 50})
    for i in range(4):
        producer.produce(topic, value=b"v%d" % i, partition=0, timestamp=T0 + 3 * i)
    assert producer.flush(10) == 0
    consumer = confluent_consumer(bootstrap)
    try:
        def offset_for(ts):
            [tp] = consumer.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
            return tp.offset

        assert [offset_for(T0 + d) for d in (0, 1, 2, 3, 4, 7, 9, 10)] == [0, 1, 1, 1, 2, 3, 3, -1]
    finally:
        consumer.close()
    # The four really went in one batch (one Fetch batch → consecutive offsets, same batch).
    got = consume_confluent(bootstrap, topic, {0: 0})
    assert [m.timestamp()[1] for m in got[0]] == [T0, T0 + 3, T0 + 6, T0 + 9]


def test_metadata_lists_topic_partitions_and_broker(broker, topic):
    producer = make_producer(broker.bootstrap)
    producer.produce(topic, value=b"x")
    assert producer.flush(10) == 0
    metadata = producer.list_topics(topic, timeout=10)
    assert [(b.host, b.port) for b in metadata.brokers.values()] == [("127.0.0.1", broker.port)]
    [broker_id] = metadata.brokers
    assert metadata.controller_id == broker_id
    t = metadata.topics[topic]
    assert t.error is None
    assert sorted(t.partitions) == list(range(NUM_PARTITIONS))
    for p in t.partitions.values():
        assert (p.leader, p.replicas, p.isrs, p.error) == (broker_id, [broker_id], [broker_id], None)
