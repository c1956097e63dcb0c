"""Incremental fetch sessions (KIP-227) with a real client that uses them: kafka-python's
consumer creates a session with its first fetch and then sends incremental fetches. A consumer
of 120 partitions reads every record, including records produced once its session is running
(delivered by incremental responses). librdkafka (confluent-kafka, kcat) fetches without
sessions; its tests elsewhere cover the sessionless path."""

from __future__ import annotations

import time
from collections import defaultdict

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

PARTITIONS = 120


def produce(bootstrap, topic, per_partition, tag):
    p = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    futures = [p.send(topic, value=f"{tag}-{part}-{i}".encode(), partition=part)
               for part in range(PARTITIONS) for i in range(per_partition)]
    p.flush(timeout=30)
    for f in futures:
        f.get(timeout=30)
    p.close()


def read(consumer, got, expect, timeout=60.0):
    deadline = time.monotonic() + timeout
    while sum(len(v) for v in got.values()) < expect:
        assert time.monotonic() < deadline, f"read {sum(len(v) for v in got.values())} of {expect}"
        for tp, records in consumer.poll(timeout_ms=200).items():
            got[tp.partition].extend(r.value for r in records)


def test_a_session_consumer_of_many_partitions_reads_everything(bootstrap, topic):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    admin.close()
    produce(bootstrap, topic, 2, "before")

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", enable_incremental_fetch_sessions=True)
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        got = defaultdict(list)
        read(consumer, got, 2 * PARTITIONS)
        # New records reach a running session through incremental fetches.
        produce(bootstrap, topic, 1, "after")
        read(consumer, got, 3 * PARTITIONS)
        assert len(got) == PARTITIONS
        for part in range(PARTITIONS):
            assert got[part] == [f"before-{part}-0".encode(), f"before-{part}-1".encode(),
                                 f"after-{part}-0".encode()], part
        # The consumer is in a session the broker created and has moved its epoch on
        # (kafka-python's session state; epoch 1 is the first incremental fetch).
        sessions = [h.next_metadata for h in consumer._fetcher._session_handlers.values()]
        assert any(m.session_id != 0 and m.epoch > 1 for m in sessions), sessions
    finally:
        consumer.close()
