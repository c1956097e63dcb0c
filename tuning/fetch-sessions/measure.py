#!/usr/bin/env python3
"""Fetch sessions (KIP-227) on and off: request bytes and broker CPU for one consumer of many
partitions. Starts a broker (debug or release binary), creates a topic of N partitions (1000 by
default), then for each mode runs a kafka-python
consumer (the Python client that uses sessions; `enable_incremental_fetch_sessions` turns them
off) of every partition while a producer writes a steady trickle spread over all partitions,
and reports over the measuring window:

  * request / response bytes of the consumer's broker connection (the kernel's counters for
    that socket, `ss -tin`: bytes_sent / bytes_received on the client side);
  * fetch requests sent (kafka-python's `fetch-total`-style count from its sensor);
  * broker CPU seconds (utime + stime of the broker process, /proc/<pid>/stat);
  * records consumed.

Usage: measure.py [--bin target/debug/sluice] [--partitions 1000] [--seconds 30] [--rate 200]
Never run by CI; numbers depend on machine load.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime, stime are fields 14, 15 (1-based) of the whole line: 12, 13 after the comm.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def socket_bytes(broker_port: int) -> tuple[int, int]:
    """(bytes_sent, bytes_received) summed over this process's TCP connections to the broker
    (only the consumer's: the producer runs in another process)."""
    out = subprocess.run(["ss", "-tinpH", "state", "established", f"( dport = :{broker_port} )"],
                         capture_output=True, text=True, check=True).stdout
    sent = received = 0
    mine = False
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):
            mine = f"pid={os.getpid()}," in line
            continue
        if mine:
            s = re.search(r"bytes_sent:(\d+)", line)
            r = re.search(r"bytes_received:(\d+)", line)
            sent += int(s.group(1)) if s else 0
            received += int(r.group(1)) if r else 0
    return sent, received


PRODUCER = """
import sys, time
from kafka import KafkaProducer
bootstrap, topic, partitions, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
producer = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
i = 0
start = time.monotonic()
while True:
    producer.send(topic, value=b"x" * 100, partition=i % partitions)
    i += 1
    delay = start + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
"""


def run(bootstrap: str, broker_pid: int, topic: str, partitions: int, seconds: float, rate: int,
        sessions: bool) -> dict:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", enable_incremental_fetch_sessions=sessions,
                             max_partition_fetch_bytes=1 << 20, fetch_max_wait_ms=500)
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    consumer.seek_to_end()
    # Warm up: the first fetches are full in both modes (and create the session).
    warm = 0
    end = time.monotonic() + 3
    while time.monotonic() < end:
        warm += sum(len(r) for r in consumer.poll(timeout_ms=200).values())
    fetches = [0]
    original = consumer._fetcher._handle_fetch_response

    def counting(*args, **kwargs):
        fetches[0] += 1
        return original(*args, **kwargs)

    consumer._fetcher._handle_fetch_response = counting
    producer = None
    if rate > 0:
        producer = subprocess.Popen([sys.executable, "-c", PRODUCER, bootstrap, topic, str(partitions), str(rate)])
        time.sleep(2)  # the producer is connected and writing
    port = int(bootstrap.rsplit(":", 1)[1])
    before = socket_bytes(port)
    cpu_before = cpu_seconds(broker_pid)
    consumed = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        consumed += sum(len(r) for r in consumer.poll(timeout_ms=200).values())
    cpu = cpu_seconds(broker_pid) - cpu_before
    after = socket_bytes(port)
    if producer is not None:
        producer.terminate()
        producer.wait()
    sessions_seen = [h.next_metadata.session_id for h in consumer._fetcher._session_handlers.values()]
    consumer.close()
    sent, received = after[0] - before[0], after[1] - before[1]
    return {"sessions": sessions, "session_ids": sessions_seen, "fetches": fetches[0],
            "request_bytes": sent, "response_bytes": received, "broker_cpu_s": round(cpu, 2),
            "consumed": consumed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/debug/sluice")
    parser.add_argument("--partitions", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=int, default=200, help="records per second produced (0: idle)")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        broker = subprocess.Popen([args.bin, "broker", "--data-dir", data, "--listen", f"127.0.0.1:{port}",
                                   "--cores", "2"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        try:
            for line in broker.stderr:
                if "sluice broker started" in line:
                    break
            threading.Thread(target=lambda: [None for _ in broker.stderr], daemon=True).start()
            bootstrap = f"127.0.0.1:{port}"
            topic = "sessions"
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=60000)
            admin.create_topics([NewTopic(topic, args.partitions, 1)], timeout_ms=60000)
            admin.close()
            for sessions in (False, True):
                result = run(bootstrap, broker.pid, topic, args.partitions, args.seconds, args.rate, sessions)
                per_fetch = result["request_bytes"] / max(result["fetches"], 1)
                cpu_ms_per_fetch = 1000 * result["broker_cpu_s"] / max(result["fetches"], 1)
                print({**result, "request_bytes_per_fetch": round(per_fetch),
                       "broker_cpu_ms_per_fetch": round(cpu_ms_per_fetch, 1)}, flush=True)
        finally:
            broker.terminate()
            broker.wait()


if __name__ == "__main__":
    main()
