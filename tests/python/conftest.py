"""Shared harness for the non-Rust client tests: start the real `sluice` binary on a free port
with a temp data dir, wait for its readiness line, hand out the bootstrap address, stop it with
SIGTERM (a clean stop exits 0). Plus helpers: unique topic names, the broker's advertised APIs
(ApiVersions over a raw socket) to skip tests of APIs that have not landed yet.

The binary is `$SLUICE_BIN`, else `target/debug/sluice` (scripts/test.sh builds it first).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers import NUM_PARTITIONS

ROOT = Path(__file__).resolve().parents[2]
READY = "sluice broker started"
CORES = 2

# Kafka API keys the tests may need to check for.
API_KEYS = {
    "Produce": 0,
    "Fetch": 1,
    "ListOffsets": 2,
    "Metadata": 3,
    "ApiVersions": 18,
    "CreateTopics": 19,
    "DeleteTopics": 20,
    "DeleteRecords": 21,
    "InitProducerId": 22,
    "DescribeConfigs": 32,
    "AlterConfigs": 33,
    "CreatePartitions": 37,
    "IncrementalAlterConfigs": 44,
}


def sluice_bin() -> Path:
    path = Path(os.environ.get("SLUICE_BIN") or ROOT / "target" / "debug" / "sluice")
    if not path.is_file():
        pytest.exit(f"sluice binary not found at {path}: build it (cargo build --bins) or set SLUICE_BIN", 2)
    return path


_next_port = [os.getpid() * 7919 % 12_000]


def free_port() -> int:
    """A free port below the kernel's ephemeral range (32768-60999): a port from bind(0) may be
    handed to a client socket as its source port a moment later, and the broker then refuses
    to start ("address in use")."""
    for _ in range(12_000):
        port = 20_000 + _next_port[0] % 12_000
        _next_port[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Broker:
    proc: subprocess.Popen
    port: int
    data_dir: Path
    lines: list = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.lines[-n:])


def _start_broker(data_dir: Path, extra: list[str]) -> Broker:
    """Starts the broker and waits for its readiness line (retrying on another port if it
    exits before that, e.g. because the free port was taken meanwhile)."""
    last_error = ""
    for _attempt in range(3):
        port = free_port()
        cmd = [str(sluice_bin()), "broker", "--data-dir", str(data_dir),
               "--listen", f"127.0.0.1:{port}", "--cores", str(CORES), *extra]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, errors="replace",
                                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")})
        broker = Broker(proc, port, data_dir)
        ready = threading.Event()

        def drain(broker=broker, ready=ready):
            # Keeps reading stderr for the broker's whole life so it never blocks on a full pipe.
            for line in broker.proc.stderr:
                broker.lines.append(line.rstrip("\n"))
                if READY in line:
                    ready.set()
            ready.set()  # EOF: the broker exited

        broker.reader = threading.Thread(target=drain, daemon=True)
        broker.reader.start()
        deadline = time.monotonic() + 60
        while not ready.wait(0.05):
            if time.monotonic() > deadline:
                break
        if ready.is_set() and proc.poll() is None and any(READY in l for l in broker.lines):
            return broker
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        last_error = f"exit code {proc.returncode}; log:\n{broker.log_tail()}"
    pytest.fail(f"sluice broker did not start ({' '.join(cmd)}): {last_error}")


def _stop_broker(broker: Broker) -> None:
    """SIGTERM and wait: a clean stop exits 0. Kills it if it does not stop in time.
    With SLUICE_PYTEST_BROKER_LOG=FILE the broker's whole log is written there."""
    try:
        _stop_and_check(broker)
    finally:
        if os.environ.get("SLUICE_PYTEST_BROKER_LOG"):
            Path(os.environ["SLUICE_PYTEST_BROKER_LOG"]).write_text("\n".join(broker.lines) + "\n")


def _stop_and_check(broker: Broker) -> None:
    if broker.proc.poll() is not None:
        pytest.fail(f"sluice broker died during the tests (exit code {broker.proc.returncode}):\n"
                    f"{broker.log_tail()}")
    broker.proc.send_signal(signal.SIGTERM)
    try:
        code = broker.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        broker.proc.kill()
        broker.proc.wait()
        pytest.fail(f"sluice broker did not stop within 30 s of SIGTERM:\n{broker.log_tail()}")
    broker.reader.join(timeout=10)  # the last lines of its log
    assert code == 0, f"clean shutdown exits 0, got {code}:\n{broker.log_tail()}"
    panics = [line for line in broker.lines if "panicked" in line]
    assert not panics, "the broker logged a panic:\n" + "\n".join(panics)


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """One broker for the whole session (tests use unique topic names): 2 shards, auto-created
    topics with 3 partitions."""
    b = _start_broker(tmp_path_factory.mktemp("sluice-data"), ["--set", f"num.partitions={NUM_PARTITIONS}",
                                                                    "--set", "group.initial.rebalance.delay.ms=100"])
    try:
        yield b
    finally:
        _stop_broker(b)


@pytest.fixture(scope="session")
def bootstrap(broker) -> str:
    return broker.bootstrap


@pytest.fixture
def topic(request) -> str:
    """A fresh topic name for this test (auto-created on first use)."""
    name = re.sub(r"[^a-zA-Z0-9._-]", "-", request.node.name)[:120]
    return f"{name}-{uuid.uuid4().hex[:8]}"


def api_versions(bootstrap: str) -> dict[int, tuple[int, int]]:
    """ApiVersions v0 over a raw socket: {api_key: (min_version, max_version)}."""
    host, port = bootstrap.rsplit(":", 1)
    client_id = b"sluice-pytest"
    body = struct.pack(">hhih", API_KEYS["ApiVersions"], 0, 1, len(client_id)) + client_id
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _read_exact(s, 4))[0]
        frame = _read_exact(s, size)
    correlation_id, error_code, count = struct.unpack_from(">ihi", frame, 0)
    assert correlation_id == 1 and error_code == 0, (correlation_id, error_code)
    apis = {}
    for i in range(count):
        key, lo, hi = struct.unpack_from(">hhh", frame, 10 + 6 * i)
        apis[key] = (lo, hi)
    return apis


def _read_exact(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return buf


@pytest.fixture(scope="session")
def advertised(bootstrap) -> dict[int, tuple[int, int]]:
    return api_versions(bootstrap)


@pytest.fixture
def require_apis(advertised):
    """`require_apis("CreateTopics", ...)` skips the test, naming what is missing, unless the
    broker advertises every one of those APIs in ApiVersions. Used for APIs still being built,
    so their tests start running by themselves the day they land."""

    def check(*names: str) -> None:
        missing = [f"{n} (key {API_KEYS[n]})" for n in names if API_KEYS[n] not in advertised]
        if missing:
            pytest.skip(f"broker does not advertise {', '.join(missing)} in ApiVersions yet")

    return check


# --- guard against a run that passes without testing anything -------------------------------
# pytest already exits 5 when nothing is collected; with SLUICE_PYTEST_MIN_PASSED=N (set by
# scripts/test.sh) the run also fails if fewer than N tests passed (e.g. everything skipped).

_passed = 0


def pytest_runtest_logreport(report):
    global _passed
    if report.when == "call" and report.passed:
        _passed += 1


def pytest_sessionfinish(session, exitstatus):
    global _too_few
    floor = int(os.environ.get("SLUICE_PYTEST_MIN_PASSED", "0") or 0)
    if exitstatus == 0 and _passed < floor:
        _too_few = f"only {_passed} tests passed, fewer than SLUICE_PYTEST_MIN_PASSED={floor}"
        session.exitstatus = 1


_too_few = None


def pytest_terminal_summary(terminalreporter):
    if _too_few:
        terminalreporter.write_line(f"FAILED: {_too_few}", red=True, bold=True)
