"""kafka-python (pure-Python client) against sluice: produce/consume byte-exact at every acks
level, large and tiny messages, and the admin client. Consumers are group-less (assign + seek):
consumer groups are not implemented yet (issue 4)."""

from __future__ import annotations

import os
from collections import defaultdict

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as Errors
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.protocol.consumer.offsets import OffsetSpec

from helpers import NUM_PARTITIONS, T0, Msg, consume_kafka_python, kp_record_as_msg, sample_messages


def producer(bootstrap, **config) -> KafkaProducer:
    # Idempotence (kafka-python's default with acks=all) needs InitProducerId, which sluice
    # does not have yet: see test_default_idempotent_producer.
    settings = {"enable_idempotence": False, "linger_ms": 5}
    settings.update(config)
    return KafkaProducer(bootstrap_servers=bootstrap, **settings)


@pytest.fixture
def admin(bootstrap):
    client = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    yield client
    client.close()


def produce_and_check(bootstrap, topic, msgs, acks, **config):
    """Sends `msgs` (keyed → partition by the client's murmur2 partitioner) and returns
    {partition: [Msg in send order]}; checks acked offsets when the broker answers."""
    p = producer(bootstrap, acks=acks, **config)
    futures = [p.send(topic, key=m.key, value=m.value, headers=m.headers, timestamp_ms=m.timestamp)
               for m in msgs]
    p.flush(timeout=20)
    p.close()
    expected = defaultdict(list)
    for m, f in zip(msgs, futures):
        meta = f.get(timeout=20)
        assert meta.topic == topic and 0 <= meta.partition < NUM_PARTITIONS
        if acks != 0:
            # Offsets are dense from 0 in each partition, in send order.
            assert meta.offset == len(expected[meta.partition]), (meta, len(expected[meta.partition]))
            assert meta.timestamp == m.timestamp  # CreateTime topic: the producer's timestamp
        expected[meta.partition].append(m)
    return dict(expected)


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_keyed_messages_with_headers_round_trip_byte_exact(bootstrap, topic, acks):
    msgs = sample_messages(120, f"kp-acks-{acks}", null_header_values=False)
    expected = produce_and_check(bootstrap, topic, msgs, acks)
    assert len(expected) > 1, "keys spread over several partitions"
    got = consume_kafka_python(bootstrap, topic, {p: 0 for p in range(NUM_PARTITIONS)}, len(msgs))
    for partition in range(NUM_PARTITIONS):
        records = got.get(partition, [])
        assert [r.offset for r in records] == list(range(len(records)))
        assert [kp_record_as_msg(r) for r in records] == expected.get(partition, []), f"partition {partition}"
        assert all(r.timestamp_type == 0 for r in records), "CreateTime"
    # Same key → same partition (what keyed ordering relies on).
    by_key = defaultdict(set)
    for partition, ms in expected.items():
        for m in ms:
            if m.key is not None:
                by_key[m.key].add(partition)
    assert all(len(ps) == 1 for ps in by_key.values())


def test_seek_to_the_middle_and_to_the_end(bootstrap, topic):
    msgs = sample_messages(30, "seek", null_header_values=False)
    p = producer(bootstrap, acks=1)
    for m in msgs:
        p.send(topic, key=m.key, value=m.value, headers=m.headers, timestamp_ms=m.timestamp, partition=1)
    p.flush(timeout=20)
    p.close()
    got = consume_kafka_python(bootstrap, topic, {1: 17}, len(msgs) - 17)
    assert [r.offset for r in got[1]] == list(range(17, 30))
    assert [kp_record_as_msg(r) for r in got[1]] == msgs[17:]

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    tp = TopicPartition(topic, 1)
    consumer.assign([tp])
    assert consumer.beginning_offsets([tp]) == {tp: 0}
    assert consumer.end_offsets([tp]) == {tp: 30}
    consumer.seek_to_end(tp)
    assert consumer.position(tp) == 30
    assert consumer.poll(timeout_ms=300) == {}
    consumer.close()


def test_large_and_tiny_messages(bootstrap, topic):
    big = [os.urandom(900 * 1024), os.urandom(900 * 1024 - 1)]
    tiny = [bytes([i % 256]) for i in range(2000)]
    msgs = ([Msg(b"big-0", big[0], [], T0)]
            + [Msg(None, v, [], T0 + 1 + i) for i, v in enumerate(tiny[:1000])]
            + [Msg(b"", b"", [], T0 + 2000), Msg(b"k", None, [("h", b"")], T0 + 2001)]
            + [Msg(b"big-1", big[1], [("h", b"x" * 1000)], T0 + 2002)]
            + [Msg(b"t", v, [], T0 + 3000 + i) for i, v in enumerate(tiny[1000:])])
    # One partition so the order is fixed; a linger lets the tiny ones batch together.
    p = producer(bootstrap, acks=1, linger_ms=20, max_request_size=1024 * 1024)
    futures = [p.send(topic, key=m.key, value=m.value, headers=m.headers, timestamp_ms=m.timestamp,
                      partition=2) for m in msgs]
    p.flush(timeout=30)
    p.close()
    assert [f.get(timeout=10).offset for f in futures] == list(range(len(msgs)))
    got = consume_kafka_python(bootstrap, topic, {2: 0}, len(msgs), timeout=30)
    records = got[2]
    assert [r.offset for r in records] == list(range(len(msgs)))
    back = [kp_record_as_msg(r) for r in records]
    assert back[0].value == big[0] and back[1003].value == big[1]
    assert back == msgs


def test_batch_over_message_max_bytes_is_rejected(bootstrap, topic):
    # Kafka: a record batch over message.max.bytes (default 1048588) → MESSAGE_TOO_LARGE.
    p = producer(bootstrap, acks=1, max_request_size=4 * 1024 * 1024, retries=0)
    f = p.send(topic, value=os.urandom(1_100_000), partition=0)
    with pytest.raises(Errors.MessageSizeTooLargeError):
        f.get(timeout=20)
    ok = p.send(topic, value=b"after", partition=0).get(timeout=20)
    assert ok.offset == 0, "nothing of the rejected batch was written"
    p.close()


def test_list_partition_offsets_by_spec_and_timestamp(bootstrap, topic, admin):
    # One record per batch (each send awaited), timestamps out of order.
    stamps = [T0, T0 + 5, T0 + 50, T0 + 7, T0 + 3]
    p = producer(bootstrap, acks=1, linger_ms=0)
    for i, ts in enumerate(stamps):
        assert p.send(topic, value=b"%d" % i, partition=0, timestamp_ms=ts).get(timeout=20).offset == i
    p.close()
    tp = TopicPartition(topic, 0)

    def lookup(spec):
        found = admin.list_partition_offsets({tp: spec})[tp]
        return found.offset, found.timestamp

    assert lookup(OffsetSpec.EARLIEST) == (0, -1)
    assert lookup(OffsetSpec.LATEST) == (5, -1)
    assert lookup(OffsetSpec.MAX_TIMESTAMP) == (2, T0 + 50)
    # The first record in offset order whose timestamp is >= the target, and its timestamp.
    assert lookup(T0) == (0, T0)
    assert lookup(T0 + 4) == (1, T0 + 5)
    assert lookup(T0 + 6) == (2, T0 + 50)
    assert lookup(T0 + 51) == (-1, -1)
    empty = TopicPartition(topic, 1)
    assert admin.list_partition_offsets({empty: OffsetSpec.MAX_TIMESTAMP})[empty][:2] == (-1, -1)
    assert admin.list_partition_offsets({empty: OffsetSpec.LATEST})[empty][:2] == (0, -1)


def test_list_partition_offsets_inside_one_batch(bootstrap, topic, admin):
    stamps = [T0, T0 + 5, T0 + 50, T0 + 7, T0 + 3]
    p = producer(bootstrap, acks=1, linger_ms=200)
    futures = [p.send(topic, value=b"%d" % i, partition=0, timestamp_ms=ts) for i, ts in enumerate(stamps)]
    p.flush(timeout=20)
    p.close()
    assert [f.get(timeout=10).offset for f in futures] == [0, 1, 2, 3, 4]
    tp = TopicPartition(topic, 0)

    def lookup(spec):
        found = admin.list_partition_offsets({tp: spec})[tp]
        return found.offset, found.timestamp

    # Kafka looks inside the batch (KIP-734; KAFKA-16310 for MAX_TIMESTAMP).
    assert lookup(OffsetSpec.MAX_TIMESTAMP) == (2, T0 + 50)
    assert lookup(T0) == (0, T0)
    assert lookup(T0 + 4) == (1, T0 + 5)
    assert lookup(T0 + 6) == (2, T0 + 50)


def test_default_idempotent_producer(bootstrap, topic, require_apis):
    # kafka-python's defaults (acks=all with enable_idempotence=True) need InitProducerId.
    require_apis("InitProducerId")
    p = KafkaProducer(bootstrap_servers=bootstrap)
    msgs = sample_messages(20, "idempotent", null_header_values=False)
    futures = [p.send(topic, key=m.key, value=m.value, headers=m.headers, timestamp_ms=m.timestamp,
                      partition=0) for m in msgs]
    p.flush(timeout=20)
    p.close()
    assert [f.get(timeout=10).offset for f in futures] == list(range(20))
    got = consume_kafka_python(bootstrap, topic, {0: 0}, 20)
    assert [kp_record_as_msg(r) for r in got[0]] == msgs


# --- admin client ---------------------------------------------------------------------------

def test_admin_list_and_describe_topics(bootstrap, topic, admin):
    p = producer(bootstrap, acks=1)
    p.send(topic, value=b"create me").get(timeout=20)  # auto-creates
    p.close()
    assert topic in admin.list_topics()
    [described] = admin.describe_topics([topic])
    assert described["name"] == topic and described["error_code"] == 0
    partitions = sorted(described["partitions"], key=lambda p: p["partition_index"])
    assert [p["partition_index"] for p in partitions] == list(range(NUM_PARTITIONS))
    assert all(p["leader_id"] >= 0 and p["error_code"] == 0 for p in partitions)


def test_admin_create_list_delete_topics(bootstrap, topic, admin, require_apis):
    require_apis("CreateTopics", "DeleteTopics")
    result = admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}})
    assert [(t["name"], t["error_code"]) for t in result["topics"]] == [(topic, 0)]
    admin.wait_for_topics([topic], timeout_ms=10000)
    assert topic in admin.list_topics()
    [described] = admin.describe_topics([topic])
    assert len(described["partitions"]) == 2, "the requested partition count, not num.partitions"
    # Usable at once: both partitions take writes.
    p = producer(bootstrap, acks=1)
    assert p.send(topic, value=b"p1", partition=1).get(timeout=20).offset == 0
    p.close()

    result = admin.delete_topics([topic])
    assert [(t["name"], t["error_code"]) for t in result["topics"]] == [(topic, 0)]
    assert topic not in admin.list_topics()
    with pytest.raises(Errors.UnknownTopicOrPartitionError):
        admin.delete_topics([topic])


def test_admin_create_topic_errors(bootstrap, topic, admin, require_apis):
    require_apis("CreateTopics")
    # Names Kafka refuses: illegal characters, "." and "..", longer than 249 characters.
    with pytest.raises(Errors.InvalidTopicError):
        admin.create_topics({"bad/name": {"num_partitions": 1, "replication_factor": 1}})
    bad = ["bad name", "..", ".", "x" * 250, "ünïcode"]
    result = admin.create_topics({n: {"num_partitions": 1, "replication_factor": 1} for n in bad},
                                 raise_errors=False)
    codes = {t["name"]: t["error_code"] for t in result["topics"]}
    assert codes == {n: Errors.InvalidTopicError.errno for n in bad}
    assert not set(bad) & set(admin.list_topics())

    admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    with pytest.raises(Errors.TopicAlreadyExistsError):
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    # An auto-created topic exists just the same.
    auto = topic + "-auto"
    p = producer(bootstrap, acks=1)
    p.send(auto, value=b"x").get(timeout=20)
    p.close()
    with pytest.raises(Errors.TopicAlreadyExistsError):
        admin.create_topics({auto: {"num_partitions": 1, "replication_factor": 1}})

    result = admin.create_topics({
        topic + "-zero": {"num_partitions": 0, "replication_factor": 1},
        topic + "-rf2": {"num_partitions": 1, "replication_factor": 2},
    }, raise_errors=False)
    codes = {t["name"]: t["error_code"] for t in result["topics"]}
    assert codes == {topic + "-zero": Errors.InvalidPartitionsError.errno,
                     topic + "-rf2": Errors.InvalidReplicationFactorError.errno}


def test_admin_create_partitions(bootstrap, topic, admin, require_apis):
    require_apis("CreateTopics", "CreatePartitions")
    admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    admin.wait_for_topics([topic])
    result = admin.create_partitions({topic: 4})
    assert [(r.name, r.error_code) for r in result.results] == [(topic, 0)]
    [described] = admin.describe_topics([topic])
    assert sorted(p["partition_index"] for p in described["partitions"]) == [0, 1, 2, 3]
    p = producer(bootstrap, acks=1)
    assert p.send(topic, value=b"new partition", partition=3).get(timeout=20).offset == 0
    p.close()
    with pytest.raises(Errors.InvalidPartitionsError):
        admin.create_partitions({topic: 2})  # fewer than it has


def test_admin_describe_and_alter_topic_configs(bootstrap, topic, admin, require_apis, advertised):
    require_apis("CreateTopics", "DescribeConfigs")
    if 33 not in advertised and 44 not in advertised:
        pytest.skip("broker advertises neither AlterConfigs (key 33) nor IncrementalAlterConfigs (key 44) yet")
    admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1,
                                 "configs": {"retention.ms": "3600000"}}})
    resource = ConfigResource(ConfigResourceType.TOPIC, topic)
    described = admin.describe_configs([resource], config_filter="all")["topic"][topic]
    assert described["retention.ms"]["value"] == "3600000"
    assert described["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert described["cleanup.policy"]["value"] == "delete"
    assert described["cleanup.policy"]["config_source"] != "DYNAMIC_TOPIC_CONFIG"
    modified = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])["topic"][topic]
    assert set(modified) == {"retention.ms"}

    result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                 configs={"retention.ms": "7200000"})],
                                 raise_on_unknown=False)
    assert result == {"topic": {topic: "OK"}}
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                       config_filter="all")["topic"][topic]
    assert described["retention.ms"]["value"] == "7200000"

    result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                                 configs={"retention.ms": "not-a-number"})],
                                 raise_on_unknown=False)
    assert result["topic"][topic].startswith("[Error 40] InvalidConfigurationError"), result


def test_admin_delete_records(bootstrap, topic, admin, require_apis):
    require_apis("DeleteRecords")
    p = producer(bootstrap, acks=1)
    for i in range(10):
        p.send(topic, value=b"r%d" % i, partition=0)
    p.flush(timeout=20)
    p.close()
    tp = TopicPartition(topic, 0)
    result = admin.delete_records({tp: 4})
    assert result[tp]["low_watermark"] == 4 and result[tp]["error_code"] == 0
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    assert consumer.beginning_offsets([tp]) == {tp: 4}
    assert consumer.end_offsets([tp]) == {tp: 10}
    consumer.close()
    got = consume_kafka_python(bootstrap, topic, {0: 4}, 6)
    assert [(r.offset, r.value) for r in got[0]] == [(i, b"r%d" % i) for i in range(4, 10)]
    with pytest.raises(Errors.OffsetOutOfRangeError):
        admin.delete_records({tp: 11})  # past the high watermark
