"""Pure parts of replay and resend: the range given on the command line, gap detection."""

import datetime as dt

import pytest

from hub.adapters.replay import Range
from hub.adapters.resend import gaps


def test_range_needs_exactly_one_start_and_at_most_one_end():
    Range(from_offset=0)
    Range(from_time=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), to_offset=5)
    for bad in (
        dict(),
        dict(from_offset=0, from_time=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)),
        dict(from_offset=0, to_offset=1, to_time=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)),
        dict(from_offset=5, to_offset=4),
        dict(from_offset=-1),
    ):
        with pytest.raises(ValueError):
            Range(**bad)


def test_gaps_in_sequence_numbers():
    assert gaps([1, 2, 3]) == []
    assert gaps([1, 2, 4, 7]) == [(3, 3), (5, 6)]
    assert gaps([3, 4]) == [(1, 2)]
    assert gaps([3, 4], first=3) == []
    assert gaps([2, 2, 1, 3]) == []  # repeats and order do not matter
    assert gaps([]) == []
