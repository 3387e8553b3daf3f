"""Hypothesis strategies that generate valid records for any of the hub's Avro schemas."""

from __future__ import annotations

import datetime as dt
import uuid

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

_TS = st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2200, 1, 1), timezones=st.just(dt.timezone.utc)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)
)


def for_schema(schema) -> st.SearchStrategy:
    """A strategy for values of a parsed fastavro schema (records as dicts, as fastavro reads them)."""
    if isinstance(schema, list):
        return st.one_of(*[for_schema(b) for b in schema])
    if isinstance(schema, str):
        schema = {"type": schema}
    t = schema["type"]
    logical = schema.get("logicalType")
    if t == "record":
        return st.fixed_dictionaries({f["name"]: for_schema(f["type"]) for f in schema["fields"]})
    if t == "array":
        return st.lists(for_schema(schema["items"]), max_size=3)
    if t == "enum":
        return st.sampled_from(schema["symbols"])
    if logical == "uuid":
        return st.uuids().map(lambda u: uuid.UUID(str(u)))
    if logical == "date":
        return st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2200, 1, 1))
    if logical == "timestamp-millis":
        return _TS
    return {
        "null": st.none(),
        "string": st.text(max_size=20),
        "boolean": st.booleans(),
        "int": st.integers(-(2**31), 2**31 - 1),
        "long": st.integers(-(2**63), 2**63 - 1),
        "bytes": st.binary(max_size=40),
        "double": st.floats(allow_nan=False),
    }[t]


def draw_many(strategy, n: int, seed: int) -> list:
    """`n` values of a hypothesis strategy, drawn by hypothesis itself (reproducible for a seed)."""
    out: list = []

    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value):
        out.append(value)

    collect._hypothesis_internal_use_seed = seed  # noqa: SLF001 - a seeded run (hypothesis.seed does the same)
    collect()
    return out
