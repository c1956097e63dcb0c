#!/usr/bin/env bash
# Builds rdkafka_performance with every codec (zstd included) and ONE change: when the
# environment variable RDKAFKA_PERF_SEMIRANDOM=1 is set, each message's first half is refilled
# with fresh pseudo-random lowercase letters before it is produced (RD_KAFKA_MSG_F_COPY), the
# second half keeps the -m pattern. Stock rdkafka_performance repeats one pattern in every
# message, which compresses ~100x and makes codec numbers meaningless.
# Source: the librdkafka the rdkafka-sys crate vendors. Idempotent; prints the binary's path.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$root/target/tuning-build"
bin="$out/librdkafka-semirandom/examples/rdkafka_performance"
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
if ! [ -e /usr/include/zstd.h ]; then
    echo "build: installing libzstd-dev (zstd for librdkafka)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libzstd-dev >&2
fi
. "$root/tuning/lib.sh"
src="$(librdkafka_src "$root")"
mkdir -p "$out"
rm -rf "$out/librdkafka-semirandom"
cp -r "$src" "$out/librdkafka-semirandom"
cd "$out/librdkafka-semirandom"
python3 - examples/rdkafka_performance.c <<'PY'
import sys
path = sys.argv[1]
src = open(path).read()
anchor = "                        if (sendflags & RD_KAFKA_MSG_F_FREE) {\n                                /* Duplicate memory */"
assert src.count(anchor) == 1, "rdkafka_performance.c changed: patch anchor not found"
fill = """                        if (semirandom) {
                                /* sluice tuning patch: fresh semi-random payload. */
                                int i;
                                for (i = 0; i < msgsize / 2; i++) {
                                        semirandom ^= semirandom << 13;
                                        semirandom ^= semirandom >> 7;
                                        semirandom ^= semirandom << 17;
                                        sbuf[i] = (char)('a' + (semirandom % 26));
                                }
                        }
"""
src = src.replace(anchor, fill + anchor)
decl = "        int sendflags     = 0;\n"
assert src.count(decl) == 1
src = src.replace(decl, decl + "        uint64_t semirandom = getenv(\"RDKAFKA_PERF_SEMIRANDOM\") ? 0x9E3779B97F4A7C15ull : 0;\n")
start = "                cnt.t_start = cnt.t_last = rd_clock();\n\n                msgs_wait_produce_cnt = msgcnt;"
assert src.count(start) == 1
src = src.replace(start, "                if (semirandom)\n                        sendflags |= RD_KAFKA_MSG_F_COPY;\n" + start)
open(path, "w").write(src)
PY
./configure --disable-sasl --disable-gssapi --disable-curl --disable-ssl --enable-static >/dev/null
make -s -j2 -C src >/dev/null
make -s -C examples rdkafka_performance >/dev/null
echo "$bin"
