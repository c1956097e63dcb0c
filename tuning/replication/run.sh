#!/usr/bin/env bash
# Replication's cost and failover time (issue #16's benchmark), three sluice nodes
# (process.roles=broker,controller, --cores 1 each) on this 2-CPU machine:
#  1. acks=all produce at full speed (3 partitions, 1 KiB) and ack latency at a fixed 10,000 msg/s,
#     replication factor 1 against 3 — interleaved round by round, 3 rounds, medians; each node's
#     CPU seconds per run are recorded (three brokers and the client share two CPUs: the ratio is
#     what this machine can say, not what three hosts would).
#  2. Failover: an acks=all producer (confluent-kafka, 1 message per ms, min.insync.replicas=2) on
#     a 1-partition RF=3 topic; the partition's leader is SIGKILLed; the time from the kill to the
#     first acknowledged message sent after it is recorded (3 rounds). The controller notices the
#     loss after broker.session.timeout.ms (SESSION_TIMEOUT_MS, Kafka's default 9000).
# Usage: tuning/replication/run.sh   (builds the release binary; writes tuning/results/replication)
set -eu
[ -n "${TRACE:-}" ] && set -x
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tuning/lib.sh"
out="$root/tuning/results/replication"
mkdir -p "$out"
(cd "$root" && ./scripts/setup.sh > /dev/null && cargo build --release --locked --bins -q)
bin="$root/target/release/sluice"
py="$root/.venv/bin/python"
session_timeout_ms=${SESSION_TIMEOUT_MS:-9000}
work=$(mktemp -d)
pids=()
stop_cluster() { for p in "${pids[@]:-}"; do [ -n "$p" ] || continue; kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; pids=(); }
trap 'stop_cluster; rm -rf "$work"' EXIT

# Starts node $1 of the cluster described by $voters (client port ${client_port[$1]}).
start_node() {
  local n=$1
  "$bin" broker --data-dir "$work/node$n" --cores 1 \
    --set node.id=$n --set process.roles=broker,controller \
    --set listeners=PLAINTEXT://127.0.0.1:${client_port[$n]},CONTROLLER://127.0.0.1:${controller_port[$n]} \
    --set controller.quorum.voters=$voters --set broker.session.timeout.ms=$session_timeout_ms \
    --set min.insync.replicas=$min_insync > "$work/node$n.log" 2>&1 &
  pids[$n]=$!
}

# Starts a fresh three-node cluster with min.insync.replicas=$1 and waits until it serves.
start_cluster() {
  min_insync=$1
  rm -rf "$work"/node*
  declare -g -A client_port controller_port
  voters=""
  for n in 1 2 3; do
    client_port[$n]=$(free_port); controller_port[$n]=$(free_port)
    voters="${voters:+$voters,}$n@127.0.0.1:${controller_port[$n]}"
  done
  for n in 1 2 3; do start_node $n; done
  bootstrap="127.0.0.1:${client_port[1]},127.0.0.1:${client_port[2]},127.0.0.1:${client_port[3]}"
  "$py" - "$bootstrap" <<'PY'
import sys, time
from confluent_kafka.admin import AdminClient
# Every node serves and sees all three (a node is listed once registered, before it serves).
admins = [AdminClient({"bootstrap.servers": a}) for a in sys.argv[1].split(",")]
deadline = time.time() + 60
while time.time() < deadline:
    try:
        if all(len(a.list_topics(timeout=2).brokers) == 3 for a in admins):
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.2)
sys.exit("the cluster did not form in 60 s")
PY
}

cpu_seconds() { local s=""; for n in 1 2 3; do s="$s $(cpu_ticks ${pids[$n]})"; done; echo $s; }

: > "$out/results.jsonl"
for round in $(seq 1 "${ROUNDS:-3}"); do
  for rf in 1 3; do
    start_cluster 1
    before=$(cpu_seconds)
    "$bin" bench produce --bootstrap "127.0.0.1:${client_port[1]}" --cores 1 --partitions 3 --replication-factor $rf \
      --message-size 1024 --acks all --duration-secs 10 --quiet --json "$work/produce.json" > /dev/null
    after=$(cpu_seconds)
    "$bin" bench e2e --bootstrap "127.0.0.1:${client_port[1]}" --cores 1 --partitions 3 --replication-factor $rf \
      --message-size 1024 --rate 10000 --acks all --warmup-secs 2 --duration-secs 10 --quiet \
      --json "$work/e2e.json" > /dev/null
    stop_cluster
    python3 - "$rf" "$round" "$work/produce.json" "$work/e2e.json" "$before" "$after" "$(getconf CLK_TCK)" \
      "$(cut -d' ' -f1 /proc/loadavg)" >> "$out/results.jsonl" <<'PY'
import json, sys
rf, rnd = int(sys.argv[1]), int(sys.argv[2])
p, e = json.load(open(sys.argv[3])), json.load(open(sys.argv[4]))
before, after, tck = sys.argv[5].split(), sys.argv[6].split(), int(sys.argv[7])
print(json.dumps({
    "variant": f"rf{rf}", "round": rnd, "ok": p["errors_total"] == 0 and e["ok"],
    "produce_mb_per_sec": p["produce"]["mb_per_sec"],
    "node_cpu_s": [round((int(a) - int(b)) / tck, 2) for a, b in zip(after, before)],
    "ack_p50_ms": e["ack_latency_ms"]["p50_ms"], "ack_p99_ms": e["ack_latency_ms"]["p99_ms"],
    "e2e_p99_ms": e["e2e_latency_ms"]["p99_ms"], "load": float(sys.argv[8]),
}))
PY
  done
done

for round in $(seq 1 "${ROUNDS:-3}"); do
  start_cluster 2
  "$py" - "$bootstrap" "$round" "$work" "${pids[1]} ${pids[2]} ${pids[3]}" >> "$out/results.jsonl" <<'PY'
import json, os, signal, sys, time
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
bootstrap, rnd, pids = sys.argv[1], int(sys.argv[2]), [int(p) for p in sys.argv[4].split()]
admin = AdminClient({"bootstrap.servers": bootstrap})
for f in admin.create_topics([NewTopic("failover", 1, 3)]).values():
    f.result()
producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                     "linger.ms": 0, "message.timeout.ms": 120000})
acked = []  # (message number, time its acknowledgement arrived)
sent_at = {}
def send(i):
    sent_at[i] = time.monotonic()
    producer.produce("failover", value=b"x" * 1024, on_delivery=lambda err, msg, i=i: acked.append((i, time.monotonic())) if err is None else None)
i = 0
end = time.monotonic() + 3
while time.monotonic() < end:
    send(i); i += 1; producer.poll(0.001)
leader = admin.list_topics("failover", timeout=5).topics["failover"].partitions[0].leader
killed_at = time.monotonic()
os.kill(pids[leader - 1], signal.SIGKILL)
first_after = None
deadline = killed_at + 120
while time.monotonic() < deadline and first_after is None:
    send(i); i += 1; producer.poll(0.001)
    after = [t for (j, t) in acked if sent_at[j] > killed_at]
    if after:
        first_after = min(after)
producer.flush(30)
print(json.dumps({"variant": "failover", "round": rnd, "killed_leader": leader,
                  "ok": first_after is not None,
                  "failover_ms": round((first_after - killed_at) * 1000, 1) if first_after else None}))
PY
  stop_cluster
done

python3 - "$out/results.jsonl" "$session_timeout_ms" > "$out/summary.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = lambda xs: statistics.median(xs) if xs else float("nan")
print("| variant | produce MB/s | node CPU-s (median each) | ack p50 / p99 ms | e2e p99 ms | all ok |")
print("|---|---:|---|---:|---:|---|")
for v in ("rf1", "rf3"):
    rs = [r for r in rows if r["variant"] == v]
    cpu = [round(med([r["node_cpu_s"][n] for r in rs]), 1) for n in range(3)]
    print(f"| {v} | {med([r['produce_mb_per_sec'] for r in rs]):.1f} | {cpu} | "
          f"{med([r['ack_p50_ms'] for r in rs]):.2f} / {med([r['ack_p99_ms'] for r in rs]):.2f} | "
          f"{med([r['e2e_p99_ms'] for r in rs]):.2f} | {all(r['ok'] for r in rs)} |")
f = [r for r in rows if r["variant"] == "failover"]
times = [r["failover_ms"] for r in f if r["failover_ms"] is not None]
print(f"\nFailover (broker.session.timeout.ms={sys.argv[2]}): kill → first acknowledged message sent after it: "
      f"median {med(times):.0f} ms over {len(times)} of {len(f)} rounds {times}")
PY
{ nproc; uname -r; uptime; } > "$out/machine.txt"
cat "$out/summary.md"
