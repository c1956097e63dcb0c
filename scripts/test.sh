#!/usr/bin/env bash
# The whole test suite: set-up, the lint gates (rustfmt; clippy with warnings as errors), then
# every unit, property, crash-recovery and end-to-end test in the workspace, then the real
# non-Rust clients (kafka-python, confluent-kafka, kcat) in tests/python against the same
# binary, then a compile of the criterion benchmarks (they are run by hand or by tuning/, never
# timed in tests). This is exactly what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo build --locked --workspace --bins
SLUICE_BIN="$PWD/target/debug/sluice" cargo test --locked --workspace
# pytest exits non-zero on any failure or error and exits 5 when it collects no test; with
# SLUICE_PYTEST_MIN_PASSED it also fails when fewer tests than that passed (say, everything
# skipped). The floor is the count that passes today (skipped: idempotence, not advertised yet,
# and two known broker bugs); raise it as those are fixed, lower it only with a reason.
SLUICE_BIN="$PWD/target/debug/sluice" SLUICE_PYTEST_MIN_PASSED=40 PYTHONDONTWRITEBYTECODE=1 \
    timeout -k 10 600 .venv/bin/pytest -q tests/python
cargo bench --locked -p sluice-benches --no-run
