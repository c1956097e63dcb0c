#!/usr/bin/env python3
"""Measures how closely sluice holds a producer to its `producer_byte_rate` quota.

Starts a broker, sets `producer_byte_rate` for client id `quotad` (AlterClientQuotas through
kafka-python's protocol classes), then runs a librdkafka (confluent-kafka) producer with that
client id sending 10 KB records as fast as it is allowed. Every acknowledged record is counted
per second (delivery callbacks). Prints the per-second timeline and the rate over the
measurement window (after a warm-up) against the quota, plus the rate over the whole run.

Kafka semantics to keep in mind when reading the numbers: a new sensor measures over at least
(quota.window.num - 1) windows, so a fresh client may burst that many windows' worth at once;
the burst's sample expires after quota.window.num windows and the next burst comes. The rate is
therefore bursty with a period of about quota.window.num × quota.window.size.seconds, and right
on average over whole periods.

Usage: measure.py [--bin target/debug/sluice] [--quota 1048576] [--warmup 12] [--seconds 20]
                  [--window-num 11] [--window-secs 1]
Never run by CI; timings depend on machine load.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections import defaultdict

from confluent_kafka import Producer
from kafka.admin import KafkaAdminClient
from kafka.protocol.admin import AlterClientQuotasRequest

RECORD_BYTES = 10_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_quota(bootstrap: str, client_id: str, rate: float) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    Entry = AlterClientQuotasRequest.EntryData
    request = AlterClientQuotasRequest(entries=[Entry(
        entity=[Entry.EntityData(entity_type="client-id", entity_name=client_id)],
        ops=[Entry.OpData(key="producer_byte_rate", value=rate, remove=False)])], validate_only=False)
    response = admin._manager.run(admin._manager.send, request)
    assert [e.error_code for e in response.entries] == [0], response
    admin.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/debug/sluice")
    ap.add_argument("--quota", type=float, default=1_048_576.0, help="producer_byte_rate, bytes/s")
    ap.add_argument("--warmup", type=float, default=12.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--window-num", type=int, default=11)
    ap.add_argument("--window-secs", type=int, default=1)
    args = ap.parse_args()

    port = free_port()
    data = tempfile.mkdtemp(prefix="sluice-quotas-")
    proc = subprocess.Popen(
        [args.bin, "broker", "--data-dir", data, "--listen", f"127.0.0.1:{port}", "--cores", "2",
         "--set", f"quota.window.num={args.window_num}",
         "--set", f"quota.window.size.seconds={args.window_secs}"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "RUST_LOG": "warn,sluice=info"})
    ready = threading.Event()

    def drain() -> None:
        for line in proc.stderr:
            if "sluice broker started" in line:
                ready.set()

    threading.Thread(target=drain, daemon=True).start()
    assert ready.wait(30), "broker did not start"
    bootstrap = f"127.0.0.1:{port}"
    set_quota(bootstrap, "quotad", args.quota)

    acked = defaultdict(int)  # second since start -> acknowledged payload bytes
    start = time.monotonic()

    def delivered(err, msg) -> None:
        if err is None:
            acked[int(time.monotonic() - start)] += len(msg.value())

    p = Producer({"bootstrap.servers": bootstrap, "client.id": "quotad", "linger.ms": 5,
                  "queue.buffering.max.kbytes": 4096, "acks": 1})
    value = b"q" * RECORD_BYTES
    end = args.warmup + args.seconds
    while time.monotonic() - start < end:
        try:
            p.produce("quotas", value=value, partition=0, on_delivery=delivered)
        except BufferError:
            p.poll(0.01)
        p.poll(0)
    p.flush(30)
    proc.terminate()
    proc.wait(30)

    seconds = int(end)
    timeline = [acked.get(s, 0) for s in range(seconds)]
    print(f"quota {args.quota:.0f} B/s, windows {args.window_num} x {args.window_secs} s, "
          f"{RECORD_BYTES} B records")
    print("acked KB per second:", [round(b / 1000) for b in timeline])
    w0, w1 = int(args.warmup), int(end)
    measured = sum(timeline[w0:w1]) / (w1 - w0)
    whole = sum(timeline) / seconds
    print(f"rate over [{w0} s, {w1} s): {measured:.0f} B/s = {measured / args.quota:.3f} x quota")
    print(f"rate over the whole run [0, {seconds} s): {whole:.0f} B/s = {whole / args.quota:.3f} x quota "
          f"(includes the first burst of {args.window_num - 1} windows' worth)")


if __name__ == "__main__":
    main()
