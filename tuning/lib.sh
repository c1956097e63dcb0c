# Shell helpers the tuning scripts share; source it (`. "$root/tuning/lib.sh"`), never run it.

# A TCP port on 127.0.0.1 nothing listens on right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# CPU time (user + system, in clock ticks) process $1 has used, all threads included.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# The librdkafka source the rdkafka-sys crate vendors in the cargo registry ($1: repository root).
librdkafka_src() {
    (cd "$1" && cargo fetch -q)
    local src
    src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/rdkafka-sys-*/librdkafka 2>/dev/null | sort | tail -1)
    [ -n "$src" ] || { echo "rdkafka-sys source not found in the cargo registry" >&2; return 1; }
    echo "$src"
}

# Write requests completed so far by the device holding directory $1 (/proc/diskstats; every
# process's writes count: compare runs made back to back).
device_writes() { awk -v d="$(basename "$(df --output=source "$1" | tail -1)")" '$3 == d {print $8}' /proc/diskstats; }
