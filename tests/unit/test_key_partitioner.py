"""The hub's producer partitioner: Kafka's default placement by key, without hashing when a topic
has one partition (hub.adapters.kafka.producer.KeyPartitioner)."""

from unittest import mock

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, strategies as st

from hub.adapters.kafka.producer import KeyPartitioner


@given(key=st.binary(min_size=1, max_size=64), partitions=st.integers(min_value=1, max_value=64))
def test_places_every_key_where_kafkas_default_partitioner_does(key, partitions):
    every = list(range(partitions))
    assert KeyPartitioner()(key, every, every) == DefaultPartitioner()(key, every, every)


def test_one_partition_is_the_answer_without_hashing():
    with mock.patch("aiokafka.partitioner.murmur2", side_effect=AssertionError("hashed")):
        assert KeyPartitioner()(b"person-key", [0], [0]) == 0
