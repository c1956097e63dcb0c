#!/usr/bin/env bash
# Idempotent set-up for building and testing sluice on a fresh Debian machine of this kind.
# Installs only what is missing; safe to run any number of times. Never touches ulimits
# (RLIMIT_MEMLOCK is fixed at 8 MiB here; sluice sizes glommio's io_memory to fit under it).
#
# Besides the Rust toolchain's needs, the non-Rust client tests (tests/python) need:
#   - kcat (Debian's package, linking Debian's librdkafka),
#   - a Python venv at .venv with the exact versions in tests/python/requirements.txt
#     (confluent-kafka ships manylinux wheels with librdkafka inside). pip runs only when the
#     venv is missing or broken, or when the requirements file changed (a stamp file holds its
#     hash).
set -euo pipefail
cd "$(dirname "$0")/.."

need_cmd() { command -v "$1" >/dev/null 2>&1; }

missing_apt=()
need_cmd git || missing_apt+=(git)
need_cmd cc || missing_apt+=(gcc)
need_cmd kcat || missing_apt+=(kcat)
# The e2e tests' rdkafka is built with OpenSSL (the SSL listener tests): headers and pkg-config.
need_cmd pkg-config || missing_apt+=(pkg-config)
[ -e /usr/include/openssl/ssl.h ] || missing_apt+=(libssl-dev)
if ! need_cmd python3; then
    missing_apt+=(python3 python3-venv)
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    # Debian's own python3 keeps venv/ensurepip in a separate package.
    missing_apt+=(python3-venv)
fi
if ((${#missing_apt[@]})); then
    echo "setup: installing ${missing_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_apt[@]}"
fi

if ! need_cmd cargo; then
    echo "setup: cargo is required (rustup toolchain) and was not found" >&2
    exit 1
fi

# The test script's lint gates need clippy and rustfmt; add them to the toolchain only when
# cargo does not find them.
missing_components=()
cargo clippy --version >/dev/null 2>&1 || missing_components+=(clippy)
cargo fmt --version >/dev/null 2>&1 || missing_components+=(rustfmt)
if ((${#missing_components[@]})); then
    if ! need_cmd rustup; then
        echo "setup: ${missing_components[*]} missing and rustup not found to install them" >&2
        exit 1
    fi
    echo "setup: installing rustup components ${missing_components[*]}"
    rustup component add "${missing_components[@]}"
fi

venv=.venv
requirements=tests/python/requirements.txt
stamp="$venv/.sluice-requirements.sha256"
# A venv whose interpreter no longer runs (its base Python moved or was removed) is rebuilt.
if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "setup: creating Python venv $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
fi
want="$(cat "$requirements" <("$venv/bin/python" -VV) | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "setup: installing Python test requirements ($requirements)"
    rm -f "$stamp"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input -r "$requirements"
    echo "$want" >"$stamp"
fi
echo "setup: ok ($(cargo --version); $("$venv/bin/python" -V); kcat with $(kcat -V 2>&1 | grep -o 'librdkafka [0-9.]*' || true))"
