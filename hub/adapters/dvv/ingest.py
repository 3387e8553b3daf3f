"""The DVV ingest use case: for each page, map -> validate -> publish good PopulationChange events
to hub.population-changes.v1 (keyed by the pseudonymous person key) and bad changes to
hub.dead-letters.v1 (original bytes, location, reason, message); wait for the broker's
acknowledgements; only then advance the record-key cursor.

A change (muutos) is the unit: if any of its events fails validation, the whole muutos goes to
dead letters once, with every problem in the message, and none of its events is published.

Sinks: `KafkaSink` (aiokafka, standalone), `PublisherSink` (through the publisher of a running HubApp),
`DryRunSink` (JSON lines on stdout, problems on stderr). All have the same three coroutines.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import AsyncIterable, Callable, Iterable, Protocol, TextIO

from hub import metrics
from hub.adapters.dvv.mapping import NAMESPACE, MalformedMuutos, map_muutos
from hub.adapters.dvv.page import MalformedPage, Page
from hub.domain.clock import DEFAULT_CLOCK_SKEW, utcnow
from hub.domain.population_change import validate
from hub.domain import hetu
from hub.routing.reference import municipality_codes
from hub.schemas import bounds
from hub.schemas.codec import Codec, default_codec
from hub.schemas import topics
from hub.adapters.kafka.aiokafka_metadata import TopicTrackingProducer
from hub.adapters.kafka.publisher import Publisher
from hub.adapters.kafka.security import bootstrap_servers  # noqa: F401 - also imported from here by benches and tests

log = logging.getLogger(__name__)

METRIC_TOPIC = "dvv.muutokset"  # the `topic` label of events_consumed for the DVV feed


@dataclass(frozen=True)
class BadRecord:
    """A change or page that goes to dead letters."""

    original: bytes
    location: str
    reason: str
    message: str

    @property
    def event_id(self) -> str:
        digest = hashlib.sha256(self.original).hexdigest()
        return str(uuid.uuid5(NAMESPACE, f"dead-letter|{self.location}|{self.reason}|{digest}"))


@dataclass
class IngestReport:
    """What one ingest run did (for the CLI, the demo summary and tests)."""

    pages: int = 0
    changes: int = 0
    events: Counter = field(default_factory=Counter)  # by change_type
    dead_letters: Counter = field(default_factory=Counter)  # by reason
    unknown_groups: Counter = field(default_factory=Counter)  # by group name
    cursor: int | None = None  # the record key stored after the last acknowledged page

    @property
    def published(self) -> int:
        return sum(self.events.values())

    @property
    def ok(self) -> bool:
        return not self.dead_letters


@dataclass(frozen=True)
class PageOutcome:
    """The pure result of one page: events to publish (with their Kafka keys) and bad records."""

    events: tuple[tuple[dict, str], ...]
    bad: tuple[BadRecord, ...]
    unknown_groups: tuple[str, ...]
    changes: int


def kafka_key(record: dict, secret: str) -> str:
    """The pseudonymous person key. An identity correction is keyed by the *replaced* code's key,
    so it lands in the partition of the person's earlier events, after them."""
    person = record.get("previous_person_id") if record.get("change_type") == "identity_correction" else record["person_id"]
    return hetu.person_key(person, secret)


def process_page(page: Page, *, secret: str, now: dt.datetime, municipalities: frozenset[str] | None = None,
                 skew: dt.timedelta = DEFAULT_CLOCK_SKEW) -> PageOutcome:
    """Map and validate every change of a page (municipality codes: the shipped reference data's by
    default). Pure (no I/O)."""
    known = municipality_codes() if municipalities is None else municipalities
    events: list[tuple[dict, str]] = []
    bad: list[BadRecord] = []
    unknown: list[str] = []
    batch_ref = str(page.next_key)
    for change in page.changes:
        location = page.location(change)
        original = change.text.encode("utf-8")
        try:
            if len(original) > bounds.MAX_DVV_CHANGE_BYTES:
                raise bounds.OutOfBounds("muutos", f"the change of {len(original)} bytes is over the bound of {bounds.MAX_DVV_CHANGE_BYTES} bytes")
            mapped = map_muutos(change.obj, secret=secret, recorded_at=now, batch_ref=batch_ref)
            for event in mapped.events:  # the bounds the worker's decoder checks too: refused here, with DVV's original record
                bounds.check_record("PopulationChange", event)
            problems = [p for event in mapped.events for p in validate(event, now=now, municipalities=known, skew=skew)]
        except bounds.OutOfBounds as exc:
            bad.append(BadRecord(original, location, exc.reason, f"{exc.message}; check the change with DVV"))
            continue
        except MalformedMuutos as exc:
            bad.append(BadRecord(original, location, exc.reason, f"{hetu.scrub(str(exc))}; fix the record or ask DVV"))
            continue
        except Exception as exc:  # a shape nobody foresaw must not stop the feed; values stay out of the message
            bad.append(BadRecord(original, location, "malformed_record", f"the change could not be mapped ({type(exc).__name__}); report it with its location"))
            continue
        unknown.extend(mapped.unknown_groups)
        if problems:
            unique = list(dict.fromkeys(p.message for p in problems))
            bad.append(BadRecord(original, location, problems[0].reason, hetu.scrub("; ".join(unique))))
            continue
        events.extend((event, kafka_key(event, secret)) for event in mapped.events)
    return PageOutcome(tuple(events), tuple(bad), tuple(unknown), len(page.changes))


def bad_page(error: MalformedPage) -> BadRecord:
    raw = error.raw if isinstance(error.raw, bytes) else error.raw.encode("utf-8")
    return BadRecord(raw, error.location, error.reason, f"{error.message}; the page was not processed")


# -- sinks ----------------------------------------------------------------------------------------
class Sink(Protocol):
    async def change(self, record: dict, key: str) -> None: ...

    async def dead_letter(self, bad: BadRecord) -> None: ...

    async def flush(self) -> None:
        """Return only when the broker acknowledged everything sent; raise when it did not."""


def _dead_letter_record(bad: BadRecord) -> dict:
    from hub.schemas.envelope import dead_letter_record

    return dead_letter_record(bad.original, bad.reason, bad.message, location=bad.location, event_id=bad.event_id, source="hub:ingest-dvv")


class KafkaSink:
    """Publishes with aiokafka (acks=all, no idempotence: the embedded broker refuses it)."""

    def __init__(
        self,
        kafka_url: str,
        codec: Codec | None = None,
        partitions: int = 1,
        changes_topic: str = topics.POPULATION_CHANGES,
        dead_letters_topic: str = topics.DEAD_LETTERS,
        security: dict | None = None,
        signer: tuple[str, bytes] | None = None,
    ):
        self.kafka_url = kafka_url
        self.security = security or {}  # TLS/SASL: hub.adapters.kafka.security.kafka_client_options
        self.signer = signer  # (publisher id, key): sign each record when HUB_PUBLISHERS gives the hub a key
        self.codec = codec or default_codec()
        self.partitions = partitions
        self.changes_topic, self.dead_letters_topic = changes_topic, dead_letters_topic
        self.producer = None
        self._pending: list[asyncio.Future] = []

    async def start(self) -> "KafkaSink":
        from aiokafka import AIOKafkaProducer
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        servers = bootstrap_servers(self.kafka_url)
        admin = AIOKafkaAdminClient(bootstrap_servers=servers, **self.security)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            wanted = [NewTopic(t, self.partitions, 1) for t in (self.changes_topic, self.dead_letters_topic) if t not in existing]
            if wanted:
                await admin.create_topics(wanted)
        except Exception as exc:  # the broker may auto-create topics, or they exist already
            log.debug("creating topics: %s", type(exc).__name__)
        finally:
            await admin.close()
        self.producer = TopicTrackingProducer(AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=False, linger_ms=5,
                                                               **self.security))
        await self.producer.start()
        return self

    async def stop(self) -> None:
        if self.producer is not None:
            producer, self.producer = self.producer, None
            await producer.stop()

    async def __aenter__(self) -> "KafkaSink":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def _send(self, topic: str, name: str, record: dict, key: bytes | None) -> None:
        from hub.schemas.envelope import cloudevent_headers

        value = self.codec.encode(name, record)
        headers = cloudevent_headers(name, record)
        if self.signer is not None:
            from hub.domain.publishers import sign_headers

            headers = sign_headers(headers, value, *self.signer)
        self._pending.append(await self.producer.send(topic, value=value, key=key, headers=headers))

    async def change(self, record: dict, key: str) -> None:
        await self._send(self.changes_topic, "PopulationChange", record, key.encode())

    async def dead_letter(self, bad: BadRecord) -> None:
        await self._send(self.dead_letters_topic, "DeadLetter", _dead_letter_record(bad), None)

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        await self.producer.flush()
        await asyncio.gather(*pending)  # raises the first delivery error


class PublisherSink:
    """Publishes through the publisher of a running HubApp (`HubApp.publisher`: the demo and the worker)."""

    def __init__(self, publisher: Publisher):
        self.publisher = publisher
        self._pending: list = []

    async def change(self, record: dict, key: str) -> None:
        self._pending.append(await self.publisher.publish(topics.POPULATION_CHANGES, "PopulationChange", record, key=key))

    async def dead_letter(self, bad: BadRecord) -> None:
        self._pending.append(await self.publisher.publish(topics.DEAD_LETTERS, "DeadLetter", _dead_letter_record(bad)))

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)  # each resolves on the broker's acknowledgement


class DryRunSink:
    """Prints PopulationChange events as JSON lines; bad records as `location: reason: message`."""

    def __init__(self, out: TextIO, err: TextIO, codec: Codec | None = None):
        self.out, self.err = out, err
        self.codec = codec or default_codec()

    async def change(self, record: dict, key: str) -> None:
        self.out.write(self.codec.to_json("PopulationChange", record) + "\n")

    async def dead_letter(self, bad: BadRecord) -> None:
        self.err.write(f"{bad.location}: {bad.reason}: {bad.message}\n")

    async def flush(self) -> None:
        self.out.flush()


# -- the use case ---------------------------------------------------------------------------------
class CursorLike(Protocol):
    def save(self, record_key: int) -> None: ...


async def _aiter(pages: Iterable | AsyncIterable):
    if hasattr(pages, "__aiter__"):
        async for page in pages:
            yield page
        return
    it = iter(pages)
    done = object()
    while True:  # a sync source (the HTTP client) runs in a thread so the event loop stays free
        page = await asyncio.to_thread(next, it, done)
        if page is done:
            return
        yield page


def _count_unknown(label: str) -> None:
    """`label` is already safe (mapping.group_label)."""
    metrics.unknown_data_groups.labels(group=label).inc()
    log.info("unknown DVV data group %s: kept as change_type 'other'", label)


async def ingest(
    pages: Iterable[Page | MalformedPage] | AsyncIterable[Page | MalformedPage],
    sink: Sink,
    *,
    secret: str,
    cursor: CursorLike | None = None,
    now: Callable[[], dt.datetime] | None = None,
    municipalities: frozenset[str] | None = None,
    progress: Callable[[str], None] | None = None,
    skew: dt.timedelta = DEFAULT_CLOCK_SKEW,
    process: Callable[..., PageOutcome] = process_page,
    unit: str = "changes",
    metric_topic: str = METRIC_TOPIC,
) -> IngestReport:
    """Ingest pages into `sink`; after each page is acknowledged, store its next key in `cursor`.

    A `MalformedPage` item (from a file) is dead-lettered whole; one raised by the source (the
    HTTP client) propagates, leaving the cursor at the last good page. A failing `sink.flush()`
    propagates too: the cursor is then not advanced and a rerun re-reads the page.

    `process` maps and validates one page (default `process_page`, the change data; a register
    snapshot: hub.adapters.dvv.snapshot.snapshot_processor); `unit` names its items in the progress lines.
    """
    clock = now or (lambda: utcnow())
    report = IngestReport()
    started = time.monotonic()
    async for item in _aiter(pages):
        if isinstance(item, MalformedPage):
            bad = bad_page(item)
            await sink.dead_letter(bad)
            await sink.flush()
            _count_bad(report, bad, metric_topic)
            continue
        outcome = process(item, secret=secret, now=clock(), municipalities=municipalities, skew=skew)
        for record, key in outcome.events:
            await sink.change(record, key)
        for bad in outcome.bad:
            await sink.dead_letter(bad)
        await sink.flush()  # the broker has everything of this page: only now move the cursor
        if cursor is not None:
            cursor.save(item.next_key)
            report.cursor = item.next_key
            metrics.dvv_last_page.labels(feed=getattr(cursor, "feed", "muutokset")).set_to_current_time()  # HubDvvFeedStale watches it
        report.pages += 1
        report.changes += outcome.changes
        metrics.dvv_pages.inc()
        metrics.dvv_changes.inc(outcome.changes)
        for record, _ in outcome.events:
            report.events[record["change_type"]] += 1
        for bad in outcome.bad:
            _count_bad(report, bad, metric_topic)
        for group in outcome.unknown_groups:
            report.unknown_groups[group] += 1
            _count_unknown(group)
        good = outcome.changes - len(outcome.bad)
        metrics.events_consumed.labels(topic=metric_topic, outcome="ok").inc(good)
        if progress is not None:
            rate = report.changes / max(time.monotonic() - started, 1e-6)
            progress(f"page {report.pages}: {outcome.changes} {unit}, {len(outcome.events)} events, {len(outcome.bad)} dead letters "
                     f"(total {report.changes} {unit}, {report.published} events, {rate:.0f} {unit}/s)")
    return report


def _count_bad(report: IngestReport, bad: BadRecord, metric_topic: str = METRIC_TOPIC) -> None:
    report.dead_letters[bad.reason] += 1
    metrics.dead_letters.labels(reason=bad.reason).inc()
    metrics.events_consumed.labels(topic=metric_topic, outcome="dead_letter").inc()
    log.warning("dead letter: reason=%s location=%s: %s", bad.reason, bad.location, bad.message)


def read_files(paths: Iterable[str], parse=None) -> Iterable[Page | MalformedPage]:
    """The pages of saved responses, file by file (one response or JSON lines): `muutokset` pages,
    or what `parse` makes of each response (`hub.adapters.dvv.page.read_pages`)."""
    from hub.adapters.dvv.page import read_pages

    for path in paths:
        with open(path, "rb") as f:
            data = f.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            yield MalformedPage(f"{path}:{line}", "the file is not UTF-8 text", raw=data)
            continue
        yield from read_pages(text, str(path), parse=parse)


async def ingest_files(paths: Iterable, sink: Sink, *, secret: str, **kwargs) -> IngestReport:
    """Ingest saved responses (the demo's synthetic day, `hub ingest dvv FILE...`).

    The demo: `await ingest_files(sample_files(), PublisherSink(hub.publisher), secret=settings.person_key_secret)`
    inside `running(hub)` (sample_files from hub.adapters.dvv.sample).
    """
    return await ingest(list(read_files([str(p) for p in paths])), sink, secret=secret, **kwargs)
