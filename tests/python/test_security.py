"""Security admin APIs with confluent-kafka's AdminClient: ACLs (CreateAcls, DescribeAcls,
DeleteAcls) with Kafka's filter semantics, SCRAM credentials (AlterUserScramCredentials,
DescribeUserScramCredentials), both kept in the cluster metadata across a restart; and
SECURITY_DISABLED from a broker without an authorizer (kafka-python)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

from conftest import _start_broker, _stop_broker

AUTHORIZER = ["--set", "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
              # No SASL listener here: every connection is User:ANONYMOUS, made a super user.
              "--set", "super.users=User:ANONYMOUS;User:admin"]
TIMEOUT = 20


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000})


def wait_all(futures: dict | list):
    items = futures.values() if isinstance(futures, dict) else futures
    return [f.result(timeout=TIMEOUT) for f in items]


def binding(name, pattern, principal, op, permission, rtype=ResourceType.TOPIC, host="*"):
    return AclBinding(rtype, name, pattern, principal, host, op, permission)


def described(client: AdminClient, acl_filter: AclBindingFilter) -> set[tuple]:
    found = client.describe_acls(acl_filter, request_timeout=TIMEOUT).result(timeout=TIMEOUT)
    return {(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type)
            for b in found}


def key(b: AclBinding) -> tuple:
    return (b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type)


ANY_FILTER = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                              AclPermissionType.ANY)


def test_acls_are_created_described_by_filter_deleted_and_survive_a_restart(tmp_path):
    broker = _start_broker(tmp_path / "data", AUTHORIZER)
    try:
        client = admin(broker.bootstrap)
        read_orders = binding("orders-", ResourcePatternType.PREFIXED, "User:alice", AclOperation.READ,
                              AclPermissionType.ALLOW)
        deny_secret = binding("secret", ResourcePatternType.LITERAL, "User:alice", AclOperation.ALL,
                              AclPermissionType.DENY)
        group_read = binding("app", ResourcePatternType.LITERAL, "User:alice", AclOperation.READ,
                             AclPermissionType.ALLOW, rtype=ResourceType.GROUP)
        cluster_create = binding("kafka-cluster", ResourcePatternType.LITERAL, "User:bob", AclOperation.CREATE,
                                 AclPermissionType.ALLOW, rtype=ResourceType.BROKER)
        acls = [read_orders, deny_secret, group_read, cluster_create]
        wait_all(client.create_acls(acls, request_timeout=TIMEOUT))
        assert described(client, ANY_FILTER) == {key(b) for b in acls}

        # MATCH: every binding that applies to topic "orders-eu" (the prefixed one).
        match_orders = AclBindingFilter(ResourceType.TOPIC, "orders-eu", ResourcePatternType.MATCH, None, None,
                                        AclOperation.ANY, AclPermissionType.ANY)
        assert described(client, match_orders) == {key(read_orders)}
        only_deny = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                                     AclPermissionType.DENY)
        assert described(client, only_deny) == {key(deny_secret)}

        # A binding Kafka refuses: a cluster resource not named kafka-cluster.
        bad = binding("my-cluster", ResourcePatternType.LITERAL, "User:bob", AclOperation.ALTER,
                      AclPermissionType.ALLOW, rtype=ResourceType.BROKER)
        with pytest.raises(KafkaException):
            wait_all(client.create_acls([bad], request_timeout=TIMEOUT))

        # Delete by filter: the group binding goes, and says so.
        group_filter = AclBindingFilter(ResourceType.GROUP, None, ResourcePatternType.ANY, None, None,
                                        AclOperation.ANY, AclPermissionType.ANY)
        deleted = wait_all(client.delete_acls([group_filter], request_timeout=TIMEOUT))
        assert [{key(b) for b in d} for d in deleted] == [{key(group_read)}]
        assert described(client, ANY_FILTER) == {key(read_orders), key(deny_secret), key(cluster_create)}
    finally:
        _stop_broker(broker)

    restarted = _start_broker(tmp_path / "data", AUTHORIZER)
    try:
        assert described(admin(restarted.bootstrap), ANY_FILTER) == {key(read_orders), key(deny_secret),
                                                                    key(cluster_create)}
    finally:
        _stop_broker(restarted)


def test_scram_credentials_are_upserted_described_and_deleted(tmp_path):
    broker = _start_broker(tmp_path / "data", AUTHORIZER)
    try:
        client = admin(broker.bootstrap)
        upserts = [
            UserScramCredentialUpsertion("alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192),
                                         b"alice-secret"),
            UserScramCredentialUpsertion("alice", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                                         b"alice-secret"),
            UserScramCredentialUpsertion("bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 4096), b"bob-pw"),
        ]
        wait_all(client.alter_user_scram_credentials(upserts, request_timeout=TIMEOUT))
        descriptions = client.describe_user_scram_credentials(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
        seen = {user: sorted((i.mechanism, i.iterations) for i in d.scram_credential_infos)
                for user, d in descriptions.items()}
        assert seen == {"alice": [(ScramMechanism.SCRAM_SHA_256, 8192), (ScramMechanism.SCRAM_SHA_512, 4096)],
                        "bob": [(ScramMechanism.SCRAM_SHA_256, 4096)]}

        # Too few iterations: UNACCEPTABLE_CREDENTIAL; deleting what is not there: RESOURCE_NOT_FOUND.
        weak = UserScramCredentialUpsertion("carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 100), b"x")
        missing = UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_512)
        results = client.alter_user_scram_credentials([weak, missing], request_timeout=TIMEOUT)
        for user in ("carol", "bob"):
            with pytest.raises(KafkaException):
                results[user].result(timeout=TIMEOUT)

        wait_all(client.alter_user_scram_credentials(
            [UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_256)], request_timeout=TIMEOUT))
        left = client.describe_user_scram_credentials(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
        assert sorted(left) == ["alice"]
    finally:
        _stop_broker(broker)


def test_acl_apis_answer_security_disabled_without_an_authorizer(bootstrap):
    # kafka-python raises the DescribeAcls error code (librdkafka 2.x drops it and returns []).
    from kafka.admin import (ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                             KafkaAdminClient, ResourcePatternFilter)
    from kafka.admin import ResourceType as KpResourceType
    from kafka.errors import SecurityDisabledError
    client = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        everything = ACLFilter(principal=None, host="*", operation=ACLOperation.ANY,
                               permission_type=ACLPermissionType.ANY,
                               resource_pattern=ResourcePatternFilter(KpResourceType.ANY, None,
                                                                      ACLResourcePatternType.ANY))
        with pytest.raises(SecurityDisabledError):
            client.describe_acls(everything)
    finally:
        client.close()


def test_acls_decide_what_an_anonymous_client_may_see_read_and_write(tmp_path):
    """Phase 1, ANONYMOUS a super user: topics, records and ACLs for User:ANONYMOUS (READ on the
    prefix orders-, a DENY on orders-secret, READ on group g1). Phase 2, after a restart where
    ANONYMOUS is not a super user: the ACLs decide."""
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
    from confluent_kafka.admin import NewTopic

    topics = ["orders-a", "orders-secret", "payments"]
    broker = _start_broker(tmp_path / "data", AUTHORIZER)
    try:
        client = admin(broker.bootstrap)
        wait_all(client.create_topics([NewTopic(t, 1, 1) for t in topics], request_timeout=TIMEOUT))
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        for t in topics:
            producer.produce(t, key=b"k", value=t.encode())
        assert producer.flush(TIMEOUT) == 0
        wait_all(client.create_acls([
            binding("orders-", ResourcePatternType.PREFIXED, "User:ANONYMOUS", AclOperation.READ,
                    AclPermissionType.ALLOW),
            binding("orders-secret", ResourcePatternType.LITERAL, "User:ANONYMOUS", AclOperation.READ,
                    AclPermissionType.DENY),
            binding("g1", ResourcePatternType.LITERAL, "User:ANONYMOUS", AclOperation.READ, AclPermissionType.ALLOW,
                    rtype=ResourceType.GROUP),
        ], request_timeout=TIMEOUT))
    finally:
        _stop_broker(broker)

    broker = _start_broker(tmp_path / "data", ["--set", AUTHORIZER[1], "--set", "super.users=User:admin"])
    try:
        # Metadata of every topic lists only what ANONYMOUS may describe (READ implies DESCRIBE;
        # a DENY of READ does not deny DESCRIBE).
        listed = admin(broker.bootstrap).list_topics(timeout=TIMEOUT).topics
        assert sorted(listed) == ["orders-a", "orders-secret"]

        def consume(topic: str):
            consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g1",
                                 "enable.auto.commit": False, "auto.offset.reset": "earliest"})
            try:
                consumer.assign([TopicPartition(topic, 0, 0)])
                deadline = 100
                while deadline:
                    deadline -= 1
                    m = consumer.poll(0.2)
                    if m is None:
                        continue
                    if m.error():
                        return m.error().code()
                    consumer.commit(message=m, asynchronous=False)
                    return m.value()
                return None
            finally:
                consumer.close()

        assert consume("orders-a") == b"orders-a"
        assert consume("orders-secret") == KafkaError.TOPIC_AUTHORIZATION_FAILED
        # A topic it may not describe: Metadata naming it answers TOPIC_AUTHORIZATION_FAILED.
        payments = admin(broker.bootstrap).list_topics(topic="payments", timeout=TIMEOUT).topics["payments"]
        assert payments.error is not None and payments.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

        # Metadata v1 auto-creates what it names; without CREATE it must not (raw request:
        # the clients here use v4+).
        assert _metadata_v1_error(broker.bootstrap, "brand-new") == KafkaError.TOPIC_AUTHORIZATION_FAILED
        assert "brand-new" not in admin(broker.bootstrap).list_topics(timeout=TIMEOUT).topics

        # No WRITE anywhere: produce is refused per topic.
        producer = Producer({"bootstrap.servers": broker.bootstrap, "message.timeout.ms": 10000})
        errors = []
        producer.produce("orders-a", value=b"x", on_delivery=lambda err, msg: errors.append(err))
        producer.flush(TIMEOUT)
        assert errors and errors[0] is not None
        assert errors[0].code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED)
        # And the ACL admin APIs need ALTER on the cluster.
        with pytest.raises(KafkaException):
            wait_all(admin(broker.bootstrap).create_acls([binding("x", ResourcePatternType.LITERAL, "User:ANONYMOUS",
                                                                  AclOperation.ALL, AclPermissionType.ALLOW)],
                                                         request_timeout=TIMEOUT))
    finally:
        _stop_broker(broker)


def _metadata_v1_error(bootstrap: str, topic: str) -> int:
    """The error code of `topic` in a raw Metadata v1 answer."""
    import socket
    import struct
    host, port = bootstrap.rsplit(":", 1)
    name = topic.encode()
    body = struct.pack(">i", 1) + struct.pack(">h", len(name)) + name
    header = struct.pack(">hhih", 3, 1, 9, 3) + b"raw"
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">i", len(header) + len(body)) + header + body)
        size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
        frame = s.recv(size, socket.MSG_WAITALL)
    pos = 4  # correlation id
    (brokers,) = struct.unpack_from(">i", frame, pos)
    pos += 4
    for _ in range(brokers):
        pos += 4  # node id
        (n,) = struct.unpack_from(">h", frame, pos)
        pos += 2 + n + 4  # host, port
        (n,) = struct.unpack_from(">h", frame, pos)
        pos += 2 + max(n, 0)  # rack (nullable)
    pos += 4  # controller id
    (topics,) = struct.unpack_from(">i", frame, pos)
    assert topics == 1
    (error_code,) = struct.unpack_from(">h", frame, pos + 4)
    return error_code
