#!/usr/bin/env bash
# A/B of two broker builds under the same client, interleaved round by round (brokers on CPU 0,
# the client on CPU 1): e2e latency at 50k msg/s of 1 KiB over 4 partitions, then produce
# throughput. Usage: NEW=target/release/sluice OLD=/path/to/baseline/sluice tuning/e2e-ab/run.sh
set -u
NEW=${NEW:?path to the new sluice binary}; OLD=${OLD:?path to the baseline sluice binary}
work=$(mktemp -d); cd "$work"
for round in 1 2 3; do
  for v in old new; do
    bin=$OLD; [ $v = new ] && bin=$NEW
    off=0; [ $v = new ] && off=1; port=$((19400 + round*10 + off))
    rm -rf d-$v-$round
    taskset -c 0 $bin broker --data-dir d-$v-$round --listen 127.0.0.1:$port --cores 1 > b-$v-$round.log 2>&1 &
    bp=$!
    for i in $(seq 100); do grep -q "broker started" b-$v-$round.log && break; sleep 0.05; done
    taskset -c 1 $NEW bench e2e --bootstrap 127.0.0.1:$port --cores 1 --partitions 4 --message-size 1024 --rate 50000 --duration-secs 8 --warmup-secs 2 --acks 1 --json e2e-$v-$round.json > /dev/null 2>&1
    taskset -c 1 $NEW bench produce --bootstrap 127.0.0.1:$port --cores 1 --partitions 4 --message-size 1024 --count 600000 --acks 1 --json prod-$v-$round.json > /dev/null 2>&1
    kill -TERM $bp; wait $bp
  done
done
python3 - <<'PY'
import json,statistics
for v in ['old','new']:
    e=[json.load(open(f'e2e-{v}-{r}.json')) for r in (1,2,3)]
    p=[json.load(open(f'prod-{v}-{r}.json')) for r in (1,2,3)]
    print(v, 'e2e p50', [x['e2e_latency_ms']['p50_ms'] for x in e], 'p99', [x['e2e_latency_ms']['p99_ms'] for x in e],
          'ok', all(x['ok'] for x in e),
          '| produce MB/s', [round(x['produce']['mb_per_sec']) for x in p], 'median', round(statistics.median(x['produce']['mb_per_sec'] for x in p)))
PY
uptime
