"""Many partitions on one broker: start-up time, RSS, open fds and disk for N partitions holding
one record each, through a clean and an unclean restart (issue: restarts that never fail).

Usage: measure.py SLUICE_BIN PARTITIONS CORES OUT_JSONL  (extra broker flags: $SLUICE_BROKER_ARGS)
Starts the broker on a fresh data dir, creates topic `many` with PARTITIONS partitions, produces
one record to each (confluent-kafka), reads one record from each, stops with SIGTERM, starts
again (clean), crashes it with SIGKILL, starts again (recovery). Writes one JSON object per
stage to OUT_JSONL and prints them.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def disk_kib(path):
    out = subprocess.run(["du", "-sk", path], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


class Broker:
    def __init__(self, binary, data_dir, port, cores):
        self.started_at = time.monotonic()
        self.log = open(os.path.join(os.path.dirname(data_dir), "broker.log"), "a")
        self.proc = subprocess.Popen(
            [binary, "broker", "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}", "--cores", str(cores)]
            + os.environ.get("SLUICE_BROKER_ARGS", "").split(),
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env={**os.environ, "RUST_LOG": "info"})
        self.start_s = self.wait_for("sluice broker started")

    def wait_for(self, needle):
        for line in self.proc.stderr:
            self.log.write(line)
            if needle in line:
                return time.monotonic() - self.started_at
        raise RuntimeError(f"broker exited before {needle!r}; see broker.log")

    def stop(self, sig):
        began = time.monotonic()
        self.proc.send_signal(sig)
        rest = self.proc.stderr.read()
        self.log.write(rest)
        code = self.proc.wait(timeout=600)
        return code, time.monotonic() - began


def main():
    binary, partitions, cores, out_path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    work = tempfile.mkdtemp(prefix="sluice-many-")
    data = os.path.join(work, "data")
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    rows = []

    def record(stage, broker, **extra):
        row = {"stage": stage, "partitions": partitions, "cores": cores, "rss_kib": rss_kib(broker.proc.pid),
               "fds": fds(broker.proc.pid), "disk_kib": disk_kib(data), **extra}
        rows.append(row)
        print(json.dumps(row), flush=True)

    broker = Broker(binary, data, port, cores)
    record("fresh", broker, start_s=round(broker.start_s, 3))
    began = time.monotonic()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("many", partitions, 1)], operation_timeout=600)["many"].result()
    record("created", broker, create_s=round(time.monotonic() - began, 3))

    began = time.monotonic()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all"})
    for p in range(partitions):
        while True:
            try:
                producer.produce("many", value=b"record-%d" % p, partition=p)
                break
            except BufferError:
                producer.poll(0.05)
    left = producer.flush(300)
    assert left == 0, f"{left} records not acknowledged"
    record("produced", broker, produce_s=round(time.monotonic() - began, 3))

    began = time.monotonic()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "many-reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition("many", p, 0) for p in range(partitions)])
    seen = set()
    deadline = time.monotonic() + 600
    while len(seen) < partitions and time.monotonic() < deadline:
        for m in consumer.consume(num_messages=10000, timeout=1.0):
            if m.error() is None:
                seen.add(m.partition())
    consumer.close()
    assert len(seen) == partitions, f"read {len(seen)} of {partitions} partitions"
    record("read every partition", broker, read_s=round(time.monotonic() - began, 3))

    code, stop_s = broker.stop(signal.SIGTERM)
    assert code == 0, f"clean stop exited {code}"
    rows.append({"stage": "clean stop", "stop_s": round(stop_s, 3), "exit_code": code, "disk_kib": disk_kib(data)})
    print(json.dumps(rows[-1]), flush=True)

    broker = Broker(binary, data, port, cores)
    record("clean restart", broker, start_s=round(broker.start_s, 3))
    broker.stop(signal.SIGKILL)
    broker = Broker(binary, data, port, cores)
    record("restart after SIGKILL", broker, start_s=round(broker.start_s, 3))
    code, stop_s = broker.stop(signal.SIGTERM)
    assert code == 0
    with open(out_path, "a") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    main()
