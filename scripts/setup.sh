#!/usr/bin/env bash
# Idempotent set-up for building and testing sluice on a fresh Debian machine of this kind.
# Installs only what is missing; safe to run any number of times. Never touches ulimits
# (RLIMIT_MEMLOCK is fixed at 8 MiB here; sluice sizes glommio's io_memory to fit under it).
set -euo pipefail

need_cmd() { command -v "$1" >/dev/null 2>&1; }

missing_apt=()
for tool in git cc; do
    need_cmd "$tool" || missing_apt+=("$([ "$tool" = cc ] && echo gcc || echo "$tool")")
done
if ((${#missing_apt[@]})); then
    echo "setup: installing ${missing_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_apt[@]}"
fi

if ! need_cmd cargo; then
    echo "setup: cargo is required (rustup toolchain) and was not found" >&2
    exit 1
fi
echo "setup: ok ($(cargo --version))"
