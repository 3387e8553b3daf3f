"""`hub registry` with clients we did not write: confluent-kafka's SchemaRegistryClient, its
AvroSerializer with default settings (auto.register.schemas, TopicNameStrategy) and its
AvroDeserializer, on records of every version of every schema (history included); the hub's codec
decodes what AvroSerializer wrote, and AvroDeserializer decodes what the hub's codec wrote."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fastavro
import fastavro.utils
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from hub.schemas import topics
from hub.schemas.codec import default_codec

pytestmark = pytest.mark.integration

codec = default_codec()
VERSIONS = [(v.name, v.number) for name in codec.names for v in codec.versions(name)]


@pytest.fixture(scope="module")
def registry_url():
    """`hub registry --port 0` as its own process; stopped with SIGTERM, which it answers by a graceful stop (exit 0)."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "registry", "--host", "127.0.0.1", "--port", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(root)}, cwd=root)
    try:
        line = proc.stderr.readline()
        assert "schema registry on http://" in line, line
        yield line.split(" on ")[1].split()[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def client(registry_url):
    return SchemaRegistryClient({"url": registry_url})


def topic_of(name: str) -> str:
    """A topic that carries `name`: its fixed topic, or one recipient's topic of its family."""
    spec = next(s for s in topics.TOPICS if s.schema == name)
    return spec.address.format(kind="municipality", code="091") if spec.per_recipient else spec.address


def generated(raw: dict) -> dict:
    return next(fastavro.utils.generate_many(fastavro.parse_schema(raw, named_schemas={}), 1))


@pytest.mark.parametrize(("name", "number"), VERSIONS, ids=[f"{n}-v{v}" for n, v in VERSIONS])
def test_avro_serializer_with_default_settings_and_avro_deserializer_on_every_version(client, name, number):
    version = codec.versions(name)[number - 1]
    topic = topic_of(name)
    ctx = SerializationContext(topic, MessageField.VALUE)
    record = generated(version.raw)
    data = AvroSerializer(client, json.dumps(version.raw))(record, ctx)  # default settings: registers (identical) = looks up
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == version.schema_id  # the version's own id
    expected = fastavro.schemaless_reader(io.BytesIO(data[5:]), fastavro.parse_schema(version.raw, named_schemas={}), None)

    # confluent-kafka's deserializer: the writer's version from the registry by its id
    assert AvroDeserializer(client)(data, ctx) == expected
    # ... and into the current schema, as a reader on the newest version
    current = AvroDeserializer(client, json.dumps(codec.raw_schema(name)))(data, ctx)
    assert set(current) == {f["name"] for f in codec.raw_schema(name)["fields"]}
    # the hub's codec reads it into the current schema too
    event = codec.decode(data, name, check_bounds=False)
    assert (event.name, event.schema_id) == (name, version.schema_id) and event.record == current


@pytest.mark.parametrize("name", codec.names)
def test_avro_deserializer_reads_what_the_hubs_codec_wrote(client, name):
    record = codec.decode(codec.encode(name, generated(codec.raw_schema(name))), check_bounds=False).record
    ctx = SerializationContext(topic_of(name), MessageField.VALUE)
    assert AvroDeserializer(client)(codec.encode(name, record), ctx) == record


def test_record_name_strategy_and_the_client_api(client):
    from confluent_kafka.schema_registry import Schema, record_subject_name_strategy

    v1 = codec.versions("PopulationChange")[0]
    serialize = AvroSerializer(client, json.dumps(v1.raw), conf={"subject.name.strategy": record_subject_name_strategy})
    data = serialize(generated(v1.raw), SerializationContext(topics.POPULATION_CHANGES, MessageField.VALUE))
    assert int.from_bytes(data[1:5], "big") == v1.schema_id
    subject = topics.record_subject("PopulationChange")
    assert client.get_versions(subject) == [v.number for v in codec.versions("PopulationChange")]
    assert client.get_latest_version(subject).schema_id == codec.schema_id("PopulationChange")
    assert client.lookup_schema(subject, Schema(json.dumps(v1.raw), "AVRO")).version == 1
    assert client.get_compatibility(subject) == "FULL_TRANSITIVE"
    assert client.test_compatibility(subject, Schema(json.dumps(codec.raw_schema("PopulationChange")), "AVRO")) is True
    assert client.get_subjects() == list(topics.subjects())


def test_a_schema_the_hub_does_not_have_is_refused_with_the_error_naming_the_fix(client):
    changed = json.loads(json.dumps(codec.raw_schema("Referral")))
    changed["fields"].append({"name": "priority", "type": "int", "default": 0})
    serialize = AvroSerializer(client, json.dumps(changed))
    with pytest.raises(SchemaRegistryError) as err:
        serialize(generated(changed), SerializationContext(topics.referral_topic("wellbeing_area:04"), MessageField.VALUE))
    assert err.value.error_code == 42205 and "READONLY" in err.value.error_message and err.value.http_status_code == 422


def test_the_registry_stops_gracefully_on_sigterm():
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "registry", "--port", "0"], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
    try:
        url = proc.stderr.readline().split(" on ")[1].split()[0]
        import urllib.request

        with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
            assert resp.status == 200 and json.loads(resp.read())["status"] == "ok"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0 and time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_health_head_and_a_bounded_body():
    import urllib.error
    import urllib.request

    from hub.adapters.registry_server import MAX_BODY, serving

    with serving() as url:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
            assert resp.status == 200 and json.loads(resp.read())["versions"] == len(VERSIONS)
        with urllib.request.urlopen(urllib.request.Request(f"{url}/subjects", method="HEAD"), timeout=5) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/vnd.schemaregistry.v1+json")
        big = urllib.request.Request(f"{url}/subjects/fi.integrationhub.Referral", data=b"x" * (MAX_BODY + 1), method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(big, timeout=5)
        assert err.value.code == 413
