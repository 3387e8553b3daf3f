"""The send-time consent check: may a plan request decided earlier still go out now?

A plan request is decided when its assessment is handled (hub.services.consent) and sent later: by
the outbox relay (hub.streams.outbox_relay), and by webhook delivery (hub.adapters.webhooks: every
attempt, retries and `hub webhooks redeliver` included). A revocation or expiry the hub has
received in between must stop it: each of them asks `DisclosureCheck.why_not` just before sending.

`why_not_send` is the pure rule: the basis the plan request names (its consent, its legal basis)
must still cover this person, purpose, recipient and its data categories now. A plan request is
never moved onto another consent: its audit row names the one it was decided on. A withdrawn plan
request is recorded here (`disclosure_withdrawals`) for the audit, next to its disclosure row.
"""

from __future__ import annotations

import datetime as dt
from typing import Callable, Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from hub.adapters.database import Base
from hub.consent import store
from hub.consent.model import PURPOSE_INTEGRATION_PLAN, ConsentRecord, LegalBasis, current_consents
from hub.domain.clock import iso_utc, utcnow

PLAN_REQUEST = "PlanRequest"
CHANNEL_KAFKA, CHANNEL_WEBHOOK = "kafka", "webhook"


def why_not_send(plan: dict, history: Iterable[ConsentRecord], legal_bases: Sequence[LegalBasis], now: dt.datetime) -> str | None:
    """None when `plan` (a PlanRequest record, or its JSON form) may be sent now; else the reason code:
    consent_revoked, consent_expired, consent_not_yet_valid, consent_unknown (no such consent of this
    person), legal_basis_withdrawn (no longer configured), category_not_covered, no_basis."""
    person_id, recipient = plan.get("person_id"), plan.get("to")
    if not person_id or not recipient:
        return "no_basis"
    categories = frozenset(plan.get("data_categories") or ())
    named = {n.strip() for n in (plan.get("legal_basis") or "").split(";") if n.strip()}
    by_law = [b for b in legal_bases if b.name in named and b.covers(PURPOSE_INTEGRATION_PLAN, recipient)]
    covered = frozenset().union(*(b.data_categories for b in by_law)) & categories
    consent_id = plan.get("consent_id")
    if consent_id:
        consent = current_consents(history, person_id).get(consent_id)
        if consent is None:
            return "consent_unknown"
        status = consent.status(now)
        if status != "active":
            return f"consent_{status}"
        if consent.grant.purpose != PURPOSE_INTEGRATION_PLAN or recipient not in consent.grant.recipients:
            return "consent_unknown"
        covered |= consent.grant.data_categories & categories
    elif not named:
        return "no_basis"
    elif not by_law:
        return "legal_basis_withdrawn"
    if categories - covered:
        return "legal_basis_withdrawn" if named and len(by_law) < len(named) else "category_not_covered"
    return None


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


def annotate_audit(session: Session, rows: list[dict]) -> list[dict]:
    """The audit's disclosure dicts, each with `withdrawn`: the withdrawals of its plan request (empty
    when it went out)."""
    found = withdrawals(session, [r["request_id"] for r in rows])
    return [{**r, "withdrawn": found.get(r["request_id"], [])} for r in rows]


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
