#!/usr/bin/env bash
# Ack latency at a fixed low rate (issue #20: `sluice bench`, 20k msgs/s of 1 KiB, acks=all, one
# partition) and what goes with it: broker CPU, device writes per second (/proc/diskstats of the
# data directory's device) and the VM's steal time (/proc/stat). Broker `--cores 1` on CPU 0,
# the bench client on CPU 1. Per round, every case runs once with a fresh broker; cases
# alternate within a round, so a slow period hits them alike. Then a probe of the VM itself: a
# spinning process on CPU 1 records every gap of > 1 ms in its own clock while the broker (and
# a client on CPU 0) write at 10k msgs/s, and again with `sluice.produce.discard=true` (no
# device writes) — gaps no guest event explains are the hypervisor taking the vCPU.
#
#   tuning/tail-latency/run.sh                 # 3 rounds of the cases below
#   ROUNDS=1 CASES="store:0 discard:0" tuning/tail-latency/run.sh
#   BASE=/path/to/older/sluice tuning/tail-latency/run.sh   # adds base:<linger> cases
#   RATE=100000 BROKER_SETTINGS="--set log.segment.bytes=67108864" PROBE=0 \
#     RESULTS=tuning/results/roll-stall tuning/tail-latency/run.sh   # acks across segment rolls
#
# A case is <broker>:<linger ms>; broker is store (this build, defaults), discard (this build,
# sluice.produce.discard=true: the client's and the network's share), buffered
# (sluice.ack.on=buffered: acks once the batch is in the write-behind, not once on file) or
# base (the $BASE binary).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$root/tuning/lib.sh"
rounds="${ROUNDS:-3}"
rate="${RATE:-20000}"
cases="${CASES:-store:0 discard:0 buffered:0 store:5 discard:5}"
if [ -n "${BASE:-}" ] && [ -z "${CASES:-}" ]; then cases="$cases base:0 base:5"; fi
results="${RESULTS:-$root/tuning/results/tail-latency}"
mkdir -p "$results"
(cd "$root" && cargo build --release -q --bin sluice)
sluice="$root/target/release/sluice"
clk_tck=$(getconf CLK_TCK)
raw="$results/runs.jsonl"
: > "$raw"
{
    echo "date: $(date -u +%FT%TZ)"; echo "commit: $(git -C "$root" rev-parse --short HEAD)"
    echo "kernel: $(uname -r), nproc: $(nproc), cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
    echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "rate: $rate msgs/s x 1024 B, acks=all, 1 partition; rounds: $rounds; cases: $cases; base: ${BASE:-none}"
    echo "broker settings (every case): ${BROKER_SETTINGS:-none}"
} > "$results/machine.txt"
work="$(mktemp -d -p "$root/target" tail-latency-XXXX)"
trap 'rm -rf "$work"' EXIT
steal_ticks() { awk '/^cpu / {print $9}' /proc/stat; }

start_broker() { # $1 binary, rest: settings; sets pid and port
    local bin=$1; shift
    port="$(free_port)"; rm -rf "$work/data"
    # shellcheck disable=SC2086
    taskset -c 0 "$bin" broker --data-dir "$work/data" --listen "127.0.0.1:$port" --cores 1 --metrics-addr none ${BROKER_SETTINGS:-} "$@" >"$work/broker.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -qs "sluice broker started" "$work/broker.log" && break; sleep 0.1; done
    grep -qs "sluice broker started" "$work/broker.log" || { cat "$work/broker.log"; exit 1; }
}

run_case() { # $1 case, $2 round
    local broker=${1%%:*} linger=${1##*:} bin=$sluice settings=()
    case "$broker" in
        store) ;;
        discard) settings=(--set sluice.produce.discard=true) ;;
        buffered) settings=(--set sluice.ack.on=buffered) ;;
        base) bin=$BASE ;;
        *) echo "unknown broker $broker" >&2; exit 2 ;;
    esac
    start_broker "$bin" "${settings[@]}"
    taskset -c 1 "$sluice" bench produce --bootstrap "127.0.0.1:$port" --cores 1 --message-size 1024 --rate "$rate" \
        --linger-ms "$linger" --acks all --duration-secs 8 --warmup-secs 2 --quiet --json "$work/bench.json" >/dev/null 2>&1 &
    local bench=$!
    # Counters over the middle of the measured period (seconds 3–9 of 10).
    sleep 3
    local c0 w0 s0 c1 w1 s1
    c0=$(cpu_ticks "$pid"); w0=$(device_writes "$work"); s0=$(steal_ticks)
    sleep 6
    c1=$(cpu_ticks "$pid"); w1=$(device_writes "$work"); s1=$(steal_ticks)
    wait "$bench"
    kill -TERM "$pid"; wait "$pid" || true
    python3 - "$1" "$2" "$work/bench.json" "$c0" "$c1" "$w0" "$w1" "$s0" "$s1" "$clk_tck" <<'PY' | tee -a "$raw"
import json, sys
case, rnd, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c0, c1, w0, w1, s0, s1, tck = map(int, sys.argv[4:11])
d = json.load(open(path)); a = d["ack_latency_ms"]
print(json.dumps({"case": case, "round": rnd, "ack_p50_ms": a["p50_ms"], "ack_p90_ms": a["p90_ms"],
                  "ack_p99_ms": a["p99_ms"], "ack_p999_ms": a["p999_ms"], "ack_max_ms": a["max_ms"],
                  "broker_cpu_pct": round(100 * (c1 - c0) / tck / 6), "device_writes_per_s": round((w1 - w0) / 6),
                  "steal_pct_of_one_cpu": round(100 * (s1 - s0) / tck / 6, 1), "acked": a["count"]}))
PY
}

for r in $(seq "$rounds"); do
    for c in $cases; do run_case "$c" "$r"; done
done

# The VM probe: gaps a spinning process on CPU 1 sees while CPU 0 writes (or only talks).
probe() { # $1 label, rest: broker settings
    local label=$1; shift
    start_broker "$sluice" "$@"
    taskset -c 0 "$sluice" bench produce --bootstrap "127.0.0.1:$port" --cores 1 --message-size 1024 --rate 10000 \
        --linger-ms 0 --acks all --duration-secs 6 --warmup-secs 1 --quiet --json "$work/probe.json" >/dev/null 2>&1 &
    local bench=$!
    sleep 2
    taskset -c 1 python3 - "$label" <<'PY' | tee -a "$results/vm-probe.jsonl"
import json, sys, time
t0 = time.perf_counter(); last = t0; gaps = []
while last - t0 < 3.0:
    t = time.perf_counter()
    if t - last > 0.001:
        gaps.append(round((t - last) * 1000, 1))
    last = t
print(json.dumps({"probe": sys.argv[1], "seconds": 3, "gaps_over_1ms": len(gaps), "gap_ms_total": round(sum(gaps), 1),
                  "gap_ms_max": max(gaps, default=0)}))
PY
    wait "$bench"
    kill -TERM "$pid"; wait "$pid" || true
}
if [ "${PROBE:-1}" != 0 ]; then
    : > "$results/vm-probe.jsonl"
    for r in 1 2; do
        probe store
        probe discard --set sluice.produce.discard=true
    done
fi

python3 - "$raw" <<'PY' | tee "$results/summary.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = ["ack_p50_ms", "ack_p90_ms", "ack_p99_ms", "ack_p999_ms", "ack_max_ms", "broker_cpu_pct", "device_writes_per_s", "steal_pct_of_one_cpu"]
print("| case (broker:linger ms) | runs | ack p50 ms | p90 | p99 | p99.9 | max | broker CPU % | device writes/s | steal % of a CPU |")
print("|---|---|---|---|---|---|---|---|---|---|")
for case in dict.fromkeys(r["case"] for r in rows):
    rs = [r for r in rows if r["case"] == case]
    med = [statistics.median(r[k] for r in rs) for k in keys]
    print(f"| {case} | {len(rs)} | " + " | ".join(f"{v:.2f}" if i < 5 else f"{v:g}" for i, v in enumerate(med)) + " |")
PY
