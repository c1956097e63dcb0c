"""kcat (Debian's package, librdkafka 2.0.2) against sluice, as a subprocess: keyed produce from
stdin, formatted consume to the end, metadata listing."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import defaultdict

import pytest
from kafka import KafkaProducer

from helpers import NUM_PARTITIONS, T0

KCAT = shutil.which("kcat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat is not installed (scripts/setup.sh installs it)")


def kcat(bootstrap, *args, stdin: bytes | None = None) -> str:
    cmd = [KCAT, "-b", bootstrap, "-X", "socket.timeout.ms=10000", *args]
    done = subprocess.run(cmd, input=stdin, capture_output=True, timeout=30)
    assert done.returncode == 0, f"{cmd} exited {done.returncode}: {done.stderr.decode(errors='replace')}"
    return done.stdout.decode()


def test_produce_keyed_lines_and_consume_formatted(bootstrap, topic):
    lines = ["a:1", "b:2", "c:hello world", "d:x:y:z", "e:", "ключ:значение", "a:again"]
    kcat(bootstrap, "-P", "-t", topic, "-p", "0", "-K:", stdin=("\n".join(lines) + "\n").encode())
    out = kcat(bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-f", "%k=%s %o\n")
    # The key ends at the first delimiter; offsets are dense from 0.
    expected = [f"{line.replace(':', '=', 1)} {i}" for i, line in enumerate(lines)]
    assert out.splitlines() == expected
    # From an offset in the middle, with the partition in the format.
    out = kcat(bootstrap, "-C", "-t", topic, "-p", "0", "-o", "5", "-e", "-f", "%p|%o|%k|%s\n")
    assert out.splitlines() == ["0|5|ключ|значение", "0|6|a|again"]


def test_keyed_lines_spread_over_partitions(bootstrap, topic):
    sent = [(f"key{i % 10}", f"value-{i}") for i in range(200)]
    kcat(bootstrap, "-P", "-t", topic, "-K", "\t", stdin="".join(f"{k}\t{v}\n" for k, v in sent).encode())
    out = kcat(bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-f", "%p %o %k %s\n")
    per_partition = defaultdict(list)
    for line in out.splitlines():
        p, o, k, v = line.split(" ")
        per_partition[int(p)].append((int(o), k, v))
    assert sum(len(v) for v in per_partition.values()) == len(sent)
    partition_of_key = {}
    for p, records in per_partition.items():
        assert [o for o, _, _ in records] == list(range(len(records))), f"partition {p}"
        for _, k, _ in records:
            assert partition_of_key.setdefault(k, p) == p, f"{k} in one partition"
    # Within a partition, messages keep the order they were sent in.
    for p, records in per_partition.items():
        assert [(k, v) for _, k, v in records] == [kv for kv in sent if partition_of_key[kv[0]] == p]
    assert len(per_partition) > 1


def test_headers_and_timestamps_from_other_clients(bootstrap, topic):
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, enable_idempotence=False)
    for i in range(3):
        producer.send(topic, key=b"k%d" % i, value=b"v%d" % i, headers=[("h", b"x%d" % i), ("g", b"")],
                      timestamp_ms=T0 + i, partition=2)
    producer.flush(timeout=20)
    producer.close()
    out = kcat(bootstrap, "-C", "-t", topic, "-p", "2", "-o", "beginning", "-e", "-f", "%k %s %T %h\n")
    assert out.splitlines() == [f"k{i} v{i} {T0 + i} h=x{i},g=" for i in range(3)]
    # And kcat's own headers (-H), read back by kcat.
    kcat(bootstrap, "-P", "-t", topic, "-p", "1", "-H", "trace=abc", "-H", "n=1", stdin=b"with headers\n")
    out = kcat(bootstrap, "-C", "-t", topic, "-p", "1", "-o", "beginning", "-e", "-f", "%s|%h\n")
    assert out.splitlines() == ["with headers|trace=abc,n=1"]


def test_metadata_listing_shows_topic_and_partitions(broker, topic):
    bootstrap = broker.bootstrap
    kcat(bootstrap, "-P", "-t", topic, stdin=b"create it\n")
    out = kcat(bootstrap, "-L", "-t", topic)
    assert f'topic "{topic}" with {NUM_PARTITIONS} partitions:' in out
    assert re.search(rf"broker (\d+) at 127\.0\.0\.1:{broker.port} \(controller\)", out), out
    broker_id = re.search(r"broker (\d+) at", out).group(1)
    partition_lines = re.findall(r"partition (\d+), leader (\d+), replicas: (\d+), isrs: (\d+)", out)
    assert partition_lines == [(str(p), broker_id, broker_id, broker_id) for p in range(NUM_PARTITIONS)]

    listing = json.loads(kcat(bootstrap, "-L", "-J"))
    assert listing["brokers"] == [{"id": int(broker_id), "name": f"127.0.0.1:{broker.port}"}]
    [entry] = [t for t in listing["topics"] if t["topic"] == topic]
    assert [p["partition"] for p in entry["partitions"]] == list(range(NUM_PARTITIONS))
    assert "error" not in entry
