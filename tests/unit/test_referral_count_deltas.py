"""What a change to open referrals adds to the per-recipient counts (`count_deltas`): open by one,
overdue by one when due before the counts' day; a due-date change moves a referral in or out of
overdue and leaves open as it was."""

import datetime as dt

from hub.adapters.referral_ledger import count_deltas

DAY = dt.date(2026, 3, 1)


def test_a_new_referral_counts_open_and_overdue_only_when_due_before_the_day():
    assert count_deltas([("m:1", dt.date(2026, 2, 28), 1), ("m:1", DAY, 1), ("m:1", None, 1)], DAY) == [
        {"authority": "m:1", "open_count": 3, "overdue_count": 1}]


def test_closing_counts_down_and_rows_come_sorted_by_authority():
    assert count_deltas([("m:2", dt.date(2026, 1, 1), -1), ("m:1", dt.date(2026, 4, 1), -1)], DAY) == [
        {"authority": "m:1", "open_count": -1, "overdue_count": 0}, {"authority": "m:2", "open_count": -1, "overdue_count": -1}]


def test_a_due_date_change_moves_overdue_and_keeps_open():
    later = [("m:1", dt.date(2026, 1, 1), -1), ("m:1", dt.date(2026, 6, 1), 1)]
    assert count_deltas(later, DAY) == [{"authority": "m:1", "open_count": 0, "overdue_count": -1}]
    earlier = [("m:1", dt.date(2026, 6, 1), -1), ("m:1", dt.date(2026, 1, 1), 1)]
    assert count_deltas(earlier, DAY) == [{"authority": "m:1", "open_count": 0, "overdue_count": 1}]


def test_changes_that_cancel_leave_no_row():
    made_then_superseded = [("m:1", dt.date(2026, 1, 1), 1), ("m:1", dt.date(2026, 1, 1), -1)]
    assert count_deltas(made_then_superseded, DAY) == []
    assert count_deltas([("m:1", dt.date(2026, 1, 1), -1), ("m:1", dt.date(2026, 2, 1), 1)], DAY) == []  # both overdue


def test_without_a_day_nothing_counts_overdue():
    assert count_deltas([("m:1", dt.date(2000, 1, 1), 1)], None) == [{"authority": "m:1", "open_count": 1, "overdue_count": 0}]
