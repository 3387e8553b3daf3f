"""The retention job: removes ledger, audit and consent entries older than a configured age.

What goes, each only when older than the cut-off (`now - older_than`):
- closed referrals (declined, completed, superseded) last updated before it, with their status
  history and withdrawal; open referrals stay whatever their age;
- newcomer facts registered before it that no remaining referral needs; likewise routing's
  per-person circumstances (`person_circumstances`) last updated before it, among them facts whose
  person's newcomer never came;
- audit rows (disclosures) and the sent outbox messages they point to; released held items;
- consents (a person's consent id) whose last event (revoked or expired) is before it, with their
  whole history; each leaves a tombstone (person key, consent id, how and when it ended; no
  identity code), so that a replay of its events, while Kafka may still hold them, cannot bring it
  back (hub.services.consent refuses them);
- idempotency marks (processed events) older than it *and* older than the replay horizon;
- tombstones not seen for longer than the replay horizon.
The replay horizon is how long a topic can still deliver an event to the hub again: the event
logs' retention (`retention.ms`, hub.deploy.topics: 30 days) by default. Set it to the longest
retention of the topics the hub consumes; a shorter one lets a replay apply old events again.
Every run is itself recorded in `retention_runs` (when, cut-off, who, how many rows per table;
never a person). Run it with `hub retention --older-than DAYS` (e.g. from a daily cron job).
"""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from hub.adapters.database import Base


class RetentionRun(Base):
    __tablename__ = "retention_runs"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    run_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    cutoff: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    run_by: Mapped[str] = mapped_column(sa.String(128))
    removed: Mapped[str] = mapped_column(sa.Text)  # JSON {table: rows}


def default_replay_horizon() -> dt.timedelta:
    from hub.deploy.topics import EVENT_LOG_RETENTION_DAYS

    return dt.timedelta(days=EVENT_LOG_RETENTION_DAYS)


def run_retention(session: Session, older_than: dt.timedelta, now: dt.datetime, run_by: str, *,
                  replay_horizon: dt.timedelta | None = None) -> dict[str, int]:
    """Remove what is older than the cut-off, in one transaction with its own audit row; an ended
    consent leaves a tombstone under its person key."""
    from hub.adapters.circumstances_store import PersonCircumstancesRow
    from hub.adapters.dead_letter_store import DeadLetterRow
    from hub.adapters.idempotency import ProcessedEvent
    from hub.adapters.newcomer_facts import NewcomerFactRow
    from hub.adapters.outbox import OutboxMessage
    from hub.adapters.referral_ledger import ReferralEventRow, ReferralRow, ReferralUpdateRow, ReferralWithdrawalRow
    from hub.adapters.webhooks import purge_delivered
    from hub.adapters.consent_store import ConsentEvent, ConsentTombstone, Disclosure, HeldItem
    from hub.routing.referrals import CLOSED

    if older_than <= dt.timedelta(0):
        raise ValueError("the retention age must be positive")
    replay_horizon = default_replay_horizon() if replay_horizon is None else replay_horizon
    if replay_horizon < dt.timedelta(0):
        raise ValueError("the replay horizon must not be negative")
    cutoff = now - older_than
    replayable_since = now - replay_horizon
    removed: dict[str, int] = {}

    def delete(name: str, stmt) -> None:
        removed[name] = removed.get(name, 0) + (session.execute(stmt.execution_options(synchronize_session=False)).rowcount or 0)

    old_referrals = sa.select(ReferralRow.referral_id).where(ReferralRow.state.in_(sorted(CLOSED)), ReferralRow.updated_at < cutoff)
    delete("referral_events", sa.delete(ReferralEventRow).where(ReferralEventRow.referral_id.in_(old_referrals)))
    delete("referral_withdrawals", sa.delete(ReferralWithdrawalRow).where(ReferralWithdrawalRow.referral_id.in_(old_referrals)))
    delete("referral_updates", sa.delete(ReferralUpdateRow).where(ReferralUpdateRow.referral_id.in_(old_referrals)))
    delete("referrals", sa.delete(ReferralRow).where(ReferralRow.state.in_(sorted(CLOSED)), ReferralRow.updated_at < cutoff))
    still_referred = sa.select(ReferralRow.person_key)
    delete("newcomers", sa.delete(NewcomerFactRow).where(NewcomerFactRow.registered_at < cutoff, NewcomerFactRow.person_key.not_in(still_referred)))
    delete("person_circumstances", sa.delete(PersonCircumstancesRow).where(PersonCircumstancesRow.updated_at < cutoff,
                                                                           PersonCircumstancesRow.person_key.not_in(still_referred)))

    delete("disclosures", sa.delete(Disclosure).where(Disclosure.disclosed_at < cutoff))
    referenced = sa.select(Disclosure.outbox_id)
    delete("outbox", sa.delete(OutboxMessage).where(OutboxMessage.sent_at.is_not(None), OutboxMessage.sent_at < cutoff,
                                                  OutboxMessage.id.not_in(referenced)))
    delete("held_items", sa.delete(HeldItem).where(HeldItem.released_at.is_not(None), HeldItem.released_at < cutoff))

    # a consent is a person's consent id: ids are free text, another person's consent may share one
    last = (sa.select(ConsentEvent.person_key, ConsentEvent.consent_id, sa.func.max(ConsentEvent.recorded_at).label("last"))
            .group_by(ConsentEvent.person_key, ConsentEvent.consent_id).subquery())
    ended = (sa.select(ConsentEvent.person_key, ConsentEvent.consent_id, ConsentEvent.action, ConsentEvent.recorded_at)
             .join(last, sa.and_(last.c.person_key == ConsentEvent.person_key, last.c.consent_id == ConsentEvent.consent_id,
                                 last.c.last == ConsentEvent.recorded_at))
             .where(ConsentEvent.action.in_(["revoked", "expired"]), ConsentEvent.recorded_at < cutoff))
    removed["consent_events"] = 0
    removed["consent_tombstones_added"] = 0
    for key, consent_id, action, ended_at in session.execute(ended).all():
        if session.get(ConsentTombstone, (key, consent_id)) is None:
            session.add(ConsentTombstone(person_key=key, consent_id=consent_id, ended_action=action, ended_at=ended_at, last_seen_at=now))
            session.flush()
            removed["consent_tombstones_added"] += 1
        delete("consent_events", sa.delete(ConsentEvent).where(ConsentEvent.person_key == key, ConsentEvent.consent_id == consent_id))
    delete("consent_tombstones", sa.delete(ConsentTombstone).where(ConsentTombstone.last_seen_at < replayable_since))
    delete("processed_events", sa.delete(ProcessedEvent).where(ProcessedEvent.processed_at < min(cutoff, replayable_since)))
    delete("dead_letters", sa.delete(DeadLetterRow).where(DeadLetterRow.created_at < cutoff))  # originals too large for the topic
    # delivered webhook deliveries and their attempts; within the replay horizon their rows stay (bodies removed), so a
    # re-read topic queues nothing twice
    removed.update(purge_delivered(session, cutoff, replayable_since))
    session.add(RetentionRun(run_at=now, cutoff=cutoff, run_by=run_by, removed=json.dumps(removed, sort_keys=True)))
    return removed
