#!/usr/bin/env bash
# Produce and consume across partition counts (issue #20): 1, 10, 100, 1,000, 10,000 partitions
# of one topic on one shard (`--cores 1`, CPU 0), driven by librdkafka's rdkafka_performance on
# CPU 1 (produce: random partitioner, acks=1; consume: a balanced consumer group reading
# everything back from the beginning). Per partition count, a fresh broker, the store variant
# and the discard ceiling (`sluice.produce.discard=true`, produce only) alternated. Records
# MB/s, broker CPU-seconds per GB, write amplification (bytes the broker wrote to the device /
# bytes produced, /proc/PID/io), open descriptors and RSS after the consume.
#
#   tuning/partition-sweep/run.sh                         # 1M x 1 KiB per run
#   MESSAGES=300000 COUNTS="1 100 1000" tuning/partition-sweep/run.sh
#   SLUICE=/path/to/sluice tuning/partition-sweep/run.sh
#   RESULTS=/some/dir tuning/partition-sweep/run.sh          # elsewhere than tuning/results/partition-sweep
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$root/tuning/lib.sh"
messages="${MESSAGES:-1000000}"
counts="${COUNTS:-1 10 100 1000 10000}"
results="${RESULTS:-$root/tuning/results/partition-sweep}"
mkdir -p "$results"
perf="$("$root/tuning/produce-rdkafka-perf/build-rdkafka-performance.sh")"
if [ -z "${SLUICE:-}" ]; then (cd "$root" && cargo build --release -q --bin sluice); fi
sluice="${SLUICE:-$root/target/release/sluice}"
clk_tck=$(getconf CLK_TCK)
raw="$results/runs.jsonl"
: > "$raw"
{
    echo "date: $(date -u +%FT%TZ)"; echo "commit: $(git -C "$root" rev-parse --short HEAD)"
    echo "kernel: $(uname -r), nproc: $(nproc)"; echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "messages: $messages x 1024 B; partition counts: $counts"
} > "$results/machine.txt"

run_one() {
    local parts=$1 variant=$2 data port log pid extra c0 c1 c2 w0 w1 out_p out_c fds rss load
    data="$(mktemp -d -p "$root/target" sweep-XXXX)"; port="$(free_port)"; log="$data.log"
    extra=""; [ "$variant" = discard ] && extra="--set sluice.produce.discard=true"
    # shellcheck disable=SC2086
    taskset -c 0 "$sluice" broker --data-dir "$data" --listen "127.0.0.1:$port" --cores 1 \
        --set num.partitions="$parts" $extra >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 300); do grep -qs "sluice broker started" "$log" && break; sleep 0.1; done
    # Create the topic (auto-create, num.partitions) with a few messages first.
    taskset -c 1 "$perf" -P -t sweep -s 1024 -c 100 -a 1 -b "127.0.0.1:$port" -q -u >/dev/null 2>&1
    load=$(cut -d' ' -f1 /proc/loadavg)
    c0=$(cpu_ticks "$pid"); w0=$(awk '/^write_bytes/ {print $2}' "/proc/$pid/io")
    out_p=$(taskset -c 1 "$perf" -P -t sweep -s 1024 -c "$messages" -a 1 -b "127.0.0.1:$port" -q -u 2>&1 | grep '^|' | tail -1)
    c1=$(cpu_ticks "$pid"); w1=$(awk '/^write_bytes/ {print $2}' "/proc/$pid/io")
    out_c="|1|0|0|"
    if [ "$variant" = store ]; then
        out_c=$(taskset -c 1 "$perf" -C -G sweep-group -t sweep -o beginning -c "$((messages + 100))" -b "127.0.0.1:$port" -q -u 2>&1 | grep '^|' | tail -1)
    fi
    c2=$(cpu_ticks "$pid")
    fds=$(ls "/proc/$pid/fd" | wc -l); rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    kill -TERM "$pid"; wait "$pid" || true
    rm -rf "$data" "$log"
    python3 - "$parts" "$variant" "$messages" "$out_p" "$out_c" "$c0" "$c1" "$c2" "$clk_tck" "$w0" "$w1" "$fds" "$rss" "$load" <<'PY' | tee -a "$raw"
import json, sys
parts, variant, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
p = [x.strip() for x in sys.argv[4].strip('|').split('|')]
c = [x.strip() for x in sys.argv[5].strip('|').split('|')]
c0, c1, c2, tck, w0, w1, fds, rss = map(int, sys.argv[6:14])
nbytes = n * 1024
row = {"partitions": parts, "variant": variant, "produce_mb_s": round(nbytes / 1e6 / (int(p[0]) / 1000), 1),
       "produce_broker_cpu_s_per_gb": round((c1 - c0) / tck / (nbytes / 1e9), 3),
       "write_amplification": round((w1 - w0) / nbytes, 3), "fds": fds, "rss_mb": round(rss / 1024),
       "loadavg": float(sys.argv[14])}
if variant == "store" and int(c[2]):
    row["consume_mb_s"] = round(int(c[2]) / 1e6 / (int(c[0]) / 1000), 1)
    row["consume_broker_cpu_s_per_gb"] = round((c2 - c1) / tck / (int(c[2]) / 1e9), 3)
print(json.dumps(row))
PY
}

for parts in $counts; do
    for variant in store discard; do run_one "$parts" "$variant"; done
done
python3 - "$raw" <<'PY' | tee "$results/summary.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| partitions | produce MB/s | discard MB/s | ratio | produce CPU-s/GB | write amp. | consume MB/s | consume CPU-s/GB | fds | RSS MB | load |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for parts in dict.fromkeys(r["partitions"] for r in rows):
    s = next(r for r in rows if r["partitions"] == parts and r["variant"] == "store")
    d = next((r for r in rows if r["partitions"] == parts and r["variant"] == "discard"), None)
    ratio = s["produce_mb_s"] / d["produce_mb_s"] if d else None
    print(f"| {parts} | {s['produce_mb_s']:.0f} | {d['produce_mb_s'] if d else '—'} | {ratio:.2f} | {s['produce_broker_cpu_s_per_gb']} "
          f"| {s['write_amplification']} | {s.get('consume_mb_s', '—')} | {s.get('consume_broker_cpu_s_per_gb', '—')} | {s['fds']} | {s['rss_mb']} | {s['loadavg']} |")
PY
