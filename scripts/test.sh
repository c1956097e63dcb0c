#!/usr/bin/env bash
# The whole test suite: set-up, then every unit, property, crash-recovery and end-to-end test
# in the workspace, then a compile of the criterion benchmarks (they are run by hand or by
# tuning/, never timed in tests). This is exactly what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --locked --workspace --bins
SLUICE_BIN="$PWD/target/debug/sluice" cargo test --locked --workspace
cargo bench --locked -p sluice-benches --no-run
