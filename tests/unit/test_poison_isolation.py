"""Telling a record's own failure from an outage, and narrowing a failed batch down to its record
(hub.adapters.kafka.consumer). Pure: a stand-in consumer with the methods the batch
path calls, handlers that fail as the database or the producer would."""

import asyncio
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from aiokafka import TopicPartition
from aiokafka.errors import InvalidTopicError, KafkaConnectionError, KafkaTimeoutError, MessageSizeTooLargeError, NotLeaderForPartitionError
from kafka import errors as kafka_python

from hub.adapters.kafka.consumer import BatchConsumer
from hub.adapters.kafka.errors import Outage, failure_reason, is_outage, retry_pause
from hub.adapters.sealing import SealingError

TP = TopicPartition("hub.newcomers.v1", 0)


def db_error(kind):
    return kind("INSERT ...", {"person_key": "x"}, Exception("value too long"))


@pytest.mark.parametrize("exc", [db_error(sa.exc.OperationalError), db_error(sa.exc.InterfaceError), db_error(sa.exc.ProgrammingError),
                                 KafkaConnectionError(), KafkaTimeoutError(), NotLeaderForPartitionError(), TimeoutError(),
                                 ConnectionRefusedError(), Outage(), SealingError("a key was removed"),
                                 kafka_python.KafkaConnectionError(), kafka_python.KafkaTimeoutError()])
def test_outages(exc):
    assert is_outage(exc)


@pytest.mark.parametrize("exc, reason", [(db_error(sa.exc.DataError), "unprocessable"), (db_error(sa.exc.IntegrityError), "unprocessable"),
                                         (MessageSizeTooLargeError(), "unprocessable"), (kafka_python.MessageSizeTooLargeError(), "unprocessable"),
                                         (InvalidTopicError(), "unprocessable"),
                                         (ValueError("bad"), "unprocessable"), (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogate"), "unprocessable"),
                                         (KeyError("a bug"), "internal_error"), (AttributeError("a bug"), "internal_error")])
def test_a_records_own_failures(exc, reason):
    assert not is_outage(exc) and failure_reason(exc) == reason


def test_the_pause_after_failures_in_a_row_doubles_up_to_thirty_seconds():
    assert [retry_pause(n) for n in (1, 2, 3, 4, 5, 6, 7)] == [1, 2, 4, 8, 16, 30, 30]


class Consumer:
    def __init__(self):
        self.sought, self.commits = [], []

    def assignment(self):
        return {TP}

    def seek(self, tp, offset):
        self.sought.append(offset)

    async def commit(self, offsets):
        self.commits.append(offsets[TP])


def fetched(n):
    return {TP: [SimpleNamespace(topic=TP.topic, partition=0, offset=o) for o in range(n)]}


def service_with(handle, isolated):
    async def isolate(record, exc):
        isolated.append((record.offset, type(exc).__name__))

    service = BatchConsumer(name="t", topics=[TP.topic], group_id="g", handle=handle, consumer_options={}, isolate=isolate)
    service.consumer = Consumer()
    return service


def test_a_batch_failing_for_its_records_is_narrowed_down_to_them_and_the_others_are_handled_in_order():
    poison = {3, 4, 11}
    handled, isolated, tries = [], [], []

    async def handle(records):
        tries.append(len(records))
        if poison & {r.offset for r in records}:
            raise db_error(sa.exc.DataError)  # the database refuses the transaction: nothing of it is kept
        handled.extend(r.offset for r in records)

    async def scenario():
        service = service_with(handle, isolated)
        assert await service._handle(fetched(16))
        await service.committed()
        return service

    service = asyncio.run(scenario())
    assert isolated == [(3, "DataError"), (4, "DataError"), (11, "DataError")]
    assert handled == [o for o in range(16) if o not in poison]  # every other record, in offset order, once
    assert service.consumer.commits == [16] and service.consumer.sought == [] and service.retries == 0


def test_one_poison_record_in_a_full_batch_costs_a_few_tries_not_one_per_record():
    handled, isolated, tries = [], [], []

    async def handle(records):
        tries.append(len(records))
        if any(r.offset == 137 for r in records):
            raise MessageSizeTooLargeError()
        handled.extend(r.offset for r in records)

    async def scenario():
        service = service_with(handle, isolated)
        assert await service._handle(fetched(200))

    asyncio.run(scenario())
    assert isolated == [(137, "MessageSizeTooLargeError")] and handled == [o for o in range(200) if o != 137]
    assert len(tries) <= 1 + 2 * 8  # halves: two tries per level, log2(200) < 8 levels


def test_an_outage_reads_the_whole_batch_again_and_dead_letters_nothing():
    isolated = []

    async def handle(records):
        raise db_error(sa.exc.OperationalError)

    async def scenario():
        service = service_with(handle, isolated)
        assert not await service._handle(fetched(5))
        assert not await service._handle(fetched(5))
        return service

    service = asyncio.run(scenario())
    assert isolated == [] and service.consumer.sought == [0, 0] and service.consumer.commits == [] and service.failures == 2


def test_an_outage_met_while_narrowing_reads_the_whole_batch_again():
    isolated, calls = [], []

    async def handle(records):
        calls.append(len(records))
        if len(calls) == 1:
            raise db_error(sa.exc.DataError)
        raise KafkaConnectionError()  # the broker went away meanwhile

    async def scenario():
        service = service_with(handle, isolated)
        assert not await service._handle(fetched(4))
        return service

    service = asyncio.run(scenario())
    assert isolated == [] and service.consumer.sought == [0] and service.consumer.commits == []
