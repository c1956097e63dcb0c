#!/usr/bin/env bash
# TLS against PLAINTEXT (issue #18's benchmark): one sluice broker (--cores 1) with a PLAINTEXT
# and an SSL listener at once; `sluice bench` (--cores 1, the same machine) produces at full
# speed (1 partition, 1 KiB values, acks=1, 10 s after 2 s of warm-up) to one listener, then
# consumes the same amount back from it (fetch: sendfile on PLAINTEXT, read and encrypt on
# TLS). The variants alternate round by round (PLAINTEXT, SSL, PLAINTEXT, ...), each on a fresh
# data dir; the broker's CPU seconds over each run give CPU seconds per GB. Medians of ROUNDS
# (default 3). The CA and server certificate are made with the openssl CLI (ECDSA P-256).
# Usage: tuning/tls/run.sh   (builds the release binary; writes tuning/results/tls)
#        BIN=path ROUNDS=n DURATION_SECS=s tuning/tls/run.sh   (a quick check with another binary)
set -eu
[ -n "${TRACE:-}" ] && set -x
root=$(cd "$(dirname "$0")/../.." && pwd)
. "$root/tuning/lib.sh"
out="$root/tuning/results/tls"
mkdir -p "$out"
[ -n "${BIN:-}" ] || (cd "$root" && cargo build --release --bins -q)
bin="${BIN:-$root/target/release/sluice}"
work=$(mktemp -d)
broker_pid=""
stop_broker() { [ -n "$broker_pid" ] && { kill -TERM "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; }; broker_pid=""; }
trap 'stop_broker; rm -rf "$work"' EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$work/ca.key" \
  -out "$work/ca.pem" -days 2 -subj "/CN=sluice tuning CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$work/server.key" \
  -out "$work/server.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$work/ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -out "$work/server.pem" -days 2 -extfile "$work/ext" 2>/dev/null
cat "$work/server.pem" "$work/server.key" > "$work/keystore.pem"

start_broker() {
  rm -rf "$work/data"
  plain_port=$(free_port); ssl_port=$(free_port)
  "$bin" broker --data-dir "$work/data" --cores 1 \
    --set "listeners=PLAINTEXT://127.0.0.1:$plain_port,SSL://127.0.0.1:$ssl_port" \
    --set "ssl.keystore.location=$work/keystore.pem" > "$work/broker.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 1 200); do grep -q "sluice broker started" "$work/broker.log" && return 0; sleep 0.05; done
  echo "the broker did not start" >&2; cat "$work/broker.log" >&2; exit 1
}

: > "$out/results.jsonl"
for round in $(seq 1 "${ROUNDS:-3}"); do
  for variant in plaintext ssl; do
    start_broker
    if [ "$variant" = ssl ]; then
      client=(--bootstrap "127.0.0.1:$ssl_port" --security-protocol ssl --ssl-ca "$work/ca.pem")
    else
      client=(--bootstrap "127.0.0.1:$plain_port")
    fi
    before=$(cpu_ticks "$broker_pid")
    "$bin" bench produce "${client[@]}" --cores 1 --partitions 1 --message-size 1024 --acks 1 \
      --warmup-secs 2 --duration-secs "${DURATION_SECS:-10}" --quiet --json "$work/produce.json" > /dev/null
    middle=$(cpu_ticks "$broker_pid")
    topic=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["topics"][0])' "$work/produce.json")
    messages=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["acked_msgs"])' "$work/produce.json")
    "$bin" bench consume "${client[@]}" --cores 1 --topic "$topic" --count "$messages" --start earliest --message-size 1024 --quiet \
      --json "$work/consume.json" > /dev/null
    after=$(cpu_ticks "$broker_pid")
    stop_broker
    python3 - "$variant" "$round" "$work/produce.json" "$work/consume.json" "$before" "$middle" "$after" \
      "$(getconf CLK_TCK)" "$(cut -d' ' -f1 /proc/loadavg)" >> "$out/results.jsonl" <<'PY'
import json, sys
variant, rnd = sys.argv[1], int(sys.argv[2])
p, c = json.load(open(sys.argv[3])), json.load(open(sys.argv[4]))
before, middle, after, tck = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
produce_cpu_s, consume_cpu_s = (middle - before) / tck, (after - middle) / tck
# Wire-level bytes are close to value bytes at 1 KiB values; value bytes are what both count.
print(json.dumps({
    "variant": variant, "round": rnd, "ok": p["errors_total"] == 0 and c["errors_total"] == 0,
    "produce_mb_per_sec": p["produce"]["mb_per_sec"],
    "produce_broker_cpu_s_per_gb": round(produce_cpu_s / (p["acked_bytes"] / 1e9), 2),
    "ack_p50_ms": p["ack_latency_ms"]["p50_ms"], "ack_p99_ms": p["ack_latency_ms"]["p99_ms"],
    "consume_mb_per_sec": c["consume"]["mb_per_sec"],
    "consume_broker_cpu_s_per_gb": round(consume_cpu_s / (c["consumed_bytes"] / 1e9), 2),
    "load": float(sys.argv[9]),
}))
PY
  done
done

python3 - "$out/results.jsonl" > "$out/summary.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = ["produce_mb_per_sec", "produce_broker_cpu_s_per_gb", "ack_p50_ms", "ack_p99_ms",
        "consume_mb_per_sec", "consume_broker_cpu_s_per_gb", "load"]
print("| variant | rounds | " + " | ".join(keys) + " |")
print("|---|---:|" + "---:|" * len(keys))
med = {}
for v in ["plaintext", "ssl"]:
    rs = [r for r in rows if r["variant"] == v]
    med[v] = {k: statistics.median(r[k] for r in rs) for k in keys}
    ok = all(r["ok"] for r in rs)
    print(f"| {v} | {len(rs)}{'' if ok else ' (errors)'} | " + " | ".join(f"{med[v][k]:.2f}" for k in keys) + " |")
print()
for k in ["produce_mb_per_sec", "consume_mb_per_sec"]:
    print(f"- SSL/PLAINTEXT {k}: {med['ssl'][k] / med['plaintext'][k]:.2f}")
for k in ["produce_broker_cpu_s_per_gb", "consume_broker_cpu_s_per_gb"]:
    print(f"- SSL/PLAINTEXT {k}: {med['ssl'][k] / med['plaintext'][k]:.2f}")
PY
cat "$out/summary.md"
