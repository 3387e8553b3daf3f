"""A person's circumstances (`hub.routing.circumstances`): facts taken in order-free, merged over a
Newcomer's facts, stored as JSON and read back; input records checked and turned into RoutingFacts."""

import dataclasses
import datetime as dt
import itertools

import pytest
from hypothesis import given, settings, strategies as st

from hub.domain import hetu
from hub.routing import circumstances as c
from hub.routing.model import InputError, RoutingInput
from hub.schemas.codec import default_codec

codec = default_codec()

UTC = dt.timezone.utc
T = dt.datetime(2025, 6, 1, 9, tzinfo=UTC)
PID = hetu.make(dt.date(1990, 4, 1), 931)


def fact(kind: str, event_id: str = "e1", at: dt.datetime = T, **fields) -> c.Fact:
    rec = {"event_id": event_id, "kind": kind, "person_key": "pk", "occurred_at": at, "source": "x"}
    rec.update(fields)
    return c.Fact.from_record(rec)


def job(status: str, day: dt.date, event_id: str = "e1", **kw) -> c.Fact:
    return fact(c.JOBSEEKER_STATUS, event_id, jobseeker_status=status, status_date=day, employment_area="08", **kw)


def permit(basis: str, first: dt.date | None, event_id: str = "p1", at: dt.datetime = T) -> c.Fact:
    return fact(c.RESIDENCE_PERMIT, event_id, at, residence_basis=basis, first_permit_date=first)


def needs(by: str, found: list[str], on: dt.date, event_id: str = "n1") -> c.Fact:
    return fact(c.SERVICE_NEEDS_KIND, event_id, service_needs=found, identified_by=by, identified_on=on)


NEWCOMER = RoutingInput(event_id="n", person_key="pk", occurred_at=T, municipality_code="092", arrival_date=dt.date(2025, 5, 1),
                        labour_force_status="employed", residence_basis="unknown")


def fold(facts) -> c.Circumstances:
    out = c.Circumstances()
    for f in facts:
        out = c.apply(out, f)
    return out


def test_the_latest_status_date_wins_whatever_the_order_and_repeats():
    facts = [job("registered", dt.date(2025, 3, 1), "a"), job("ended", dt.date(2025, 5, 1), "b"), job("registered", dt.date(2025, 4, 1), "c")]
    results = {fold(order) for order in itertools.permutations(facts + facts[:1])}
    assert len(results) == 1
    [only] = results
    assert (only.jobseeker.status, only.jobseeker.since) == ("ended", dt.date(2025, 5, 1))


def test_a_repeat_changes_nothing_and_ties_are_broken_by_event_time_then_id():
    first = fold([job("registered", dt.date(2025, 3, 1), "a")])
    assert c.apply(first, job("registered", dt.date(2025, 3, 1), "a")) == first
    later = job("ended", dt.date(2025, 3, 1), "b", at=T + dt.timedelta(hours=1))
    assert c.apply(first, later).jobseeker.status == "ended"
    assert c.apply(c.apply(first, later), job("registered", dt.date(2025, 3, 1), "a")).jobseeker.status == "ended"


def test_the_latest_residence_permit_wins_by_when_it_was_decided():
    early = permit("study", dt.date(2023, 8, 1), "p1", at=T)
    late = permit("work", dt.date(2023, 8, 1), "p2", at=T + dt.timedelta(days=30))
    assert fold([late, early]).residence == fold([early, late]).residence
    assert fold([late, early]).residence.basis == "work"


def test_service_needs_are_kept_per_identifier_and_an_empty_set_withdraws_them():
    got = fold([needs("municipality:092", ["social", "literacy"], dt.date(2025, 5, 2), "n1"),
                needs("wellbeing_area:12", ["health"], dt.date(2025, 5, 3), "n2")])
    assert got.service_needs == ("health", "social", "literacy")
    withdrawn = c.apply(got, needs("municipality:092", [], dt.date(2025, 5, 10), "n3"))
    assert withdrawn.service_needs == ("health",)
    assert c.apply(withdrawn, needs("municipality:092", ["social"], dt.date(2025, 5, 2), "n1")) == withdrawn  # older: ignored


def test_merge_registered_makes_a_jobseeker_and_ended_restores_what_the_newcomer_said():
    registered = fold([job("registered", dt.date(2025, 5, 2))])
    assert c.merge(NEWCOMER, registered).labour_force_status == "unemployed_job_seeker"
    ended = fold([job("ended", dt.date(2025, 5, 2))])
    assert c.merge(NEWCOMER, ended).labour_force_status == "employed"
    assert c.merge(dataclasses.replace(NEWCOMER, labour_force_status="unemployed_job_seeker"), ended).labour_force_status == "unknown"


def test_merge_residence_sets_the_basis_and_the_start_of_the_integration_period():
    merged = c.merge(NEWCOMER, fold([permit("eu_citizen", dt.date(2024, 11, 5))]))
    assert (merged.residence_basis, merged.integration_start, merged.period_start) == ("eu_citizen", dt.date(2024, 11, 5), dt.date(2024, 11, 5))
    assert c.merge(NEWCOMER, c.Circumstances()) is NEWCOMER


def test_merge_unions_needs_and_passes_on_only_those_the_rules_know():
    merged = c.merge(dataclasses.replace(NEWCOMER, service_needs=("health",)),
                     fold([needs("municipality:092", ["social", "other", "health"], dt.date(2025, 5, 2))]))
    assert merged.service_needs == ("health", "social")


def test_circumstances_input_is_a_circumstances_change_with_a_derived_id_at_the_later_time():
    f = job("registered", dt.date(2025, 6, 2), "fact-1", at=T + dt.timedelta(days=2))
    got = c.circumstances_input(dataclasses.replace(NEWCOMER, change="moved", previous_municipality_code="091"), fold([f]), f)
    again = c.circumstances_input(NEWCOMER, fold([f]), f)
    assert got.change == "circumstances" and got.event_id == again.event_id != f.event_id
    assert got.occurred_at == T + dt.timedelta(days=2) and got.previous_municipality_code is None
    assert got.labour_force_status == "unemployed_job_seeker" and got.municipality_code == "092"
    older = job("registered", dt.date(2025, 1, 2), "fact-0", at=T - dt.timedelta(days=90))
    assert c.circumstances_input(NEWCOMER, fold([older]), older).occurred_at == T


def test_storage_round_trips():
    value = fold([job("registered", dt.date(2025, 3, 1)), permit("work", None),
                  needs("municipality:092", ["social"], dt.date(2025, 5, 2)), needs("wellbeing_area:12", [], dt.date(2025, 5, 2), "n2")])
    assert c.decode(c.encode(value)) == value
    assert c.decode(None) == c.Circumstances() and c.decode(c.encode(c.Circumstances())).empty
    full = dataclasses.replace(NEWCOMER, nationalities=("SY",), service_needs=("health",), mother_tongue="98", integration_start=dt.date(2024, 1, 2))
    text = c.encode_newcomer(full)
    assert c.decode_newcomer(text) == full and PID not in text


@pytest.mark.parametrize("record, reason", [
    ({"kind": "bogus"}, "invalid_field"),
    ({"kind": c.JOBSEEKER_STATUS, "status_date": "2025-01-01"}, "invalid_field"),
    ({"kind": c.RESIDENCE_PERMIT, "residence_basis": "eu_registration"}, "invalid_field"),  # Migri's word, not routing's
    ({"kind": c.SERVICE_NEEDS_KIND, "service_needs": ["health"], "identified_on": "2025-01-01"}, "invalid_field"),
    ({"kind": c.SERVICE_NEEDS_KIND, "service_needs": ["x"], "identified_by": "a", "identified_on": "2025-01-01"}, "invalid_field"),
    ({"kind": c.RESIDENCE_PERMIT, "residence_basis": "work", "person_key": ""}, "missing_person_key"),
    ({"kind": c.RESIDENCE_PERMIT, "residence_basis": "work", "occurred_at": None}, "invalid_date"),
])
def test_a_fact_that_cannot_be_used_names_its_reason(record, reason):
    base = {"event_id": "e", "person_key": "pk", "occurred_at": "2025-06-01T09:00:00Z"}
    with pytest.raises(InputError) as exc:
        c.Fact.from_record({**base, **record})
    assert exc.value.reason == reason


def input_record(name: str, **fields) -> dict:
    rec = {"event_id": "11111111-1111-4111-8111-111111111111", "occurred_at": T, "recorded_at": T, "source": "migri", "schema_version": 1, "person_id": PID}
    rec.update({"JobseekerStatus": {"status": "registered", "status_date": dt.date(2025, 5, 2), "employment_area": "08"},
                "ResidencePermit": {"basis": "eu_registration", "first_permit_date": dt.date(2024, 11, 5)},
                "ServiceNeeds": {"needs": ["social", "social", "literacy"], "identified_by": "municipality:092", "identified_on": dt.date(2025, 5, 2)}}[name])
    rec.update(fields)
    return rec


@pytest.mark.parametrize("name", sorted(c.SCHEMA_KINDS))
def test_an_input_record_becomes_a_routing_fact_routing_can_read(name):
    rec = input_record(name)
    c.check_input(name, rec)
    rec = codec.decode(codec.encode(name, rec), name).record  # as the intake reads it
    out = c.fact_record(name, rec, "pk", T)
    out = codec.decode(codec.encode("RoutingFact", out), "RoutingFact").record  # as routing reads it
    assert str(out["event_id"]) == c.fact_record(name, dict(rec), "pk", T + dt.timedelta(hours=1))["event_id"] != str(rec["event_id"])
    assert out["source"] == "migri" and out["person_id"] == PID and out["kind"] == c.SCHEMA_KINDS[name]
    f = c.Fact.from_record(out)
    assert f.kind == c.SCHEMA_KINDS[name]
    if name == "ResidencePermit":
        assert (f.residence_basis, f.first_permit_date) == ("eu_citizen", dt.date(2024, 11, 5))
    if name == "ServiceNeeds":
        assert f.service_needs == ("social", "literacy")


@pytest.mark.parametrize("name, fields, reason", [
    ("JobseekerStatus", {"person_id": "010190-1234"}, "invalid_person_id"),
    ("JobseekerStatus", {"person_id": None}, "invalid_person_id"),
    ("JobseekerStatus", {"status_date": dt.date(2025, 6, 2)}, "invalid_field"),
    ("JobseekerStatus", {"employment_area": " "}, "invalid_field"),
    ("ResidencePermit", {"first_permit_date": dt.date(1980, 1, 1)}, "invalid_field"),
    ("ServiceNeeds", {"identified_by": ""}, "invalid_field"),
    ("Newcomer", {}, "unexpected_schema"),
])
def test_an_input_record_that_fails_a_check_names_its_reason_and_never_the_code(name, fields, reason):
    rec = input_record("JobseekerStatus" if name == "Newcomer" else name, **fields)
    with pytest.raises(InputError) as exc:
        c.check_input(name, rec)
    assert exc.value.reason == reason and PID not in exc.value.message


def test_combine_keeps_the_later_fact_of_each_kind_from_either_side():
    a = fold([job("registered", dt.date(2025, 3, 1), "a"), needs("municipality:092", ["social"], dt.date(2025, 5, 2), "n1")])
    b = fold([job("ended", dt.date(2025, 4, 1), "b"), permit("work", dt.date(2024, 1, 1)), needs("municipality:092", ["health"], dt.date(2025, 4, 2), "n0"),
              needs("wellbeing_area:12", ["health"], dt.date(2025, 4, 2), "n2")])
    both = c.combine(a, b)
    assert both == c.combine(b, a) == fold([job("registered", dt.date(2025, 3, 1), "a"), needs("municipality:092", ["social"], dt.date(2025, 5, 2), "n1"),
                                            job("ended", dt.date(2025, 4, 1), "b"), permit("work", dt.date(2024, 1, 1)),
                                            needs("wellbeing_area:12", ["health"], dt.date(2025, 4, 2), "n2")])
    assert c.combine(a, c.Circumstances()) == a


def test_describe_says_what_changed_without_the_identity_code():
    ended = job("ended", dt.date(2025, 4, 1), source="employment_authority:08")
    assert c.describe(ended) == "registration as an unemployed jobseeker ended (reported by employment_authority:08)"
    assert "work" in c.describe(permit("work", None)) and "municipality:092" in c.describe(needs("municipality:092", [], dt.date(2025, 5, 2)))

_DAYS = st.dates(min_value=dt.date(2025, 1, 1), max_value=dt.date(2025, 1, 10))
_FACTS = st.one_of(
    st.builds(lambda i, s, d: job(s, d, f"j{i}"), st.integers(0, 5), st.sampled_from(["registered", "ended"]), _DAYS),
    st.builds(lambda i, b, h: permit(b, dt.date(2024, 1, 1), f"p{i}", at=T + dt.timedelta(hours=h)), st.integers(0, 5),
              st.sampled_from(["work", "study"]), st.integers(0, 3)),
    st.builds(lambda i, by, n, d: needs(by, n, d, f"n{i}"), st.integers(0, 5), st.sampled_from(["municipality:092", "wellbeing_area:04"]),
              st.lists(st.sampled_from(["health", "social"]), max_size=2), _DAYS),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_FACTS, max_size=8), st.randoms(use_true_random=False))
def test_any_order_and_any_repeats_give_one_value(facts, rnd):
    # one event id is one fact (a publisher's id is unique): keep the first of each id
    facts = list({f.event_id: f for f in reversed(facts)}.values())
    shuffled = facts + facts[: len(facts) // 2]
    rnd.shuffle(shuffled)
    assert fold(shuffled) == fold(facts)
    assert c.decode(c.encode(fold(facts))) == fold(facts)
