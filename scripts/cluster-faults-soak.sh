#!/usr/bin/env bash
# The longer fault job CI does not run: tests/cluster_faults.rs's seeded fault schedule under
# load, once per seed for seeds FIRST..FIRST+COUNT-1, on the debug binary. Prints one line per
# seed and the pass count; a failing seed repeats exactly with
#   SLUICE_TEST_SEED=<seed> cargo test -p sluice-e2e --test cluster_faults node_faults -- --nocapture
# Usage: scripts/cluster-faults-soak.sh [COUNT=50] [FIRST=1]
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-50}
first=${2:-1}
cargo build --locked -q -p sluice
cargo test --locked -q -p sluice-e2e --test cluster_faults --no-run
passed=0
for seed in $(seq "$first" $((first + count - 1))); do
  if SLUICE_BIN="$PWD/target/debug/sluice" SLUICE_TEST_SEED=$seed \
      cargo test --locked -q -p sluice-e2e --test cluster_faults node_faults > "/tmp/cluster-faults-$seed.log" 2>&1; then
    passed=$((passed + 1)); echo "seed $seed: ok"
  else
    echo "seed $seed: FAILED (log: /tmp/cluster-faults-$seed.log)"
  fi
done
echo "$passed of $count seeds passed"
[ "$passed" -eq "$count" ]
