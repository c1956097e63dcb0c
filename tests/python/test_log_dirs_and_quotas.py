"""kafka-python admin calls for DescribeLogDirs (KafkaAdminClient.describe_log_dirs) and, where
the admin client has no method, its protocol classes for DescribeClientQuotas /
AlterClientQuotas sent through the admin client's connection manager."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient

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
