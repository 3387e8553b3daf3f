"""The retention job: removes ledger, audit and consent entries older than a configured age.

What goes, each only when older than the cut-off (`now - older_than`):
- closed referrals (declined, completed, superseded) last updated before it, with their status
  history; open referrals stay whatever their age;
- newcomer facts registered before it that no remaining referral needs;
- audit rows (disclosures) and the sent outbox messages they point to; released held items;
- consents whose last event (revoked or expired) is before it, with their whole history;
- idempotency marks (processed events) older than it (replays older than Kafka's retention are
  impossible anyway).
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


def run_retention(session: Session, older_than: dt.timedelta, now: dt.datetime, run_by: str) -> dict[str, int]:
    """Remove what is older than the cut-off, in one transaction with its own audit row."""
    from hub.adapters.idempotency import ProcessedEvent
    from hub.adapters.newcomer_facts import NewcomerFactRow
    from hub.adapters.outbox import OutboxMessage
    from hub.adapters.referral_ledger import ReferralEventRow, ReferralRow
    from hub.consent.store import ConsentEvent, Disclosure, HeldItem
    from hub.routing.referrals import CLOSED

    if older_than <= dt.timedelta(0):
        raise ValueError("the retention age must be positive")
    cutoff = now - older_than
    removed: dict[str, int] = {}

    def delete(name: str, stmt) -> None:
        removed[name] = removed.get(name, 0) + (session.execute(stmt.execution_options(synchronize_session=False)).rowcount or 0)

    old_referrals = sa.select(ReferralRow.referral_id).where(ReferralRow.state.in_(sorted(CLOSED)), ReferralRow.updated_at < cutoff)
    delete("referral_events", sa.delete(ReferralEventRow).where(ReferralEventRow.referral_id.in_(old_referrals)))
    delete("referrals", sa.delete(ReferralRow).where(ReferralRow.state.in_(sorted(CLOSED)), ReferralRow.updated_at < cutoff))
    still_referred = sa.select(ReferralRow.person_key)
    delete("newcomers", sa.delete(NewcomerFactRow).where(NewcomerFactRow.registered_at < cutoff, NewcomerFactRow.person_key.not_in(still_referred)))

    delete("disclosures", sa.delete(Disclosure).where(Disclosure.disclosed_at < cutoff))
    referenced = sa.select(Disclosure.outbox_id)
    delete("outbox", sa.delete(OutboxMessage).where(OutboxMessage.sent_at.is_not(None), OutboxMessage.sent_at < cutoff,
                                                  OutboxMessage.id.not_in(referenced)))
    delete("held_items", sa.delete(HeldItem).where(HeldItem.released_at.is_not(None), HeldItem.released_at < cutoff))

    last = (sa.select(ConsentEvent.consent_id, sa.func.max(ConsentEvent.recorded_at).label("last"))
            .group_by(ConsentEvent.consent_id).subquery())
    ended = sa.select(ConsentEvent.consent_id).join(last, sa.and_(last.c.consent_id == ConsentEvent.consent_id, last.c.last == ConsentEvent.recorded_at)).where(
        ConsentEvent.action.in_(["revoked", "expired"]), ConsentEvent.recorded_at < cutoff)
    ended_ids = [cid for (cid,) in session.execute(ended)]
    if ended_ids:
        delete("consent_events", sa.delete(ConsentEvent).where(ConsentEvent.consent_id.in_(ended_ids)))
    else:
        removed["consent_events"] = 0
    delete("processed_events", sa.delete(ProcessedEvent).where(ProcessedEvent.processed_at < cutoff))
    session.add(RetentionRun(run_at=now, cutoff=cutoff, run_by=run_by, removed=json.dumps(removed, sort_keys=True)))
    return removed
