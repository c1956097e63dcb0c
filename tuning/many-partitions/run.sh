#!/usr/bin/env bash
# Many partitions on one broker: start-up time, RSS, fds and disk for PARTITIONS partitions of
# one record each, through a clean and an unclean restart. See README.md.
#   PARTITIONS=10000 CORES=2 tuning/many-partitions/run.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
./scripts/setup.sh >/dev/null
cargo build --release --locked --bin sluice
out="$root/tuning/results/many-partitions"
mkdir -p "$out"
{ echo "nproc: $(nproc)"; uname -r; df -T /tmp | tail -1; echo "ulimit -n: $(ulimit -n) (hard $(ulimit -Hn))";
  uptime; git rev-parse --short HEAD; } > "$out/machine.txt"
.venv/bin/python tuning/many-partitions/measure.py "$root/target/release/sluice" "${PARTITIONS:-10000}" \
    "${CORES:-2}" "$out/results.jsonl"
