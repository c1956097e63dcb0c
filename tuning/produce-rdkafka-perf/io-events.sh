#!/usr/bin/env bash
# Kernel I/O events during one produce run (rdkafka_performance, 1M x 1 KiB, acks=1): io_uring
# submissions and those punted to a kernel worker (io_uring_queue_async_work: a direct write
# that cannot be issued inline), ext4 fallocates, unwritten-extent conversions and fsyncs.
# System-wide (perf stat -a): run it on an otherwise idle machine.
#
#   tuning/produce-rdkafka-perf/io-events.sh 1          # partition 0 of a 1-partition topic
#   tuning/produce-rdkafka-perf/io-events.sh 1000       # a 1,000-partition topic, created first
#   tuning/produce-rdkafka-perf/io-events.sh 1000 "--set sluice.segment.io=buffered"
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$root/tuning/lib.sh"
partitions="${1:?partition count}"; settings="${2:-}"
perf_client="$("$here/build-rdkafka-performance.sh")"
(cd "$root" && cargo build --release -q --bin sluice)
sluice="$root/target/release/sluice"
data="$(mktemp -d -p "$root/target" io-events-XXXX)"; port="$(free_port)"
# shellcheck disable=SC2086
taskset -c 0 "$sluice" broker --data-dir "$data" --listen "127.0.0.1:$port" --cores 1 $settings >"$data.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data" "$data.log"' EXIT
for _ in $(seq 100); do grep -qs "sluice broker started" "$data.log" && break; sleep 0.1; done
partition_arg="-p 0"
if [ "$partitions" != 1 ]; then
    "$sluice" topic create bench --partitions "$partitions" --bootstrap "127.0.0.1:$port" >/dev/null
    partition_arg=""
fi
events=io_uring:io_uring_submit_req,io_uring:io_uring_queue_async_work,ext4:ext4_fallocate_enter
events=$events,ext4:ext4_ext_convert_to_initialized_enter,ext4:ext4_sync_file_enter
# shellcheck disable=SC2086
perf stat -a -e "$events" -o "$data.perf" -- taskset -c 1 "$perf_client" -P -t bench $partition_arg -s 1024 -c 1000000 \
    -a 1 -b "127.0.0.1:$port" -q -u 2>&1 | grep '^|' | tail -1
grep -E "io_uring|ext4|elapsed" "$data.perf"
