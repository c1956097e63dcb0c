#!/usr/bin/env bash
# Where the broker's CPU goes while it takes a produce stream: `perf record` of the broker
# (dwarf call graphs) during tuning/produce-rdkafka-perf's produce phase, for each variant, with
# the same client and pinning (broker on CPU 0, client on CPU 1). For each variant it writes
#   <name>-<variant>.txt     self time by function, the same by shared object, and inclusive
#                            time (children) of the busiest call paths
#   <name>-<variant>.folded  flame data: one line per distinct stack, `frame;frame;... samples`
#                            (any flamegraph tool renders it, e.g. inferno-flamegraph)
#   <name>-breakdown.md      broker CPU-s/GB by what it was spent on (CRC, socket receive,
#                            copies, direct writes, ...), the variants side by side
# plus runs.jsonl/summary.md of the profiled runs (MB/s and CPU-s/GB under the profiler: a
# ratio between variants of one run, not a throughput figure).
#
#   tuning/produce-profile/run.sh                                    # 1 partition, discard vs store
#   NAME=p100 PARTITIONS=100 CLIENT_ARGS="-X sticky.partitioning.linger.ms=0" tuning/produce-profile/run.sh
#   VARIANTS="default base-default" BASELINE_BIN=/tmp/sluice-base tuning/produce-profile/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
name="${NAME:-p1}"
results="${RESULTS:-$root/tuning/results/produce-profile}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$results"

MESSAGES="${MESSAGES:-1000000}" REPS=1 ACKS=1 NO_CONSUME=1 VARIANTS="${VARIANTS:-discard default}" \
    PERF_RECORD="$work" PERF_ARGS="${PERF_ARGS:---call-graph dwarf,16384 -F 499}" RESULTS="$results/$name" \
    "$root/tuning/produce-rdkafka-perf/run.sh"

# `head` closes its pipe early and perf exits non-zero over samples it cannot unwind: neither
# is a failure of the report.
set +o pipefail
for data in "$work"/*.data; do
    variant="$(basename "$data" .data)"; variant="${variant%-acks1-1}"
    out="$results/$name-$variant"
    {
        echo "# perf record ${PERF_ARGS:---call-graph dwarf,16384 -F 499} -p <broker> during the produce of $name, variant $variant"
        echo "# commit $(git -C "$root" rev-parse --short HEAD), $(date -u +%FT%TZ), loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "# self, by function (top 40):"
        perf report -i "$data" --stdio --no-children --sort dso,sym -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40
        echo "# self, by shared object:"
        perf report -i "$data" --stdio --no-children --sort dso -g none 2>/dev/null | grep -v '^#' | grep -v '^$'
        echo "# inclusive (children), top 80:"
        perf report -i "$data" --stdio --children --sort sym -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -80
    } > "$out.txt"
    perf script -i "$data" 2>/dev/null | python3 "$here/fold.py" > "$out.folded"
done
# CPU-s/GB by category, every variant side by side (the profiler's rate from PERF_ARGS' -F).
hz="$(echo "${PERF_ARGS:--F 499}" | sed -n 's/.*-F \([0-9]*\).*/\1/p')"
gb="$(python3 -c "print(${MESSAGES:-1000000} * ${SIZE:-1024} / 1e9)")"
args=()
for variant in ${VARIANTS:-discard default}; do args+=("$variant=$results/$name-$variant.folded"); done
python3 "$here/breakdown.py" "${hz:-499}" "$gb" "${args[@]}" | tee "$results/$name-breakdown.md"
