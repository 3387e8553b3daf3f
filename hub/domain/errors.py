"""The one shape of a reason-coded rejection: a stable `reason` code (dead letters, metrics labels,
exit messages) and a `message` that says what is wrong and what to do, without an identity code."""

from __future__ import annotations


class Rejected(ValueError):
    """A record, value or request the hub refuses. `reason` is a stable snake_case code; `message`
    never quotes personal data (no identity code), so it may be logged and dead-lettered as is."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message
