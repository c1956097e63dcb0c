#!/usr/bin/env bash
# Transactional produce against plain idempotent produce on one shard (issue #14's benchmark):
# for commit intervals of 10, 100 and 1000 ms, produce throughput (max rate) and ack, commit and
# end-to-end latency at a fixed rate, with read_committed consumers. The broker runs on CPU 0
# with one shard, the client on CPU 1; variants interleave round by round, 3 rounds, medians.
# Usage: tuning/transactions/run.sh   (builds the release binary; writes tuning/results/transactions)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tuning/lib.sh"
out="$root/tuning/results/transactions"
mkdir -p "$out"
(cd "$root" && cargo build --release --locked --bins -q)
bin="$root/target/release/sluice"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
variants="idempotent txn-10 txn-100 txn-1000"
flags() {
  case $1 in
    idempotent) echo "--idempotent" ;;
    txn-*) echo "--transactional --txn-commit-ms ${1#txn-}" ;;
  esac
}
: > "$out/results.jsonl"
for round in 1 2 3; do
  for v in $variants; do
    port=$(free_port)
    rm -rf "$work/data"
    taskset -c 0 "$bin" broker --data-dir "$work/data" --listen 127.0.0.1:$port --cores 1 > "$work/broker.log" 2>&1 &
    bp=$!
    for _ in $(seq 200); do grep -q "broker started" "$work/broker.log" && break; sleep 0.05; done
    common="--bootstrap 127.0.0.1:$port --cores 1 --partitions 4 --message-size 1024 --acks all --max-in-flight 5"
    # shellcheck disable=SC2046
    taskset -c 1 "$bin" bench produce $common --count 400000 $(flags $v) --quiet --json "$work/produce.json" > /dev/null
    # shellcheck disable=SC2046
    taskset -c 1 "$bin" bench e2e $common --rate 20000 --warmup-secs 2 --duration-secs 8 $(flags $v) --quiet --json "$work/e2e.json" > /dev/null
    kill -TERM $bp; wait $bp || true
    python3 - "$v" "$round" "$work/produce.json" "$work/e2e.json" >> "$out/results.jsonl" <<'PY'
import json, sys
v, rnd, prod, e2e = sys.argv[1], int(sys.argv[2]), json.load(open(sys.argv[3])), json.load(open(sys.argv[4]))
lat = lambda r, k, q: (r.get(k) or {}).get(q)
print(json.dumps({
    "variant": v, "round": rnd, "ok": prod["ok"] and e2e["ok"],
    "produce_mb_per_sec": prod["produce"]["mb_per_sec"],
    "produce_commits": prod.get("transactions_committed"),
    "ack_p50_ms": lat(e2e, "ack_latency_ms", "p50_ms"), "ack_p99_ms": lat(e2e, "ack_latency_ms", "p99_ms"),
    "e2e_p50_ms": lat(e2e, "e2e_latency_ms", "p50_ms"), "e2e_p99_ms": lat(e2e, "e2e_latency_ms", "p99_ms"),
    "commit_p50_ms": lat(e2e, "commit_latency_ms", "p50_ms"), "commit_p99_ms": lat(e2e, "commit_latency_ms", "p99_ms"),
    "e2e_commits": e2e.get("transactions_committed"), "errors": prod["errors_total"] + e2e["errors_total"],
}))
PY
  done
done
python3 - "$out/results.jsonl" > "$out/summary.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = ["produce_mb_per_sec", "ack_p50_ms", "ack_p99_ms", "e2e_p50_ms", "e2e_p99_ms", "commit_p50_ms", "commit_p99_ms"]
print("| variant | " + " | ".join(keys) + " | all ok |")
print("|---" * (len(keys) + 2) + "|")
for v in dict.fromkeys(r["variant"] for r in rows):
    rs = [r for r in rows if r["variant"] == v]
    med = lambda k: (lambda xs: f"{statistics.median(xs):.2f}" if xs else "–")([r[k] for r in rs if r[k] is not None])
    print(f"| {v} | " + " | ".join(med(k) for k in keys) + f" | {all(r['ok'] for r in rs)} |")
PY
{ nproc; uname -r; uptime; } > "$out/machine.txt"
cat "$out/summary.md"
