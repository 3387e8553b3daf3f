"""`hub demo`: the main job on embedded defaults (bundled broker, SQLite), with a printed summary.

Feeds a synthetic day of DVV change data (test identity codes only) through the DVV adapter into
the running pipeline, waits until every stream processor has handled it, and summarises.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field, replace

from hub.adapters.kafka.embedded_broker import kafka_url_for
from hub.adapters.dvv.ingest import PublisherSink, ingest, ingest_files
from hub.adapters.dvv.page import parse_page
from hub.adapters.dvv.sample import sample_files
from hub.adapters.dvv.synthetic import generate_pages
from hub import simulation
from hub.config import Settings
from hub.schemas import topics
from hub.streams.pipeline import Pipeline, build
from hub.domain.clock import utcnow
from hub.streams.runner import running, wait_for

log = logging.getLogger(__name__)


@dataclass
class DemoSummary:
    changes: int = 0
    events_published: int = 0
    newcomers: Counter = field(default_factory=Counter)
    moved: int = 0
    facts: Counter = field(default_factory=Counter)  # schema -> facts the simulated authorities published
    statuses: Counter = field(default_factory=Counter)
    referrals: Counter = field(default_factory=Counter)
    withdrawals: Counter = field(default_factory=Counter)  # cause -> referrals superseded and withdrawn (ReferralWithdrawn)
    due_updates: int = 0  # open referrals given another due date (ReferralUpdated)
    assessments: int = 0
    consents: Counter = field(default_factory=Counter)
    plan_requests: int = 0  # disclosed to another authority
    own_plan_requests: int = 0  # to the assessor itself: nothing disclosed
    held: int = 0
    released: int = 0
    revocation_notices: int = 0
    consent_required_notices: int = 0
    dead_letters: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    metrics_url: str | None = None

    def render(self) -> str:
        lines = [
            "Integration hub demo: summary",
            f"  DVV changes read:            {self.changes} ({self.events_published} population-change events published)",
            f"  newcomers detected:          {sum(self.newcomers.values())}"
            + (f"  ({', '.join(f'{m}: {n}' for m, n in sorted(self.newcomers.items()))})" if self.newcomers else ""),
            f"  newcomers re-addressed:      {self.moved}",
            f"  routing facts reported:      {sum(self.facts.values())}"
            + (f"  ({', '.join(f'{k}: {n}' for k, n in sorted(self.facts.items()))}; simulated employment authorities, Migri, wellbeing areas)"
               if self.facts else ""),
            f"  referrals:                   {sum(self.referrals.values())}",
        ]
        for authority, n in sorted(self.referrals.items()):
            lines.append(f"    {authority:<32} {n}")
        lines.append(f"  referrals withdrawn:         {sum(self.withdrawals.values())}"
                     + (f"  ({', '.join(f'{k}: {n}' for k, n in sorted(self.withdrawals.items()))})" if self.withdrawals else ""))
        lines.append(f"  due dates updated:           {self.due_updates} (the first permit learned after the referral)")
        lines.append(f"  referral statuses reported:  {sum(self.statuses.values())}"
                     + (f"  ({', '.join(f'{k}: {n}' for k, n in sorted(self.statuses.items()))})" if self.statuses else ""))
        lines.append(f"  initial assessments:         {self.assessments} (employment authorities; plans by the municipality)")
        lines.append(f"  consents recorded:           {sum(self.consents.values())}"
                     + (f"  ({', '.join(f'{k}: {n}' for k, n in sorted(self.consents.items()))})" if self.consents else ""))
        lines.append(f"  plan requests disclosed:     {self.plan_requests}"
                     + (f"  (and {self.own_plan_requests} to the assessor itself, nothing disclosed)" if self.own_plan_requests else ""))
        lines.append(f"  consent: held {self.held}, released {self.released}, consent-required notices {self.consent_required_notices}, "
                     f"revocation notices {self.revocation_notices}")
        lines.append(f"  dead letters:                {sum(self.dead_letters.values())}")
        for reason, n in sorted(self.dead_letters.items()):
            lines.append(f"    {reason:<32} {n}")
        lines.append(f"  elapsed:                     {self.seconds:.1f} s")
        if self.metrics_url:
            lines.append(f"  metrics (while running):     {self.metrics_url}")
        return "\n".join(lines)


async def _run(pipeline: Pipeline, settings: Settings, progress, changes: int, register_seen: dict, keep_running: bool = False) -> DemoSummary:
    hub = pipeline.hub
    summary = DemoSummary()
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with running(hub):
        progress(f"pipeline running; metrics at {pipeline.ops.endpoint.url}; feeding the synthetic day of DVV change data")
        sink = PublisherSink(hub.publisher)
        reports = [await ingest_files(sample_files(), sink, secret=settings.person_key_secret, progress=progress)]
        if changes:
            progress(f"generating {changes} more synthetic changes")
            pages = (parse_page(text, f"synthetic page {n + 1}") for n, text in enumerate(generate_pages(changes)))
            reports.append(await ingest(pages, sink, secret=settings.person_key_secret, progress=progress))
        for report in reports:
            summary.changes += report.changes
            summary.events_published += report.published
            summary.dead_letters.update(report.dead_letters)
        await wait_for(lambda: pipeline.newcomers.consumed >= summary.events_published, 300, "newcomer detection to take every change")
        arrived = lambda: sum(pipeline.newcomers.newcomers.values())  # noqa: E731
        produced = lambda: arrived() + pipeline.newcomers.moved  # noqa: E731
        reported = lambda: sum(register_seen["facts"].values())  # noqa: E731
        taken = lambda: sum(pipeline.facts.consumed.values())  # noqa: E731
        accepted = lambda: sum(n for (_, outcome), n in pipeline.facts.consumed.items() if outcome == "accepted")  # noqa: E731
        routed = lambda topic: sum(n for (t, _), n in pipeline.routing.consumed.items() if t == topic)  # noqa: E731
        await wait_for(lambda: register_seen["newcomers"] >= arrived(), 300, "the simulated authorities to see every newcomer")
        await wait_for(lambda: taken() >= reported(), 300, "the fact intake to take every reported fact")
        await wait_for(lambda: routed(topics.NEWCOMERS) >= produced() and routed(topics.ROUTING_FACTS) >= accepted(), 300,
                       "routing to take every newcomer and routing fact")
        progress(f"{produced()} newcomer events and {accepted()} routing facts routed "
                 f"({', '.join(f'{k}: {n}' for k, n in sorted(register_seen['facts'].items())) or 'no facts'})")
        reports = simulation.status_reports(pipeline.routing.ledger.open_referrals(), utcnow())
        for rec in reports:
            await hub.publisher.publish(topics.REFERRAL_STATUS, "ReferralStatus", rec, key=rec["referral_id"])
            summary.statuses[rec["status"]] += 1
        statuses = lambda: sum(n for (topic, _), n in pipeline.routing.consumed.items() if topic == topics.REFERRAL_STATUS)  # noqa: E731
        await wait_for(lambda: statuses() >= len(reports), 300, "the ledger to take every referral status")
        progress(f"{len(reports)} referral statuses from the simulated recipients applied")
        await _consents_and_assessments(pipeline, register_seen, summary, progress)
        summary.metrics_url = pipeline.ops.endpoint.url
        if keep_running:
            summary.seconds = loop.time() - start
            print(summary.render(), flush=True)
            progress(f"--keep-running: the pipeline stays up for scraping at {summary.metrics_url}; Ctrl-C stops it")
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                pass
    summary.newcomers = pipeline.newcomers.newcomers
    summary.moved = pipeline.newcomers.moved
    summary.facts = register_seen["facts"]
    summary.referrals = pipeline.routing.referrals
    summary.withdrawals = Counter(w["cause"] for w in pipeline.routing.ledger.withdrawals())
    summary.due_updates = len(pipeline.routing.ledger.updates())
    summary.dead_letters.update(pipeline.routing.dead_letters)
    summary.dead_letters.update(pipeline.facts.dead_letters)
    summary.seconds = loop.time() - start
    return summary


async def _consents_and_assessments(pipeline: Pipeline, register_seen: dict, summary: DemoSummary, progress) -> None:
    """Assessors complete initial assessments; consents arrive before, after, never; one is revoked."""
    import sqlalchemy as sa

    from hub.adapters.outbox import OutboxMessage as OutboxRow
    from hub.adapters.consent_store import ConsentEvent as ConsentEventRow, Disclosure as DisclosureRow, HeldItem as HeldItemRow

    hub, engine = pipeline.hub, pipeline.routing.ledger.engine
    people = register_seen["people"]
    started = [r for r in pipeline.routing.ledger.open_referrals()
               if r.purpose == "initial_assessment" and r.state == "assessment_started" and r.authority.startswith("employment_authority:")
               and r.person_key in people]
    plan = simulation.consent_plan([r.person_key for r in started])
    now = utcnow()

    def count(q) -> int:
        with engine.connect() as conn:
            return conn.execute(q).scalar_one()

    async def consent(ref, action: str, categories=simulation.ALL_CATEGORIES) -> None:
        person_id, municipality = people[ref.person_key]
        rec = simulation.consent_record(person_id, f"C-{ref.referral_id}", action, [f"municipality:{municipality}"], categories, utcnow(),
                                        ref.authority)
        await hub.publisher.publish(topics.CONSENTS, "Consent", rec, key=ref.person_key)
        summary.consents[action] += 1

    consents_in = lambda: count(sa.select(sa.func.count()).select_from(ConsentEventRow))  # noqa: E731
    for ref in started:
        if plan[ref.person_key] in ("before", "revoke"):
            await consent(ref, "granted")
        elif plan[ref.person_key] == "partial":
            await consent(ref, "granted", ["language_skills", "recommended_path"])
    await wait_for(lambda: consents_in() >= sum(summary.consents.values()), 300, "the consent registry to record the consents")
    for ref in started:
        person_id, municipality = people[ref.person_key]
        rec = simulation.assessment_record(ref, ref.person_key, person_id, f"municipality:{municipality}", now)
        await hub.publisher.publish(topics.ASSESSMENTS, "AssessmentCompleted", rec, key=ref.person_key)
    summary.assessments = len(started)
    decided = lambda: count(sa.select(sa.func.count()).select_from(DisclosureRow)) + count(  # noqa: E731
        sa.select(sa.func.count()).select_from(HeldItemRow).where(HeldItemRow.released_at.is_(None)))
    await wait_for(lambda: decided() >= len(started), 300, "every assessment to be disclosed or held")
    progress(f"{len(started)} assessments decided; late consents and a revocation follow")
    for ref in started:
        if plan[ref.person_key] == "late":
            await consent(ref, "granted")
    for ref in started:
        if plan[ref.person_key] == "revoke":
            await consent(ref, "revoked")
    await wait_for(lambda: consents_in() >= sum(summary.consents.values()), 300, "the late consents and the revocation")
    unsent = lambda: count(sa.select(sa.func.count()).select_from(OutboxRow).where(OutboxRow.sent_at.is_(None)))  # noqa: E731
    await wait_for(lambda: unsent() == 0, 300, "the outbox relay to publish everything")
    summary.plan_requests, summary.own_plan_requests = plan_request_counts(engine)
    summary.held = count(sa.select(sa.func.count()).select_from(HeldItemRow).where(HeldItemRow.released_at.is_(None)))
    summary.released = count(sa.select(sa.func.count()).select_from(HeldItemRow).where(HeldItemRow.released_at.is_not(None)))
    with engine.connect() as conn:
        kinds = Counter(hub.codec.decode(v).record["notice_type"] for (v,) in conn.execute(
            sa.select(OutboxRow.value).where(OutboxRow.schema_name == "Notice")))
    summary.consent_required_notices = kinds["consent_required"]
    summary.revocation_notices = kinds["consent_revoked"]


def plan_request_counts(engine) -> tuple[int, int]:
    """(plan requests disclosed to another authority, plan requests to the assessor itself). The
    `disclosures` table has a row for every plan request (`decided()` above counts them all); one to
    the assessor that makes the plan itself has `disclosed` false: nothing was disclosed."""
    import sqlalchemy as sa

    from hub.adapters.consent_store import Disclosure

    with engine.connect() as conn:
        rows = dict(conn.execute(sa.select(Disclosure.disclosed, sa.func.count()).group_by(Disclosure.disclosed)).all())
    return int(rows.get(True, 0)), int(rows.get(False, 0))


DEMO_DATABASE = "demo.sqlite3"


def demo_settings(settings: Settings) -> Settings:
    """On the embedded defaults (no HUB_KAFKA_URL, no HUB_DATABASE_URL) each demo starts from an empty
    database, as the embedded broker starts empty: `<HUB_DATA_DIR>/demo.sqlite3`, removed first (a
    second run would otherwise find every person of the sample day already known, and detect no
    newcomer). It stays after the run, for `hub report` and a look. With either variable set, the
    configured services are used as they are."""
    if settings.kafka_url or settings.database_url:
        return settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = (settings.data_dir / DEMO_DATABASE).resolve()
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    return replace(settings, database_url=f"sqlite:///{path}")


def run_demo(settings: Settings, progress=lambda msg: None, changes: int = 3000, keep_running: bool = False) -> DemoSummary:
    settings = demo_settings(settings)
    with kafka_url_for(settings) as url:
        progress(f"broker: {url}; database: {settings.resolved_database_url()}")
        pipeline = build(settings, url)
        register_seen = simulation.register(pipeline.hub)
        try:
            return asyncio.run(_run(pipeline, settings, progress, changes, register_seen, keep_running))
        except KeyboardInterrupt:
            progress("stopped")
            return DemoSummary()
