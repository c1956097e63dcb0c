#!/usr/bin/env bash
# Tail-latency spot check of one broker build: RUNS fresh brokers (one shard, CPU 0), each with an
# e2e run of 50k msg/s of 1 KiB over 4 partitions, acks=1 (client on CPU 1); prints "p99 max" (ms)
# per run. Used to bisect occasional p99 stalls (see the issue #14 note of 2026-12-04).
# Usage: tuning/e2e-ab/spikes.sh path/to/sluice RUNS   (the client is target/release/sluice)
BIN=$(realpath "$1"); N=$2
client="$(cd "$(dirname "$0")/../.." && pwd)/target/release/sluice"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; cd "$work"
for r in $(seq 1 $N); do
  rm -rf spk-data; port=$((19900 + RANDOM % 90))
  taskset -c 0 "$BIN" broker --data-dir spk-data --listen 127.0.0.1:$port --cores 1 > spk.log 2>&1 & bp=$!
  sleep 0.5
  taskset -c 1 "$client" bench e2e --bootstrap 127.0.0.1:$port --cores 1 --partitions 4 --message-size 1024 --rate 50000 --duration-secs 8 --warmup-secs 2 --acks 1 --quiet --json spk.json > /dev/null 2>&1
  kill -TERM $bp; wait $bp
  python3 -c "import json; d=json.load(open('spk.json')); print(round(d['e2e_latency_ms']['p99_ms'],1), round(d['e2e_latency_ms']['max_ms'],1))" | tr '\n' ' '
done
echo
