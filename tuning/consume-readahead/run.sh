#!/usr/bin/env bash
# Consume from disk with and without page-cache read-ahead (issue #20): one partition,
# rdkafka_performance -C with default client settings (1 MiB per partition per fetch),
# reading back what rdkafka_performance -P just produced (direct-I/O writes leave the page
# cache cold). Broker `--cores 1` on CPU 0, client on CPU 1. Variants interleaved round by
# round; each run a fresh broker. Prints one JSON line per run and a median table.
#
#   tuning/consume-readahead/run.sh                 # 2M x 1 KiB, 3 rounds
#   MESSAGES=1000000 ROUNDS=5 tuning/consume-readahead/run.sh
#   SLUICE=/path/to/sluice tuning/consume-readahead/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$root/tuning/lib.sh"
messages="${MESSAGES:-2000000}"
rounds="${ROUNDS:-3}"
results="$root/tuning/results/consume-readahead"
mkdir -p "$results"
perf="$("$root/tuning/produce-rdkafka-perf/build-rdkafka-performance.sh")"
if [ -z "${SLUICE:-}" ]; then (cd "$root" && cargo build --release -q --bin sluice); fi
sluice="${SLUICE:-$root/target/release/sluice}"
clk_tck=$(getconf CLK_TCK)
declare -A args=(
    [off]="--set sluice.fetch.readahead.bytes=0"
    [ra1m]="--set sluice.fetch.readahead.bytes=1048576"
    [ra4m]="--set sluice.fetch.readahead.bytes=4194304"
    [ra16m]="--set sluice.fetch.readahead.bytes=16777216"
    [copy]="--set sluice.fetch.sendfile=false"
)
variants="${VARIANTS:-off ra4m ra1m ra16m copy}"
raw="$results/runs.jsonl"
: > "$raw"
{
    echo "date: $(date -u +%FT%TZ)"; echo "commit: $(git -C "$root" rev-parse --short HEAD)"
    echo "kernel: $(uname -r), nproc: $(nproc), read_ahead_kb: $(cat /sys/block/*/queue/read_ahead_kb 2>/dev/null | head -1)"
    echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "messages: $messages x 1024 B, rounds: $rounds, variants: $variants"
} > "$results/machine.txt"

run_one() {
    local variant=$1 round=$2 data port log pid c1 c2 out load
    data="$(mktemp -d -p "$root/target" readahead-XXXX)"; port="$(free_port)"; log="$data.log"
    # shellcheck disable=SC2086
    taskset -c 0 "$sluice" broker --data-dir "$data" --listen "127.0.0.1:$port" --cores 1 ${args[$variant]} >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -qs "sluice broker started" "$log" && break; sleep 0.1; done
    taskset -c 1 "$perf" -P -t bench -p 0 -s 1024 -c "$messages" -a 1 -b "127.0.0.1:$port" -q -u >/dev/null 2>&1
    load=$(cut -d' ' -f1 /proc/loadavg)
    c1=$(cpu_ticks "$pid")
    out=$(taskset -c 1 "$perf" -C -t bench -p 0 -o beginning -c "$messages" -b "127.0.0.1:$port" -q -u 2>&1 | grep '^|' | tail -1)
    c2=$(cpu_ticks "$pid")
    kill -TERM "$pid"; wait "$pid" || true
    rm -rf "$data" "$log"
    python3 - "$variant" "$round" "$out" "$c1" "$c2" "$clk_tck" "$load" <<'PY' | tee -a "$raw"
import json, sys
variant, rnd, out, c1, c2, tck, load = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
c = [x.strip() for x in out.strip('|').split('|')]
ms, nbytes = int(c[0]), int(c[2])
print(json.dumps({"variant": variant, "round": rnd, "consume_mb_s": round(nbytes / 1e6 / (ms / 1000), 1),
                  "broker_cpu_s_per_gb": round((c2 - c1) / tck / (nbytes / 1e9), 3), "bytes": nbytes, "loadavg": load}))
PY
}

for round in $(seq "$rounds"); do
    for variant in $variants; do run_one "$variant" "$round"; done
done
python3 - "$raw" <<'PY' | tee "$results/summary.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| variant | runs | consume MB/s median (all) | broker CPU-s/GB median | load avg |")
print("|---|---|---|---|---|")
for v in dict.fromkeys(r["variant"] for r in rows):
    rs = [r for r in rows if r["variant"] == v]
    mbs = [r["consume_mb_s"] for r in rs]
    print(f"| {v} | {len(rs)} | {statistics.median(mbs):.0f} ({', '.join(f'{m:.0f}' for m in mbs)}) "
          f"| {statistics.median(r['broker_cpu_s_per_gb'] for r in rs):.3f} | {min(r['loadavg'] for r in rs)}–{max(r['loadavg'] for r in rs)} |")
PY
