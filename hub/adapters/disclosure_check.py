"""The send-time consent check over the hub database: `DisclosureCheck.why_not` reads the person's
consent history as stored now and applies the pure rule (`hub.consent.disclosure_check.why_not_send`);
a plan request withheld by it is recorded (`disclosure_withdrawals`) for the audit, next to its
disclosure row.
"""

from __future__ import annotations

import datetime as dt
from typing import Callable, Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from hub.adapters import consent_store as store
from hub.adapters.database import Base
from hub.consent.disclosure_check import why_not_send
from hub.consent.model import LegalBasis
from hub.domain.clock import iso_utc, utcnow


class DisclosureWithdrawal(Base):
    """A plan request that was decided but not sent (relay) or not delivered (webhook) because its
    consent or legal basis no longer held at that moment."""

    __tablename__ = "disclosure_withdrawals"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    recipient: Mapped[str] = mapped_column(sa.String(64))
    reason: Mapped[str] = mapped_column(sa.String(64))
    channel: Mapped[str] = mapped_column(sa.String(16))  # kafka (the relay) or webhook (a delivery)
    withdrawn_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))


def record_withdrawal(session: Session, plan: dict, reason: str, channel: str, now: dt.datetime) -> None:
    session.add(DisclosureWithdrawal(request_id=str(plan.get("request_id") or plan.get("event_id")), recipient=str(plan.get("to") or ""),
                                     reason=reason, channel=channel, withdrawn_at=now))
    session.flush()


def withdrawals(session: Session, request_ids: Iterable[str]) -> dict[str, list[dict]]:
    """request id -> its withdrawals (reason, channel, time), for the audit."""
    ids = list(request_ids)
    if not ids:
        return {}
    out: dict[str, list[dict]] = {}
    q = sa.select(DisclosureWithdrawal).where(DisclosureWithdrawal.request_id.in_(ids)).order_by(DisclosureWithdrawal.id)
    for w in session.scalars(q):
        at = iso_utc(w.withdrawn_at)
        out.setdefault(w.request_id, []).append({"reason": w.reason, "channel": w.channel, "withdrawn_at": at})
    return out


class DisclosureCheck:
    """`why_not(plan)` over the consent store: the person's consent history as stored now."""

    def __init__(self, sessions: sessionmaker, legal_bases: Sequence[LegalBasis] = (), clock: Callable[[], dt.datetime] = utcnow):
        self.sessions = sessions
        self.legal_bases = tuple(legal_bases)
        self.clock = clock

    def why_not(self, plan: dict) -> str | None:
        if not plan.get("person_id") or not plan.get("person_key"):
            return "no_basis"
        # the history is found by the plan request's person key (checked against its identity code when
        # the assessment was handled); `why_not_send` still keeps only records of its identity code
        with self.sessions() as s:
            history = store.history(s, plan["person_key"])
        return why_not_send(plan, history, self.legal_bases, self.clock())

    def withdraw(self, plan: dict, reason: str, channel: str, also: Callable[[Session], object] | None = None) -> None:
        """Record the withdrawal (and `also(session)`, e.g. parking the outbox row) in one transaction."""
        with self.sessions.begin() as s:
            if also is not None:
                also(s)
            record_withdrawal(s, plan, reason, channel, self.clock())
