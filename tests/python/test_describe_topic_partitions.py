"""DescribeTopicPartitions (API 75, KIP-966) through kafka-python's admin client
(`describe_topic_partitions`): every partition of the requested topics, paged by
`response_partition_limit` with `next_cursor`, and the errors for unknown topics and a cursor
outside the requested topics."""

from __future__ import annotations

from kafka.admin import KafkaAdminClient, NewTopic

UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_REQUEST = 42


def test_pages_through_partitions_with_the_cursor(bootstrap, topic):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        a, b = f"{topic}-a", f"{topic}-b"
        admin.create_topics([NewTopic(a, 5, 1), NewTopic(b, 3, 1)])

        whole = admin.describe_topic_partitions([b, a])
        assert whole["next_cursor"] is None
        assert [t["name"] for t in whole["topics"]] == [a, b], "name order"
        for t, count in zip(whole["topics"], (5, 3)):
            assert t["error_code"] == 0 and not t["is_internal"]
            assert [p["partition_index"] for p in t["partitions"]] == list(range(count))
            assert all(p["leader_id"] >= 0 and p["replica_nodes"] and p["isr_nodes"] for p in t["partitions"])
            assert t["topic_authorized_operations"] > 0

        # Pages of 3 partitions: a 0-2 | a 3-4, b 0 | b 1-2.
        pages = []
        cursor = None
        while True:
            page = admin.describe_topic_partitions([a, b], response_partition_limit=3, cursor=cursor)
            pages.append([(t["name"], [p["partition_index"] for p in t["partitions"]]) for t in page["topics"]])
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert len(pages) < 10, pages
        assert pages == [[(a, [0, 1, 2])], [(a, [3, 4]), (b, [0])], [(b, [1, 2])]], pages

        missing = admin.describe_topic_partitions([f"{topic}-missing", a])
        by_name = {t["name"]: t for t in missing["topics"]}
        assert by_name[f"{topic}-missing"]["error_code"] == UNKNOWN_TOPIC_OR_PARTITION
        assert len(by_name[a]["partitions"]) == 5

        outside = admin.describe_topic_partitions([a], cursor={"topic_name": b, "partition_index": 0})
        assert [t["error_code"] for t in outside["topics"]] == [INVALID_REQUEST]
    finally:
        admin.close()


def test_only_topics_the_principal_may_describe_are_listed_or_paged(tmp_path):
    """Phase 1, ANONYMOUS a super user: topics and ACLs (READ on the prefix orders-). Phase 2,
    ANONYMOUS no longer super: listing every topic shows only orders-* (and pages only through
    them), a requested topic it may not describe is TOPIC_AUTHORIZATION_FAILED, and the
    authorized operations are READ and DESCRIBE."""
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient,
                                       ResourcePatternType, ResourceType)
    from confluent_kafka.admin import NewTopic as CkNewTopic

    from conftest import _start_broker, _stop_broker

    authorizer = "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    broker = _start_broker(tmp_path / "data", ["--set", authorizer, "--set", "super.users=User:ANONYMOUS"])
    try:
        ck = AdminClient({"bootstrap.servers": broker.bootstrap})
        for f in ck.create_topics([CkNewTopic(t, 2, 1) for t in ("orders-a", "orders-b", "payments")]).values():
            f.result(timeout=20)
        acl = AclBinding(ResourceType.TOPIC, "orders-", ResourcePatternType.PREFIXED, "User:ANONYMOUS", "*",
                         AclOperation.READ, AclPermissionType.ALLOW)
        for f in ck.create_acls([acl]).values():
            f.result(timeout=20)
    finally:
        _stop_broker(broker)

    broker = _start_broker(tmp_path / "data", ["--set", authorizer, "--set", "super.users=User:admin"])
    try:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
        try:
            listed = admin.describe_topic_partitions([])
            assert [t["name"] for t in listed["topics"]] == ["orders-a", "orders-b"]
            read_and_describe = (1 << 3) | (1 << 8)
            assert all(t["topic_authorized_operations"] == read_and_describe for t in listed["topics"])
            # Pages of one partition never step onto "payments".
            names, cursor = [], None
            while True:
                page = admin.describe_topic_partitions([], response_partition_limit=1, cursor=cursor)
                names += [t["name"] for t in page["topics"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
                assert cursor["topic_name"] != "payments"
            assert names == ["orders-a", "orders-a", "orders-b", "orders-b"]
            asked = admin.describe_topic_partitions(["payments", "orders-a"])
            assert [(t["name"], t["error_code"]) for t in asked["topics"]] == [("orders-a", 0), ("payments", 29)]
        finally:
            admin.close()
    finally:
        _stop_broker(broker)
