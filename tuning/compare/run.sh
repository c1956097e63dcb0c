#!/usr/bin/env bash
# Runs the same produce workload with `sluice bench` and with librdkafka's rdkafka_performance
# against the same broker, alternating, so our numbers can be checked against the industry's tool.
# Records client-side msgs/s and MB/s, the client's CPU seconds (user+sys) and msgs per client
# CPU-second, and the load average.
#
#   tuning/compare/run.sh                      # starts a discard broker (sluice.produce.discard=true)
#                                              # pinned to CPU 0; clients pinned to CPU 1
#   BROKER_ARGS="" tuning/compare/run.sh       # a storing sluice broker instead
#   BOOTSTRAP=host:9092 tuning/compare/run.sh  # any running Kafka-compatible broker (not started here)
#   MESSAGES=2000000 SIZE=1024 REPS=3 ACKS=1 BATCH_BYTES=1000000 LINGER_MS=5 MAX_IN_FLIGHT=5 ...
#
# Results: tuning/results/compare/{runs.jsonl,summary.md,machine.txt} (RESULTS_DIR to change).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
messages="${MESSAGES:-2000000}"
size="${SIZE:-1024}"
reps="${REPS:-3}"
acks="${ACKS:-1}"
batch_bytes="${BATCH_BYTES:-1000000}"
linger_ms="${LINGER_MS:-5}"
max_in_flight="${MAX_IN_FLIGHT:-5}"
broker_args="${BROKER_ARGS---set sluice.produce.discard=true}"
client_cpus="${CLIENT_CPUS:-1}"
results="${RESULTS_DIR:-$root/tuning/results/compare}"
mkdir -p "$results"
raw="$results/runs.jsonl"
: > "$raw"

perf="$("$root/tuning/produce-rdkafka-perf/build-rdkafka-performance.sh")"
(cd "$root" && cargo build --release -q --bin sluice)
sluice="$root/target/release/sluice"

{
    echo "date: $(date -u +%FT%TZ)"
    echo "commit: $(git -C "$root" rev-parse --short HEAD)"
    echo "nproc: $(nproc)"; echo "kernel: $(uname -r)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
    echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "workload: produce $messages x $size B, 1 partition, acks=$acks, batch $batch_bytes B, linger $linger_ms ms, bench max in flight $max_in_flight, reps $reps"
    echo "broker: ${BOOTSTRAP:-sluice --cores 1 on CPU 0 $broker_args}; clients on CPU $client_cpus"
    echo "rdkafka_performance: $perf"
} > "$results/machine.txt"

. "$root/tuning/lib.sh"

# Runs a command, prints "<cpu seconds of the command>" on fd 3 after its own output.
with_cpu() {
    python3 - "$@" <<'PY'
import resource, subprocess, sys
p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stdout.write(p.stdout)
print(f"CPU_SECONDS {r.ru_utime + r.ru_stime:.3f} EXIT {p.returncode}")
PY
}

# Sets $bootstrap (and $broker_pid, $data when it starts one).
start_broker() {
    if [ -n "${BOOTSTRAP:-}" ]; then bootstrap="$BOOTSTRAP"; return; fi
    data="$(mktemp -d -p "$root/target" compare-XXXX)"
    port="$(free_port)"
    # shellcheck disable=SC2086
    taskset -c 0 "$sluice" broker --data-dir "$data" --listen "127.0.0.1:$port" --cores 1 $broker_args >"$data.log" 2>&1 &
    broker_pid=$!
    for _ in $(seq 100); do grep -q "sluice broker started" "$data.log" && break; sleep 0.1; done
    grep -q "sluice broker started" "$data.log" || { cat "$data.log" >&2; exit 1; }
    bootstrap="127.0.0.1:$port"
}

stop_broker() {
    if [ -n "${BOOTSTRAP:-}" ]; then return; fi
    kill -TERM "$broker_pid"; wait "$broker_pid" || true
    rm -rf "$data" "$data.log"
}

run_rdkafka() {
    local bootstrap="$1" rep="$2" out
    out=$(with_cpu taskset -c "$client_cpus" "$perf" -P -t "compare-$rep-$RANDOM" -p 0 -s "$size" -c "$messages" -a "$acks" \
        -b "$bootstrap" -X "linger.ms=$linger_ms" -X "batch.size=$batch_bytes" -q -u)
    python3 - "$rep" "$size" "$(cut -d' ' -f1 /proc/loadavg)" <<PY | tee -a "$raw"
import json, sys
out = """$out"""
rows = [l for l in out.splitlines() if l.startswith('|')]
cpu = [l for l in out.splitlines() if l.startswith('CPU_SECONDS')][0].split()
last = [x.strip() for x in rows[-1].strip('|').split('|')]
# producer table: elapsed msgs bytes rtt dr dr_m/s dr_MB/s dr_err tx_err outq offset
elapsed_s = int(last[0]) / 1000; msgs = int(last[4]); errs = int(last[7]); backpressure = int(last[8])
cpu_s = float(cpu[1])
print(json.dumps({"tool": "rdkafka_performance", "rep": int(sys.argv[1]), "msgs": msgs, "seconds": elapsed_s,
                  "msgs_per_sec": round(msgs / elapsed_s), "mb_per_sec": round(msgs * int(sys.argv[2]) / 1e6 / elapsed_s, 1),
                  "client_cpu_s": cpu_s, "msgs_per_client_cpu_s": round(msgs / cpu_s) if cpu_s else None,
                  "errors": errs, "backpressure_retries": backpressure, "exit": int(cpu[3]), "loadavg_1m": float(sys.argv[3])}))
PY
}

run_bench() {
    local bootstrap="$1" rep="$2" out json
    json="$(mktemp -p "$root/target" compare-bench-XXXX.json)"
    out=$(with_cpu taskset -c "$client_cpus" "$sluice" bench produce --bootstrap "$bootstrap" --cores 1 --partitions 1 \
        --message-size "$size" --count "$messages" --acks "$acks" --batch-bytes "$batch_bytes" --linger-ms "$linger_ms" \
        --max-in-flight "$max_in_flight" --quiet --json "$json")
    python3 - "$rep" "$json" "$(cut -d' ' -f1 /proc/loadavg)" <<PY | tee -a "$raw"
import json, sys
out = """$out"""
cpu = [l for l in out.splitlines() if l.startswith('CPU_SECONDS')][0].split()
r = json.load(open(sys.argv[2]))
p = r["produce"]; cpu_s = float(cpu[1])
print(json.dumps({"tool": "sluice bench", "rep": int(sys.argv[1]), "msgs": r["acked_msgs"], "seconds": round(p["seconds"], 3),
                  "msgs_per_sec": round(p["msgs_per_sec"]), "mb_per_sec": round(p["mb_per_sec"], 1),
                  "client_cpu_s": cpu_s, "msgs_per_client_cpu_s": round(r["acked_msgs"] / cpu_s) if cpu_s else None,
                  "ack_p99_ms": r["ack_latency_ms"]["p99_ms"] if r.get("ack_latency_ms") else None,
                  "errors": r["errors_total"], "exit": int(cpu[3]), "loadavg_1m": float(sys.argv[3])}))
PY
    rm -f "$json"
}

for rep in $(seq "$reps"); do
    # Alternate which tool goes first; a fresh broker for each run.
    if [ $((rep % 2)) -eq 1 ]; then order="rdkafka bench"; else order="bench rdkafka"; fi
    for tool in $order; do
        start_broker
        "run_$tool" "$bootstrap" "$rep"
        stop_broker
    done
done
echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$results/machine.txt"

python3 - "$raw" <<'PY' | tee "$results/summary.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| tool | runs | median msgs/s | median MB/s | median client CPU-s | median msgs per client CPU-s | errors | load 1m (median) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
med = {}
for tool in ["rdkafka_performance", "sluice bench"]:
    rs = [r for r in rows if r["tool"] == tool]
    if not rs: continue
    m = lambda k: statistics.median(r[k] for r in rs if r[k] is not None)
    med[tool] = m("msgs_per_sec"), m("msgs_per_client_cpu_s")
    print(f"| {tool} | {len(rs)} | {m('msgs_per_sec'):.0f} | {m('mb_per_sec'):.1f} | {m('client_cpu_s'):.2f} | {m('msgs_per_client_cpu_s'):.0f} | {sum(r['errors'] for r in rs)} | {m('loadavg_1m'):.2f} |")
if len(med) == 2:
    a, b = med["sluice bench"], med["rdkafka_performance"]
    print(f"\nsluice bench / rdkafka_performance: throughput {a[0]/b[0]:.2f}x, msgs per client CPU-second {a[1]/b[1]:.2f}x")
PY
