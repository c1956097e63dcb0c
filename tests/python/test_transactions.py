"""confluent-kafka's transactional producer against sluice's transaction coordinator (issue #14,
the coordinator side): init/commit/abort, fencing by a second producer with the same
transactional.id, and send_offsets_to_transaction whose offsets a group sees only once the
transaction commits. (read_committed visibility of the records needs the storage side.)"""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from helpers import confluent_consumer


def txn_producer(bootstrap: str, txn_id: str) -> Producer:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
                         "message.timeout.ms": 20000, "socket.timeout.ms": 10000})
    producer.init_transactions(30)
    return producer


def produce(producer: Producer, topic: str, values: list[bytes]) -> None:
    errors = []
    for v in values:
        producer.produce(topic, value=v, partition=0,
                         on_delivery=lambda err, _msg: errors.append(err) if err else None)
    assert producer.flush(20) == 0
    assert errors == []


def committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        return consumer.committed([TopicPartition(topic, 0)], timeout=30)[0].offset
    finally:
        consumer.close()


def test_commit_abort_and_offsets_sent_to_the_transaction(bootstrap, topic, require_apis):
    require_apis("InitProducerId")
    group = f"{topic}-group"
    source = confluent_consumer(bootstrap, **{"group.id": group})
    metadata = source.consumer_group_metadata()
    producer = txn_producer(bootstrap, f"{topic}-txn")

    producer.begin_transaction()
    produce(producer, topic, [b"one", b"two"])
    producer.send_offsets_to_transaction([TopicPartition(topic, 0, 2)], metadata, 30)
    producer.commit_transaction(30)
    assert committed(bootstrap, group, topic) == 2

    producer.begin_transaction()
    produce(producer, topic, [b"three"])
    producer.send_offsets_to_transaction([TopicPartition(topic, 0, 3)], metadata, 30)
    producer.abort_transaction(30)
    assert committed(bootstrap, group, topic) == 2, "an aborted transaction's offsets never show"
    source.close()


def test_a_second_producer_fences_the_first(bootstrap, topic):
    txn_id = f"{topic}-fenced"
    zombie = txn_producer(bootstrap, txn_id)
    zombie.begin_transaction()
    produce(zombie, topic, [b"zombie"])
    successor = txn_producer(bootstrap, txn_id)
    with pytest.raises(KafkaException) as fenced:
        zombie.commit_transaction(30)
    assert fenced.value.args[0].fatal(), fenced.value
    successor.begin_transaction()
    produce(successor, topic, [b"successor"])
    successor.commit_transaction(30)
