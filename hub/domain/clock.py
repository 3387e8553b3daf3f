"""The hub's time helpers: the current UTC time, its ISO-8601 `Z` form, and the one clock-skew
policy: an event cannot have happened after the hub's clock says now.

Every input topic's `occurred_at` is checked against the processing worker's clock. Producers'
clocks may run a little ahead of ours, so a record up to `DEFAULT_CLOCK_SKEW` (5 minutes,
`HUB_CLOCK_SKEW`) ahead is accepted; anything later is `future_date` and goes to dead letters:
a wrong source clock, a mistyped year or a forged record, never a fact to act on. Dates that may
lie ahead by nature (a consent's `valid_until`, a move registered in advance) are not checked here.

The check is monotone in time: a record accepted once is accepted again on a later replay.
Pure apart from `utcnow`: the check is given `now`.
"""

from __future__ import annotations

import datetime as dt

from hub.domain.errors import Rejected

DEFAULT_CLOCK_SKEW = dt.timedelta(minutes=5)
REASON = "future_date"


def utcnow() -> dt.datetime:
    """The current time, timezone-aware in UTC."""
    return dt.datetime.now(dt.timezone.utc)


def iso_utc(value: dt.datetime, timespec: str = "auto") -> str:
    """`value` in UTC as ISO 8601 with a `Z` (`2026-11-16T05:00:00Z`); a naive value is taken as UTC."""
    return _aware(value).astimezone(dt.timezone.utc).isoformat(timespec=timespec).replace("+00:00", "Z")


class FutureDate(Rejected):
    """An event time after the hub's clock (plus the tolerated skew). The message has no personal data."""

    def __init__(self, message: str):
        super().__init__(REASON, message)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def check_not_future(when: object, now: dt.datetime, *, what: str = "occurred_at", skew: dt.timedelta = DEFAULT_CLOCK_SKEW) -> None:
    """Raise FutureDate when `when` (a datetime; anything else is left to the schema checks) is more
    than `skew` after `now`."""
    if not isinstance(when, dt.datetime):
        return
    when, now = _aware(when), _aware(now)
    try:
        limit = now + skew
    except OverflowError:  # a clock at the end of the calendar: nothing can be later
        return
    if when > limit:
        raise FutureDate(
            f"{what} {when.astimezone(dt.timezone.utc).isoformat()} is after the hub's clock "
            f"({now.astimezone(dt.timezone.utc).isoformat(timespec='seconds')}, {int(skew.total_seconds())} s of clock skew tolerated); "
            "fix the producer's clock or the record and publish it again"
        )
