"""Message samples and bounded consume loops shared by the client tests.

A message is a `Msg(key, value, headers, timestamp)`: keys/values are bytes or None, headers a
list of (str, bytes | None) in order (duplicates allowed, as in Kafka).
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import NamedTuple

from confluent_kafka import Consumer, KafkaError, TopicPartition as CkTopicPartition
from kafka import KafkaConsumer, TopicPartition as KpTopicPartition

# The session broker auto-creates topics with this many partitions (--set num.partitions), so
# multi-partition paths are exercised.
NUM_PARTITIONS = 3

# A fixed create time well in the past, so tests can tell it from the broker's clock.
T0 = 1_700_000_000_000


class Msg(NamedTuple):
    key: bytes | None
    value: bytes | None
    headers: list
    timestamp: int


def sample_messages(n: int, tag: str, null_header_values: bool = True) -> list[Msg]:
    """`n` messages exercising the edges of the record format: null and empty keys and values,
    every byte value, duplicate, null, empty and non-ASCII header keys and values.
    kafka-python's producer refuses null header values (it reads them fine):
    `null_header_values=False` for messages it sends."""
    out = []
    for i in range(n):
        key = None if i % 10 == 5 else (b"" if i % 10 == 7 else f"key-{i % 7}".encode())
        if i % 10 == 3:
            value = None  # a tombstone
        elif i % 10 == 4:
            value = b""
        else:
            value = bytes((i * 31 + j) % 256 for j in range((i * 37) % 600)) + tag.encode()
        headers = [
            ("idx", i.to_bytes(4, "big")),
            ("dup", b"first"),
            ("dup", b"second"),
            ("bytes", bytes(range(256))[i % 256:]),
        ]
        if i % 3 == 0:
            headers += [("empty", b""), ("schlüssel-ключ", "wert-значение".encode())]
            if null_header_values:
                headers.insert(1, ("null", None))
        out.append(Msg(key, value, headers, T0 + i))
    return out


def consume_kafka_python(bootstrap: str, topic: str, start: dict[int, int], expect: int,
                         timeout: float = 20.0, **config) -> dict[int, list]:
    """Group-less kafka-python consumer (assign + seek): reads until `expect` records arrived
    (or the deadline), then returns {partition: [ConsumerRecord, ...]} in offset order."""
    settings = {"group_id": None, "enable_auto_commit": False, "auto_offset_reset": "none"}
    settings.update(config)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, **settings)
    try:
        tps = [KpTopicPartition(topic, p) for p in start]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp.partition])
        got: dict[int, list] = defaultdict(list)
        count = 0
        deadline = time.monotonic() + timeout
        while count < expect and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200).items():
                got[tp.partition].extend(records)
                count += len(records)
        # Nothing beyond what was expected.
        for tp, records in consumer.poll(timeout_ms=200).items():
            got[tp.partition].extend(records)
        return dict(got)
    finally:
        consumer.close()


def confluent_consumer(bootstrap: str, **extra) -> Consumer:
    """A librdkafka consumer used group-less through assign() (group.id is only required by
    the client; nothing is committed)."""
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": "sluice-pytest-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "fetch.wait.max.ms": 100,
        "socket.timeout.ms": 10000,
    }
    config.update(extra)
    return Consumer(config)


def consume_confluent(bootstrap: str, topic: str, start: dict[int, int], timeout: float = 20.0,
                      **extra) -> dict[int, list]:
    """Assigns `topic` partitions at the given offsets and reads until every one of them
    reports end-of-partition; returns {partition: [Message, ...]} in offset order."""
    consumer = confluent_consumer(bootstrap, **extra)
    try:
        consumer.assign([CkTopicPartition(topic, p, o) for p, o in start.items()])
        got: dict[int, list] = defaultdict(list)
        at_end = set()
        deadline = time.monotonic() + timeout
        while len(at_end) < len(start) and time.monotonic() < deadline:
            m = consumer.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(m.partition())
                    continue
                raise AssertionError(f"consumer error: {m.error()}")
            got[m.partition()].append(m)
            at_end.discard(m.partition())
        assert len(at_end) == len(start), f"end of partitions not reached in {timeout} s: {sorted(at_end)}"
        return dict(got)
    finally:
        consumer.close()


def kp_record_as_msg(r) -> Msg:
    """A kafka-python ConsumerRecord as a Msg (headers normalised to a list of tuples)."""
    return Msg(r.key, r.value, [(k, v) for k, v in (r.headers or [])], r.timestamp)


def ck_message_as_msg(m) -> Msg:
    """A confluent-kafka Message as a Msg (no headers comes back as None: normalised to [])."""
    kind, ts = m.timestamp()
    return Msg(m.key(), m.value(), [(k, v) for k, v in (m.headers() or [])], ts)
