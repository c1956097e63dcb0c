#!/usr/bin/env python3
"""Measures consumer-group rebalance time against a real sluice broker with librdkafka
(confluent-kafka) consumers: N consumers join a 6-partition topic; then rounds of "one member
leaves" and "a member joins". For each rebalance it prints

  * client view: from the trigger (close() returned / new consumer subscribed) until every
    member's assignment is complete and disjoint (includes the clients' heartbeat interval —
    how fast the others *learn* of the rebalance — and the eager revoke/assign callbacks);
  * broker view: the broker's "group rebalanced" log line: `rebalance_ms` (rebalance start to
    Stable) and `since_joined_ms` (every member rejoined -> leader's assignment delivered).

Usage: measure.py [--bin target/debug/sluice] [--members 3] [--rounds 5]
Never run by CI; timings depend on machine load.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import tempfile
import threading
import time

from confluent_kafka import Consumer, Producer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/debug/sluice")
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--heartbeat-ms", type=int, default=100)
    args = ap.parse_args()

    port = free_port()
    data = tempfile.mkdtemp(prefix="sluice-rebalance-")
    proc = subprocess.Popen(
        [args.bin, "broker", "--data-dir", data, "--listen", f"127.0.0.1:{port}", "--cores", "2",
         "--set", "num.partitions=6", "--set", "group.initial.rebalance.delay.ms=0"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "RUST_LOG": "info"})
    lines: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        for line in proc.stderr:
            lines.append(line)
            if "sluice broker started" in line:
                ready.set()

    threading.Thread(target=drain, daemon=True).start()
    assert ready.wait(30), "broker did not start"
    bootstrap = f"127.0.0.1:{port}"
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(60):
        p.produce("rebalance", value=b"x", partition=i % 6)
    p.flush(20)

    def consumer() -> Consumer:
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "rebalance", "session.timeout.ms": 6000,
                      "heartbeat.interval.ms": args.heartbeat_ms, "auto.offset.reset": "earliest"})
        c.subscribe(["rebalance"])
        return c

    def settle(members: list[Consumer], deadline_s: float = 30) -> float:
        """Polls all members until their assignments are disjoint and cover 6 partitions."""
        start = time.monotonic()
        while time.monotonic() - start < deadline_s:
            for c in members:
                c.poll(0.005)
            owned = [p.partition for c in members for p in c.assignment()]
            if sorted(owned) == list(range(6)) and all(c.assignment() for c in members):
                return time.monotonic() - start
            assert len(owned) == len(set(owned)), f"a partition owned twice: {owned}"
        raise SystemExit("did not settle")

    def broker_lines_since(n: int) -> list[str]:
        return [l.strip() for l in lines[n:] if "group rebalanced" in l]

    mark = len(lines)
    members = [consumer() for _ in range(args.members)]
    took = settle(members)
    print(f"initial join of {args.members}: client {took * 1000:.0f} ms; broker: {broker_lines_since(mark)[-1:]}")
    for r in range(args.rounds):
        mark = len(lines)
        members.pop().close()
        took = settle(members)
        print(f"round {r}: leave -> {len(members)} members: client {took * 1000:.0f} ms; broker: "
              + "; ".join(re.sub(r".*group rebalanced ", "", l) for l in broker_lines_since(mark)))
        mark = len(lines)
        members.append(consumer())
        took = settle(members)
        print(f"round {r}: join -> {len(members)} members: client {took * 1000:.0f} ms; broker: "
              + "; ".join(re.sub(r".*group rebalanced ", "", l) for l in broker_lines_since(mark)))
    for c in members:
        c.close()
    proc.terminate()
    proc.wait(30)


if __name__ == "__main__":
    main()
