"""SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) with ACLs, end to end with confluent-kafka and
kafka-python: the first user comes from `sluice storage format --add-scram` (Kafka's way),
further users from AlterUserScramCredentials; PLAIN checks the password against the SCRAM
credential; wrong passwords, unknown mechanisms and requests before authentication close only
that connection; ACLs decide what an authenticated user may do."""

from __future__ import annotations

import shutil
import socket
import struct
import time
import subprocess
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient, NewTopic,
                                   ResourcePatternType, ResourceType, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion)

from conftest import _start_broker, _stop_broker, free_port, sluice_bin
from test_tls import ca_and_keystore  # noqa: F401 (a fixture: the test CA and the broker's keystore)

TIMEOUT = 20


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory):
    """A broker with a SASL_PLAINTEXT and a PLAINTEXT listener, authorization on, admin the
    super user formatted in; yields (SASL bootstrap, PLAINTEXT bootstrap, broker)."""
    data = tmp_path_factory.mktemp("sluice-sasl")
    formatted = subprocess.run([str(sluice_bin()), "storage", "format", "--data-dir", str(data),
                                "--add-scram", "SCRAM-SHA-256=[name=admin,password=admin-secret]"],
                               capture_output=True, text=True)
    assert formatted.returncode == 0, formatted.stderr
    sasl_port, plain_port = free_port(), free_port()
    broker = _start_broker(data, [
        "--set", f"listeners=SASL_PLAINTEXT://127.0.0.1:{sasl_port},PLAINTEXT://127.0.0.1:{plain_port}",
        "--set", "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "--set", "super.users=User:admin",
        "--set", "connection.failed.authentication.delay.ms=10"])
    try:
        # `--listen` (the harness's port) replaces the PLAINTEXT listener's address.
        yield f"127.0.0.1:{sasl_port}", broker.bootstrap, broker
    finally:
        _stop_broker(broker)


def sasl(bootstrap: str, mechanism: str, user: str, password: str, **extra) -> dict:
    return {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": mechanism,
            "sasl.username": user, "sasl.password": password, **extra}


def wait_admin_ready(bootstrap: str) -> AdminClient:
    """The admin user, once its formatted credential is committed (just after start)."""
    admin = AdminClient(sasl(bootstrap, "SCRAM-SHA-256", "admin", "admin-secret"))
    admin.list_topics(timeout=TIMEOUT)
    return admin


def produce(config: dict, topic: str, values: list[bytes]) -> list:
    errors = []
    producer = Producer({**config, "message.timeout.ms": 10000})
    for v in values:
        producer.produce(topic, value=v, on_delivery=lambda err, msg: errors.append(err))
    producer.flush(TIMEOUT)
    return errors


def consume(config: dict, topic: str, count: int) -> list[bytes]:
    consumer = Consumer({**config, "group.id": f"{topic}-readers", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        out = []
        for _ in range(200):
            if len(out) == count:
                break
            m = consumer.poll(0.1)
            if m is not None:
                assert m.error() is None, m.error()
                out.append(m.value())
        return out
    finally:
        consumer.close()


def test_users_authenticate_with_every_mechanism_and_acls_decide(sasl_broker):
    sasl_bootstrap, _, _ = sasl_broker
    admin = wait_admin_ready(sasl_bootstrap)
    password = uuid.uuid4().hex
    for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512):
        admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
            "alice", ScramCredentialInfo(mechanism, 4096), password.encode())])["alice"].result(timeout=TIMEOUT)
    topic, other = f"alice-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    for f in admin.create_topics([NewTopic(topic, 1, 1), NewTopic(other, 1, 1)]).values():
        f.result(timeout=TIMEOUT)
    for f in admin.create_acls([
        AclBinding(ResourceType.TOPIC, "alice-", ResourcePatternType.PREFIXED, "User:alice", "*",
                   AclOperation.ALL, AclPermissionType.ALLOW),
        AclBinding(ResourceType.GROUP, "alice-", ResourcePatternType.PREFIXED, "User:alice", "*",
                   AclOperation.READ, AclPermissionType.ALLOW),
    ], request_timeout=TIMEOUT).values():
        f.result(timeout=TIMEOUT)

    values = [f"v{i}".encode() for i in range(20)]
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"):
        config = sasl(sasl_bootstrap, mechanism, "alice", password)
        assert produce(config, topic, values) == [None] * len(values), mechanism
    config = sasl(sasl_bootstrap, "SCRAM-SHA-512", "alice", password)
    assert consume(config, topic, 3 * len(values)) == values * 3
    # No ACL on the other topic: refused.
    errors = produce(config, other, [b"x"])
    assert errors[0] is not None and errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_wrong_credentials_and_unknown_users_are_refused_and_the_broker_serves_on(sasl_broker):
    sasl_bootstrap, _, _ = sasl_broker
    wait_admin_ready(sasl_bootstrap)
    for mechanism, user, password in [("SCRAM-SHA-256", "admin", "wrong"), ("PLAIN", "admin", "wrong"),
                                      ("SCRAM-SHA-512", "nobody", "x"), ("PLAIN", "nobody", "x")]:
        errors = []
        admin = AdminClient(sasl(sasl_bootstrap, mechanism, user, password,
                                 error_cb=lambda e: errors.append(e)))
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=3)
        for _ in range(30):  # error callbacks are served by poll()
            if errors:
                break
            admin.poll(0.1)
        assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), (mechanism, user, errors)
    # kafka-python sees the same refusal.
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError as KpError
    with pytest.raises(KpError):
        KafkaAdminClient(bootstrap_servers=sasl_bootstrap, security_protocol="SASL_PLAINTEXT",
                         sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="admin",
                         sasl_plain_password="wrong", request_timeout_ms=5000, api_version_auto_timeout_ms=5000)
    # The right password still works, from kafka-python too.
    ok = KafkaAdminClient(bootstrap_servers=sasl_bootstrap, security_protocol="SASL_PLAINTEXT",
                          sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="admin",
                          sasl_plain_password="admin-secret")
    try:
        assert isinstance(ok.list_topics(), list)
    finally:
        ok.close()


def _frame(api_key: int, version: int, body: bytes = b"") -> bytes:
    client_id = b"raw"
    header = struct.pack(">hhih", api_key, version, 7, len(client_id)) + client_id
    return struct.pack(">i", len(header) + len(body)) + header + body


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(10)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_request_before_authentication_closes_only_that_connection(sasl_broker):
    sasl_bootstrap, plain_bootstrap, broker = sasl_broker
    host, port = sasl_bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(_frame(3, 1, struct.pack(">i", -1)))  # Metadata v1, all topics
        assert _closed(s)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(_frame(17, 1, struct.pack(">h", 6) + b"GSSAPI"))  # SaslHandshake v1: not enabled
        size = struct.unpack(">i", s.recv(4))[0]
        frame = s.recv(size)
        _, error_code = struct.unpack_from(">ih", frame, 0)
        assert error_code == 33  # UNSUPPORTED_SASL_MECHANISM
        assert _closed(s)
    # A SaslHandshake on the PLAINTEXT listener: ILLEGAL_SASL_STATE.
    host, port = plain_bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(_frame(17, 1, struct.pack(">h", 5) + b"PLAIN"))
        size = struct.unpack(">i", s.recv(4))[0]
        _, error_code = struct.unpack_from(">ih", s.recv(size), 0)
        assert error_code == 34
    assert broker.proc.poll() is None
    wait_admin_ready(sasl_bootstrap)


def test_a_transactional_producer_under_acls(sasl_broker):
    """WRITE on its transactional id and topics lets a SCRAM user run transactions; another
    transactional id is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED, a topic's configs
    it may not describe with TOPIC_AUTHORIZATION_FAILED."""
    from confluent_kafka.admin import ConfigResource
    sasl_bootstrap, _, _ = sasl_broker
    admin = wait_admin_ready(sasl_bootstrap)
    admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
        "bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"bob-pw")])["bob"].result(timeout=TIMEOUT)
    topic = f"bob-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=TIMEOUT)
    allow = AclPermissionType.ALLOW
    for f in admin.create_acls([
        AclBinding(ResourceType.TRANSACTIONAL_ID, "bob-tx", ResourcePatternType.LITERAL, "User:bob", "*",
                   AclOperation.WRITE, allow),
        AclBinding(ResourceType.TOPIC, "bob-", ResourcePatternType.PREFIXED, "User:bob", "*", AclOperation.WRITE,
                   allow),
        AclBinding(ResourceType.TOPIC, "bob-", ResourcePatternType.PREFIXED, "User:bob", "*", AclOperation.READ,
                   allow),
        AclBinding(ResourceType.GROUP, "bob-", ResourcePatternType.PREFIXED, "User:bob", "*", AclOperation.READ,
                   allow),
    ], request_timeout=TIMEOUT).values():
        f.result(timeout=TIMEOUT)
    bob = sasl(sasl_bootstrap, "SCRAM-SHA-256", "bob", "bob-pw")

    producer = Producer({**bob, "transactional.id": "bob-tx"})
    producer.init_transactions(TIMEOUT)
    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, value=f"t{i}".encode())
    producer.commit_transaction(TIMEOUT)
    consumer = Consumer({**bob, "group.id": f"{topic}-g", "isolation.level": "read_committed",
                         "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        got = []
        for _ in range(100):
            m = consumer.poll(0.1)
            if m is not None and m.error() is None:
                got.append(m.value())
            if len(got) == 5:
                break
        assert got == [f"t{i}".encode() for i in range(5)]
    finally:
        consumer.close()

    intruder = Producer({**bob, "transactional.id": "eve-tx"})
    with pytest.raises(KafkaException) as refused:
        intruder.init_transactions(10)
    assert refused.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED

    bob_admin = AdminClient(bob)
    configs = bob_admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "elsewhere")])
    with pytest.raises(KafkaException) as denied:
        list(configs.values())[0].result(timeout=TIMEOUT)
    assert denied.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
def test_sasl_over_tls(tmp_path, ca_and_keystore):
    """A SASL_SSL listener: TLS first, then SCRAM or PLAIN inside it; a wrong password is
    refused there too."""
    ca, keystore = ca_and_keystore
    data = tmp_path / "data"
    formatted = subprocess.run([str(sluice_bin()), "storage", "format", "--data-dir", str(data),
                                "--add-scram", "SCRAM-SHA-512=[name=admin,password=admin-secret]"],
                               capture_output=True, text=True)
    assert formatted.returncode == 0, formatted.stderr
    port = free_port()
    broker = _start_broker(data, [
        "--set", f"listeners=SASL_SSL://127.0.0.1:{port},PLAINTEXT://127.0.0.1:{free_port()}",
        "--set", "ssl.keystore.type=PEM", "--set", f"ssl.keystore.location={keystore}",
        "--set", "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "--set", "super.users=User:admin", "--set", "connection.failed.authentication.delay.ms=10"])
    try:
        def client(mechanism: str, password: str) -> dict:
            return {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SASL_SSL",
                    "ssl.ca.location": str(ca), "sasl.mechanism": mechanism, "sasl.username": "admin",
                    "sasl.password": password}
        topic = f"tls-sasl-{uuid.uuid4().hex[:8]}"
        admin = AdminClient(client("SCRAM-SHA-512", "admin-secret"))
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=TIMEOUT)
        values = [b"a", b"b", b"c"]
        assert produce(client("PLAIN", "admin-secret"), topic, values) == [None] * 3
        assert consume(client("SCRAM-SHA-512", "admin-secret"), topic, 3) == values
        wrong = AdminClient(client("SCRAM-SHA-512", "nope"))
        with pytest.raises(KafkaException):
            wrong.list_topics(timeout=3)
    finally:
        _stop_broker(broker)


def test_sessions_with_a_lifetime_are_renewed_by_reauthentication(tmp_path):
    """connections.max.reauth.ms (KIP-368): librdkafka re-authenticates on its connection before
    the session ends and keeps producing; the broker closes no connection for an expired one."""
    data = tmp_path / "data"
    subprocess.run([str(sluice_bin()), "storage", "format", "--data-dir", str(data),
                    "--add-scram", "SCRAM-SHA-256=[name=admin,password=admin-secret]"], check=True)
    port = free_port()
    broker = _start_broker(data, [
        "--set", f"listeners=SASL_PLAINTEXT://127.0.0.1:{port},PLAINTEXT://127.0.0.1:{free_port()}",
        "--set", "connections.max.reauth.ms=1500"])
    try:
        config = sasl(f"127.0.0.1:{port}", "SCRAM-SHA-256", "admin", "admin-secret")
        wait_admin_ready(f"127.0.0.1:{port}")
        topic = f"reauth-{uuid.uuid4().hex[:8]}"
        producer = Producer({**config, "message.timeout.ms": 10000})
        errors = []
        for i in range(40):  # about 4 s: two session lifetimes
            producer.produce(topic, value=str(i).encode(), on_delivery=lambda err, msg: errors.append(err))
            producer.flush(5)
            time.sleep(0.1)
        assert errors == [None] * 40
        assert not [line for line in broker.lines if "SASL session expired" in line]
        assert consume(config, topic, 40) == [str(i).encode() for i in range(40)]
    finally:
        _stop_broker(broker)


def test_sasl_handshake_v0_then_raw_tokens(sasl_broker):
    """SaslHandshake v0 (Kafka 0.10.0 clients): the SASL tokens follow as raw size-prefixed
    frames, not SaslAuthenticate requests; PLAIN then requests, or a wrong password and the
    connection closes."""
    sasl_bootstrap, _, _ = sasl_broker
    wait_admin_ready(sasl_bootstrap)
    host, port = sasl_bootstrap.rsplit(":", 1)

    def handshake_v0(s: socket.socket) -> None:
        s.sendall(_frame(17, 0, struct.pack(">h", 5) + b"PLAIN"))
        size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
        _, error_code = struct.unpack_from(">ih", s.recv(size, socket.MSG_WAITALL), 0)
        assert error_code == 0

    with socket.create_connection((host, int(port)), timeout=10) as s:
        handshake_v0(s)
        token = b"\0admin\0admin-secret"
        s.sendall(struct.pack(">i", len(token)) + token)
        assert struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0] == 0  # an empty server token
        s.sendall(_frame(3, 1, struct.pack(">i", -1)))  # Metadata v1 of every topic: served now
        size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
        assert size > 4 and len(s.recv(size, socket.MSG_WAITALL)) == size
    with socket.create_connection((host, int(port)), timeout=10) as s:
        handshake_v0(s)
        token = b"\0admin\0wrong"
        s.sendall(struct.pack(">i", len(token)) + token)
        assert _closed(s)
