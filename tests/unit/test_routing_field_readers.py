"""The routing model's field readers and `finnish_day` serve both the newcomer (RoutingInput) and the
RoutingFact (hub.routing.circumstances, which names the record in its errors): one definition each."""

import datetime as dt

import pytest

from hub.routing import circumstances as c
from hub.routing import model
from hub.routing.model import InputError, RoutingInput


def test_the_day_in_finland_is_one_definition_for_newcomers_and_facts():
    late = dt.datetime(2025, 3, 1, 22, 30, tzinfo=dt.timezone.utc)  # 00:30 on 2 March in Helsinki
    assert model.finnish_day(late) == model.finnish_day(late.replace(tzinfo=None)) == dt.date(2025, 3, 2)
    assert RoutingInput(occurred_at=late).reference_date == dt.date(2025, 3, 2) and RoutingInput().reference_date is None
    assert c._finnish_day(late) == dt.date(2025, 3, 2)
    assert c._finnish_day("2025-03-01") is None and c._finnish_day(dt.datetime.max.replace(tzinfo=dt.timezone.utc)) is None
    with pytest.raises(OverflowError):
        model.finnish_day(dt.datetime.max.replace(tzinfo=dt.timezone.utc))


@pytest.mark.parametrize("reader, value, expected", [
    (model.text_field, "  x ", "x"), (model.text_field, " ", None),
    (model.date_field, "2025-03-01", dt.date(2025, 3, 1)), (model.date_field, dt.datetime(2025, 3, 1, 5), dt.date(2025, 3, 1)),
    (model.timestamp_field, "2025-03-01T09:00:00Z", dt.datetime(2025, 3, 1, 9, tzinfo=dt.timezone.utc)),
    (model.timestamp_field, dt.datetime(2025, 3, 1, 9), dt.datetime(2025, 3, 1, 9, tzinfo=dt.timezone.utc)),
])
def test_the_readers_read(reader, value, expected):
    assert reader({"f": value}, "f") == expected and reader({}, "f") is None


@pytest.mark.parametrize("field, value, message", [
    ("source", 5, "RoutingFact source must be text or null"),
    ("status_date", "20250301", "RoutingFact status_date must be a real date YYYY-MM-DD or null"),
    ("occurred_at", "2025-03-01T09:00:00", "RoutingFact occurred_at must be an RFC 3339 timestamp with offset"),
])
def test_a_routing_facts_errors_name_the_record_and_a_newcomers_do_not(field, value, message):
    rec = {"kind": c.JOBSEEKER_STATUS, "event_id": "e", "person_key": "pk", "occurred_at": "2025-06-01T09:00:00Z",
           "jobseeker_status": "registered", "status_date": "2025-05-01", field: value}
    with pytest.raises(InputError) as exc:
        c.Fact.from_record(rec)
    assert exc.value.message.startswith(message)
    with pytest.raises(InputError) as exc:
        {"source": model.text_field, "status_date": model.date_field, "occurred_at": model.timestamp_field}[field]({field: value}, field)
    assert exc.value.message.startswith(field)
