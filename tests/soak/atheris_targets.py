"""Coverage-guided fuzz targets for atheris (run as a script: `python -m tests.soak.atheris_targets TARGET -runs=N`).

Each target feeds arbitrary bytes to one input boundary and fails (an uncaught exception, which
atheris reports with the input that caused it) only when the boundary breaks its contract:
- codec: `Codec.decode` raises nothing but CodecError, for any bytes and any expected schema;
- dvv: every change of any page is either mapped to events or a BadRecord (never an exception);
- route: `route_line` answers any line with an object holding decisions or a documented error code.
"""

from __future__ import annotations

import datetime as dt
import sys

import atheris

with atheris.instrument_imports(include=["hub"]):
    from hub.adapters.dvv.ingest import bad_page, process_page
    from hub.adapters.dvv.page import MalformedPage, read_pages
    from hub.commands.routing import route_line
    from hub.routing.reference import default_reference
    from hub.routing.rules import default_rules
    from hub.schemas.codec import CodecError, default_codec

CODEC = default_codec()
NAMES = ["PopulationChange", "Newcomer", "ReferralStatus", "AssessmentCompleted", "Consent"]
NOW = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
RULES, REFERENCE = default_rules(), default_reference()
ROUTE_CODES = {"invalid_json", "invalid_input", "invalid_field", "invalid_date", "missing_municipality", "unknown_municipality", "out_of_bounds"}


def codec_target(data: bytes) -> None:
    expect = NAMES[data[0] % len(NAMES)] if data else None
    try:
        CODEC.decode(data[1:], expect)
    except CodecError:
        pass


def dvv_target(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    for page in read_pages(text, "fuzz"):
        if isinstance(page, MalformedPage):
            bad_page(page)
            continue
        out = process_page(page, secret="s", now=NOW)
        assert len(out.bad) + len({ev["event_id"] for ev, _ in out.events}) >= 0
        assert all(b.reason and b.message for b in out.bad)


def route_target(data: bytes) -> None:
    line = data.decode("utf-8", "surrogateescape")
    answer = route_line(line, RULES, REFERENCE)
    assert set(answer) in ({"event_id", "decisions"}, {"event_id", "error"}), answer
    if "error" in answer:
        assert answer["error"]["code"] in ROUTE_CODES, answer["error"]["code"]


TARGETS = {"codec": codec_target, "dvv": dvv_target, "route": route_target}

if __name__ == "__main__":
    target = TARGETS[sys.argv[1]]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()
