#!/usr/bin/env bash
# Builds librdkafka's rdkafka_performance (the neutral Kafka load generator) from the source the
# rdkafka-sys crate vendors in the cargo registry. Idempotent; prints the binary's path.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$root/target/tuning-build"
bin="$out/librdkafka/examples/rdkafka_performance"
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
# The crate source is in the registry: rdkafka is a dev-dependency of sluice-e2e.
. "$root/tuning/lib.sh"
src="$(librdkafka_src "$root")"
mkdir -p "$out"
rm -rf "$out/librdkafka"
cp -r "$src" "$out/librdkafka"
cd "$out/librdkafka"
./configure --disable-sasl --disable-gssapi --disable-curl --disable-ssl --disable-zstd --enable-static >/dev/null
make -s -j2 -C src >/dev/null
make -s -C examples rdkafka_performance >/dev/null
echo "$bin"
