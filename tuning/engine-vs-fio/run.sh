#!/usr/bin/env bash
# engine-vs-fio: the storage engine's sequential append bandwidth against fio's direct-I/O
# sequential write bandwidth on the same filesystem. See README.md beside this script.
#
# Environment (all optional):
#   REPS=3             repetitions; each runs every configuration once, alternating tools
#   TOTAL=2G           bytes written per run (fio --size, engine/raw --total-bytes)
#   ALWAYS_TOTAL=256M  bytes per engine flush=always run (an fdatasync per append is slow)
#   DATA_DIR=...       scratch directory on the filesystem under test
#                      (default: <repo>/target/tuning-engine-vs-fio, i.e. the repo's disk)
#   RESULTS=...        where results go (default: <repo>/tuning/results/engine-vs-fio)
#   SWEEP=1            also run the diagnostic sweep (fio variants, raw glommio writes, engine
#                      --chunk-bytes x --max-in-flight, several partitions, group commit)
#   SWEEP_REPS=...     repetitions of the sweep (default: REPS)
#   SKIP_ALWAYS=1      skip the flush=always runs
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
REPS="${REPS:-3}"
TOTAL="${TOTAL:-2G}"
ALWAYS_TOTAL="${ALWAYS_TOTAL:-256M}"
DATA_DIR="${DATA_DIR:-$repo/target/tuning-engine-vs-fio}"
RESULTS="${RESULTS:-$repo/tuning/results/engine-vs-fio}"
SWEEP="${SWEEP:-0}"
SWEEP_REPS="${SWEEP_REPS:-$REPS}"
SKIP_ALWAYS="${SKIP_ALWAYS:-0}"

# --- tools (idempotent) ------------------------------------------------------------------
command -v fio >/dev/null || (apt-get update && apt-get install -y fio)
command -v python3 >/dev/null || (apt-get update && apt-get install -y python3)

echo "building sluice-engine-append and sluice-raw-write (release)..." >&2
(cd "$repo" && cargo build --release -p sluice-benches --bin sluice-engine-append --bin sluice-raw-write >&2)
engine="$repo/target/release/sluice-engine-append"
raw="$repo/target/release/sluice-raw-write"

mkdir -p "$DATA_DIR" "$RESULTS"
fstype="$(df -T "$DATA_DIR" | awk 'NR==2 {print $2}')"
case "$fstype" in
  tmpfs|ramfs) echo "DATA_DIR $DATA_DIR is on $fstype; use a real disk" >&2; exit 1 ;;
esac
fio_dir="$DATA_DIR/fio"
raw_dir="$DATA_DIR/raw"
engine_dir="$DATA_DIR/engine"   # created and removed by each engine run
mkdir -p "$fio_dir" "$raw_dir"
rm -rf "$engine_dir"

results="$RESULTS/results.jsonl"
sweep_results="$RESULTS/sweep.jsonl"
: > "$results"
if [ "$SWEEP" = 1 ]; then : > "$sweep_results"; fi

# The block device under DATA_DIR, for request counts from /proc/diskstats (may be empty,
# e.g. on device-mapper or overlay setups; then the request fields are null).
dev="$(df "$DATA_DIR" | awk 'NR==2 {print $1}')"
blk="$(basename "$dev")"

# --- machine -------------------------------------------------------------------------------
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "engine/ uncommitted changes: $(git -C "$repo" status --porcelain -- engine 2>/dev/null | wc -l) files"
  echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "nproc: $(nproc)"
  echo "kernel: $(uname -r)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "memory: $(free -g | awk '/^Mem:/ {print $2 " GiB"}')"
  echo "ulimit -l: $(ulimit -l) KiB"
  echo "fio: $(fio --version)"
  echo "rustc: $(rustc --version)"
  echo "data dir: $DATA_DIR"
  echo "df -T:"
  df -T "$DATA_DIR" | sed 's/^/  /'
  if [ -e "/sys/block/$blk/queue/scheduler" ]; then
    for f in scheduler rotational max_sectors_kb max_segments nr_requests; do
      echo "$f: $(cat "/sys/block/$blk/queue/$f")"
    done
  fi
  echo "mount: $(awk -v d="$dev" '$1 == d {print $2 " " $3 " " $4; exit}' /proc/mounts)"
} > "$RESULTS/machine.txt"
cat "$RESULTS/machine.txt" >&2

# --- runners -------------------------------------------------------------------------------
# Completed write requests and sectors written on the device, "W S" (empty if unknown).
diskstat() { awk -v d="$blk" '$3 == d {print $8, $10}' /proc/diskstats; }

# emit LINE W0 S0 OUT: appends device request stats to a one-line JSON object and records it.
# dev_mb_written well above the run's own bytes means something else wrote to the disk too.
emit() {
  local line="$1" w0="$2" s0="$3" out="$4" w1 s1 extra
  read -r w1 s1 < <(diskstat) || true
  if [ -n "$w0" ] && [ -n "${w1:-}" ] && [ "$w1" -gt "$w0" ]; then
    extra="\"dev_writes\":$((w1 - w0)),\"dev_avg_write_kib\":$(( (s1 - s0) / 2 / (w1 - w0) ))"
    extra="$extra,\"dev_mb_written\":$(( (s1 - s0) * 512 / 1000000 ))"
  else
    extra="\"dev_writes\":null,\"dev_avg_write_kib\":null,\"dev_mb_written\":null"
  fi
  echo "${line%\}},$extra}" | tee -a "$out"
}

# fio_run LABEL OUT REP FIO-ARGS...: one sequential O_DIRECT write of $TOTAL into a fresh file.
fio_run() {
  local label="$1" out="$2" rep="$3"; shift 3
  local json line w0 s0
  read -r w0 s0 < <(diskstat) || true
  json="$(fio --name="$label" --directory="$fio_dir" --filename=fio-seqwrite --unlink=1 \
    --direct=1 --rw=write --ioengine=io_uring --size="$TOTAL" --output-format=json "$@")"
  line="$(python3 -c '
import json, sys
j = json.loads(sys.argv[1]); w = j["jobs"][0]["write"]
print(json.dumps({"rep": int(sys.argv[3]), "run": sys.argv[2], "tool": "fio",
  "args": sys.argv[4], "bytes": w["io_bytes"], "seconds": w["runtime"] / 1000,
  "mb_per_s": round(w["bw_bytes"] / 1e6, 1), "iops": round(w["iops"], 1),
  "clat_p50_us": round(w["clat_ns"]["percentile"]["50.000000"] / 1000, 1),
  "clat_p99_us": round(w["clat_ns"]["percentile"]["99.000000"] / 1000, 1)}, separators=(",", ":")))
' "$json" "$label" "$rep" "$*")"
  emit "$line" "${w0:-}" "${s0:-}" "$out"
}

# engine_run LABEL OUT REP ENGINE-ARGS...
engine_run() {
  local label="$1" out="$2" rep="$3"; shift 3
  local json w0 s0
  read -r w0 s0 < <(diskstat) || true
  json="$("$engine" --data-dir "$engine_dir" --total-bytes "$TOTAL" "$@")"
  emit "{\"rep\":$rep,\"run\":\"$label\",\"tool\":\"engine\",\"args\":\"$*\",${json#\{}" "${w0:-}" "${s0:-}" "$out"
}

# raw_run LABEL OUT REP RAW-ARGS...: glommio DmaFile writes, no engine.
raw_run() {
  local label="$1" out="$2" rep="$3"; shift 3
  local json w0 s0
  read -r w0 s0 < <(diskstat) || true
  json="$("$raw" --data-dir "$raw_dir" --total-bytes "$TOTAL" "$@")"
  emit "{\"rep\":$rep,\"run\":\"$label\",\"tool\":\"raw\",\"args\":\"$*\",${json#\{}" "${w0:-}" "${s0:-}" "$out"
}

# --- the experiment ------------------------------------------------------------------------
for rep in $(seq 1 "$REPS"); do
  echo "=== rep $rep/$REPS ===" >&2
  fio_run fio-qd4 "$results" "$rep" --bs=1M --iodepth=4
  engine_run engine-1MiB-never "$results" "$rep" --batch-bytes 1M --flush never
  fio_run fio-qd1 "$results" "$rep" --bs=1M --iodepth=1
  engine_run engine-16KiB-never "$results" "$rep" --batch-bytes 16K --flush never
  raw_run raw-glommio-qd4 "$results" "$rep" --bs 1M --qd 4
  if [ "$SKIP_ALWAYS" != 1 ]; then
    engine_run engine-1MiB-always "$results" "$rep" --batch-bytes 1M --flush always --total-bytes "$ALWAYS_TOTAL"
    engine_run engine-16KiB-always "$results" "$rep" --batch-bytes 16K --flush always --total-bytes "$ALWAYS_TOTAL"
  fi
done

if [ "$SWEEP" = 1 ]; then
  # One line per configuration: LABEL TOOL ARGS... The order is shuffled in every rep (seeded
  # by the rep number, so reproducible) to spread the disk's drift over all configurations;
  # fio-qd4 appears three times per rep as the reference.
  sweep_configs() {
    for _ in 1 2 3; do echo "fio-qd4 fio --bs=1M --iodepth=4"; done
    echo "fio-qd1 fio --bs=1M --iodepth=1"
    echo "fio-qd4-nofallocate fio --bs=1M --iodepth=4 --fallocate=none"
    echo "fio-qd1-nofallocate fio --bs=1M --iodepth=1 --fallocate=none"
    echo "fio-qd16 fio --bs=1M --iodepth=16"
    echo "fio-1016k-qd4 fio --bs=1016k --iodepth=4"
    echo "raw-qd1 raw --bs 1M --qd 1"
    echo "raw-qd4 raw --bs 1M --qd 4"
    echo "raw-qd4-preallocate raw --bs 1M --qd 4 --preallocate"
    echo "raw-1016K-qd4 raw --bs 1016K --qd 4"
    for chunk in 256K 1M 4M; do
      for mif in 1 2 4 8; do
        echo "engine-16K-chunk$chunk-mif$mif engine --batch-bytes 16K --flush never --chunk-bytes $chunk --max-in-flight $mif"
      done
    done
    for mif in 1 2 4 8; do
      echo "engine-1M-chunk1M-mif$mif engine --batch-bytes 1M --flush never --chunk-bytes 1M --max-in-flight $mif"
    done
    for p in 1 4 128; do
      echo "engine-16K-pipeline$p engine --batch-bytes 16K --flush never --pipeline $p"
      echo "engine-1M-pipeline$p engine --batch-bytes 1M --flush never --pipeline $p"
    done
    echo "engine-16K-notailcache engine --batch-bytes 16K --flush never --tail-cache-bytes 0"
    echo "engine-16K-chunk1016K-mif4 engine --batch-bytes 16K --flush never --chunk-bytes 1016K --max-in-flight 4"
    echo "engine-1M-chunk1016K-mif4 engine --batch-bytes 1M --flush never --chunk-bytes 1016K --max-in-flight 4"
    echo "engine-1M-4partitions-c4 engine --batch-bytes 1M --flush never --partitions 4 --concurrency 4"
    echo "engine-16K-4partitions-c4 engine --batch-bytes 16K --flush never --partitions 4 --concurrency 4"
    echo "engine-16K-interval100 engine --batch-bytes 16K --flush interval:100"
    echo "engine-16K-always-pipeline1 engine --batch-bytes 16K --flush always --pipeline 1 --total-bytes $ALWAYS_TOTAL"
    echo "engine-16K-always-pipeline4 engine --batch-bytes 16K --flush always --pipeline 4 --total-bytes $ALWAYS_TOTAL"
    echo "engine-16K-always-c4-pipeline1 engine --batch-bytes 16K --flush always --concurrency 4 --pipeline 1 --total-bytes $ALWAYS_TOTAL"
  }
  for rep in $(seq 1 "$SWEEP_REPS"); do
    echo "=== sweep rep $rep/$SWEEP_REPS ===" >&2
    while read -r label tool args; do
      # shellcheck disable=SC2086 # args are words on purpose
      case "$tool" in
        fio) fio_run "$label" "$sweep_results" "$rep" $args ;;
        raw) raw_run "$label" "$sweep_results" "$rep" $args ;;
        *) engine_run "$label" "$sweep_results" "$rep" $args ;;
      esac
    done < <(sweep_configs | shuf --random-source=<(yes "$rep"))
  done
fi

rmdir "$fio_dir" "$raw_dir" 2>/dev/null || true
rmdir "$DATA_DIR" 2>/dev/null || true

echo "loadavg at end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$RESULTS/machine.txt"

# --- summary -------------------------------------------------------------------------------
python3 "$here/summarize.py" "$results" > "$RESULTS/summary.md"
if [ "$SWEEP" = 1 ]; then python3 "$here/summarize.py" "$sweep_results" --sort > "$RESULTS/sweep-summary.md"; fi
echo >&2
cat "$RESULTS/summary.md"
if [ "$SWEEP" = 1 ]; then echo; cat "$RESULTS/sweep-summary.md"; fi
