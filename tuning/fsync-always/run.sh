#!/usr/bin/env bash
# fsync before every acknowledgement (`sluice.flush.mode=always`, Kafka's flush.messages=1)
# against flush never, at 1 and 100 partitions (issue #20), with the device's own synced-write
# bandwidth measured in the same run. Uses produce-rdkafka-perf (broker CPU 0, client CPU 1,
# acks=1, variants alternated round by round); results under tuning/results/fsync-always/.
#
#   tuning/fsync-always/run.sh            # 1M x 1 KiB, 3 reps
#   MESSAGES=2000000 REPS=5 tuning/fsync-always/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/tuning/results/fsync-always"
mkdir -p "$out"
export MESSAGES="${MESSAGES:-1000000}" REPS="${REPS:-3}" ACKS=1 NO_CONSUME=1
RESULTS="$out/p1" VARIANTS="discard default fsync" "$root/tuning/produce-rdkafka-perf/run.sh"
RESULTS="$out/p100" PARTITIONS=100 VARIANTS="discard default fsync" "$root/tuning/produce-rdkafka-perf/run.sh"
{
    echo "# $(date -u +%FT%TZ), loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
    python3 "$here/device-probe.py" --block $((4 << 20)) --count 50
    python3 "$here/device-probe.py" --block $((4 << 20)) --count 50 --no-sync
} | tee "$out/device-probe.txt"
