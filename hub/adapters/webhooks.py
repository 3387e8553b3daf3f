"""Webhook delivery for recipients without Kafka: subscriptions and deliveries in SQL, a worker
that takes each recipient's records from its own topics and POSTs them, in order, signed.

Per subscription: a Kafka consumer group `<app id>-webhooks.<id>` (`policy.consumer_group`) reads only
the recipient's topics (its referrals, plan requests and notices, or whatever `topics_for` names),
each record becomes one delivery row (unique per subscription and event id, so a redelivered
record is not queued twice) before the offset is committed. Deliveries go out in queue order; a
failed one is retried on the retry schedule (`policy.retry_delay`: Standard Webhooks' schedule,
jittered) and blocks those behind it, so the receiver sees them in order; after the last attempt
it is parked (never dropped) and the queue moves on; `hub webhooks redeliver` queues parked ones
again, or a subscription's delivered ones of one stream by their record's `sequence` (kept on each
delivery, `redeliver_sequences`). Every attempt is recorded. Every subscription is delivered on its own (`DeliveryWorker`):
a slow or dead receiver holds up only its own queue. The service holds the head of each queue in
memory and writes in batches (the records queued and the attempts made by every subscription
meanwhile in one transaction); delivery is at least once (an attempt whose outcome was not written
before a crash is made again, with the same webhook-id).

Sending: redirects are never followed (a 3xx is a failed attempt, `redirect_refused`); the URL is
checked again by the policy and its host resolved, every address checked, and the connection made
to a checked address (never a second lookup, so DNS cannot point it elsewhere in between), with TLS
verified against the host name. Signing secrets and the bodies (identity codes, assessment data)
are sealed at rest (hub.adapters.sealing); delivered bodies go with `hub retention`.

Before every attempt at a plan request (the first, a retry, or one queued again by `hub webhooks
redeliver`) its consent or legal basis is checked again (hub.adapters.disclosure_check): when it no
longer holds, the delivery is withdrawn (state `withdrawn`, the reason as its last error, audited)
and never attempted again; one that has a number and was never delivered leaves a content-free
`SequenceWithdrawn` notice of that number in its place (`withdrawn_body`), at the end of the queue, so
the receiver sees no unexplained gap.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import http.client
import ipaddress
import logging
import random
import socket
import ssl
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from hub import metrics
from hub.adapters.database import Base, session_factory
from hub.adapters.sealing import SealedText
from hub.domain.clock import utcnow
from hub.schemas.codec import Codec, CodecError, default_codec
from hub.schemas.envelope import cloudevent_body
from hub.schemas import topics
from hub.webhooks import policy

log = logging.getLogger(__name__)

PENDING, DELIVERED, PARKED = "pending", "delivered", "parked"
WITHDRAWN = "withdrawn"  # a plan request whose consent or legal basis ended before it was delivered
UNDECODABLE = "undecodable"  # the outcome counted for a record of a recipient's topic that does not decode: never queued


SEQUENCE_WITHDRAWN = "SequenceWithdrawn"  # the content-free notice of a numbered plan request withdrawn before it was delivered
_WITHDRAWN_IDS = uuid.UUID("5b0c6a2e-8f0e-4f57-9a51-0d7e3c1f2b44")  # namespace of the notices' ids: uuid5(it, the plan request's event id)


def withdrawn_body(message_id: str, stream: str, sequence: int) -> bytes:
    """The CloudEvents JSON body telling a receiver that number `sequence` of its `stream` was withdrawn
    before it was delivered: the stream and the number, nothing of the record (no event id, no time,
    no reason)."""
    import json

    body = {"specversion": "1.0", "id": message_id, "type": f"fi.integrationhub.{SEQUENCE_WITHDRAWN}.v1", "source": "/hub",
            "datacontenttype": "application/json", "data": {"stream": stream, "sequence": sequence}}
    return json.dumps(body, separators=(",", ":")).encode()


class WebhookSubscription(Base):
    __tablename__ = "webhook_subscriptions"
    __table_args__ = (sa.Index("ix_webhook_subscriptions_recipient", "recipient"),)
    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=True)
    recipient: Mapped[str] = mapped_column(sa.String(64))
    url: Mapped[str] = mapped_column(sa.Text())
    secret: Mapped[str] = mapped_column(SealedText())  # the signing secret, sealed
    active: Mapped[bool] = mapped_column(sa.Boolean())
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("subscription_id", "message_id", name="uq_webhook_deliveries_subscription_message"),
        sa.Index("ix_webhook_deliveries_subscription_state", "subscription_id", "state"),
        # the deliveries still waiting: what the service reads periodically (migration 0023)
        sa.Index("ix_webhook_deliveries_waiting", "subscription_id", "state", "id",
                 postgresql_where=sa.text("state IN ('pending', 'parked')"), sqlite_where=sa.text("state IN ('pending', 'parked')")),
        # a recipient's records of one stream by number: `hub webhooks redeliver --stream --from` (migration 0024)
        sa.Index("ix_webhook_deliveries_sequence", "subscription_id", "topic", "sequence"),
    )
    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=True)
    subscription_id: Mapped[int] = mapped_column(sa.Integer(), sa.ForeignKey("webhook_subscriptions.id"))
    message_id: Mapped[str] = mapped_column(sa.String(64))  # the record's event id = webhook-id
    topic: Mapped[str] = mapped_column(sa.String(255))
    schema: Mapped[str] = mapped_column(sa.String(64))
    sequence: Mapped[int | None] = mapped_column(sa.BigInteger(), nullable=True)  # the record's `sequence` (None: unnumbered, or queued before 0024)
    body: Mapped[str] = mapped_column(SealedText())  # the CloudEvents JSON body, exactly as sent; sealed
    state: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(sa.Integer())
    next_attempt_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(sa.Text(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    delivered_at: Mapped[dt.datetime | None] = mapped_column(sa.DateTime(timezone=True), nullable=True)


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"
    __table_args__ = (sa.Index("ix_webhook_attempts_delivery_id", "delivery_id"),)
    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(sa.Integer(), sa.ForeignKey("webhook_deliveries.id"))
    attempted_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    status_code: Mapped[int | None] = mapped_column(sa.Integer(), nullable=True)
    error: Mapped[str | None] = mapped_column(sa.Text(), nullable=True)


def recipient_topics(recipient: str) -> list[str]:
    """Every topic that carries records for this recipient only (its referrals, plan requests and notices)."""
    return list(topics.recipient_topics(recipient))


@dataclass(frozen=True)
class Subscription:
    id: int
    recipient: str
    url: str
    active: bool
    created_at: dt.datetime


@dataclass
class Pending:
    """A pending delivery as the service holds it: its queue's head, or behind it."""
    id: int
    message_id: str
    schema: str
    body: bytes  # the CloudEvents JSON body, exactly as sent
    created_at: dt.datetime
    attempts: int
    next_attempt_at: dt.datetime


@dataclass
class Requeued:
    """What `redeliver_sequences` did: the numbers queued again (in queue order), those it found but
    did not queue (number -> why), and the numbers in the range it found no delivery of."""
    queued: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    """One attempt to record, with its delivery's state after it (`next_attempt_at`: when retried)."""
    delivery_id: int
    at: dt.datetime
    status: int | None
    error: str | None
    state: str
    attempts: int
    next_attempt_at: dt.datetime | None


class WebhookStore:
    """Subscriptions and the delivery queue behind a small interface.

    `allow_loopback` (HUB_WEBHOOKS_ALLOW_LOOPBACK; off unless set) lets subscriptions and deliveries
    reach loopback addresses: for local receivers in tests and development only.
    """

    def __init__(self, engine: sa.Engine, *, allow_loopback: bool = False):
        self.engine = engine
        self.Session = session_factory(engine)
        self.allow_loopback = allow_loopback

    # -- subscriptions -----------------------------------------------------------------------
    def add(self, recipient: str, url: str, secret: str | None = None) -> tuple[Subscription, str]:
        topics.referral_topic(recipient)  # ValueError for a malformed authority id
        policy.check_url(url, allow_loopback=self.allow_loopback)
        secret = policy.check_secret(secret) if secret else policy.new_secret()
        with self.Session.begin() as s:
            row = WebhookSubscription(recipient=recipient, url=url, secret=secret, active=True, created_at=utcnow())
            s.add(row)
            s.flush()
            return _sub(row), secret

    def subscriptions(self, active_only: bool = False) -> list[Subscription]:
        t = WebhookSubscription
        q = sa.select(t.id, t.recipient, t.url, t.active, t.created_at).order_by(t.id)  # not the sealed secret
        if active_only:
            q = q.where(t.active.is_(True))
        with self.engine.connect() as conn:
            return [Subscription(*row) for row in conn.execute(q)]

    def disable(self, subscription_id: int) -> bool:
        with self.Session.begin() as s:
            row = s.get(WebhookSubscription, subscription_id)
            if row is None:
                return False
            row.active = False
            return True

    def secret(self, subscription_id: int) -> str:
        with self.Session() as s:
            return s.get(WebhookSubscription, subscription_id).secret

    # -- queue -------------------------------------------------------------------------------
    def enqueue(self, subscription_id: int, message_id: str, topic: str, schema: str, body: bytes, now: dt.datetime,
                published_at: dt.datetime | None = None, sequence: int | None = None) -> bool:
        """Queue one record for a subscription; False when it is queued already (a redelivered record).
        `published_at` (the record's Kafka timestamp; default `now`) is kept as the delivery's
        `created_at`: the delivery lag and the age of the oldest pending one count from it.
        `sequence`: the record's number in its stream (None or 0: unnumbered)."""
        try:
            with self.Session.begin() as s:
                if s.scalars(sa.select(WebhookDelivery.id).where(WebhookDelivery.subscription_id == subscription_id, WebhookDelivery.message_id == message_id)).first():
                    return False
                s.add(WebhookDelivery(subscription_id=subscription_id, message_id=message_id, topic=topic, schema=schema, sequence=sequence or None,
                                      body=body.decode(), state=PENDING, attempts=0, next_attempt_at=now, created_at=min(published_at or now, now)))
            return True
        except IntegrityError:  # a concurrent worker queued it
            return False

    def queue(self, entries: list[tuple], now: dt.datetime) -> dict[tuple[int, str], int]:
        """Queue records of any subscriptions in one transaction: entries (subscription id, message id,
        topic, schema, body, published_at[, sequence]) in queue order; a record queued already (a
        redelivered one) is skipped. Returns (subscription id, message id) -> delivery id of those
        queued now (ids follow the order given: the queue order)."""
        if not entries:
            return {}
        table = WebhookDelivery.__table__
        rows, seen = [], set()
        for subscription_id, message_id, topic, schema, body, published_at, *rest in entries:
            if (subscription_id, message_id) in seen:
                continue
            seen.add((subscription_id, message_id))
            rows.append({"subscription_id": subscription_id, "message_id": message_id, "topic": topic, "schema": schema,
                         "sequence": (rest[0] if rest else None) or None, "body": body.decode(),
                         "state": PENDING, "attempts": 0, "next_attempt_at": now, "created_at": min(published_at or now, now)})
        dialect = self.engine.dialect.name
        if dialect == "postgresql":  # one statement of fixed text whatever the batch (arrays), rows in the order given
            from hub.adapters import sealing

            sealer = sealing.current()
            params = {"now": now, "subs": [r["subscription_id"] for r in rows], "messages": [r["message_id"] for r in rows],
                      "topics": [r["topic"] for r in rows], "schemas": [r["schema"] for r in rows], "sequences": [r["sequence"] for r in rows],
                      "bodies": [sealer.seal_text(r["body"]) for r in rows], "created": [r["created_at"] for r in rows]}
            with self.engine.begin() as conn:
                return {(sub, message): id_ for id_, sub, message in conn.execute(_QUEUE_PG, params)}
        from sqlalchemy.dialects.sqlite import insert  # SQLite, the other database the hub runs on

        stmt = (insert(table).on_conflict_do_nothing(index_elements=["subscription_id", "message_id"])
                .returning(table.c.id, table.c.subscription_id, table.c.message_id))
        with self.engine.begin() as conn:
            return {(sub, message): id_ for id_, sub, message in conn.execute(stmt, rows)}

    def pending(self, subscription_id: int, limit: int) -> list[Pending]:
        """The first `limit` pending deliveries of a subscription, in queue order (from its head on)."""
        t = WebhookDelivery.__table__
        q = (sa.select(t.c.id, t.c.message_id, t.c.schema, t.c.body, t.c.created_at, t.c.attempts, t.c.next_attempt_at)
             .where(t.c.subscription_id == subscription_id, _WAITING, _IS_PENDING).order_by(t.c.id).limit(limit))
        with self.engine.connect() as conn:
            return [Pending(i, m, sc, b.encode(), _aware(c), a, _aware(n)) for i, m, sc, b, c, a, n in conn.execute(q)]

    def record_attempts(self, outcomes: list[Outcome]) -> list[None]:
        """Record attempts (of any deliveries) in one transaction, each with the delivery's state after it."""
        if not outcomes:
            return []
        t = WebhookDelivery.__table__
        update = (sa.update(t).where(t.c.id == sa.bindparam("b_id"))
                  .values(state=sa.bindparam("b_state"), attempts=sa.bindparam("b_attempts"), last_error=sa.bindparam("b_error"),
                          next_attempt_at=sa.func.coalesce(sa.bindparam("b_next", type_=t.c.next_attempt_at.type), t.c.next_attempt_at),
                          delivered_at=sa.func.coalesce(sa.bindparam("b_delivered", type_=t.c.delivered_at.type), t.c.delivered_at)))
        with self.engine.begin() as conn:
            conn.execute(sa.insert(WebhookAttempt.__table__), [
                {"delivery_id": o.delivery_id, "attempted_at": o.at, "status_code": o.status, "error": o.error} for o in outcomes])
            conn.execute(update, [{"b_id": o.delivery_id, "b_state": o.state, "b_attempts": o.attempts, "b_error": o.error, "b_next": o.next_attempt_at,
                                   "b_delivered": o.at if o.state == DELIVERED else None} for o in outcomes])
        return [None] * len(outcomes)

    def record_attempt(self, delivery_id: int, now: dt.datetime, status: int | None, error: str | None, max_attempts: int = policy.MAX_ATTEMPTS,
                       rng: random.Random | None = None, base_delay: float | None = None, schedule: tuple[float, ...] = policy.RETRY_SCHEDULE,
                       jitter: float = policy.RETRY_JITTER) -> str:
        """Record one attempt; returns the delivery's new state. A failed attempt is retried after the
        schedule's next wait (`policy.retry_delay`; with `base_delay`, exponential backoff from it
        instead), and parked once `max_attempts` are made or the schedule is exhausted."""
        with self.Session.begin() as s:
            row = s.get(WebhookDelivery, delivery_id, options=[sa.orm.defer(WebhookDelivery.body)])  # the body need not be opened
            row.attempts += 1
            s.add(WebhookAttempt(delivery_id=delivery_id, attempted_at=now, status_code=status, error=error))
            if error is None:
                row.state, row.delivered_at, row.last_error = DELIVERED, now, None
                return row.state
            row.last_error = error
            delay = _retry_wait(row.attempts, max_attempts, rng, base_delay, schedule, jitter)
            if delay is None:
                row.state = PARKED
            else:
                row.next_attempt_at = now + dt.timedelta(seconds=delay)
            return row.state

    def withdraw(self, delivery_id: int, reason: str, now: dt.datetime, plan: dict) -> Pending | None:
        """A plan request that must not be delivered any more: withdrawn with its reason, recorded for the
        audit. When it has a `sequence` and was never delivered, a `SequenceWithdrawn` notice with that
        number only (`withdrawn_body`) is queued in the same transaction, so the receiver sees no
        unexplained gap; returns it (None when none is queued)."""
        from hub.adapters.disclosure_check import record_withdrawal
        from hub.consent.disclosure_check import CHANNEL_WEBHOOK

        with self.Session.begin() as s:
            row = s.get(WebhookDelivery, delivery_id)
            row.state, row.last_error = WITHDRAWN, reason
            row.body = ""  # never delivered: the person's data need not stay
            record_withdrawal(s, plan, reason, CHANNEL_WEBHOOK, now)
            if row.sequence is None or row.delivered_at is not None:
                return None  # unnumbered: no gap; delivered before (a redelivery): the receiver has its number
            # the record on the topic has its number: the receiver learns it was withdrawn, and nothing else of it
            message_id = str(uuid.uuid5(_WITHDRAWN_IDS, row.message_id))
            if s.scalars(sa.select(WebhookDelivery.id).where(WebhookDelivery.subscription_id == row.subscription_id,
                                                            WebhookDelivery.message_id == message_id)).first():
                return None
            body = withdrawn_body(message_id, "plan-requests", row.sequence)
            notice = WebhookDelivery(subscription_id=row.subscription_id, message_id=message_id, topic=row.topic, schema=SEQUENCE_WITHDRAWN,
                                     sequence=row.sequence, body=body.decode(), state=PENDING, attempts=0, next_attempt_at=now, created_at=now)
            s.add(notice)
            s.flush()
            return Pending(notice.id, message_id, SEQUENCE_WITHDRAWN, body, now, 0, now)

    def redeliver(self, subscription_id: int | None = None, delivery_id: int | None = None, now: dt.datetime | None = None) -> int:
        """Queue parked deliveries again (of one subscription, or one delivery); returns how many."""
        q = sa.update(WebhookDelivery).where(WebhookDelivery.state == PARKED)
        if subscription_id is not None:
            q = q.where(WebhookDelivery.subscription_id == subscription_id)
        if delivery_id is not None:
            q = q.where(WebhookDelivery.id == delivery_id)
        with self.Session.begin() as s:
            return s.execute(q.values(state=PENDING, attempts=0, next_attempt_at=now or utcnow())).rowcount

    def redeliver_sequences(self, subscription_id: int, topic: str, first: int, last: int | None = None,
                            now: dt.datetime | None = None) -> Requeued:
        """Queue again a subscription's delivered (or parked) deliveries of one topic whose record's
        `sequence` is in [first, last] (last: the newest queued), attempts starting over; they go out
        in queue order, the order the records were queued, ahead of those queued since. A number not
        queued again is named with why (`Requeued.skipped`). Deliveries queued before their
        number was kept (migration 0024) get it from their stored body first."""
        t = WebhookDelivery
        self._number_from_bodies(subscription_id, topic)
        of_topic = (t.subscription_id == subscription_id, t.topic == topic, t.sequence >= first)
        if last is not None:
            of_topic += (t.sequence <= last,)
        done = Requeued()
        with self.Session.begin() as s:
            rows = [(i, n, st, bool(b)) for i, n, st, b in  # a body is sealed: empty ones are told apart once opened
                    s.execute(sa.select(t.id, t.sequence, t.state, t.body).where(*of_topic).order_by(t.id).with_for_update())]
            requeue = []
            for id_, sequence, state, has_body in rows:
                if state == WITHDRAWN:
                    done.skipped[sequence] = "withdrawn: its consent or legal basis had ended when it was to be delivered"
                elif state == PENDING:
                    done.skipped[sequence] = "queued already (not delivered yet)"
                elif not has_body:
                    done.skipped[sequence] = "its body was removed by `hub retention` (delivered too long ago)"
                else:
                    requeue.append(id_)
                    done.queued.append(sequence)
            if requeue:
                s.execute(sa.update(t).where(t.id.in_(requeue)).values(state=PENDING, attempts=0, last_error=None, next_attempt_at=now or utcnow())
                          .execution_options(synchronize_session=False))
        for n in done.queued:  # a withdrawn number whose notice (SequenceWithdrawn) goes again
            if done.skipped.get(n, "").startswith("withdrawn"):
                del done.skipped[n]
        seen = {n for _, n, _, _ in rows}
        top = last if last is not None else max(seen, default=first - 1)
        done.missing = [n for n in range(first, top + 1) if n not in seen]
        return done

    def _number_from_bodies(self, subscription_id: int, topic: str) -> int:
        """Give the deliveries of a subscription's topic that have no `sequence` (queued before it was
        kept) the number in their stored body; returns how many got one."""
        import json

        t = WebhookDelivery
        numbered = 0
        with self.Session.begin() as s:
            rows = s.execute(sa.select(t.id, t.body).where(t.subscription_id == subscription_id, t.topic == topic, t.sequence.is_(None),
                                                           t.state.in_([DELIVERED, PARKED]))).all()
            for id_, body in rows:
                if not body:  # removed by `hub retention`
                    continue
                try:
                    sequence = (json.loads(body).get("data") or {}).get("sequence")
                except (ValueError, AttributeError):
                    continue
                if isinstance(sequence, int) and sequence > 0:
                    s.execute(sa.update(t).where(t.id == id_).values(sequence=sequence).execution_options(synchronize_session=False))
                    numbered += 1
        return numbered

    def subscription(self, subscription_id: int) -> Subscription | None:
        with self.Session() as s:
            row = s.get(WebhookSubscription, subscription_id)
            return None if row is None else _sub(row)

    def delivery_state(self, delivery_id: int) -> tuple[int, str] | None:
        """(subscription id, state) of a delivery; None when there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(WebhookDelivery.subscription_id, WebhookDelivery.state).where(WebhookDelivery.id == delivery_id)).first()
        return None if row is None else (row[0], row[1])

    def deliveries(self, subscription_id: int) -> list[WebhookDelivery]:
        with self.Session() as s:
            return list(s.scalars(sa.select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id).order_by(WebhookDelivery.id)))

    def attempts(self, delivery_id: int) -> list[WebhookAttempt]:
        with self.Session() as s:
            return list(s.scalars(sa.select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id).order_by(WebhookAttempt.id)))

    def counts_by_subscription(self) -> dict[tuple[int, str], int]:
        """(subscription id, state) -> deliveries, every state (`hub webhooks list`, on demand: it
        counts the delivered ones too, so it reads the ledger; the service's periodic counts are
        `waiting`'s, by the index of the waiting ones)."""
        q = sa.select(WebhookDelivery.subscription_id, WebhookDelivery.state, sa.func.count()).group_by(WebhookDelivery.subscription_id, WebhookDelivery.state)
        with self.Session() as s:
            return {(sub, st): n for sub, st, n in s.execute(q)}

    def waiting(self) -> tuple[dict[tuple[str, str], int], dict[str, dt.datetime], dict[int, dt.datetime]]:
        """What the delivery service watches, in one read: (recipient, state) -> pending and parked
        deliveries; recipient -> `created_at` of its oldest pending one; subscription id -> its queue's
        head (id, when it is due)."""
        counts_q = (sa.select(WebhookSubscription.recipient, WebhookDelivery.state, sa.func.count()).join(WebhookSubscription).where(_WAITING)
                    .group_by(WebhookSubscription.recipient, WebhookDelivery.state))
        oldest_q = (sa.select(WebhookSubscription.recipient, sa.func.min(WebhookDelivery.created_at)).join(WebhookSubscription)
                    .where(_WAITING, _IS_PENDING).group_by(WebhookSubscription.recipient))
        heads = sa.select(sa.func.min(WebhookDelivery.id)).where(_WAITING, _IS_PENDING).group_by(WebhookDelivery.subscription_id)
        due_q = sa.select(WebhookDelivery.subscription_id, WebhookDelivery.id, WebhookDelivery.next_attempt_at).where(WebhookDelivery.id.in_(heads.scalar_subquery()))
        with self.Session() as s:
            counts = {(r, st): n for r, st, n in s.execute(counts_q)}
            oldest = {r: _aware(t) for r, t in s.execute(oldest_q)}
            due = {sub: (i, _aware(t)) for sub, i, t in s.execute(due_q)}
        return counts, oldest, due


# The periodic reads name the states as literals, the partial index's predicate with them: a
# prepared statement's generic plan cannot use a partial index for a state given as a parameter.
_WAITING = WebhookDelivery.state.in_([sa.literal_column(f"'{PENDING}'"), sa.literal_column(f"'{PARKED}'")])
_IS_PENDING = WebhookDelivery.state == sa.literal_column(f"'{PENDING}'")


_QUEUE_PG = sa.text(
    "INSERT INTO webhook_deliveries (subscription_id, message_id, topic, schema, sequence, body, state, attempts, next_attempt_at, created_at) "
    "SELECT s, m, t, sc, q, b, 'pending', 0, :now, c FROM unnest(CAST(:subs AS integer[]), CAST(:messages AS varchar[]), CAST(:topics AS varchar[]), "
    "CAST(:schemas AS varchar[]), CAST(:sequences AS bigint[]), CAST(:bodies AS bytea[]), CAST(:created AS timestamptz[])) "
    "WITH ORDINALITY AS u(s, m, t, sc, q, b, c, n) ORDER BY n "
    "ON CONFLICT (subscription_id, message_id) DO NOTHING RETURNING id, subscription_id, message_id")


def _sub(row: WebhookSubscription) -> Subscription:
    return Subscription(row.id, row.recipient, row.url, row.active, row.created_at)


def purge_delivered(session: sa.orm.Session, cutoff: dt.datetime, marks_before: dt.datetime | None = None) -> dict[str, int]:
    """Remove deliveries delivered before `cutoff` (the retention job); pending and parked ones stay
    whatever their age. Returns rows removed per table.

    With `marks_before` (earlier than `cutoff`: the replay horizon, while the topics can still give
    the record again), a delivery delivered between the two loses only its body: its row stays as
    the mark that keeps the record from being queued and delivered again when its subscription's
    consumer group reads the topic anew (a renamed group, offsets expired); rows and attempts go
    once delivered before both."""
    gone = cutoff if marks_before is None else min(cutoff, marks_before)
    if gone < cutoff:
        session.execute(sa.update(WebhookDelivery).where(WebhookDelivery.state == DELIVERED, WebhookDelivery.delivered_at < cutoff,
                                                         WebhookDelivery.delivered_at >= gone)
                        .values(body="").execution_options(synchronize_session=False))
    old = sa.select(WebhookDelivery.id).where(WebhookDelivery.state == DELIVERED, WebhookDelivery.delivered_at < gone)
    attempts = session.execute(sa.delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(old)).execution_options(synchronize_session=False)).rowcount
    deliveries = session.execute(sa.delete(WebhookDelivery).where(WebhookDelivery.state == DELIVERED, WebhookDelivery.delivered_at < gone)
                                 .execution_options(synchronize_session=False)).rowcount
    return {"webhook_attempts": attempts or 0, "webhook_deliveries": deliveries or 0}


def resolve_target(host: str, port: int, *, allow_loopback: bool = False) -> list[tuple[int, tuple]]:
    """Every address `host` resolves to, as (family, sockaddr), after checking each one: TargetRefused
    when any is refused (a name that also points inside the network is not used at all)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    targets = []
    for family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        reason = policy.refused_address(address, allow_loopback=allow_loopback)
        if reason:
            raise policy.TargetRefused(f"{host!r} resolves to {address} ({reason} address): webhooks go only to public addresses")
        if (family, sockaddr) not in targets:
            targets.append((family, sockaddr))
    return targets


def _connect(targets: list[tuple[int, tuple]], timeout: float) -> socket.socket:
    error: OSError = OSError("no address")
    for family, sockaddr in targets:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to addresses checked beforehand (never resolving the host again); Host names the host."""

    def __init__(self, host: str, port: int, targets: list, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.targets = targets

    def connect(self) -> None:
        self.sock = _connect(self.targets, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As _PinnedHTTPConnection, over TLS: SNI and the certificate check use the host name."""

    def __init__(self, host: str, port: int, targets: list, timeout: float, tls: ssl.SSLContext):
        super().__init__(host, port, timeout=timeout, context=tls)
        self.targets, self.tls = targets, tls

    def connect(self) -> None:
        sock = _connect(self.targets, self.timeout)
        try:
            self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


_TLS: list[ssl.SSLContext] = []


def default_tls() -> ssl.SSLContext:
    """The system's CAs, host names checked: made once (loading the CAs costs more than a POST), shared
    by the sending threads (an SSLContext may be)."""
    if not _TLS:
        _TLS.append(ssl.create_default_context())
    return _TLS[0]


def post(url: str, body: bytes, headers: dict[str, str], timeout: float, allow_loopback: bool = False, tls: ssl.SSLContext | None = None) -> int:
    """POST once and return the HTTP status, redirects included (never followed). `tls`: the TLS
    context for https (default: the system's CAs, hostname checked).

    Raises WebhookError (TargetRefused) when the URL or an address its host resolves to is refused,
    OSError or http.client.HTTPException (incl. timeouts) when there is no answer.
    """
    policy.check_url(url, allow_loopback=allow_loopback)
    parts = urlsplit(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    targets = resolve_target(parts.hostname, port, allow_loopback=allow_loopback)
    if https:
        conn: http.client.HTTPConnection = _PinnedHTTPSConnection(parts.hostname, port, targets, timeout, tls or default_tls())
    else:
        conn = _PinnedHTTPConnection(parts.hostname, port, targets, timeout)
    headers = dict(headers)
    if parts.username is not None:  # credentials in the URL: HTTP Basic, as a browser would send them
        userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["authorization"] = "Basic " + base64.b64encode(userinfo.encode()).decode()
    try:
        conn.request("POST", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


@dataclass
class _Lane:
    """One subscription's part of the service: its two tasks (queueing the records of its topics,
    delivering its queue), whether its consumer runs, its last error, and the head of its queue in
    memory: `queue` holds its pending deliveries in order from the head on (all of them when
    `complete`: new ones are appended as they are queued; else the rest is read from the database
    when the lane gets to them)."""

    sub: Subscription
    tasks: list = field(default_factory=list)
    ready: bool = False
    error: str | None = None
    queue: deque = field(default_factory=deque)
    complete: bool = False
    loading: bool = False  # the queue is being read: deliveries queued meanwhile go to `stash`
    stash: list = field(default_factory=list)
    resync: bool = False  # read the queue from the database again (a `redeliver` from elsewhere)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    finished: dict = field(default_factory=dict)  # delivery id -> time.monotonic() it was delivered, parked or withdrawn
    offsets: dict = field(default_factory=dict)  # partition -> the offset after the last record queued, not committed yet
    committed: float = field(default_factory=time.monotonic)  # when its offsets were last committed


class _Batches:
    """Group commit: what the lanes submit while a write runs goes in the next write (one
    transaction for many deliveries, whatever their subscriptions); each submitter gets its own
    result when its batch is written, or the write's error."""

    def __init__(self, write: Callable[[list], list], run: Callable, size: int = 500):
        self.write, self.run, self.size = write, run, size
        self.items: list[tuple[object, asyncio.Future]] = []
        self.task: asyncio.Task | None = None

    async def submit(self, item):
        future = asyncio.get_running_loop().create_future()
        self.items.append((item, future))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self.items:
            batch, self.items = self.items[: self.size], self.items[self.size:]
            try:
                results = await self.run(self.write, [item for item, _ in batch])
            except Exception as exc:  # noqa: BLE001 - each submitter gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        for _, future in self.items:
            future.cancel()
        self.items = []


class DeliveryWorker:
    """Moves records from Kafka into the queue and the queue to the receivers.

    `run()` is the service: per active subscription a lane of two tasks, one reading the recipient's
    topics in its own consumer group `<app id>-webhooks.<id>` and queueing their records, one
    delivering its queue in order from memory, so a slow or dead receiver holds up only its own
    queue. The lanes share a pool of `concurrency` threads for the POSTs (at most one in flight per
    lane), first come first served, and write to the database in batches: the records queued and
    the attempts made by every lane meanwhile go in one transaction. A supervisor starts and stops
    lanes as subscriptions come and go, refreshes the gauges and tells a lane to read its queue
    again when its head in the database is not the one it holds (a `redeliver`). `deliver_due()`
    runs the lanes' delivery step once for every subscription, without Kafka (a fake clock in
    tests).
    """

    LOAD = 200  # pending deliveries a lane reads at a time

    def __init__(
        self,
        store: WebhookStore,
        kafka_url: str,
        *,
        app_id: str | None = None,
        codec: Codec | None = None,
        topics_for: Callable[[str], list[str]] = recipient_topics,
        max_attempts: int | None = None,
        base_delay: float | None = None,
        schedule: tuple[float, ...] = policy.RETRY_SCHEDULE,
        jitter: float = policy.RETRY_JITTER,
        timeout: float = 10.0,
        clock: Callable[[], dt.datetime] = utcnow,
        rng: random.Random | None = None,
        sender: Callable[[str, bytes, dict, float, bool], int] = post,
        security: dict | None = None,
        allow_loopback: bool | None = None,
        disclosure_check: Callable[[dict], str | None] | None = None,
        concurrency: int = 64,
        fetch_wait_ms: int = 1000,
        commit_interval: float = 5.0,
        refresh: float = 2.0,
    ):
        self.store, self.kafka_url = store, kafka_url
        if app_id is None:  # HUB_APP_ID's default
            from hub.config import Settings

            app_id = Settings.app_id
        self.app_id = app_id  # HUB_APP_ID: the consumer groups are `<app id>-webhooks.<subscription id>`
        self.codec = codec or default_codec()
        self.topics_for, self.timeout = topics_for, timeout
        # attempts: the schedule's waits + 1 unless cut short; `base_delay` (tests) backs off exponentially from it instead
        self.schedule, self.jitter, self.base_delay = tuple(schedule), jitter, base_delay
        self.max_attempts = max_attempts if max_attempts is not None else len(self.schedule) + 1
        self.clock, self.rng, self.sender = clock, rng, sender
        self.allow_loopback = store.allow_loopback if allow_loopback is None else allow_loopback  # see WebhookStore
        self.security = security or {}  # TLS/SASL: hub.adapters.kafka.security.kafka_client_options
        # how long the broker may hold a lane's fetch when nothing is new: Kafka answers as soon as a record
        # arrives, so there a longer wait costs no latency and means fewer idle fetches of the lanes (a broker
        # that holds every fetch for the whole wait, as the embedded one does, delays records by up to it)
        self.fetch_wait_ms, self.refresh = fetch_wait_ms, refresh
        # a lane commits its offsets at most this often (and when it stops): the records are queued before,
        # and a record read again after a crash is not queued twice
        self.commit_interval = commit_interval
        self._consumers: dict[int, object] = {}
        self._secrets: dict[int, str] = {}
        self._lanes: dict[int, _Lane] = {}
        self._send_pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="webhook-send")
        db_threads = 1 if store.engine.dialect.name == "sqlite" else 4
        self._db_pool = ThreadPoolExecutor(db_threads, thread_name_prefix="webhook-db")
        self._queued = _Batches(self._queue_batch, self._db)
        self._recorded = _Batches(self.store.record_attempts, self._db)
        self.last_refresh: float | None = None  # time.monotonic() of the supervisor's last good refresh
        self.refresh_error: str | None = None
        self._aged: set[str] = set()  # recipients whose gauges were set
        if disclosure_check is None:  # the consent store of the same database, the shipped legal bases
            from hub.consent import legal_bases
            from hub.adapters.disclosure_check import DisclosureCheck

            disclosure_check = DisclosureCheck(store.Session, legal_bases.load(), clock=clock).why_not
        self.disclosure_check = disclosure_check  # plan request (JSON form) -> None, or why it may not be delivered now

    async def _db(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._db_pool, fn, *args)

    async def close(self) -> None:
        """Stop the lanes, commit the offsets of what they queued, stop their consumers."""
        tasks = [task for lane in self._lanes.values() for task in lane.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for lane in self._lanes.values():
            await self._commit(lane)
        self._lanes.clear()
        for sub_id in list(self._consumers):
            await self._stop_consumer(sub_id)
        await self._queued.close()
        await self._recorded.close()

    async def _stop_consumer(self, sub_id: int) -> None:
        consumer = self._consumers.pop(sub_id, None)
        if consumer is not None:
            try:
                await consumer.stop()
            except Exception as exc:  # noqa: BLE001 - a consumer that failed may fail to stop too; it is gone either way
                log.debug("webhooks: stopping the consumer of subscription %s: %s", sub_id, type(exc).__name__)

    async def _consumer(self, sub: Subscription):
        from aiokafka import AIOKafkaConsumer

        from hub.adapters.kafka.security import bootstrap_servers

        consumer = self._consumers.get(sub.id)
        if consumer is None:
            consumer = AIOKafkaConsumer(*self.topics_for(sub.recipient), bootstrap_servers=bootstrap_servers(self.kafka_url), group_id=policy.consumer_group(self.app_id, sub.id),
                                        enable_auto_commit=False, auto_offset_reset="earliest", metadata_max_age_ms=60_000,
                                        fetch_max_wait_ms=self.fetch_wait_ms, **self.security)
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
            self._consumers[sub.id] = consumer
        return consumer

    async def _commit(self, lane: _Lane) -> None:
        """Commit the offsets of the records the lane has queued (a failure is retried at the next commit)."""
        consumer = self._consumers.get(lane.sub.id)
        if not lane.offsets or consumer is None:
            return
        offsets, lane.offsets, lane.committed = lane.offsets, {}, time.monotonic()
        try:
            await consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 - committed next time; a record read again is not queued twice
            for tp, offset in offsets.items():
                lane.offsets.setdefault(tp, offset)
            log.debug("webhooks: committing the offsets of subscription %s: %s", lane.sub.id, type(exc).__name__)

    # -- queueing ------------------------------------------------------------------------------
    def _queue_batch(self, batches: list[tuple[int, list]]) -> list[dict[str, int]]:
        """The database side of `_Batches`: the records of many lanes in one transaction; per lane, message id -> delivery id."""
        ids = self.store.queue([(sub_id, *item) for sub_id, items in batches for item in items], self.clock())
        return [{m: ids[(sub_id, m)] for m, *_ in items if (sub_id, m) in ids} for sub_id, items in batches]

    async def _queue_records(self, lane: _Lane, batch: dict) -> int:
        """Queue the records a lane's consumer fetched (partition -> records) in their order of
        publication, and hand them to the lane's delivery; returns how many were queued (a record
        queued already, or one that does not decode, is not)."""
        sub = lane.sub
        records = sorted((m for msgs in batch.values() for m in msgs), key=lambda m: (m.timestamp, m.topic, m.partition, m.offset))
        items = []
        for m in records:
            try:
                event = self.codec.decode(m.value)
            except CodecError as exc:  # the hub wrote it, so this is a bug; skip it loudly and counted, never stop the queue
                metrics.webhook_deliveries.labels(sub.recipient, UNDECODABLE).inc()
                log.error("webhooks: %s[%s]@%s is not decodable (%s); not delivered", m.topic, m.partition, m.offset, exc.reason)
                continue
            body = cloudevent_body(event.name, event.record, self.codec.to_jsonable(event.name, event.record))
            published = dt.datetime.fromtimestamp(m.timestamp / 1000, dt.timezone.utc) if m.timestamp and m.timestamp > 0 else None
            sequence = event.record.get("sequence")
            items.append((str(event.record["event_id"]), m.topic, event.name, body, published, sequence if isinstance(sequence, int) else None))
        queued = {}
        if items:
            now = self.clock()
            queued = await self._queued.submit((sub.id, items))
            new = sorted((Pending(queued[m], m, schema, body, min(published or now, now), 0, now)
                          for m, _topic, schema, body, published, _sequence in items if m in queued), key=lambda p: p.id)
            if lane.loading:
                lane.stash.extend(new)
            elif lane.complete:
                lane.queue.extend(new)
            if new:
                lane.wake.set()
        for tp, msgs in batch.items():
            if msgs:
                lane.offsets[tp] = msgs[-1].offset + 1
        return len(queued)

    async def _consume(self, lane: _Lane, stop: asyncio.Event) -> None:
        """Until `stop`: queue the subscription's new records, committing their offsets now and then.
        A failure (the broker, the database) is logged and the consumer starts over after a pause."""
        sub, pause = lane.sub, 1.0
        while not stop.is_set():
            try:
                consumer = await self._consumer(sub)
                lane.error, pause = None, 1.0
                while not stop.is_set():
                    wait = self.fetch_wait_ms
                    if lane.offsets:
                        wait = max(0, min(wait, int((lane.committed + self.commit_interval - time.monotonic()) * 1000)))
                    batch = await consumer.getmany(timeout_ms=wait)
                    if not lane.ready:  # its consumer has joined its group and has the partitions
                        lane.ready = bool(consumer.assignment())
                    if batch:
                        await self._queue_records(lane, batch)
                    if lane.offsets and time.monotonic() - lane.committed >= self.commit_interval:
                        await self._commit(lane)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one lane's trouble never stops the others
                lane.ready, lane.error = False, type(exc).__name__
                lane.offsets = {}  # read again from the last commit; queued already, so not queued twice
                # the exception's type only: its text could carry the callback URL's credentials
                log.warning("webhooks: subscription %s (%s, %s): %s; starting over in %.0f s", sub.id, sub.recipient,
                            policy.loggable_url(sub.url), type(exc).__name__, pause)
                await self._stop_consumer(sub.id)
                try:
                    await asyncio.wait_for(stop.wait(), pause)
                except asyncio.TimeoutError:
                    pass
                pause = min(pause * 2, 30.0)

    # -- delivering ----------------------------------------------------------------------------
    async def _load(self, lane: _Lane) -> None:
        """Read the head of the lane's queue from the database (with what is queued meanwhile)."""
        lane.loading, lane.stash = True, []
        try:
            rows = await self._db(self.store.pending, lane.sub.id, self.LOAD)
        finally:
            lane.loading = False
        lane.queue, lane.complete = deque(rows), len(rows) < self.LOAD
        if lane.complete:
            last = rows[-1].id if rows else 0
            lane.queue.extend(p for p in sorted(lane.stash, key=lambda p: p.id) if p.id > last)
        lane.stash = []

    async def _step(self, lane: _Lane) -> float | None:
        """The lane's delivery step: one attempt at the head of its queue when it is due (a
        plan request whose consent or basis ended is withdrawn instead). Returns 0 when it made one
        (go on), else the seconds until its head is due, or None when nothing is pending."""
        if lane.resync:
            lane.resync, lane.queue, lane.complete = False, deque(), False
        if not lane.queue and not lane.complete:
            await self._load(lane)
        if not lane.queue:
            return None
        head = lane.queue[0]
        wait = (head.next_attempt_at - self.clock()).total_seconds()
        if wait > 0:
            return wait
        if head.schema == "PlanRequest":
            withdrawn = await self._db(self._withdrawn, lane.sub, head)
            if withdrawn:
                self._finish(lane, head)
                if isinstance(withdrawn, Pending):  # its number's notice, queued last
                    if lane.loading:
                        lane.stash.append(withdrawn)
                    elif lane.complete:
                        lane.queue.append(withdrawn)
                return 0
        if await self._attempt(lane.sub, head) != PENDING:
            self._finish(lane, head)
        return 0

    @staticmethod
    def _finish(lane: _Lane, head: Pending) -> None:
        if lane.queue and lane.queue[0] is head:
            lane.queue.popleft()
        lane.finished[head.id] = time.monotonic()

    async def _deliver(self, lane: _Lane, stop: asyncio.Event) -> None:
        """Until `stop`: deliver the lane's queue in order, waiting when its head is not due (or
        nothing is pending) until it is, or until the lane is woken (records queued, a redeliver).
        A failure (the database) is logged and the queue read again after a pause."""
        pause = 1.0
        while not stop.is_set():
            lane.wake.clear()
            try:
                wait = await self._step(lane)
                pause = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one lane's trouble never stops the others
                log.warning("webhooks: delivering to subscription %s (%s, %s): %s; again in %.0f s", lane.sub.id, lane.sub.recipient,
                            policy.loggable_url(lane.sub.url), type(exc).__name__, pause)
                lane.resync, wait, pause = True, pause, min(pause * 2, 30.0)
            if wait == 0:
                continue
            try:
                await asyncio.wait_for(lane.wake.wait(), wait)
            except asyncio.TimeoutError:
                pass

    def _retry_wait(self, attempts: int) -> float | None:
        """Seconds until the next attempt after `attempts` failed ones; None: park it."""
        return _retry_wait(attempts, self.max_attempts, self.rng, self.base_delay, self.schedule, self.jitter)

    async def _attempt(self, sub: Subscription, head: Pending) -> str:
        """One POST of the head of a subscription's queue, recorded; returns the delivery's new state."""
        if sub.id not in self._secrets:
            self._secrets[sub.id] = await self._db(self.store.secret, sub.id)
        ts = int(self.clock().timestamp())
        hdrs = policy.headers(self._secrets[sub.id], head.message_id, ts, head.body)
        status, error = None, None
        try:
            status = await asyncio.get_running_loop().run_in_executor(
                self._send_pool, self.sender, sub.url, head.body, hdrs, self.timeout, self.allow_loopback)
            if 300 <= status < 400:  # never followed: it could lead anywhere, and nothing was delivered
                error = f"redirect_refused: HTTP {status} (redirects are not followed; the subscription's URL must accept the POST itself)"
            elif not 200 <= status < 300:
                error = f"HTTP {status}"
        except policy.WebhookError as exc:
            error = f"{policy.TargetRefused.reason}: {exc}"
        except (OSError, http.client.HTTPException) as exc:
            error = f"no answer: {type(exc).__name__}"
        now = self.clock()
        attempts, next_at = head.attempts + 1, None
        if error is None:
            state = DELIVERED
        else:
            wait = self._retry_wait(attempts)
            state = PARKED if wait is None else PENDING
            next_at = None if wait is None else now + dt.timedelta(seconds=wait)
        await self._recorded.submit(Outcome(head.id, now, status, error, state, attempts, next_at))
        head.attempts, head.next_attempt_at = attempts, next_at or head.next_attempt_at
        metrics.webhook_deliveries.labels(sub.recipient, "delivered" if state == DELIVERED else ("parked" if state == PARKED else "failed")).inc()
        if state == DELIVERED:
            metrics.webhook_delivery_lag.observe(max(0.0, (now - head.created_at).total_seconds()))
        elif state == PARKED:
            log.warning("webhooks: delivery %s to subscription %s (%s) parked after %s attempt(s): %s", head.id, sub.id, sub.recipient,
                        attempts, error)
        return state

    def _withdrawn(self, sub: Subscription, head: Pending) -> bool | Pending:
        """For a plan request: check its consent or legal basis now; withdraw the delivery when it no
        longer holds. False: it holds; else True, or the notice of its number queued in its place."""
        if head.schema != "PlanRequest":
            return False
        import json

        try:
            plan = json.loads(head.body).get("data") or {}
        except (ValueError, AttributeError):
            plan = {}
        reason = self.disclosure_check(plan) if isinstance(plan, dict) else "no_basis"
        if reason is None:
            return False
        notice = self.store.withdraw(head.id, reason, self.clock(), plan if isinstance(plan, dict) else {})
        metrics.webhook_deliveries.labels(sub.recipient, WITHDRAWN).inc()
        metrics.disclosures_withdrawn.labels(reason=reason, channel="webhook").inc()
        log.info("webhooks: plan request %s to %s withdrawn before delivery (%s)", head.message_id, sub.recipient, reason)
        return notice or True

    async def deliver_due(self) -> None:
        """Without Kafka: every active subscription's delivery step (the one its lane runs) until its
        head is not due, each read from the database first; the subscriptions concurrently."""
        active = await self._db(self.store.subscriptions, True)

        async def one(sub: Subscription) -> None:
            lane = _Lane(sub)
            while await self._step(lane) == 0:
                pass

        await asyncio.gather(*(one(sub) for sub in active))
        await self._db(self.refresh_gauges, active)

    def refresh_gauges(self, active: list[Subscription] | None = None) -> dict[int, tuple[int, dt.datetime]]:
        """Set the queue gauges (pending and parked per recipient, the oldest pending one's age); a
        recipient whose queue emptied goes back to 0. Returns subscription id -> its queue's head (id, when
        due). `active`: the active subscriptions, when just read."""
        counts, oldest, due = self.store.waiting()
        now = self.clock()
        # every active subscription's recipient has its series (0 when nothing waits), so alerts see them
        if active is None:
            active = self.store.subscriptions(active_only=True)
        recipients = {sub.recipient for sub in active} | {r for r, _ in counts} | self._aged
        for recipient in recipients:
            for state in (PENDING, PARKED):
                metrics.webhook_queue.labels(recipient, state).set(counts.get((recipient, state), 0))
            created = oldest.get(recipient)
            metrics.webhook_oldest_pending.labels(recipient).set(0 if created is None else max(0.0, (now - created).total_seconds()))
        self._aged = recipients
        return due

    # -- the service ---------------------------------------------------------------------------
    async def _supervise(self, stop: asyncio.Event) -> None:
        """Start a lane per active subscription, stop those of subscriptions gone or disabled; tell a
        lane to read its queue again when the head in the database is not the one it holds (a
        `redeliver` from elsewhere); refresh the gauges."""
        active = await self._db(self.store.subscriptions, True)
        ids = {s.id for s in active}
        for sub_id in set(self._lanes) - ids:
            lane = self._lanes.pop(sub_id)
            for task in lane.tasks:
                task.cancel()
            await asyncio.gather(*lane.tasks, return_exceptions=True)
            await self._commit(lane)
            await self._stop_consumer(sub_id)
            self._secrets.pop(sub_id, None)
        for sub in active:
            if sub.id not in self._lanes:
                lane = self._lanes[sub.id] = _Lane(sub)
                lane.tasks = [asyncio.create_task(self._consume(lane, stop), name=f"webhooks-{sub.id}-queue"),
                              asyncio.create_task(self._deliver(lane, stop), name=f"webhooks-{sub.id}-deliver")]
        read_at = time.monotonic()
        heads = await self._db(self.refresh_gauges, active)
        for sub_id, lane in self._lanes.items():
            lane.finished = {i: t for i, t in lane.finished.items() if t >= read_at - 60}  # longer than a read takes
            head = heads.get(sub_id)
            if head is None or lane.finished.get(head[0], 0.0) >= read_at:
                continue  # nothing pending, or the lane has finished it since the read
            if not lane.queue or lane.queue[0].id != head[0]:
                lane.resync = True
                lane.wake.set()

    def stopped(self) -> list[str]:
        """What keeps the service from working (for /health): a supervisor that has not refreshed
        lately (the database), or no subscription's consumer running (the broker). One lane in
        trouble is not the service's trouble: it shows in the logs and its queue's gauges."""
        out = []
        stale = max(30.0, 5 * self.refresh)
        if self.last_refresh is None or time.monotonic() - self.last_refresh > stale:
            out.append("webhook delivery (no refresh of the subscriptions" + (f": {self.refresh_error}" if self.refresh_error else "") + ")")
        lanes = list(self._lanes.values())
        failing = [lane for lane in lanes if lane.error]
        if lanes and len(failing) == len(lanes):
            out.append(f"every subscription's Kafka consumer ({failing[0].error})")
        return out

    def ready(self) -> bool:
        """Every lane's consumer runs and has its partitions (tests and the benchmark wait for this)."""
        return bool(self._lanes) and all(lane.ready for lane in self._lanes.values())

    async def run(self, stop: asyncio.Event, poll: float | None = None) -> None:
        """The service, until `stop` is set: a lane per active subscription and the supervisor."""
        refresh = poll if poll is not None else self.refresh
        try:
            while not stop.is_set():
                try:
                    await self._supervise(stop)
                    self.last_refresh, self.refresh_error = time.monotonic(), None
                except Exception as exc:  # noqa: BLE001 - the database away for a while: the lanes go on, /health tells
                    self.refresh_error = type(exc).__name__
                    log.warning("webhooks: refreshing the subscriptions failed: %s", type(exc).__name__)
                try:
                    await asyncio.wait_for(stop.wait(), refresh)
                except asyncio.TimeoutError:
                    pass
        finally:
            await self.close()
            self._send_pool.shutdown(wait=False, cancel_futures=True)
            self._db_pool.shutdown(wait=False, cancel_futures=True)


def _retry_wait(attempts: int, max_attempts: int, rng: random.Random | None, base_delay: float | None, schedule: tuple[float, ...],
                jitter: float) -> float | None:
    """Seconds until the next attempt after `attempts` failed ones (the schedule's next wait; with
    `base_delay`, exponential backoff from it); None once `max_attempts` are made or the schedule is
    exhausted: the delivery is parked."""
    if attempts >= max_attempts:
        return None
    if base_delay is not None:
        return policy.next_delay(attempts, rng, base=base_delay)
    return policy.retry_delay(attempts, schedule, rng, jitter)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
