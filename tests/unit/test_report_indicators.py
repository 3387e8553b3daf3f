"""The programme indicators from plain rows: cohort by period, funnel, medians and 90th percentiles."""

import datetime as dt
import math

from hub.reporting.indicators import (
    NewcomerFact,
    ReferralFact,
    StatusFact,
    StepFact,
    compute,
    duration,
    mother_tongue_group,
    percentile,
)

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
