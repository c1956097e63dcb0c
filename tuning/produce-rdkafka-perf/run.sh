#!/usr/bin/env bash
# Produce and consume throughput of sluice, driven by librdkafka's rdkafka_performance (the
# industry's neutral load generator). Broker pinned to CPU 0 with one shard, client to CPU 1.
# Reports MB/s (client side) and the broker's CPU-seconds per GB (from /proc/PID/stat).
#
#   tuning/produce-rdkafka-perf/run.sh            # 2M x 1 KiB, acks=1 and acks=all, 3 reps
#   MESSAGES=500000 REPS=1 tuning/produce-rdkafka-perf/run.sh
#   EXTRA_BROKER_ARGS="--set sluice.flush.mode=always" tuning/produce-rdkafka-perf/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
messages="${MESSAGES:-2000000}"
size="${SIZE:-1024}"
reps="${REPS:-3}"
acks_list="${ACKS:-1 -1}"
results="$root/tuning/results/produce-rdkafka-perf"
mkdir -p "$results"
raw="$results/runs.jsonl"

perf="$("$here/build-rdkafka-performance.sh")"
(cd "$root" && cargo build --release -q --bin sluice)
sluice="$root/target/release/sluice"
clk_tck=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_one() {
    local acks="$1" rep="$2"
    local data port log pid
    data="$(mktemp -d -p "$root/target" tuning-perf-XXXX)"
    port="$(free_port)"
    log="$data.log"
    # shellcheck disable=SC2086
    taskset -c 0 "$sluice" broker --data-dir "$data" --listen "127.0.0.1:$port" --cores 1 ${EXTRA_BROKER_ARGS:-} >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q "sluice broker started" "$log" && break; sleep 0.1; done
    grep -q "sluice broker started" "$log" || { cat "$log"; kill "$pid"; exit 1; }

    local c0 c1 c2 out_p out_c
    c0=$(cpu_ticks "$pid")
    out_p=$(taskset -c 1 "$perf" -P -t bench -p 0 -s "$size" -c "$messages" -a "$acks" -b "127.0.0.1:$port" -q -u 2>&1 | grep '^|' | tail -1)
    c1=$(cpu_ticks "$pid")
    out_c=$(taskset -c 1 "$perf" -C -t bench -p 0 -o beginning -c "$messages" -b "127.0.0.1:$port" -q -u 2>&1 | grep '^|' | tail -1)
    c2=$(cpu_ticks "$pid")
    kill -TERM "$pid"; wait "$pid" || true
    local bytes=$((messages * size))
    python3 - "$acks" "$rep" "$bytes" "$c0" "$c1" "$c2" "$clk_tck" "$out_p" "$out_c" <<'PY' | tee -a "$raw"
import json, sys
acks, rep, nbytes, c0, c1, c2, tck = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *map(int, sys.argv[4:8])
p = [x.strip() for x in sys.argv[8].strip('|').split('|')]
c = [x.strip() for x in sys.argv[9].strip('|').split('|')]
# producer table: elapsed msgs bytes rtt dr dr_m/s dr_MB/s dr_err tx_err outq offset
p_elapsed_ms = int(p[0]); p_mbs = nbytes / 1e6 / (p_elapsed_ms / 1000)
# consumer table: elapsed msgs bytes rtt ... MB/s is bytes/elapsed
c_elapsed_ms = int(c[0]); c_bytes = int(c[2]); c_mbs = c_bytes / 1e6 / (c_elapsed_ms / 1000)
gb = nbytes / 1e9
print(json.dumps({"acks": acks, "rep": rep, "bytes": nbytes,
                  "produce_mb_s": round(p_mbs, 1), "produce_broker_cpu_s_per_gb": round((c1 - c0) / tck / gb, 3),
                  "consume_mb_s": round(c_mbs, 1), "consume_broker_cpu_s_per_gb": round((c2 - c1) / tck / (c_bytes / 1e9), 3),
                  "delivered_errors": int(p[7])}))
PY
    rm -rf "$data" "$log"
}

for rep in $(seq "$reps"); do
    for acks in $acks_list; do
        run_one "$acks" "$rep"
    done
done
python3 - "$raw" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for acks in sorted({r["acks"] for r in rows}):
    rs = [r for r in rows if r["acks"] == acks]
    med = lambda k: statistics.median(r[k] for r in rs)
    print(f"acks={acks:>2} n={len(rs)}  produce {med('produce_mb_s'):7.1f} MB/s  broker {med('produce_broker_cpu_s_per_gb'):.3f} CPU-s/GB"
          f"  |  consume {med('consume_mb_s'):7.1f} MB/s  broker {med('consume_broker_cpu_s_per_gb'):.3f} CPU-s/GB")
PY
