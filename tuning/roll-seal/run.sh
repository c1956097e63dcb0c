#!/usr/bin/env bash
# A segment roll with the old segment sealed in the background (this build) against the roll
# that sealed it on the produce path ($BASE, an older build kept aside), and what a flush of
# the virtual disk does to a neighbour's writes. Three parts, each interleaved round by round:
#   light/      ack latency at 2k msgs/s x 1 KiB, acks=all, linger 0, 4 MiB segments (a roll
#               every ~2 s), store (this build) vs base, 8 rounds    (tuning/tail-latency)
#   throughput/ 2M x 1 KiB produce, acks=1: discard, default and roll256m, each also by $BASE
#               (tuning/produce-rdkafka-perf, 3 rounds, no consume)
#   neighbour/  ack latency at 40k msgs/s without rolls while another process writes 32 MiB
#               with O_DIRECT every 0.8 s: none, without fdatasync, with fdatasync (3 rounds)
#
#   BASE=/tmp/sluice-before tuning/roll-seal/run.sh
#   PARTS="neighbour" tuning/roll-seal/run.sh            # the neighbour part needs no BASE
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$root/tuning/lib.sh"
parts="${PARTS:-light throughput neighbour}"
results="${RESULTS:-$root/tuning/results/roll-seal}"
mkdir -p "$results"

for part in $parts; do
    case "$part" in
        light)
            RATE=2000 BROKER_SETTINGS="--set log.segment.bytes=4194304" PROBE=0 CASES="store:0 base:0" \
                ROUNDS="${ROUNDS:-8}" BASE="${BASE:?light needs BASE}" RESULTS="$results/light" "$root/tuning/tail-latency/run.sh"
            ;;
        throughput)
            BASELINE_BIN="${BASE:?throughput needs BASE}" VARIANTS="discard default base-default roll256m base-roll256m" \
                ACKS=1 REPS="${REPS:-3}" NO_CONSUME=1 RESULTS="$results/throughput" "$root/tuning/produce-rdkafka-perf/run.sh"
            ;;
        neighbour)
            (cd "$root" && cargo build --release -q --bin sluice)
            sluice="$root/target/release/sluice"
            out="$results/neighbour"; mkdir -p "$out"; : > "$out/runs.jsonl"
            echo "date: $(date -u +%FT%TZ), commit: $(git -C "$root" rev-parse --short HEAD), loadavg: $(cut -d' ' -f1-3 /proc/loadavg)" > "$out/machine.txt"
            work="$(mktemp -d -p "$root/target" roll-seal-XXXX)"
            for round in 1 2 3; do
                for mode in none nosync sync; do
                    port="$(free_port)"; rm -rf "$work/data"
                    taskset -c 0 "$sluice" broker --data-dir "$work/data" --listen "127.0.0.1:$port" --cores 1 --metrics-addr none >"$work/broker.log" 2>&1 &
                    pid=$!
                    for _ in $(seq 100); do grep -qs "sluice broker started" "$work/broker.log" && break; sleep 0.1; done
                    taskset -c 1 "$sluice" bench produce --bootstrap "127.0.0.1:$port" --cores 1 --message-size 1024 --rate 40000 \
                        --linger-ms 5 --acks all --duration-secs 8 --warmup-secs 2 --quiet --json "$work/bench.json" >/dev/null 2>&1 &
                    bench=$!
                    end=$((SECONDS + 12))
                    while [ "$mode" != none ] && [ $SECONDS -lt $end ]; do
                        sync_flag=""; [ "$mode" = sync ] && sync_flag="conv=fdatasync"
                        # shellcheck disable=SC2086
                        taskset -c 1 dd if=/dev/zero of="$work/neighbour.bin" bs=1M count=32 oflag=direct $sync_flag status=none
                        sleep 0.8
                    done
                    wait "$bench"
                    kill -TERM "$pid"; wait "$pid" || true
                    python3 - "$mode" "$round" "$work/bench.json" <<'PY' | tee -a "$out/runs.jsonl"
import json, sys
a = json.load(open(sys.argv[3]))["ack_latency_ms"]
print(json.dumps({"neighbour": sys.argv[1], "round": int(sys.argv[2]), "ack_p50_ms": a["p50_ms"], "ack_p99_ms": a["p99_ms"],
                  "ack_p999_ms": a["p999_ms"], "ack_max_ms": a["max_ms"]}))
PY
                done
            done
            rm -rf "$work"
            ;;
        *) echo "unknown part $part" >&2; exit 2 ;;
    esac
done
