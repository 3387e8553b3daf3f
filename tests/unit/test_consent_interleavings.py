"""Random interleavings of grants, revocations, expiries, assessments and time passing, through the
registry's real transactions (SQLite in memory): no disclosure is ever made that the consent history
at that moment does not cover, an assessor that makes the plan itself gets its plan request with no
consent and no disclosure, and every covered held item is released exactly once.

The oracle below is written independently of hub.consent.model.decide.
"""

import datetime as dt
import json

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.pool import StaticPool

from hub.adapters import database, outbox
from hub.adapters import consent_store as store
from hub.consent import model, records
from hub.adapters.consent_uow import SqlConsentUnits
from hub.services.consent import ConsentRegistry
from hub.domain import hetu
from hub.schemas.codec import default_codec

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
PERSONS = [hetu.make(dt.date(1990, 1, 1), 901), hetu.make(dt.date(1970, 6, 6), 902)]
RECIPIENTS = ["employment_authority:08", "municipality:091"]
CATS = list(model.DATA_CATEGORIES)

grant_op = st.tuples(
    st.just("grant"), st.integers(0, 1), st.sets(st.sampled_from(CATS), min_size=1, max_size=3), st.sets(st.sampled_from(RECIPIENTS), min_size=1),
    st.one_of(st.none(), st.integers(-2, 3)), st.one_of(st.none(), st.integers(1, 6)),
)
end_op = st.tuples(st.sampled_from(["revoked", "expired"]), st.integers(0, 9))
assess_op = st.tuples(st.just("assess"), st.integers(0, 1), st.integers(0, 1), st.sets(st.sampled_from(CATS), max_size=4))
tick_op = st.tuples(st.just("tick"), st.integers(1, 3))
sweep_op = st.just(("sweep",))
ops = st.lists(st.one_of(grant_op, end_op, assess_op, tick_op, sweep_op), min_size=1, max_size=25)

DATA = {"education": "e", "work_history": "w", "language_skills": [{"language": "fi", "skill": "overall", "cefr_level": "A1"}],
        "literacy": "l", "recommended_path": "p", "service_needs": ["s"]}


def covers(history, consent_id, person, recipient, categories, now):
    """Oracle: does `history` let `categories` of `person` go to `recipient` under `consent_id` at `now`?"""
    grants = [r for r in history if r.consent_id == consent_id and r.action == "granted"]
    ended = any(r.consent_id == consent_id and r.action != "granted" for r in history)
    if not grants or ended:
        return False
    g = grants[0]
    return (g.person_id == person and recipient in g.recipients and set(categories) <= g.data_categories
            and (g.valid_from is None or g.valid_from <= now) and (g.valid_until is None or now < g.valid_until))


def coverable(history, person, recipient, categories, now):
    """Oracle: would some consent in force now cover at least one of the categories?"""
    ids = {r.consent_id for r in history if r.person_id == person}
    return any(covers(history, cid, person, recipient, [c], now) for cid in ids for c in categories) or (
        not categories and any(covers(history, cid, person, recipient, [], now) for cid in ids))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_no_uncovered_disclosure_and_every_covered_held_item_released_once(steps):
    engine = database.create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    database.Base.metadata.create_all(engine)
    clock = {"now": T0}
    registry = ConsentRegistry(SqlConsentUnits(database.session_factory(engine)), person_key_secret="s", clock=lambda: clock["now"])
    codec = default_codec()
    history: list[model.ConsentRecord] = []
    granted_ids: list[tuple[str, str]] = []
    assessments: dict[str, model.Assessment] = {}
    seen_disclosures = 0
    n = 0

    def check_new_disclosures():
        nonlocal seen_disclosures
        with registry.units.sessions() as s:
            rows = list(s.scalars(sa.select(store.Disclosure).order_by(store.Disclosure.id)))
        for d in rows[seen_disclosures:]:
            a = next(a for a in assessments.values() if records.request_id(a, d.recipient) == d.request_id)
            cats = json.loads(d.data_categories)
            assert set(cats) <= set(a.data), "a category the assessment does not hold was sent"
            if a.assessor == a.plan_authority:  # the assessor makes the plan: nothing disclosed, no consent used, never held
                assert not d.disclosed and d.consent_id is None and d.legal_basis is None and set(cats) == set(a.data)
                continue
            assert d.disclosed and d.consent_id is not None and covers(history, d.consent_id, a.person_id, d.recipient, cats, clock["now"]), \
                "disclosure not covered by the consent history at that moment"
        seen_disclosures = len(rows)

    def check_held_items():
        with registry.units.sessions() as s:
            held = list(s.scalars(sa.select(store.HeldItem)))
            request_ids = [d.request_id for d in s.scalars(sa.select(store.Disclosure))]
        for item in held:
            a = assessments[item.assessment_event_id]
            if item.released_at is None:
                assert not coverable(history, a.person_id, a.plan_authority, list(a.data), clock["now"]), "a covered held item was not released"
            else:
                assert request_ids.count(item.request_id) == 1

    time_passed = False  # since the last sweep: consents may have become valid, released by the next sweep

    for op in steps:
        n += 1
        kind = op[0]
        if kind == "grant":
            _, p, cats, recips, start, length = op
            cid = f"c{n}"
            vf = clock["now"] + dt.timedelta(days=start) if start is not None else None
            vu = (vf or clock["now"]) + dt.timedelta(days=length) if length is not None else None
            rec = model.ConsentRecord(event_id=f"g{n}", consent_id=cid, person_id=PERSONS[p], action="granted", recorded_by=RECIPIENTS[1],
                                      recorded_at=clock["now"], data_categories=frozenset(cats), recipients=frozenset(recips), valid_from=vf, valid_until=vu)
            history.append(rec)
            granted_ids.append((cid, PERSONS[p]))
            registry.record_consent(rec)
        elif kind in ("revoked", "expired"):
            if not granted_ids:
                continue
            cid, person = granted_ids[op[1] % len(granted_ids)]
            rec = model.ConsentRecord(event_id=f"x{n}", consent_id=cid, person_id=person, action=kind, recorded_by=RECIPIENTS[1], recorded_at=clock["now"])
            history.append(rec)
            registry.record_consent(rec)
        elif kind == "assess":
            _, p, r, cats = op
            avro = {"event_id": f"00000000-0000-4000-8000-{n:012d}", "occurred_at": clock["now"], "recorded_at": clock["now"], "source": RECIPIENTS[1],
                    "schema_version": 1, "assessment_id": f"a{n}", "person_key": hetu.person_key(PERSONS[p], "s"), "person_id": PERSONS[p], "assessor": RECIPIENTS[1],
                    "plan_authority": RECIPIENTS[r], "referral_id": None, "education": None, "work_history": None, "language_skills": [],
                    "literacy": None, "recommended_path": None, "service_needs": []}
            avro.update({c: DATA[c] for c in cats})
            a = records.assessment_from_avro(avro)
            assessments[a.event_id] = a
            if "service_needs" in cats:  # the health data a disclosure leaves out becomes an item of its own
                part = records.assessment_from_avro(records.remainder_record(avro, ("service_needs",)))
                assessments[part.event_id] = part
            registry.handle_assessment(a, codec.encode("AssessmentCompleted", avro))
            registry.handle_assessment(a, codec.encode("AssessmentCompleted", avro))  # redelivery changes nothing
        elif kind == "tick":
            clock["now"] += dt.timedelta(days=op[1])
            time_passed = True
        else:
            time_passed = False
            for c in model.due_expiries(history, clock["now"]):
                history.append(model.ConsentRecord(event_id=records.derived_id("expired", c.consent_id), consent_id=c.consent_id, person_id=c.grant.person_id,
                                                   action="expired", recorded_by=c.grant.recorded_by, recorded_at=c.grant.valid_until))
            registry.sweep()
        check_new_disclosures()
        if not time_passed:
            check_held_items()

    # a final sweep: every held item the history now covers is released, exactly once
    for c in model.due_expiries(history, clock["now"]):
        history.append(model.ConsentRecord(event_id=records.derived_id("expired", c.consent_id), consent_id=c.consent_id, person_id=c.grant.person_id,
                                           action="expired", recorded_by=c.grant.recorded_by, recorded_at=c.grant.valid_until))
    registry.sweep()
    check_new_disclosures()
    check_held_items()
    with registry.units.sessions() as s:
        request_ids = [d.request_id for d in s.scalars(sa.select(store.Disclosure))]
        plan_rows = [o for o in s.scalars(sa.select(outbox.OutboxMessage)) if o.schema_name == "PlanRequest"]
    assert len(request_ids) == len(set(request_ids)) == len(plan_rows), "an assessment was disclosed twice"
    # health data is never dropped: an assessment disclosed without its service_needs has them held or sent apart
    with registry.units.sessions() as s:
        sent_cats = {d.request_id: set(json.loads(d.data_categories)) for d in s.scalars(sa.select(store.Disclosure))}
        held_ids = {h.assessment_event_id for h in s.scalars(sa.select(store.HeldItem))}
    for a in assessments.values():
        rid = records.request_id(a, a.plan_authority)
        if "service_needs" in a.data and rid in sent_cats and "service_needs" not in sent_cats[rid]:
            part = records.derived_id("consent-only-remainder", a.event_id)
            assert part in held_ids or records.request_id(assessments[part], a.plan_authority) in sent_cats, "health data was dropped"
    engine.dispose()
