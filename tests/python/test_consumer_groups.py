"""Consumer groups with real non-Rust clients: kafka-python and confluent-kafka consumers share
partitions, commit (with metadata), resume, and the admin clients list, describe and delete
groups."""

from __future__ import annotations

import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition as CkTopicPartition
from kafka import KafkaConsumer, TopicPartition as KpTopicPartition
from kafka.admin import KafkaAdminClient

from helpers import NUM_PARTITIONS


def produce(bootstrap: str, topic: str, n: int) -> set[tuple[int, int]]:
    """n messages round-robin over the partitions; returns their (partition, offset)."""
    delivered: set[tuple[int, int]] = set()

    def on_delivery(err, msg):
        assert err is None, err
        delivered.add((msg.partition(), msg.offset()))

    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(n):
        p.produce(topic, value=f"v{i}".encode(), partition=i % NUM_PARTITIONS, on_delivery=on_delivery)
    assert p.flush(20) == 0
    assert len(delivered) == n
    return delivered


def ck_consumer(bootstrap: str, group: str, **extra) -> Consumer:
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    config.update(extra)
    return Consumer(config)


def test_kafka_python_consumers_share_partitions_exactly_once(bootstrap, topic):
    produced = produce(bootstrap, topic, 300)
    results: dict[int, tuple[set, list]] = {}
    errors: list[BaseException] = []
    stop = threading.Event()
    consumed_count = [0]
    lock = threading.Lock()

    def run(n: int) -> None:
        try:
            c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"{topic}-g", auto_offset_reset="earliest",
                              session_timeout_ms=6000, heartbeat_interval_ms=300, enable_auto_commit=False)
            seen = []
            deadline = time.time() + 40
            while time.time() < deadline and not stop.is_set():
                for records in c.poll(200).values():
                    seen += [(r.partition, r.offset) for r in records]
                    with lock:
                        consumed_count[0] += len(records)
                if seen:
                    c.commit()
                with lock:
                    if consumed_count[0] >= len(produced):
                        break
            # Stay in the group until everyone is done so no rebalance moves partitions late.
            while not stop.wait(0.2) and time.time() < deadline:
                with lock:
                    if consumed_count[0] >= len(produced):
                        break
            results[n] = ({tp.partition for tp in c.assignment()}, seen)
            c.close()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(NUM_PARTITIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stop.set()
    assert not errors, errors
    seen = [x for _, s in results.values() for x in s]
    assert len(seen) == len(set(seen)), "a message was consumed twice"
    assert set(seen) == produced, "every message consumed"
    owned = [a for a, _ in results.values()]
    assert sorted(p for a in owned for p in a) == list(range(NUM_PARTITIONS)), owned
    assert all(len(a) == 1 for a in owned), f"each of {NUM_PARTITIONS} consumers owns one partition: {owned}"


def test_confluent_commit_with_metadata_then_resume_in_same_group(bootstrap, topic):
    produce(bootstrap, topic, 60)
    group = f"{topic}-g"
    c = ck_consumer(bootstrap, group)
    c.assign([CkTopicPartition(topic, 0, 0)])
    got = []
    deadline = time.time() + 20
    while len(got) < 10 and time.time() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error():
            got.append(m.offset())
    assert got[:10] == list(range(10))
    c.commit(offsets=[CkTopicPartition(topic, 0, 10, metadata="half-way")], asynchronous=False)
    c.close()

    c = ck_consumer(bootstrap, group)
    c.subscribe([topic])
    first = None
    deadline = time.time() + 20
    while first is None and time.time() < deadline:
        m = c.poll(0.2)
        if m is not None and not m.error() and m.partition() == 0:
            first = m.offset()
    committed = c.committed([CkTopicPartition(topic, 0)], timeout=10)
    c.close()
    assert first == 10, "resumes exactly after the commit"
    assert committed[0].offset == 10
    assert committed[0].metadata == "half-way"


def test_kafka_python_commit_resumes_in_confluent_consumer(bootstrap, topic):
    produce(bootstrap, topic, 30)
    group = f"{topic}-g"
    kp = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    from kafka.structs import OffsetAndMetadata
    kp.commit({KpTopicPartition(topic, 1): OffsetAndMetadata(7, "from-kafka-python", -1)})
    kp.close()
    c = ck_consumer(bootstrap, group)
    c.assign([CkTopicPartition(topic, 1, -1001)])  # OFFSET_STORED: resume from the commit
    m = None
    deadline = time.time() + 20
    while m is None and time.time() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error():
            m = None
    committed = c.committed([CkTopicPartition(topic, 1)], timeout=10)
    c.close()
    assert m is not None and m.offset() == 7
    assert committed[0].metadata == "from-kafka-python"


def test_admin_lists_describes_and_deletes_groups(bootstrap, topic):
    produce(bootstrap, topic, 9)
    group = f"{topic}-g"
    c = ck_consumer(bootstrap, group)
    c.subscribe([topic])
    deadline = time.time() + 20
    while not c.assignment() and time.time() < deadline:
        c.poll(0.2)
    c.commit(offsets=[CkTopicPartition(topic, p, 1) for p in range(NUM_PARTITIONS)], asynchronous=False)
    # Lag the way kafka-consumer-groups computes it: high watermark minus committed offset.
    committed = c.committed([CkTopicPartition(topic, p) for p in range(NUM_PARTITIONS)], timeout=10)
    lag = {tp.partition: c.get_watermark_offsets(tp, timeout=10)[1] - tp.offset for tp in committed}
    assert lag == {p: 9 // NUM_PARTITIONS - 1 for p in range(NUM_PARTITIONS)}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    described = admin.describe_groups([group])[group]
    assert described["group_state"] == "Stable"
    assert described["protocol_type"] == "consumer"
    assert len(described["members"]) == 1
    listed = {g["group_id"]: g for g in admin.list_groups()}
    assert listed[group]["group_state"] == "Stable"
    deleted = admin.delete_groups([group])
    assert "NonEmptyGroup" in repr(deleted[group]), deleted  # a live group cannot be deleted
    c.close()
    offsets = admin.list_group_offsets(group)[group]
    assert {tp.partition: om.offset for tp, om in offsets.items()} == {p: 1 for p in range(NUM_PARTITIONS)}
    assert admin.describe_groups([group])[group]["group_state"] == "Empty"
    deleted = admin.delete_groups([group])
    assert deleted[group] == "OK", deleted
    assert group not in {g["group_id"] for g in admin.list_groups()}
    admin.close()
