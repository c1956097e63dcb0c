#!/usr/bin/env bash
# The produce-path cost of the hot-key sketch (sluice.hot.keys.enable): one broker (--cores 1),
# `sluice bench produce` (--cores 1) at full speed, keyed, Zipf keys (s=1 over 10,000 keys),
# 100-byte values — small records are the sketch's worst case per byte (it walks every record
# of a sampled set). Sketch on and off interleaved round by round (the order alternates), the
# broker's CPU seconds per run recorded; the summary gives medians and on/off ratios.
# Usage: tuning/hot-keys/run.sh   (builds the release binary; writes tuning/results/hot-keys)
#   ROUNDS=6 DURATION_SECS=15 tuning/hot-keys/run.sh
set -eu
[ -n "${TRACE:-}" ] && set -x
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tuning/lib.sh"
out="$root/tuning/results/hot-keys"
mkdir -p "$out"
(cd "$root" && cargo build --release --locked --bin sluice -q)
bin="$root/target/release/sluice"
work=$(mktemp -d)
pid=""
stop_broker() { [ -n "$pid" ] && { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }; pid=""; }
trap 'stop_broker; rm -rf "$work"' EXIT

{
  echo "date: $(date -u +%FT%TZ)"; echo "nproc: $(nproc)"; uname -r
  lscpu | grep -E 'Model name|^CPU\(s\)' || true
  df -T "$work" | tail -1
  echo "commit: $(git -C "$root" rev-parse --short HEAD)"
} > "$out/machine.txt"

: > "$out/results.jsonl"
for round in $(seq 1 "${ROUNDS:-6}"); do
  if [ $((round % 2)) -eq 1 ]; then order="true false"; else order="false true"; fi
  for enabled in $order; do
    port=$(free_port); metrics=$(free_port)
    while [ "$metrics" = "$port" ]; do metrics=$(free_port); done
    # The log is removed first: the background start truncates it only once the child runs.
    rm -rf "$work/data" "$work/broker.log"
    "$bin" broker --data-dir "$work/data" --listen "127.0.0.1:$port" --cores 1 \
      --metrics-addr "127.0.0.1:$metrics" --set sluice.hot.keys.enable=$enabled > "$work/broker.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do
      grep -qs "sluice broker started" "$work/broker.log" && break
      kill -0 $pid 2>/dev/null || { cat "$work/broker.log" >&2; exit 1; }
      sleep 0.1
    done
    before=$(cpu_ticks $pid)
    "$bin" bench produce --bootstrap "127.0.0.1:$port" --cores 1 --partitions 8 --keyed \
      --key-distribution zipf --key-space 10000 --message-size 100 --acks 1 \
      --duration-secs "${DURATION_SECS:-15}" --quiet --json "$work/produce.json" > /dev/null
    after=$(cpu_ticks $pid)
    sampled=$(curl -s "127.0.0.1:$metrics/metrics" | awk '/^sluice_hot_key_sampled_sets_total /{print $2}')
    stop_broker
    python3 - "$enabled" "$round" "$work/produce.json" "$before" "$after" "$(getconf CLK_TCK)" \
      "$(cut -d' ' -f1 /proc/loadavg)" "$sampled" >> "$out/results.jsonl" <<'PY'
import json, sys
enabled, rnd = sys.argv[1] == "true", int(sys.argv[2])
p = json.load(open(sys.argv[3]))
cpu_s = (int(sys.argv[5]) - int(sys.argv[4])) / int(sys.argv[6])
t = p["produce"]
print(json.dumps({
    "variant": "sketch-on" if enabled else "sketch-off", "round": rnd, "ok": p["errors_total"] == 0,
    "msgs_per_sec": round(t["msgs_per_sec"]), "mb_per_sec": round(t["mb_per_sec"], 1),
    "messages": t["messages"], "broker_cpu_s": round(cpu_s, 2),
    "broker_cpu_us_per_msg": round(cpu_s * 1e6 / max(t["messages"], 1), 3),
    "sampled_sets": int(float(sys.argv[8] or 0)), "load": float(sys.argv[7]),
}))
PY
  done
done

python3 - "$out/results.jsonl" > "$out/summary.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = lambda v, k: statistics.median(r[k] for r in rows if r["variant"] == v)
print("| variant | runs | msgs/s (median) | MB/s | broker CPU µs/msg | sampled sets | load avg |")
print("|---|---|---|---|---|---|---|")
for v in ("sketch-off", "sketch-on"):
    n = sum(1 for r in rows if r["variant"] == v)
    print(f"| {v} | {n} | {med(v, 'msgs_per_sec'):.0f} | {med(v, 'mb_per_sec'):.1f} | "
          f"{med(v, 'broker_cpu_us_per_msg'):.3f} | {med(v, 'sampled_sets'):.0f} | {med(v, 'load'):.2f} |")
print()
# Per round ratios (on / off of the same round), then their median: pairs share the machine's
# load at that moment better than two medians do.
rounds = sorted({r["round"] for r in rows})
def ratio(k):
    out = []
    for n in rounds:
        on = [r[k] for r in rows if r["round"] == n and r["variant"] == "sketch-on"]
        off = [r[k] for r in rows if r["round"] == n and r["variant"] == "sketch-off"]
        if on and off and off[0]:
            out.append(on[0] / off[0])
    return out
for k, what in (("msgs_per_sec", "throughput"), ("broker_cpu_us_per_msg", "broker CPU per message")):
    r = ratio(k)
    print(f"- {what}, on/off per round: {', '.join(f'{x:.3f}' for x in r)}; median {statistics.median(r):.3f}")
print(f"- every run without errors: {all(r['ok'] for r in rows)}")
PY
cat "$out/summary.md"
