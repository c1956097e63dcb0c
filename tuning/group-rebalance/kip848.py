#!/usr/bin/env python3
"""Classic cooperative-sticky vs the KIP-848 consumer protocol: how long a 10-member group takes
to absorb one member joining and then one leaving while a producer keeps writing, and how the
members whose partitions do not move fare meanwhile.

For each protocol: a fresh broker, a topic of --partitions partitions, a producer thread writing
--rate messages/s round-robin, --members consumers (librdkafka via confluent-kafka) polled in
one loop. Once the group is settled (assignments disjoint, covering every partition, every
member with some), 3 s of steady consumption, then an 11th member joins; once settled again and
after 3 s, one of the original members leaves (close()). Per event it reports

  * absorb_ms: trigger (subscribe / close returned) -> settled;
  * revoked_from_unaffected: partitions revoked from members whose assignment is the same before
    and after the event (0 means they never paused);
  * dip: the unaffected members' consumption rate during [trigger, settled + 0.5 s] over their
    rate in the 3 s before the trigger (1.0 = no dip).

Heartbeats: --heartbeat-ms for both (classic: the client's heartbeat.interval.ms; consumer
protocol: the broker's group.consumer.heartbeat.interval.ms, with its minimum lowered to match).

Usage: kip848.py [--bin target/release/sluice] [--members 10] [--partitions 20] [--rate 2000]
Never run by CI; timings depend on machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections import defaultdict

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(protocol: str, args) -> list[dict]:
    port = free_port()
    data = tempfile.mkdtemp(prefix="sluice-kip848-")
    hb = str(args.heartbeat_ms)
    proc = subprocess.Popen(
        [args.bin, "broker", "--data-dir", data, "--listen", f"127.0.0.1:{port}", "--cores", "2",
         "--set", "group.initial.rebalance.delay.ms=0",
         "--set", f"group.consumer.heartbeat.interval.ms={hb}",
         "--set", f"group.consumer.min.heartbeat.interval.ms={min(args.heartbeat_ms, 5000)}"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "RUST_LOG": "info"})
    ready = threading.Event()

    def drain() -> None:
        for line in proc.stderr:
            if "sluice broker started" in line:
                ready.set()

    threading.Thread(target=drain, daemon=True).start()
    assert ready.wait(30), "broker did not start"
    bootstrap = f"127.0.0.1:{port}"
    topic = "rebalance"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, args.partitions, 1)])[topic].result(30)

    stop = threading.Event()

    def produce() -> None:
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        i = 0
        start = time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - start) * args.rate)
            while i < due:
                p.produce(topic, value=b"x" * 100, partition=i % args.partitions)
                i += 1
            p.poll(0)
            time.sleep(0.005)
        p.flush(10)

    threading.Thread(target=produce, daemon=True).start()

    consumed: dict[int, list[float]] = defaultdict(list)  # member -> timestamps of messages
    revoked: dict[int, list[tuple[float, set[int]]]] = defaultdict(list)
    members: dict[int, Consumer] = {}

    def new_member(idx: int) -> Consumer:
        conf = {"bootstrap.servers": bootstrap, "group.id": f"g-{protocol}", "auto.offset.reset": "latest",
                "enable.auto.commit": True}
        if protocol == "classic":
            conf.update({"partition.assignment.strategy": "cooperative-sticky",
                         "heartbeat.interval.ms": args.heartbeat_ms, "session.timeout.ms": 45000})
        else:
            conf["group.protocol"] = "consumer"
        c = Consumer(conf)

        def on_revoke(consumer, partitions, idx=idx):
            revoked[idx].append((time.monotonic(), {p.partition for p in partitions}))

        c.subscribe([topic], on_revoke=on_revoke)
        return c

    def assignments() -> dict[int, set[int]]:
        return {i: {p.partition for p in c.assignment()} for i, c in members.items()}

    def poll_round() -> None:
        for i, c in list(members.items()):
            m = c.poll(0.002)
            while m is not None:
                if not m.error():
                    consumed[i].append(time.monotonic())
                m = c.poll(0)

    def settled() -> bool:
        a = assignments()
        owned = [p for s in a.values() for p in s]
        assert len(owned) == len(set(owned)), f"a partition owned twice: {a}"
        return sorted(owned) == list(range(args.partitions)) and all(a.values())

    def wait_settled(deadline_s: float = 120) -> float:
        start = time.monotonic()
        while time.monotonic() - start < deadline_s:
            poll_round()
            if settled():
                return time.monotonic()
        raise SystemExit(f"{protocol}: did not settle: {assignments()}")

    def steady(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            poll_round()

    for i in range(args.members):
        members[i] = new_member(i)
    wait_settled()
    steady(3)
    results = []
    for event in ("join", "leave"):
        before = assignments()
        t0 = time.monotonic()
        if event == "join":
            members[args.members] = new_member(args.members)
        else:
            members.pop(0).close()
        t0 = time.monotonic() if event == "leave" else t0
        t1 = wait_settled()
        steady(0.5)
        after = assignments()
        unaffected = [i for i in after if i in before and before[i] == after[i]]
        revoked_unaffected = sum(len(ps) for i in unaffected for (t, ps) in revoked[i] if t >= t0)
        window = t1 + 0.5 - t0

        def rate(i: int, a: float, b: float) -> float:
            return sum(1 for t in consumed[i] if a <= t < b) / (b - a)

        base = sum(rate(i, t0 - 3, t0) for i in unaffected)
        during = sum(rate(i, t0, t0 + window) for i in unaffected)
        results.append({"protocol": protocol, "event": event, "absorb_ms": round((t1 - t0) * 1000),
                        "members_unaffected": len(unaffected), "revoked_from_unaffected": revoked_unaffected,
                        "dip": round(during / base, 2) if base else None})
        print(json.dumps(results[-1]), flush=True)
        steady(3)
    stop.set()
    for c in members.values():
        c.close()
    proc.terminate()
    proc.wait(30)
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/sluice")
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--partitions", type=int, default=20)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--heartbeat-ms", type=int, default=500)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    for _ in range(args.reps):
        for protocol in ("classic", "consumer"):
            run(protocol, args)


if __name__ == "__main__":
    main()
