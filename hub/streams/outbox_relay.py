"""The outbox relay: publishes committed outbox rows to Kafka, oldest first, and marks each sent only
after the broker acknowledged it (acks=all). Rows left unsent by a crash go out on the next run.

Several workers may relay the same row at once (no row locking): a message may then appear twice,
with the same event id, which consumers deduplicate. One relay per process runs at a time.

What stops the relay and what does not:
- an outage (broker unreachable, timeouts, no leader, anything not known to be the row's own
  fault) stops the flush at that row; the next flush starts again from it, so nothing is reordered;
- a row that fails for a reason of its own (too large for the producer, refused by the broker as a
  record, not encodable) is parked with its reason (`hub outbox parked`, `hub outbox retry ID`,
  hub_outbox_parked_messages, alert HubOutboxParked) and the rows after it go on;
- a plan request waits until every consent record on hub.consents.v1 (its end offsets when the
  flush looks) has been applied by the consent consumers, then its consent or legal basis is checked
  again (hub.adapters.disclosure_check): no longer holding, it is withdrawn and never sent. Other
  rows do not wait for consents, so a revocation notice may pass a plan request; among plan
  requests, and among the other rows, the id order holds.

Plan requests and notices get their recipient's `sequence` from the relay, right before it sends
them (hub.adapters.outbox.number: in the record's bytes and the row), after a plan request's check:
a plan request withdrawn before it was sent takes no number, so the recipient's numbers have no gap
for it. A row numbered by an earlier attempt whose send failed, or by an earlier version when it was
committed, keeps its number; withdrawn then, it gives the number back when it is the last one given,
else passes it to the stream's next unsent row (hub.adapters.outbox.release_number).

Notices committed by an earlier version name the shared topic of that version (`LEGACY_NOTICES`),
which no recipient may read and a deployment no longer has: they go to their addressee's own
notice topic instead, so an upgrade with unsent notices neither loses them nor blocks the relay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Sequence

from mode import Service
from sqlalchemy.orm import sessionmaker

from hub.domain.clock import utcnow
from hub import metrics
from hub.adapters import outbox
from hub.adapters.disclosure_check import DisclosureCheck
from hub.adapters.kafka.errors import unsendable_reason
from hub.adapters.kafka.publisher import Publisher
from hub.consent.disclosure_check import CHANNEL_KAFKA, PLAN_REQUEST
from hub.consent.model import LegalBasis
from hub.schemas.codec import CodecError
from hub.schemas import topics
from hub.streams.app import HubApp

log = logging.getLogger(__name__)

CONSENTS_CONSUMER = "consent-consents"  # the batch consumer of hub.consents.v1 (hub.streams.consent_agents), group `<app id>.consent-consents`
LEGACY_NOTICES = "hub.notices.v1"  # before notices had per-recipient topics (outbox rows committed then)
GAUGE_EVERY = 30.0  # seconds between refreshes of hub_outbox_parked_messages when nothing was parked


def _detail(exc: BaseException) -> str:
    """The error for the operator: its class and message (a size or a topic name, not the record; an
    identity code that an encoding error might quote is scrubbed)."""
    from hub.domain import hetu

    return hetu.scrub(f"{type(exc).__name__}: {str(exc)[:300]}")


class ConsentsApplied(Service):
    """Whether every record on hub.consents.v1 up to its end offsets now has been applied by the batch
    consumer of consents (`CONSENTS_CONSUMER`) in this app's group: this worker's own (positions it
    is told of, `applied`) or another worker's (the group's committed offsets). Registered as a
    service of the app, which closes its Kafka client on stop."""

    def __init__(self, hub: HubApp, topic: str = topics.CONSENTS, *, group: str | None = None, committed_every: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.hub = hub
        self.topic = topic
        self.group = group or hub.batch_group(CONSENTS_CONSUMER)
        self.local: dict[int, int] = {}  # partition -> the next offset after the last record this worker applied
        # the group's committed offsets are asked at most once per `committed_every` seconds: the relay
        # flushes after every consent and assessment, and two broker round trips each would hold up the
        # consent consumers of a busy worker
        self.committed_every = committed_every
        self._committed: dict[int, int] = {}  # partition -> applied below this offset by the group (max of committed and start)
        self._committed_at = float("-inf")
        self._client = None

    def applied(self, partition: int, offset: int) -> None:
        """The consumer of consents is done with the record at `offset` (applied or dead-lettered)."""
        if self.local.get(partition, 0) <= offset:
            self.local[partition] = offset + 1

    async def _consumer(self):
        if self._client is None:
            from aiokafka import AIOKafkaConsumer

            from hub.adapters.kafka.security import bootstrap_servers, kafka_client_options

            # the group's committed offsets are read, never written: the client subscribes to nothing, so it never joins the group
            client = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers(self.hub.kafka_url), group_id=self.group,
                                      client_id=f"{self.hub.settings.app_id}-consents-applied", enable_auto_commit=False,
                                      **kafka_client_options(self.hub.settings))
            await client.start()
            self._client = client
        return self._client

    async def end_offsets(self) -> dict[int, int]:
        """Partition -> end offset of the consents topic now (empty when there is no such topic)."""
        from aiokafka import TopicPartition

        client = await self._consumer()
        partitions = client.partitions_for_topic(self.topic)
        if partitions is None:
            await client.topics()  # refresh the metadata once
            partitions = client.partitions_for_topic(self.topic)
        if not partitions:
            return {}
        ends = await client.end_offsets([TopicPartition(self.topic, p) for p in sorted(partitions)])
        return {tp.partition: offset for tp, offset in ends.items()}

    async def applied_up_to(self, ends: dict[int, int]) -> bool:
        """Whether every record below `ends` has been applied, here or by another worker of the group."""
        from aiokafka import TopicPartition

        behind = [p for p, end in ends.items() if end > self.local.get(p, 0)]
        if not behind:
            return True
        if any(self._committed.get(p, 0) < ends[p] for p in behind) and time.monotonic() - self._committed_at >= self.committed_every:
            self._committed_at = time.monotonic()
            client = await self._consumer()
            partitions = [TopicPartition(self.topic, p) for p in sorted(ends)]
            starts = await client.beginning_offsets(partitions)
            committed = await asyncio.gather(*(client.committed(tp) for tp in partitions))
            # nothing committed: the group starts at the earliest record (auto_offset_reset=earliest)
            self._committed = {tp.partition: max(c or 0, starts[tp]) for tp, c in zip(partitions, committed)}
        return all(self._committed.get(p, 0) >= ends[p] for p in behind)

    async def all_applied(self) -> bool:
        """Whether every record on the topic now has been applied."""
        return await self.applied_up_to(await self.end_offsets())

    async def on_stop(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.stop()


class OutboxRelay:
    """Publishes the outbox's rows through the hub's publisher (`publisher`); plan requests only once
    `consents` says the consents before them are applied."""

    def __init__(self, publisher: Publisher, sessions: sessionmaker, batch: int = 500, *, consents: ConsentsApplied,
                 legal_bases: Sequence[LegalBasis] = (), check: DisclosureCheck | None = None):
        self.publisher = publisher
        self.sessions = sessions
        self.batch = batch
        self.consents = consents
        self.check = check or DisclosureCheck(sessions, legal_bases)
        self._lock = asyncio.Lock()
        self.published = 0
        self.waiting = 0  # plan requests left for a later flush by the last one (consents not yet applied)
        self._gauge_at = 0.0
        self._parked_known = 0  # parked rows at the last count
        # (last outbox row id, end offsets of hub.consents.v1) when the relay last looked: plan requests
        # up to that row go once the consents up to those offsets are applied. Kept until then, so that
        # steady consent traffic (ends always ahead of the group's commits) cannot hold them back forever.
        self._consents_seen: tuple[int, dict[int, int]] | None = None

    async def flush(self) -> int:
        """Publish every unsent row that may go now; return how many were published. Parks a row that
        fails on its own account and goes on; stops at an outage (that row and the later ones stay
        unsent and are retried by the next flush, in order)."""
        async with self._lock:
            total, after, parked = 0, 0, False
            plans_up_to: int | None = None  # plan requests up to this row id may go; asked once per flush, at the first one
            self.waiting = 0
            try:
                while True:
                    with self.sessions() as s:
                        rows = outbox.pending(s, self.batch, after_id=after)
                        s.expunge_all()
                    if not rows:
                        return total
                    producer = self.publisher.producer_here()
                    for row in rows:
                        after = row.id
                        if row.schema_name == PLAN_REQUEST:
                            if plans_up_to is None:
                                plans_up_to = await self._consents_applied()
                            if row.id > plans_up_to:
                                self.waiting += 1
                                continue
                            if self._withdrawn(row):
                                continue
                        try:
                            if row.stream is not None and row.sequence is None and not self._number(row):
                                continue  # sent or parked by another worker meanwhile
                            topic = self.destination(row)
                            headers = self.publisher.signed(row.header_list(), row.value)
                        except (CodecError, ValueError, TypeError, KeyError) as exc:  # the row's own bytes (ValueError covers JSON and Unicode errors)
                            parked = self._park(row, outbox.ENCODING_ERROR, exc) or parked
                            continue
                        await self.publisher.ensure_exists(topic)
                        try:
                            # `hub consent` events go to an input topic: signed above
                            await producer.send_and_wait(topic, row.value, row.key, headers=headers)
                        except Exception as exc:  # noqa: BLE001 - classified: the row's own failure parks it, anything else stops the flush
                            reason = unsendable_reason(exc)
                            if reason is None:
                                raise
                            parked = self._park(row, reason, exc) or parked
                            continue
                        self._mark_sent(row.id)
                        total += 1
                        self.published += 1
            finally:
                if self.waiting:
                    log.info("outbox relay: %d plan request(s) wait until the consent consumers have applied hub.consents.v1", self.waiting)
                # while rows are parked, every flush counts again (an operator's retry lowers the gauge at once)
                if parked or self._parked_known or time.monotonic() - self._gauge_at >= GAUGE_EVERY:
                    self.refresh_gauge()

    async def _consents_applied(self) -> int:
        """The last outbox row id whose plan request may go now: every consent received when the relay
        looked (the end offsets of hub.consents.v1 then, taken after that row was committed) is applied.
        0 while they are not."""
        if self._consents_seen is None:
            with self.sessions() as s:
                last = outbox.last_id(s)
            self._consents_seen = (last, await self.consents.end_offsets())
        last, ends = self._consents_seen
        if not await self.consents.applied_up_to(ends):
            return 0
        self._consents_seen = None  # the next flush looks again, for the rows committed since
        return last

    def destination(self, row: outbox.OutboxMessage) -> str:
        """The topic to send a row to: its own, or for a notice of an earlier version its addressee's notice topic."""
        if row.topic == LEGACY_NOTICES and row.schema_name == "Notice":
            return topics.notice_topic(self.publisher.codec.decode(row.value).record["to"])
        return row.topic

    async def flush_or_log(self) -> int:
        """flush(), but a failure (broker unreachable, database down) is logged, not raised: the rows
        stay unsent and the next flush retries them. For consumers and timers, which must not crash."""
        try:
            return await self.flush()
        except Exception as exc:  # noqa: BLE001 - anything; the outbox keeps the rows
            log.warning("outbox relay: publishing failed (%s); unsent rows are retried on the next run", type(exc).__name__)
            return 0

    def refresh_gauge(self) -> None:
        """hub_outbox_parked_messages{reason} from the database (the same value in every worker)."""
        self._gauge_at = time.monotonic()
        try:
            with self.sessions() as s:
                counts = outbox.parked_counts(s)
        except Exception as exc:  # noqa: BLE001 - a gauge must not stop the relay; the next refresh retries
            log.warning("outbox relay: counting parked rows failed (%s)", type(exc).__name__)
            return
        for reason in outbox.UNSENDABLE:
            metrics.outbox_parked.labels(reason=reason).set(counts.get(reason, 0))
        self._parked_known = sum(counts.values())

    def _park(self, row: outbox.OutboxMessage, reason: str, exc: BaseException) -> bool:
        with self.sessions.begin() as s:
            done = outbox.park(s, row.id, reason, _detail(exc), utcnow())
        if done:
            log.error("outbox relay: row %d (%s to %s, event %s) cannot be sent (%s: %s); parked, the rows after it go on. "
                      "`hub outbox parked` lists it, `hub outbox retry %d` queues it again after the cause is fixed",
                      row.id, row.schema_name, row.topic, row.event_id, reason, type(exc).__name__, row.id)
        return done

    def _withdrawn(self, row: outbox.OutboxMessage) -> bool:
        """Check a plan request's consent or legal basis now; withdraw it (parked with the reason, audited) when it no longer holds."""
        try:
            plan = self.publisher.codec.decode(row.value, PLAN_REQUEST).record
        except CodecError as exc:
            self._park(row, outbox.ENCODING_ERROR, exc)
            return True
        reason = self.check.why_not(plan)
        if reason is None:
            return False
        now = utcnow()
        released = []

        def park_and_drop(s):
            # numbered by an attempt whose send failed: the number is given back or passed on (before the
            # row is parked: the lock of the recipient's sequence first, as when numbering)
            released.append(outbox.release_number(s, row.id, self._renumbered))
            outbox.park(s, row.id, reason, "not sent: the basis of the disclosure no longer holds", now)
            outbox.drop_value(s, row.id)  # never sent: the person's data need not stay

        self.check.withdraw(plan, reason, CHANNEL_KAFKA, also=park_and_drop)
        metrics.disclosures_withdrawn.labels(reason=reason, channel=CHANNEL_KAFKA).inc()
        log.info("outbox relay: plan request %s to %s withdrawn (%s)", plan.get("request_id"), plan.get("to"), reason)
        if released[-1:] == [outbox.KEPT]:
            log.warning("outbox relay: withdrawn row %d keeps number %s of %s's %s: later numbers were given and no unsent record of the "
                        "stream can take it, so the recipient sees a gap there (`hub resend` names it)", row.id, row.sequence, row.recipient, row.stream)
        return True

    def _renumbered(self, schema_name: str, value: bytes, sequence: int) -> bytes:
        """The record `value` re-encoded with `sequence` (outbox.release_number passes a number on with it)."""
        codec = self.publisher.codec
        return codec.encode(schema_name, {**codec.decode(value, schema_name).record, "sequence": sequence})

    def _number(self, row: outbox.OutboxMessage) -> bool:
        """Give a plan request or notice its recipient's next number in its stream (in the record and the
        row) right before it is sent; False when another worker sent or parked it meanwhile. A record
        that cannot be re-encoded raises (the caller parks it) and takes no number."""
        codec = self.publisher.codec

        def renumber(value: bytes, sequence: int) -> bytes:
            return codec.encode(row.schema_name, {**codec.decode(value, row.schema_name).record, "sequence": sequence})

        with self.sessions.begin() as s:
            numbered = outbox.number(s, row.id, row.recipient, row.stream, renumber)
        if numbered is None:
            return False
        row.sequence, row.value = numbered
        return True

    def _mark_sent(self, row_id: int) -> None:
        with self.sessions.begin() as s:
            outbox.mark_sent(s, [row_id], utcnow())


def parked_rows_as_dicts(rows: list[outbox.OutboxMessage]) -> list[dict]:
    """For `hub outbox parked`: what identifies each row, never its content."""
    return [
        {"id": r.id, "topic": r.topic, "schema": r.schema_name, "event_id": r.event_id, "size": len(r.value or b""),
         "reason": r.parked_reason, "retryable": r.parked_reason in outbox.UNSENDABLE, "detail": r.parked_detail,
         "parked_at": r.parked_at.isoformat() if r.parked_at else None}
        for r in rows
    ]

