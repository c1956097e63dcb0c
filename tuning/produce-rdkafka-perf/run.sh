#!/usr/bin/env bash
# Produce and consume throughput of sluice, driven by librdkafka's rdkafka_performance (the
# industry's neutral load generator). Broker pinned to CPU 0 with one shard, client to CPU 1.
# Reports MB/s (client side) and the broker's CPU-seconds per GB (from /proc/PID/stat).
#
#   tuning/produce-rdkafka-perf/run.sh            # 2M x 1 KiB, acks=1 and acks=all, 3 reps,
#                                                 # for each broker variant in VARIANTS below
#   MESSAGES=500000 REPS=1 tuning/produce-rdkafka-perf/run.sh
#   VARIANTS="default" EXTRA_BROKER_ARGS="--set sluice.flush.mode=always" tuning/produce-rdkafka-perf/run.sh
#   PARTITIONS=100 NO_CONSUME=1 VARIANTS="default fsync" RESULTS=/tmp/r tuning/produce-rdkafka-perf/run.sh
#   PERF_RECORD=/tmp/p PERF_ARGS="--call-graph dwarf,16384 -F 499" tuning/produce-rdkafka-perf/run.sh
#                                                 # also `perf record` the broker while it takes
#                                                 # the produce: /tmp/p/<variant>-acks<a>-<rep>.data
#   CLIENT_STATS=1 tuning/produce-rdkafka-perf/run.sh
#                                                 # also librdkafka's statistics of the producer
#                                                 # (every 1 s): produce requests sent, average
#                                                 # batch size, round trip p50/p99 (medians of
#                                                 # the windows) in each row of runs.jsonl
#
# Variants (broker settings) compare the fetch paths by broker CPU-seconds per GB served:
#   default   tail cache 32 MiB/partition, filled while a reader tails the partition (nobody
#             does while rdkafka_performance produces): the consumer reads from disk with sendfile
#   always    same, sluice.tail.cache.fill=always: every append is also copied into the tail
#             cache, as it is while a consumer tails — what produce costs then
#   copy      default, sluice.fetch.sendfile=false: direct read + copy
#   cached    tail cache large enough for all the data, filled on every append: the consumer
#             reads from memory
#   buffered  sluice.ack.on=buffered: acks once in the write-behind buffer, not once on file
#   pagecache sluice.segment.io=buffered: segments written through the page cache, as Kafka does
#   roll256m  log.segment.bytes=256 MiB: a segment roll every 256 MiB (1 GiB by default)
#   fsync     sluice.flush.mode=always: fdatasync before every acknowledgement (flush.messages=1)
#   discard   sluice.produce.discard=true: acks without storing — the client's ceiling, measured
#             in the same run so "percent of the ceiling" is computed, not quoted (no consume)
#   base-<v>  variant <v> run by the binary $BASELINE_BIN (an earlier build, kept aside), so a
#             change is measured against what it replaced round by round in one run
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
messages="${MESSAGES:-2000000}"
size="${SIZE:-1024}"
reps="${REPS:-3}"
acks_list="${ACKS:-1 -1}"
variants="${VARIANTS:-discard default always buffered copy cached}"
results="${RESULTS:-$root/tuning/results/produce-rdkafka-perf}"
mkdir -p "$results"
raw="$results/runs.jsonl"
: > "$raw"   # each run of this script replaces the raw results
{
    echo "date: $(date -u +%FT%TZ)"
    echo "commit: $(git -C "$root" rev-parse --short HEAD)"
    echo "nproc: $(nproc)"; echo "kernel: $(uname -r)"
    # The host under this VM changes between days, and the CRC's speed with it.
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2- | tr -d ' ') model $(grep -m1 '^model[[:space:]]' /proc/cpuinfo | cut -d: -f2- | tr -d ' '); $(grep -m1 -o -w -E 'vpclmulqdq|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' ' || true)$(grep -m1 -q -w pclmulqdq /proc/cpuinfo && echo pclmulqdq)"
    echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "messages: $messages x $size B, reps: $reps, acks: $acks_list, variants: $variants, partitions: ${PARTITIONS:-1 (-p 0)}"
    df -T "$root/target" | sed 's/^/  /'
} > "$results/machine.txt"

# PARTITIONS=N: the topic is created first with N partitions and the producer spreads over
# them (random partitioner) instead of writing partition 0; use with NO_CONSUME=1 (the
# consumer reads partition 0 only). Keyless records stick to one partition for a while
# (librdkafka's sticky partitioner): rdkafka_performance's burst then lands ~98% in one
# partition. CLIENT_ARGS="-X sticky.partitioning.linger.ms=0" spreads every record at random.
partitions_args=""; partition_arg="-p 0"
if [ -n "${PARTITIONS:-}" ]; then partitions_args="--set num.partitions=$PARTITIONS"; partition_arg=""; fi

variant_args() {
    case "$1" in
        default) echo "" ;;
        always) echo "--set sluice.tail.cache.fill=always" ;;
        copy) echo "--set sluice.fetch.sendfile=false" ;;
        buffered) echo "--set sluice.ack.on=buffered" ;;
        discard) echo "--set sluice.produce.discard=true" ;;
        fsync) echo "--set sluice.flush.mode=always" ;;
        pagecache) echo "--set sluice.segment.io=buffered" ;;
        roll256m) echo "--set log.segment.bytes=268435456" ;;
        cached) echo "--set sluice.tail.cache.fill=always --set sluice.tail.cache.bytes=$((messages * size * 12 / 10)) --set sluice.shard.memory.bytes=$((messages * size * 2))" ;;
        *) echo "unknown variant $1" >&2; exit 2 ;;
    esac
}

perf="$("$here/build-rdkafka-performance.sh")"
(cd "$root" && cargo build --release -q --bin sluice)
sluice="$root/target/release/sluice"
clk_tck=$(getconf CLK_TCK)

. "$root/tuning/lib.sh"

run_one() {
    local acks="$1" rep="$2" variant="$3"
    local data port log pid
    data="$(mktemp -d -p "$root/target" tuning-perf-XXXX)"
    port="$(free_port)"
    log="$data.log"
    local bin="$sluice" settings="$variant"
    if [ "${variant#base-}" != "$variant" ]; then
        bin="${BASELINE_BIN:?variant $variant needs BASELINE_BIN}"; settings="${variant#base-}"
    fi
    # shellcheck disable=SC2086
    taskset -c 0 "$bin" broker --data-dir "$data" --listen "127.0.0.1:$port" --cores 1 $(variant_args "$settings") $partitions_args ${EXTRA_BROKER_ARGS:-} >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q "sluice broker started" "$log" && break; sleep 0.1; done
    grep -q "sluice broker started" "$log" || { cat "$log"; kill "$pid"; exit 1; }

    if [ -n "${PARTITIONS:-}" ]; then
        # Created before the counters start: its files' writes are not the produce's.
        "$sluice" topic create bench --partitions "$PARTITIONS" --bootstrap "127.0.0.1:$port" >/dev/null
    fi
    local c0 c1 c2 d0 d1 out_p out_c perf_pid=""
    if [ -n "${PERF_RECORD:-}" ]; then
        mkdir -p "$PERF_RECORD"
        # shellcheck disable=SC2086
        perf record ${PERF_ARGS:--F 999} -p "$pid" -o "$PERF_RECORD/$variant-acks$acks-$rep.data" -q 2>/dev/null &
        perf_pid=$!
        sleep 0.5   # attached before the first request
    fi
    local stats="$data.stats.jsonl" stats_args=""
    : > "$stats"
    if [ -n "${CLIENT_STATS:-}" ]; then stats_args="-T 1000 -Y cat>>$stats"; fi
    c0=$(cpu_ticks "$pid"); d0=$(device_writes "$data")
    # shellcheck disable=SC2086
    out_p=$(taskset -c 1 "$perf" -P -t bench $partition_arg -s "$size" -c "$messages" -a "$acks" -b "127.0.0.1:$port" ${CLIENT_ARGS:-} $stats_args -q -u 2>&1 | grep '^|' | tail -1)
    c1=$(cpu_ticks "$pid"); d1=$(device_writes "$data")
    if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
    if [ "$settings" = discard ] || [ -n "${NO_CONSUME:-}" ]; then
        out_c="|1|0|0|"   # nothing stored, nothing to consume
    else
        out_c=$(taskset -c 1 "$perf" -C -t bench -p 0 -o beginning -c "$messages" -b "127.0.0.1:$port" -q -u 2>&1 | grep '^|' | tail -1)
    fi
    c2=$(cpu_ticks "$pid")
    kill -TERM "$pid"; wait "$pid" || true
    local bytes=$((messages * size))
    python3 - "$acks" "$rep" "$bytes" "$c0" "$c1" "$c2" "$clk_tck" "$out_p" "$out_c" "$variant" "$((d1 - d0))" "$stats" <<'PY' | tee -a "$raw"
import json, sys
acks, rep, nbytes, c0, c1, c2, tck = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *map(int, sys.argv[4:8])
p = [x.strip() for x in sys.argv[8].strip('|').split('|')]
c = [x.strip() for x in sys.argv[9].strip('|').split('|')]
variant = sys.argv[10]

def client_stats(path):
    """librdkafka's statistics windows (CLIENT_STATS=1): what the producer sent to the broker."""
    import statistics
    windows = []
    for line in open(path):
        try:
            s = json.loads(line)
        except ValueError:
            continue
        for b in s.get("brokers", {}).values():
            if b.get("nodeid", -1) >= 0 and b["rtt"]["cnt"] > 0:
                windows.append((b["tx"], b["rtt"]["p50"], b["rtt"]["p99"], s["topics"].get("bench", {}).get("batchsize", {}).get("avg", 0)))
    if not windows:
        return {}
    return {"client_produce_requests": max(w[0] for w in windows),
            "client_batch_bytes_avg": round(statistics.median(w[3] for w in windows)),
            "client_rtt_p50_ms": round(statistics.median(w[1] for w in windows) / 1000, 2),
            "client_rtt_p99_ms": round(statistics.median(w[2] for w in windows) / 1000, 2)}
# producer table: elapsed msgs bytes rtt dr dr_m/s dr_MB/s dr_err tx_err outq offset
p_elapsed_ms = int(p[0]); p_mbs = nbytes / 1e6 / (p_elapsed_ms / 1000)
# consumer table: elapsed msgs bytes rtt ... MB/s is bytes/elapsed
c_elapsed_ms = int(c[0]); c_bytes = int(c[2]); c_mbs = c_bytes / 1e6 / (c_elapsed_ms / 1000)
c_cpu = round((c2 - c1) / tck / (c_bytes / 1e9), 3) if c_bytes else None
gb = nbytes / 1e9
print(json.dumps({"variant": variant, "acks": acks, "rep": rep, "bytes": nbytes,
                  "produce_mb_s": round(p_mbs, 1), "produce_broker_cpu_s_per_gb": round((c1 - c0) / tck / gb, 3),
                  "consume_mb_s": round(c_mbs, 1), "consume_broker_cpu_s_per_gb": c_cpu,
                  "device_writes_per_s": round(int(sys.argv[11]) / (p_elapsed_ms / 1000)),
                  "delivered_errors": int(p[7]), **client_stats(sys.argv[12])}))
PY
    rm -rf "$data" "$log" "$stats"
}

for rep in $(seq "$reps"); do
    for variant in $variants; do
        for acks in $acks_list; do
            run_one "$acks" "$rep" "$variant"
        done
    done
done
python3 - "$raw" <<'PY' | tee "$results/summary.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(rs, k):
    vals = [r[k] for r in rs if r.get(k) is not None]
    return statistics.median(vals) if vals else None
fmt = lambda v, spec: "—" if v is None else format(v, spec)
ceiling = {a: med([r for r in rows if r.get("variant") == "discard" and r["acks"] == a], "produce_mb_s")
           for a in {r["acks"] for r in rows}}
print("| variant | acks | runs | produce MB/s | % of discard ceiling | produce broker CPU-s/GB | consume MB/s | consume broker CPU-s/GB |")
print("|---|---|---|---|---|---|---|---|")
for variant in dict.fromkeys(r.get("variant", "default") for r in rows):
    for acks in sorted({r["acks"] for r in rows}):
        rs = [r for r in rows if r.get("variant", "default") == variant and r["acks"] == acks]
        if not rs:
            continue
        mbs = med(rs, "produce_mb_s")
        pct = 100 * mbs / ceiling[acks] if ceiling.get(acks) else None
        consume = med(rs, "consume_mb_s") if variant != "discard" else None
        print(f"| {variant} | {acks} | {len(rs)} | {mbs:.0f} | {fmt(pct, '.0f')} | {med(rs, 'produce_broker_cpu_s_per_gb'):.3f} "
              f"| {fmt(consume, '.0f')} | {fmt(med(rs, 'consume_broker_cpu_s_per_gb'), '.3f')} |")
PY
