#!/usr/bin/env bash
# Log compaction's cost on one shard (issue #15's benchmark). A "churn" producer rewrites 1,000
# keys of a compacted topic at 20,000 msg/s (small segments, so there is always something to
# clean) while an e2e workload measures produce latency on another topic of the same shard
# (5,000 msg/s of 1 KiB, acks=all). Variants: the cleaner off, and on (log.cleaner.backoff.ms=100)
# — interleaved, 3 rounds, medians. The cleaner's own throughput comes from its "cleaned log"
# lines (bytes read / time per pass). Broker on CPU 0 (--cores 1), clients on CPU 1.
# Usage: tuning/compaction/run.sh   (builds the release binary; writes tuning/results/compaction)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tuning/lib.sh"
out="$root/tuning/results/compaction"
mkdir -p "$out"
(cd "$root" && ./scripts/setup.sh > /dev/null && cargo build --release --locked --bins -q)
bin="$root/target/release/sluice"
py="$root/.venv/bin/python"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
: > "$out/results.jsonl"
for round in 1 2 3; do
  for v in cleaner-off cleaner-on; do
    port=$(free_port)
    rm -rf "$work/data"
    enable=false; [ $v = cleaner-on ] && enable=true
    taskset -c 0 "$bin" broker --data-dir "$work/data" --listen 127.0.0.1:$port --cores 1 \
      --set log.cleaner.enable=$enable --set log.cleaner.backoff.ms=100 > "$work/broker.log" 2>&1 &
    bp=$!
    for _ in $(seq 200); do grep -q "broker started" "$work/broker.log" && break; sleep 0.05; done
    "$py" - "$port" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{sys.argv[1]}"})
topic = NewTopic("churn", 1, 1, config={"cleanup.policy": "compact", "segment.bytes": "1048576",
                                        "min.cleanable.dirty.ratio": "0.1"})
for f in admin.create_topics([topic]).values():
    f.result()
PY
    taskset -c 1 "$bin" bench produce --bootstrap 127.0.0.1:$port --cores 1 --topic churn --keyed --key-space 1000 \
      --rate 20000 --message-size 512 --acks 1 --duration-secs 16 --quiet --json "$work/churn.json" > /dev/null &
    cp=$!
    sleep 2
    taskset -c 1 "$bin" bench e2e --bootstrap 127.0.0.1:$port --cores 1 --partitions 1 --message-size 1024 \
      --rate 5000 --acks all --warmup-secs 2 --duration-secs 10 --quiet --json "$work/e2e.json" > /dev/null
    wait $cp
    kill -TERM $bp; wait $bp || true
    du -sb "$work/data/churn-0" | cut -f1 > "$work/churn-bytes"
    python3 - "$v" "$round" "$work/e2e.json" "$work/churn.json" "$work/broker.log" "$work/churn-bytes" >> "$out/results.jsonl" <<'PY'
import json, re, sys
v, rnd = sys.argv[1], int(sys.argv[2])
e2e, churn = json.load(open(sys.argv[3])), json.load(open(sys.argv[4]))
passes = [l for l in open(sys.argv[5]) if "cleaned log" in l]
read = sum(int(re.search(r'bytes="?(\d+) ->', l).group(1)) for l in passes)
ms = sum(int(re.search(r'elapsed_ms=(\d+)', l).group(1)) for l in passes)
print(json.dumps({
    "variant": v, "round": rnd, "ok": e2e["ok"] and churn["errors_total"] == 0,
    "ack_p50_ms": e2e["ack_latency_ms"]["p50_ms"], "ack_p99_ms": e2e["ack_latency_ms"]["p99_ms"],
    "e2e_p50_ms": e2e["e2e_latency_ms"]["p50_ms"], "e2e_p99_ms": e2e["e2e_latency_ms"]["p99_ms"],
    "churn_mb_per_sec": churn["produce"]["mb_per_sec"], "churn_dir_bytes": int(open(sys.argv[6]).read()),
    "cleaner_passes": len(passes), "cleaner_bytes_read": read, "cleaner_ms": ms,
    "cleaner_mb_per_sec": round(read / 1e6 / (ms / 1e3), 1) if ms else None,
}))
PY
  done
done
python3 - "$out/results.jsonl" > "$out/summary.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = ["ack_p50_ms", "ack_p99_ms", "e2e_p50_ms", "e2e_p99_ms", "churn_mb_per_sec", "churn_dir_bytes", "cleaner_passes", "cleaner_mb_per_sec"]
print("| variant | " + " | ".join(keys) + " | all ok |")
print("|---" * (len(keys) + 2) + "|")
for v in dict.fromkeys(r["variant"] for r in rows):
    rs = [r for r in rows if r["variant"] == v]
    med = lambda k: (lambda xs: f"{statistics.median(xs):.2f}" if xs else "–")([r[k] for r in rs if r[k] is not None])
    print(f"| {v} | " + " | ".join(med(k) for k in keys) + f" | {all(r['ok'] for r in rs)} |")
PY
{ nproc; uname -r; uptime; } > "$out/machine.txt"
cat "$out/summary.md"
