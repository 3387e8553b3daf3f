"""The programme indicators from plain rows: cohort by period, funnel, medians and 90th percentiles."""

import csv
import datetime as dt
import io
import math
import random
import re

import pytest

from hub.commands.report import render_csv, render_table
from hub.reporting.indicators import (
    CHAIN,
    NewcomerFact,
    ReferralFact,
    StatusFact,
    StepFact,
    compute,
    duration,
    mother_tongue_group,
    percentile,
)
from hub.routing.engine import route
from hub.routing.model import RoutingInput
from hub.routing.reference import default_reference
from hub.routing.rules import default_rules

UTC = dt.timezone.utc
FROM, TO, AS_OF = dt.date(2025, 3, 1), dt.date(2025, 3, 31), dt.date(2025, 6, 1)


def at(day: int, month: int = 3, hour: int = 10) -> dt.datetime:
    return dt.datetime(2025, month, day, hour, tzinfo=UTC)


def test_percentile_interpolates_between_ranks():
    assert percentile([], 50) is None
    assert percentile([7], 90) == 7
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert math.isclose(percentile(list(range(1, 11)), 90), 9.1)
    assert percentile([10, 1, 5], 50) == 5  # order does not matter
    assert duration([]).n == 0 and duration([]).median_days is None and duration([]).p90_days is None
    d = duration([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert (d.n, d.median_days, d.p90_days) == (10, 5.5, 9.1)


def test_mother_tongue_groups():
    assert [mother_tongue_group(c) for c in ("fi", "sv", "se", "ar", None, "99", "RU")] == ["Finnish", "Swedish", "Sámi", "foreign language", "unknown", "unknown", "foreign language"]
    assert [mother_tongue_group(c) for c in ("98", "fse", "FSS")] == ["sign language"] * 3  # not a foreign language


def test_a_reissued_referral_counts_once_and_a_moved_ones_stays_with_its_authority():
    newcomers = [NewcomerFact("p", at(1)), NewcomerFact("q", at(1))]
    referrals = [ReferralFact("a1", "p", "employment_authority:08", "initial_assessment", "superseded", at(2)),  # registration ended
                 ReferralFact("a2", "p", "employment_authority:08", "initial_assessment", "sent", at(6)),  # registered again: the same task
                 ReferralFact("o1", "p", "municipality:091", "outreach", "sent", at(2)),
                 ReferralFact("o2", "q", "municipality:091", "outreach", "superseded", at(2)),  # q moved away
                 ReferralFact("o3", "q", "municipality:049", "outreach", "sent", at(8))]
    ind = compute("091", FROM, TO, AS_OF, newcomers, referrals, [], [])
    assert ind.referrals_by_authority == {"employment_authority:08": 1, "municipality:091": 2, "municipality:049": 1}
    assert ind.open_by_authority == {"employment_authority:08": 1, "municipality:091": 1, "municipality:049": 1}


def test_empty_period_gives_zeros_and_no_durations():
    ind = compute("091", FROM, TO, AS_OF, [NewcomerFact("p1", at(1, 2))], [], [], [])  # registered in February
    assert ind.newcomers == 0 and ind.reached == 0 and ind.referred == 0 and ind.open_referrals == 0
    assert all(d.n == 0 and d.median_days is None for d in ind.steps.values())
    assert ind.funnel() == [("newcomers", 0), ("referred", 0), ("reached", 0), ("assessed", 0), ("plan requested", 0)]


def test_cohort_day_is_finnish_time():
    # 22:30 UTC on 31 March is already 1 April in Helsinki (UTC+3 in summer time)
    late = dt.datetime(2025, 3, 31, 22, 30, tzinfo=UTC)
    early = dt.datetime(2025, 2, 28, 22, 30, tzinfo=UTC)  # 1 March 00:30 in Helsinki (UTC+2)
    ind = compute("091", FROM, TO, AS_OF, [NewcomerFact("late", late), NewcomerFact("early", early)], [], [], [])
    assert ind.newcomers == 1


def test_funnel_and_steps():
    newcomers = [
        NewcomerFact("p1", at(1), "ar", ("SY",)),
        NewcomerFact("p2", at(2), "ru", ("RU", "UA")),
        NewcomerFact("p3", at(3), "sv", ()),
        NewcomerFact("other", at(3, 4)),  # April: not in the cohort
    ]
    referrals = [
        ReferralFact("o1", "p1", "municipality:091", "outreach", "contacted", at(2)),
        ReferralFact("a1", "p1", "employment_authority:01", "initial_assessment", "completed", at(2), due=dt.date(2025, 5, 1)),
        ReferralFact("o2", "p2", "municipality:091", "outreach", "unreachable", at(5), due=dt.date(2025, 4, 1)),
        ReferralFact("o3", "p3", "municipality:091", "outreach", "accepted", at(13)),
        ReferralFact("x", "other", "municipality:091", "outreach", "sent", at(4, 4)),
    ]
    statuses = [
        StatusFact("o1", "sent", at(2)),
        StatusFact("o1", "accepted", at(4)),
        StatusFact("o1", "contacted", at(6)),
        StatusFact("o2", "unreachable", at(9)),
        StatusFact("o3", "accepted", at(23)),
        StatusFact("a1", "completed", at(22)),
    ]
    steps = [
        StepFact("p1", "assessment_started", at(12)),
        StepFact("p1", "assessment_completed", at(22)),
        StepFact("p1", "plan_requested", at(29)),
        StepFact("other", "assessment_completed", at(10, 4)),
    ]
    ind = compute("091", FROM, TO, AS_OF, newcomers, referrals, statuses, steps)
    assert ind.newcomers == 3
    assert dict(ind.by_mother_tongue_group) == {"foreign language": 2, "Swedish": 1}
    assert dict(ind.by_mother_tongue) == {"ar": 1, "ru": 1, "sv": 1}
    assert dict(ind.by_nationality) == {"SY": 1, "RU": 1, "UA": 1, "unknown": 1}
    assert ind.reached == 2  # p1 (accepted on day 4), p3 (accepted); p2 unreachable
    assert ind.referred == 3
    assert dict(ind.referrals_by_authority) == {"municipality:091": 3, "employment_authority:01": 1}
    assert (ind.assessments_started, ind.assessments_done, ind.plans_requested) == (1, 1, 1)
    # registration -> first referral: 1, 3, 10 days
    assert (ind.steps["registration_to_referral"].n, ind.steps["registration_to_referral"].median_days, ind.steps["registration_to_referral"].p90_days) == (3, 3.0, 8.6)
    # outreach -> reached: p1 2 days (first of accepted/contacted), p3 10 days
    assert ind.steps["referral_to_reached"].median_days == 6.0 and ind.steps["referral_to_reached"].n == 2
    assert ind.steps["referral_to_assessment"].median_days == 20.0
    assert ind.steps["assessment_to_plan_request"].median_days == 7.0
    # open: o1 (contacted), o2 (unreachable, overdue since 1 April), o3; a1 completed is closed
    assert dict(ind.open_by_authority) == {"municipality:091": 3}
    assert dict(ind.overdue_by_authority) == {"municipality:091": 1}
    assert ind.as_dict()["step_days"]["referral_to_assessment"] == {"n": 1, "median": 20.0, "p90": 20.0}


def test_reached_without_history_counts_without_a_duration():
    ind = compute("091", FROM, TO, AS_OF, [NewcomerFact("p", at(1))], [ReferralFact("o", "p", "municipality:091", "outreach", "contacted", at(1))], [], [])
    assert ind.reached == 1 and ind.steps["referral_to_reached"].n == 0


def test_naive_timestamps_are_utc():
    naive = dt.datetime(2025, 3, 10, 12)
    ind = compute("091", FROM, TO, AS_OF, [NewcomerFact("p", naive)], [ReferralFact("r", "p", "municipality:091", "outreach", "sent", naive + dt.timedelta(days=2))], [], [])
    assert ind.newcomers == 1 and ind.steps["registration_to_referral"].median_days == 2.0


def chain_numbers(ind):
    return [ind.chain[key] for key, _, _ in CHAIN]


def test_plans_from_disclosures_without_an_assessment_status_do_not_exceed_the_assessments():
    """The issue's case: plans requested come from the disclosure audit, no assessor reported the
    assessment on a referral. The chain counts them as assessed and says why."""
    newcomers = [NewcomerFact(f"p{i}", at(i + 1), "ar") for i in range(7)]
    referrals = [ReferralFact(f"o{i}", f"p{i}", "municipality:091", "outreach", "sent", at(i + 2)) for i in range(7)]
    steps = [StepFact(f"p{i}", "plan_requested", at(20 + i)) for i in range(3)]
    ind = compute("091", FROM, TO, AS_OF, newcomers, referrals, [], steps)
    assert (ind.assessments_done, ind.plans_requested) == (0, 3)  # as recorded, step by step
    assert ind.funnel() == [("newcomers", 7), ("referred", 7), ("reached", 3), ("assessed", 3), ("plan requested", 3)]
    assert ind.inferred == {"newcomers": 0, "referred": 0, "reached": 3, "assessed": 3, "plan_requested": 0}
    table = render_table(ind)
    assert "plans requested without a recorded assessment (assessment reported outside the hub): 3" in table
    assert "assessed or plan requested without a recorded contact (contact not reported to the hub): 3" in table
    assert re.search(r"^  initial assessment done\s+3\s+42\.9 %$", table, re.M)
    chain = {c["step"]: c for c in ind.as_dict()["chain"]}
    assert chain["assessed"] == {"step": "assessed", "persons": 3, "recorded": 0, "only_from_a_later_step": 3}
    rows = {(r["section"], r["item"]): r["value"] for r in csv.DictReader(io.StringIO(render_csv(ind)))}
    assert rows[("chain", "assessed")] == "3" and rows[("chain_only_from_a_later_step", "assessed")] == "3"
    assert rows[("funnel", "plans_requested")] == "3"  # the existing rows keep their meaning


def test_an_assessment_the_hub_received_counts_as_done():
    """An assessor that publishes the assessment (held for consent or disclosed) but reports no
    `completed` status: the assessment is done, and the days to the plan request are known."""
    newcomers = [NewcomerFact("p", at(1)), NewcomerFact("q", at(2))]
    referrals = [ReferralFact("a", "p", "employment_authority:08", "initial_assessment", "contacted", at(2)),
                 ReferralFact("b", "q", "employment_authority:08", "initial_assessment", "sent", at(3))]
    steps = [StepFact("p", "assessment_received", at(12)), StepFact("p", "plan_requested", at(15)),
             StepFact("q", "assessment_received", at(20))]  # q's plan request is held for consent
    ind = compute("091", FROM, TO, AS_OF, newcomers, referrals, [], steps)
    assert (ind.assessments_started, ind.assessments_done, ind.plans_requested) == (2, 2, 1)
    assert ind.funnel() == [("newcomers", 2), ("referred", 2), ("reached", 2), ("assessed", 2), ("plan requested", 1)]
    assert ind.recorded["reached"] == 1  # p's recipient reported contact; q is reached through the assessment
    assert ind.steps["referral_to_assessment"].median_days == 13.5
    assert ind.steps["assessment_to_plan_request"].median_days == 3.0


def test_contact_on_any_referral_is_reached_in_the_chain():
    newcomers = [NewcomerFact("p", at(1))]
    referrals = [ReferralFact("o", "p", "municipality:091", "outreach", "sent", at(2)),
                 ReferralFact("a", "p", "employment_authority:08", "initial_assessment", "superseded", at(2))]
    statuses = [StatusFact("a", "contacted", at(5)), StatusFact("a", "superseded", at(9))]
    ind = compute("091", FROM, TO, AS_OF, newcomers, referrals, statuses, [])
    assert ind.reached == 0  # the outreach indicator: the municipality reported nothing
    assert ind.chain["reached"] == 1 and ind.inferred["reached"] == 0


@pytest.mark.parametrize("seed", range(30))
def test_no_step_of_the_chain_exceeds_the_one_before(seed):
    rnd = random.Random(seed)
    people = [f"p{i}" for i in range(12)]
    newcomers = [NewcomerFact(p, at(rnd.randint(1, 28), rnd.choice([2, 3]))) for p in people]
    referrals, statuses, steps = [], [], []
    for i, p in enumerate(people):
        if rnd.random() < 0.7:
            referrals.append(ReferralFact(f"r{i}", p, "municipality:091", rnd.choice(["outreach", "initial_assessment"]), rnd.choice(["sent", "contacted", "unreachable", "completed"]), at(3)))
        steps += [StepFact(p, s, at(rnd.randint(1, 28), 4)) for s in ("assessment_started", "assessment_completed", "assessment_received", "plan_requested") if rnd.random() < 0.3]
        if rnd.random() < 0.3:
            statuses.append(StatusFact(f"r{i}", "accepted", at(10)))
    ind = compute("091", FROM, TO, AS_OF, newcomers, referrals, statuses, steps)
    numbers = chain_numbers(ind)
    assert numbers[0] == ind.newcomers
    assert all(later <= earlier for earlier, later in zip(numbers, numbers[1:]))
    for key, _, _ in CHAIN:  # a step is what is recorded there plus what a later step implies
        assert ind.chain[key] == ind.recorded[key] + ind.inferred[key] and ind.inferred[key] >= 0
    assert ind.chain["plan_requested"] == ind.plans_requested and ind.chain["assessed"] >= ind.assessments_done


def test_a_person_whose_mother_tongue_the_register_does_not_give_is_in_the_cohort():
    # DVV writes 99 for an unknown mother tongue; routing takes it as unknown instead of refusing the newcomer
    n = RoutingInput.from_record({"event_id": "e", "occurred_at": "2025-03-05T09:00:00Z", "person_key": "k99", "municipality_code": "091", "mother_tongue": "99"})
    assert n.mother_tongue is None and route(n, default_rules(), default_reference())
    assert RoutingInput.from_record({"event_id": "e", "mother_tongue": "98"}).mother_tongue == "98"  # Finnish sign language
    newcomers = [NewcomerFact("k99", at(5), n.mother_tongue), NewcomerFact("raw99", at(6), "99"), NewcomerFact("word", at(7), "unknown"), NewcomerFact("ar", at(8), "ar")]
    ind = compute("091", FROM, TO, AS_OF, newcomers, [], [], [])
    assert ind.newcomers == 4 and ind.chain["newcomers"] == 4
    assert dict(ind.by_mother_tongue) == {"unknown": 3, "ar": 1}
    assert dict(ind.by_mother_tongue_group) == {"unknown": 3, "foreign language": 1}


def test_the_picture_states_the_municipality_and_the_period_and_refuses_a_format_before_drawing(tmp_path):
    from hub.reporting import plot

    ind = compute("091", FROM, TO, AS_OF, [NewcomerFact("p", at(2))], [], [], [])
    assert plot.title(ind) == "Municipality 091 Helsinki: newcomers registered 2025-03-01 – 2025-03-31 (states as of 2025-06-01)"
    pytest.importorskip("matplotlib")
    with pytest.raises(plot.PlotUnavailable, match=r"cannot write .*x\.txt: matplotlib writes .*\.png"):
        plot.plot(ind, tmp_path / "x.txt")
    assert not (tmp_path / "x.txt").exists()
    assert plot.plot(ind, tmp_path / "x.svg").read_text().startswith("<?xml")
