#!/usr/bin/env bash
# Broker CPU per GB for each compression codec on the produce path, driven by
# rdkafka_performance built with a semi-random payload (build.sh): each 1 KiB message is half
# fresh random letters, half pattern, so codecs see realistic (~2x) ratios, not a repeated
# pattern. One sluice shard pinned to CPU 0, the client on CPU 1, acks=1,
# compression.type=producer (the broker decompresses to validate, stores the batch as sent).
#
#   tuning/codecs-rdkafka-perf/run.sh                 # 1M x 1 KiB, 3 reps, every codec
#   MESSAGES=200000 REPS=1 CODECS="none zstd" tuning/codecs-rdkafka-perf/run.sh
#
# Reports per run: client MB/s of uncompressed payload, broker CPU-seconds per GB of
# uncompressed payload (from /proc/PID/stat), and the stored/uncompressed size ratio.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
messages="${MESSAGES:-1000000}"
size="${SIZE:-1024}"
reps="${REPS:-3}"
codecs="${CODECS:-none gzip snappy lz4 zstd}"
results="$root/tuning/results/codecs-rdkafka-perf"
mkdir -p "$results"
raw="$results/runs.jsonl"
: > "$raw"
{
    echo "date: $(date -u +%FT%TZ)"
    echo "commit: $(git -C "$root" rev-parse --short HEAD)"
    echo "nproc: $(nproc)"; echo "kernel: $(uname -r)"
    echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "messages: $messages x $size B, reps: $reps, codecs: $codecs, acks=1, linger.ms=5"
} > "$results/machine.txt"

perf="$("$here/build.sh")"
(cd "$root" && cargo build --release -q --bin sluice)
sluice="$root/target/release/sluice"
clk_tck=$(getconf CLK_TCK)
. "$root/tuning/lib.sh"

run_one() {
    local codec="$1" rep="$2" data port log pid c0 c1 out stored load
    data="$(mktemp -d -p "$root/target" tuning-codecs-XXXX)"
    port="$(free_port)"
    log="$data.log"
    taskset -c 0 "$sluice" broker --data-dir "$data" --listen "127.0.0.1:$port" --cores 1 >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q "sluice broker started" "$log" && break; sleep 0.1; done
    grep -q "sluice broker started" "$log" || { cat "$log"; kill "$pid"; exit 1; }
    load="$(cut -d' ' -f1 /proc/loadavg)"
    c0=$(cpu_ticks "$pid")
    out=$(RDKAFKA_PERF_SEMIRANDOM=1 taskset -c 1 "$perf" -P -t bench -p 0 -s "$size" -c "$messages" -a 1 \
        -z "$codec" -X linger.ms=5 -b "127.0.0.1:$port" -q -u 2>&1 | grep '^|' | tail -1)
    c1=$(cpu_ticks "$pid")
    kill -TERM "$pid"; wait "$pid" || true
    stored=$(du -sb "$data" | cut -f1)
    python3 - "$codec" "$rep" "$((messages * size))" "$c0" "$c1" "$clk_tck" "$out" "$stored" "$load" <<'PY' | tee -a "$raw"
import json, sys
codec, rep, nbytes, c0, c1, tck = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:7])
p = [x.strip() for x in sys.argv[7].strip('|').split('|')]
stored, load = int(sys.argv[8]), float(sys.argv[9])
elapsed_ms = int(p[0])
print(json.dumps({"codec": codec, "rep": rep, "bytes": nbytes, "produce_mb_s": round(nbytes / 1e6 / (elapsed_ms / 1000), 1),
                  "broker_cpu_s_per_gb": round((c1 - c0) / tck / (nbytes / 1e9), 3),
                  "stored_ratio": round(stored / nbytes, 3), "delivered_errors": int(p[7]), "loadavg": load}))
PY
    rm -rf "$data" "$log"
}

for rep in $(seq "$reps"); do
    for codec in $codecs; do
        run_one "$codec" "$rep"
    done
done
python3 - "$raw" <<'PY' | tee "$results/summary.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| codec | runs | produce MB/s (uncompressed) | broker CPU-s/GB (uncompressed) | stored / sent bytes | max loadavg |")
print("|---|---|---|---|---|---|")
for codec in dict.fromkeys(r["codec"] for r in rows):
    rs = [r for r in rows if r["codec"] == codec]
    med = lambda k: statistics.median(r[k] for r in rs)
    print(f"| {codec} | {len(rs)} | {med('produce_mb_s'):.0f} | {med('broker_cpu_s_per_gb'):.3f} | "
          f"{med('stored_ratio'):.2f} | {max(r['loadavg'] for r in rs):.2f} |")
PY
