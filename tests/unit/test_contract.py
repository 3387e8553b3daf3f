"""The wire contract's small helpers: topic families, the Z time form, the Kafka URL's one parser."""

import datetime as dt

import pytest

from hub.adapters.kafka.security import bootstrap_servers, faust_url
from hub.domain.clock import iso_utc
from hub.schemas import topics
from hub.schemas.envelope import ce_type, cloudevent_headers, envelope


@pytest.mark.parametrize("authority", ["municipality:091", "wellbeing_area:04", "employment_authority:43"])
def test_every_per_recipient_topic_belongs_to_its_family(authority):
    for topic, schema in zip(topics.recipient_topics(authority), ("Referral", "PlanRequest", "Notice")):
        spec = topics.spec_for_topic(topic)
        assert spec is not None and spec.per_recipient and spec.schema == schema


def test_a_malformed_authority_has_no_topic():
    with pytest.raises(ValueError, match="not an authority id"):
        topics.referral_topic("municipality-091")


def test_iso_utc():
    helsinki = dt.timezone(dt.timedelta(hours=2))
    assert iso_utc(dt.datetime(2026, 11, 16, 7, 0, tzinfo=helsinki)) == "2026-11-16T05:00:00Z"
    assert iso_utc(dt.datetime(2026, 11, 16, 5, 0)) == "2026-11-16T05:00:00Z"  # naive: taken as UTC
    assert iso_utc(dt.datetime(2026, 11, 16, 5, 0, 0, 137000, tzinfo=dt.timezone.utc), "milliseconds") == "2026-11-16T05:00:00.137Z"


def test_cloudevent_headers_carry_the_type_and_the_z_time():
    record = envelope("hub:test", occurred_at=dt.datetime(2026, 11, 16, 5, 0, tzinfo=dt.timezone.utc))
    headers = dict(cloudevent_headers("Referral", record))
    assert headers["ce_type"] == ce_type("Referral").encode() == b"fi.integrationhub.Referral.v1"
    assert headers["ce_time"] == b"2026-11-16T05:00:00Z"


@pytest.mark.parametrize(("url", "servers"), [
    ("kafka://h1:9092", ["h1:9092"]),
    ("kafka://h1:9092;kafka://h2:9092", ["h1:9092", "h2:9092"]),
    ("h1:9092, h2:9092", ["h1:9092", "h2:9092"]),
    ("h1:9092;", ["h1:9092"]),
])
def test_bootstrap_servers(url, servers):
    assert bootstrap_servers(url) == servers


def test_faust_url():
    assert faust_url("h1:9092") == "kafka://h1:9092"
    assert faust_url("kafka://h1:9092") == "kafka://h1:9092"
