"""Every hub record's headers are CloudEvents Kafka binary mode, as the CloudEvents SDK reads them."""

import datetime as dt

import fastavro.utils
import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary
from cloudevents.core.formats.json import JSONFormat

from hub.schemas.codec import default_codec
from hub.schemas.envelope import cloudevent_headers, envelope


@pytest.mark.parametrize("name", default_codec().names)
def test_sdk_reads_the_attributes_of_every_event_type(name):
    codec = default_codec()
    record = next(iter(fastavro.utils.generate_many(codec.parsed_schema(name), 1)))
    record.update(envelope("municipality:091", occurred_at=dt.datetime(2026, 11, 16, 8, 30, 0, 123000, tzinfo=dt.timezone.utc)))
    value = codec.encode(name, record)
    event = from_binary(KafkaMessage(headers=dict(cloudevent_headers(name, record)), key=b"pk", value=value), JSONFormat())
    assert event.get_specversion() == "1.0"
    assert event.get_id() == record["event_id"]
    assert event.get_type() == f"fi.integrationhub.{name}.v1"
    assert event.get_source() == "municipality:091"
    assert event.get_time() == record["occurred_at"]
    assert event.get_datacontenttype() == "application/avro"
    assert event.get_data() == value
