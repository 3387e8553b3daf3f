"""Records the tests build, shared by the unit and the integration tests."""

from __future__ import annotations

import datetime as dt

from hub.schemas.envelope import envelope

CHANGES_AT = dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)


def population_change(pid: str, change_type: str = "immigration", muni: str = "091", **kw) -> dict:
    """A DVV population change of person `pid` (a PopulationChange record, not yet encoded): by
    default an arrival from abroad (previous country SY) in `muni`; `kw` sets or adds fields."""
    rec = envelope("dvv:test", CHANGES_AT)
    rec.update(person_id=pid, change_type=change_type, municipality_code=muni, previous_country="SY" if change_type == "immigration" else None,
               nationalities=["SY"], mother_tongue="ar", move_date=dt.date(2025, 2, 20))
    rec.update(kw)
    return rec
