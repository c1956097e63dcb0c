"""The consumer group protocol of KIP-848 (`group.protocol=consumer`) with confluent-kafka
(librdkafka 2.12+): the broker computes the assignment and members reconcile towards it with
ConsumerGroupHeartbeat, so a member leaving does not stop the others.

One broker for the module with a short heartbeat interval and session timeout (Kafka's
`group.consumer.*` settings) so that membership changes show within seconds."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Consumer, ConsumerGroupState, ConsumerGroupType, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import _start_broker, _stop_broker, api_versions

CONSUMER_GROUP_HEARTBEAT = 68
SESSION_TIMEOUT_MS = 3000


@pytest.fixture(scope="module")
def kip848_broker(tmp_path_factory):
    b = _start_broker(tmp_path_factory.mktemp("sluice-kip848"), [
        "--set", "group.consumer.heartbeat.interval.ms=300",
        "--set", "group.consumer.min.heartbeat.interval.ms=100",
        "--set", f"group.consumer.session.timeout.ms={SESSION_TIMEOUT_MS}",
        "--set", "group.consumer.min.session.timeout.ms=1000",
        "--set", "group.initial.rebalance.delay.ms=0",
    ])
    try:
        yield b
    finally:
        _stop_broker(b)


@pytest.fixture(scope="module")
def bootstrap(kip848_broker) -> str:
    return kip848_broker.bootstrap


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, f in admin.create_topics([NewTopic(name, partitions, 1)]).items():
        f.result(20)


def produce(bootstrap: str, topic: str, n: int, partitions: int, tag: str) -> set[tuple[int, bytes]]:
    p = Producer({"bootstrap.servers": bootstrap})
    sent = set()
    for i in range(n):
        value = f"{tag}-{i}".encode()
        p.produce(topic, value=value, partition=i % partitions)
        sent.add((i % partitions, value))
    assert p.flush(20) == 0
    return sent


class Member:
    """One consumer-protocol consumer polled on its own thread; records what it reads and its
    assign/revoke callbacks."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str, **extra):
        self.name = name
        self.events: list[tuple[str, frozenset[int]]] = []
        self.assigned: set[int] = set()
        self.seen: list[tuple[int, int, bytes]] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        config = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.protocol": "consumer",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
        config.update(extra)
        self.consumer = Consumer(config)
        self.consumer.subscribe([topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _on_assign(self, consumer, partitions):
        with self.lock:
            ps = frozenset(p.partition for p in partitions)
            self.events.append(("assign", ps))
            self.assigned |= ps

    def _on_revoke(self, consumer, partitions):
        with self.lock:
            ps = frozenset(p.partition for p in partitions)
            self.events.append(("revoke", ps))
            self.assigned -= ps

    def _run(self):
        while not self.stop.is_set():
            m = self.consumer.poll(0.1)
            if m is None:
                continue
            if m.error():
                self.errors.append(str(m.error()))
                continue
            with self.lock:
                self.seen.append((m.partition(), m.offset(), m.value()))
        try:
            self.consumer.commit(asynchronous=False)
        except Exception as e:  # noqa: BLE001 - reported by the test
            if "NO_OFFSET" not in str(e):
                self.errors.append(repr(e))
        try:
            self.consumer.close()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))

    def owned(self) -> set[int]:
        with self.lock:
            return set(self.assigned)

    def values(self) -> list[bytes]:
        with self.lock:
            return [v for _, _, v in self.seen]

    def close(self, timeout: float = 30.0):
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"{self.name} did not close"


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_consumer_group_heartbeat_is_advertised(bootstrap):
    apis = api_versions(bootstrap)
    assert apis.get(CONSUMER_GROUP_HEARTBEAT) == (0, 1)


def test_three_members_read_everything_once_and_a_leaver_does_not_disturb_the_others(bootstrap):
    topic, group, partitions = "kip848-share", "kip848-share-g", 12
    create_topic(bootstrap, topic, partitions)
    members = [Member(bootstrap, group, topic, f"m{i}") for i in range(3)]
    try:
        wait_for(lambda: sorted(len(m.owned()) for m in members) == [4, 4, 4]
                 and set().union(*(m.owned() for m in members)) == set(range(partitions)),
                 60, f"three members with four partitions each: {[m.owned() for m in members]}")
        steady = [m.owned() for m in members]
        marks = [len(m.events) for m in members]
        first = produce(bootstrap, topic, 1200, partitions, "first")
        wait_for(lambda: sum(len(m.values()) for m in members) >= len(first), 60, "the first batch read")
        got = [v for m in members for v in m.values()]
        assert len(got) == len(set(got)) == len(first), "every message read exactly once"
        assert {v for _, v in first} == set(got)
        for m, mine in zip(members, steady):
            assert {p for p, _, _ in m.seen} <= mine, f"{m.name} read only its own partitions"

        # One member leaves (committing first); the others take its partitions.
        leaver, stayers = members[2], members[:2]
        leaver.close()
        wait_for(lambda: set().union(*(m.owned() for m in stayers)) == set(range(partitions))
                 and sorted(len(m.owned()) for m in stayers) == [6, 6],
                 30, f"the leaver's partitions taken over: {[m.owned() for m in stayers]}")
        for m, mine, mark in zip(stayers, steady, marks):
            revoked = [ps for kind, ps in m.events[mark:] if kind == "revoke"]
            assert not revoked, f"{m.name} had partitions revoked: {revoked}"
            assert mine <= m.owned(), f"{m.name} kept its partitions"
        before = sum(len(m.values()) for m in stayers)
        second = produce(bootstrap, topic, 600, partitions, "second")
        wait_for(lambda: sum(len(m.values()) for m in stayers) >= before + len(second), 60, "the second batch read")
        got = [v for m in members for v in m.values()]
        assert len(got) == len(set(got)), "nothing read twice"
        assert {v for _, v in first | second} == set(got)
        for m in members:
            assert not m.errors, (m.name, m.errors)
    finally:
        for m in members:
            m.close()


def test_admin_lists_and_describes_consumer_and_classic_groups(bootstrap):
    topic, modern, classic = "kip848-admin", "kip848-admin-modern", "kip848-admin-classic"
    create_topic(bootstrap, topic, 4)
    members = [Member(bootstrap, modern, topic, f"a{i}") for i in range(2)]
    old = Member(bootstrap, classic, topic, "c", **{"group.protocol": "classic"})
    try:
        wait_for(lambda: sorted(len(m.owned()) for m in members) == [2, 2], 60, "two members with two partitions each")
        wait_for(lambda: len(old.owned()) == 4, 60, "the classic member assigned")
        admin = AdminClient({"bootstrap.servers": bootstrap})
        listed = admin.list_consumer_groups(request_timeout=10).result()
        types = {g.group_id: g.type for g in listed.valid}
        assert types.get(modern) == ConsumerGroupType.CONSUMER, types
        assert types.get(classic) == ConsumerGroupType.CLASSIC, types
        only = admin.list_consumer_groups(request_timeout=10, types={ConsumerGroupType.CONSUMER}).result()
        ids = {g.group_id for g in only.valid}
        assert modern in ids and classic not in ids, ids

        def described_stable():
            d = admin.describe_consumer_groups([modern], request_timeout=10)[modern].result()
            return d if d.state == ConsumerGroupState.STABLE else None
        wait_for(lambda: described_stable() is not None, 20, "the consumer group Stable")
        d = described_stable()
        assert d.type == ConsumerGroupType.CONSUMER
        assert d.partition_assignor == "uniform"
        assert len(d.members) == 2
        owned = sorted(tp.partition for m in d.members for tp in m.assignment.topic_partitions)
        assert owned == [0, 1, 2, 3]
        assert all(tp.topic == topic for m in d.members for tp in m.assignment.topic_partitions)
        # Members' hosts as Kafka shows them: the client's address after a slash.
        assert [m.host for m in d.members] == ["/127.0.0.1"] * 2, [m.host for m in d.members]
        c = admin.describe_consumer_groups([classic], request_timeout=10)[classic].result()
        assert c.type == ConsumerGroupType.CLASSIC
        assert len(c.members) == 1
        assert c.members[0].host == "/127.0.0.1", c.members[0].host
        for m in [*members, old]:
            m.close()
            assert not m.errors, (m.name, m.errors)
    finally:
        for m in [*members, old]:
            m.close()


KILLED_MEMBER = """
import sys, time
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "group.protocol": "consumer",
              "auto.offset.reset": "earliest"})
c.subscribe([sys.argv[3]], on_assign=lambda c, ps: print("assigned", len(ps), flush=True))
while True:
    c.poll(0.1)
"""


def test_a_killed_member_is_evicted_after_the_session_timeout(bootstrap):
    import signal
    import subprocess
    import sys
    topic, group = "kip848-kill", "kip848-kill-g"
    create_topic(bootstrap, topic, 4)
    survivor = Member(bootstrap, group, topic, "survivor")
    victim = subprocess.Popen([sys.executable, "-c", KILLED_MEMBER, bootstrap, group, topic],
                              stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(survivor.owned()) == 2, 60, f"the partitions shared: {survivor.owned()}")
        mark = len(survivor.events)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        killed = time.monotonic()
        wait_for(lambda: len(survivor.owned()) == 4, 30, "the killed member's partitions taken over")
        waited = time.monotonic() - killed
        assert waited >= SESSION_TIMEOUT_MS / 1000 - 1.0, f"taken over after {waited:.1f}s, before the session ended"
        revoked = [ps for kind, ps in survivor.events[mark:] if kind == "revoke"]
        assert not revoked, f"the survivor lost nothing: {revoked}"
        survivor.close()
        assert not survivor.errors, survivor.errors
    finally:
        if victim.poll() is None:
            victim.kill()
        survivor.close()


def test_a_regex_subscription_picks_up_a_topic_created_later(bootstrap):
    create_topic(bootstrap, "kip848rx-a", 2)
    create_topic(bootstrap, "kip848other", 2)
    m = Member(bootstrap, "kip848-rx-g", "^kip848rx-.*", "rx")
    try:
        wait_for(lambda: len(m.owned()) == 2, 60, f"the matching topic's partitions: {m.owned()}")
        create_topic(bootstrap, "kip848rx-b", 3)
        produce(bootstrap, "kip848rx-b", 30, 3, "later")
        wait_for(lambda: len([v for v in m.values() if v.startswith(b"later-")]) == 30, 60,
                 "the later topic's records read")
        assert not any(v.startswith(b"other") for v in m.values())
        m.close()
        assert not m.errors, m.errors
    finally:
        m.close()


def test_a_static_member_restarts_without_a_reassignment(bootstrap):
    topic, group = "kip848-static", "kip848-static-g"
    create_topic(bootstrap, topic, 4)
    other = Member(bootstrap, group, topic, "other")
    first = Member(bootstrap, group, topic, "static-1", **{"group.instance.id": "kip848-instance"})
    try:
        wait_for(lambda: len(other.owned()) == 2 and len(first.owned()) == 2, 60, "two partitions each")
        mine, theirs = first.owned(), other.owned()
        mark = len(other.events)
        first.close()  # a static member leaves with epoch -2: its partitions wait for it
        second = Member(bootstrap, group, topic, "static-2", **{"group.instance.id": "kip848-instance"})
        try:
            wait_for(lambda: second.owned() == mine, 30, f"the same partitions back: {second.owned()} vs {mine}")
            # Nothing moved meanwhile: the other member neither lost nor gained partitions (the
            # raw-protocol test in tests/consumer_protocol.rs checks the group epoch stayed).
            assert other.owned() == theirs
            assert other.events[mark:] == [], other.events[mark:]
            assert second.events == [("assign", frozenset(mine))], second.events
            second.close()
            assert not second.errors, second.errors
        finally:
            second.close()
    finally:
        first.close()
        other.close()
