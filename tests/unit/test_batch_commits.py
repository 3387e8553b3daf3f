"""The batch consumer's commits (hub.adapters.kafka.consumer) go out in the background, in batch order.

The consumer object here is a stand-in with the three methods the commit path calls (assignment,
seek, commit), whose commits the test releases one at a time; the real broker is in
tests/integration/test_batch_consumer.py.
"""

import asyncio
from types import SimpleNamespace

from aiokafka import TopicPartition

from hub.adapters.kafka.consumer import BatchConsumer

TP = TopicPartition("hub.newcomers.v1", 0)


class SlowCommits:
    """Commits that finish only when the test says so, in the order the test chooses."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.done: list[int] = []
        self.release: dict[int, asyncio.Event] = {}

    def assignment(self):
        return {TP}

    def seek(self, tp, offset):  # pragma: no cover - no batch fails here
        raise AssertionError("no batch is read again in these tests")

    async def commit(self, offsets):
        offset = offsets[TP]
        self.started.append(offset)
        self.release.setdefault(offset, asyncio.Event())
        await self.release[offset].wait()
        self.done.append(offset)


def run(scenario) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 5))  # a commit path that blocks fails here, it does not hang


def batch(first: int, n: int) -> dict:
    return {TP: [SimpleNamespace(offset=o) for o in range(first, first + n)]}


def consumer_with(fake: SlowCommits, handled: list) -> BatchConsumer:
    async def handle(records):
        handled.append(records[0].offset)

    service = BatchConsumer(name="t", topics=[TP.topic], group_id="g", handle=handle, consumer_options={})
    service.consumer = fake
    return service


def test_the_next_batch_is_handled_while_the_previous_commit_is_in_flight_and_commits_keep_their_order():
    async def scenario():
        fake, handled = SlowCommits(), []
        service = consumer_with(fake, handled)
        for offset in (10, 20, 30):
            fake.release[offset] = asyncio.Event()
        assert await service._handle(batch(0, 10))
        assert await service._handle(batch(10, 10))  # handled although the first commit has not finished
        assert await service._handle(batch(20, 10))
        await asyncio.sleep(0)
        assert handled == [0, 10, 20]
        assert fake.started == [10]  # the second commit waits for the first: never out of order
        fake.release[30].set()
        fake.release[20].set()
        await asyncio.sleep(0.01)
        assert fake.done == []  # 20 and 30 released, but 10 has not finished
        fake.release[10].set()
        await service.committed()
        assert fake.started == [10, 20, 30] and fake.done == [10, 20, 30]

    run(scenario)


def test_finish_batch_waits_for_the_last_commit_so_a_rebalance_moves_a_committed_partition():
    async def scenario():
        fake, handled = SlowCommits(), []
        service = consumer_with(fake, handled)
        fake.release[5] = asyncio.Event()
        await service._handle(batch(0, 5))
        finishing = asyncio.ensure_future(service.finish_batch())
        await asyncio.sleep(0.01)
        assert not finishing.done()
        fake.release[5].set()
        await asyncio.wait_for(finishing, 1)
        assert fake.done == [5]

    run(scenario)


def test_a_commit_that_fails_unexpectedly_does_not_stop_the_later_ones():
    async def scenario():
        fake, handled = SlowCommits(), []
        service = consumer_with(fake, handled)
        real_commit = fake.commit

        async def first_fails(offsets):
            if offsets[TP] == 1:
                raise RuntimeError("connection reset")
            await real_commit(offsets)

        fake.commit = first_fails
        fake.release[2] = asyncio.Event()
        fake.release[2].set()
        await service._handle(batch(0, 1))
        await service._handle(batch(1, 1))
        await service.committed()
        assert fake.done == [2]

    run(scenario)
