"""kafka-python admin calls for DescribeLogDirs (KafkaAdminClient.describe_log_dirs) and, where
the admin client has no method, its protocol classes for DescribeClientQuotas /
AlterClientQuotas sent through the admin client's connection manager."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient
from kafka.protocol.admin import AlterClientQuotasRequest, DescribeClientQuotasRequest

from helpers import NUM_PARTITIONS


@pytest.fixture
def admin(bootstrap):
    client = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    yield client
    client.close()


def _partition_sizes(log_dirs: list, topic: str) -> dict[int, int]:
    """{partition: size} of `topic` in the single broker's single log dir."""
    assert len(log_dirs) == 1, log_dirs
    dirs = log_dirs[0]["log_dirs"]
    assert len(dirs) == 1, dirs
    sizes = {}
    for t in dirs[0]["topics"]:
        if t["name"] == topic:
            for p in t["partitions"]:
                assert p["is_future_key"] is False and p["offset_lag"] == 0, p
                sizes[p["partition_index"]] = p["partition_size"]
    return sizes


def test_describe_log_dirs_sizes_grow_after_producing(bootstrap, topic, admin):
    p = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    p.send(topic, value=b"first").get(timeout=20)
    dirs = admin.describe_log_dirs()
    log_dir = dirs[0]["log_dirs"][0]
    assert log_dir["error_code"] == 0
    assert log_dir["log_dir"].startswith("/"), log_dir["log_dir"]
    assert log_dir["total_bytes"] > 0 and 0 < log_dir["usable_bytes"] <= log_dir["total_bytes"], log_dir
    before = _partition_sizes(dirs, topic)
    assert sorted(before) == list(range(NUM_PARTITIONS))

    for _ in range(100):
        p.send(topic, value=b"y" * 2048, partition=1)
    p.flush(timeout=20)
    p.close()
    deadline = time.monotonic() + 20
    while True:
        after = _partition_sizes(admin.describe_log_dirs(), topic)
        if after[1] >= before[1] + 100 * 2048 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert after[1] >= before[1] + 100 * 2048, (before, after)
    assert after[0] == before[0] and after[2] == before[2]

    # A topic filter: only the partitions asked for.
    only = _partition_sizes(admin.describe_log_dirs(topic_partitions={topic: [1]}), topic)
    assert only == {1: after[1]}


def _alter_quotas(admin, entries, validate_only=False):
    """AlterClientQuotas through kafka-python's protocol classes: entries are
    ({type: name-or-None}, {key: value-or-None (remove)}); returns the error codes."""
    Entry = AlterClientQuotasRequest.EntryData
    request = AlterClientQuotasRequest(
        entries=[
            Entry(
                entity=[Entry.EntityData(entity_type=t, entity_name=n) for t, n in entity.items()],
                ops=[Entry.OpData(key=k, value=v if v is not None else 0.0, remove=v is None) for k, v in ops.items()],
            )
            for entity, ops in entries
        ],
        validate_only=validate_only,
    )
    response = admin._manager.run(admin._manager.send, request)
    return [e.error_code for e in response.entries]


def _describe_quotas(admin, components, strict=False):
    """DescribeClientQuotas: (error code, {frozenset of (type, name)}: {key: value})."""
    Component = DescribeClientQuotasRequest.ComponentData
    request = DescribeClientQuotasRequest(
        components=[Component(entity_type=t, match_type=m, match=n) for t, m, n in components], strict=strict)
    response = admin._manager.run(admin._manager.send, request)
    found = {}
    for e in response.entries or []:
        found[frozenset((d.entity_type, d.entity_name) for d in e.entity)] = {v.key: v.value for v in e.values}
    return response.error_code, found


def test_client_quotas_admin_round_trip(bootstrap, admin, topic):
    client = f"quota-client-{topic}"
    user = f"quota-user-{topic}"
    assert _alter_quotas(admin, [
        ({"client-id": client}, {"producer_byte_rate": 1048576.0, "consumer_byte_rate": 2097152.0}),
        ({"user": user, "client-id": None}, {"request_percentage": 25.0}),
        ({"user": user}, {"bogus": 1.0}),
        ({"ip": "10.9.8.7"}, {"producer_byte_rate": 1.0}),
    ]) == [0, 0, 42, 42]
    assert _alter_quotas(admin, [({"client-id": "never-" + client}, {"producer_byte_rate": 5.0})],
                         validate_only=True) == [0]

    code, found = _describe_quotas(admin, [("client-id", 0, client)])
    assert code == 0
    assert found == {frozenset({("client-id", client)}): {"producer_byte_rate": 1048576.0,
                                                          "consumer_byte_rate": 2097152.0}}
    code, found = _describe_quotas(admin, [("user", 0, user)])
    assert found == {frozenset({("user", user), ("client-id", None)}): {"request_percentage": 25.0}}
    code, found = _describe_quotas(admin, [("user", 0, user)], strict=True)
    assert found == {}
    _, found = _describe_quotas(admin, [("client-id", 0, "never-" + client)])
    assert found == {}, "validate_only changed nothing"

    # Removing the keys removes the entity.
    assert _alter_quotas(admin, [({"client-id": client}, {"producer_byte_rate": None, "consumer_byte_rate": None})]) == [0]
    _, found = _describe_quotas(admin, [("client-id", 0, client)])
    assert found == {}


def test_quota_throttles_a_kafka_python_producer(bootstrap, admin, topic):
    """A producer over its quota gets throttled: kafka-python records the broker's
    throttle_time_ms in its metrics. 300 KB against 25 KB/s: a new sensor measures over at
    least 10 s, so 30 KB/s, throttled for about (30 - 25) / 25 × 10 s."""
    client = f"throttled-{topic}"
    assert _alter_quotas(admin, [({"client-id": client}, {"producer_byte_rate": 25000.0})]) == [0]
    p = KafkaProducer(bootstrap_servers=bootstrap, client_id=client, enable_idempotence=False,
                      linger_ms=5, batch_size=65536)
    for _ in range(30):
        p.send(topic, value=b"z" * 10_000, partition=0)
    p.flush(timeout=60)
    throttles = [v for group in p.metrics().values() for k, v in group.items() if k == "throttle-time-max"]
    p.close()
    assert throttles and max(throttles) > 500, throttles
    _alter_quotas(admin, [({"client-id": client}, {"producer_byte_rate": None})])


def test_log_dirs_and_quotas_need_cluster_permissions(tmp_path):
    """With an authorizer and no ACLs for ANONYMOUS: DescribeLogDirs answers
    CLUSTER_AUTHORIZATION_FAILED (no results), DescribeClientQuotas likewise, and each
    AlterClientQuotas entry is refused."""
    from kafka.protocol.admin import DescribeLogDirsRequest
    from conftest import _start_broker, _stop_broker

    broker = _start_broker(tmp_path / "data", [
        "--set", "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "--set", "super.users=User:admin"])
    try:
        client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
        response = client._manager.run(client._manager.send, DescribeLogDirsRequest(topics=None))
        assert response.error_code == 31 and list(response.results) == []
        code, found = _describe_quotas(client, [])
        assert code == 31 and found == {}
        assert _alter_quotas(client, [({"user": "x"}, {"producer_byte_rate": 1.0})]) == [31]
        client.close()
    finally:
        _stop_broker(broker)
