"""The outbox relay: publishes committed outbox rows to Kafka, oldest first, and marks each sent only
after the broker acknowledged it (acks=all). Rows left unsent by a crash go out on the next run.

Several workers may relay the same row at once (no row locking): a message may then appear twice,
with the same event id, which consumers deduplicate. One relay per process runs at a time.

Notices committed by an earlier version name the shared topic of that version (`LEGACY_NOTICES`),
which no recipient may read and a deployment no longer has: they go to their addressee's own
notice topic instead, so an upgrade with unsent notices neither loses them nor blocks the relay.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from sqlalchemy.orm import sessionmaker

from hub.adapters import outbox
from hub.streams import topics
from hub.streams.app import HubApp

log = logging.getLogger(__name__)

LEGACY_NOTICES = "hub.notices.v1"  # before notices had per-recipient topics (outbox rows committed then)


class OutboxRelay:
    def __init__(self, hub: HubApp, sessions: sessionmaker, batch: int = 500):
        self.hub = hub
        self.sessions = sessions
        self.batch = batch
        self._lock = asyncio.Lock()
        self.published = 0

    async def flush(self) -> int:
        """Publish every unsent row; return how many were published. Stops at the first failure
        (the row stays unsent and is retried by the next flush, in order)."""
        async with self._lock:
            total = 0
            while True:
                with self.sessions() as s:
                    rows = outbox.pending(s, self.batch)
                    s.expunge_all()
                if not rows:
                    return total
                producer = await self.hub.app.maybe_start_producer()
                for row in rows:
                    topic = self.destination(row)
                    # created with the hub's admin client, not faust's declare(): after a declare the
                    # producer's metadata could know the topic without tracking it, drop it on the next
                    # refresh and wait for its leader for good (seen on the embedded broker)
                    await self.hub.ensure_exists(topic)
                    await producer.send_and_wait(topic, row.key, row.value, partition=None, timestamp=None, headers=self.hub.signed(row.header_list(), row.value))  # `hub consent` events go to an input topic
                    self._mark_sent(row.id)
                    total += 1
                    self.published += 1

    def destination(self, row: outbox.OutboxMessage) -> str:
        """The topic to send a row to: its own, or for a notice of an earlier version its addressee's notice topic."""
        if row.topic == LEGACY_NOTICES and row.schema_name == "Notice":
            return topics.notice_topic(self.hub.codec.decode(row.value).record["to"])
        return row.topic

    async def flush_or_log(self) -> int:
        """flush(), but a failure (broker unreachable, database down) is logged, not raised: the rows
        stay unsent and the next flush retries them. For agents and timers, which must not crash."""
        try:
            return await self.flush()
        except Exception as exc:  # noqa: BLE001 - anything; the outbox keeps the rows
            log.warning("outbox relay: publishing failed (%s); unsent rows are retried on the next run", type(exc).__name__)
            return 0

    def _mark_sent(self, row_id: int) -> None:
        with self.sessions.begin() as s:
            outbox.mark_sent(s, [row_id], dt.datetime.now(dt.timezone.utc))
