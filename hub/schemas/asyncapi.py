"""The AsyncAPI 3.0 document of the hub's topics, generated from the topic table (`hub.schemas.topics`) and the Avro schemas
(`hub asyncapi`; committed as docs/asyncapi.yaml, a test keeps the two equal)."""

from __future__ import annotations

import re

import yaml

from hub.domain import publishers
from hub.schemas import topics
from hub.schemas.codec import Codec, default_codec

AVRO_FORMAT = "application/vnd.apache.avro;version=1.9.0"
KAFKA_BINDING = "0.5.0"
CE_HEADERS = {
    "type": "object",
    "description": "CloudEvents Kafka binary-mode attributes (every record the hub writes carries them).",
    "properties": {
        "ce_specversion": {"type": "string", "const": "1.0"},
        "ce_id": {"type": "string", "description": "= event_id of the record: the idempotency key (drop repeats by it)"},
        "ce_type": {"type": "string", "description": "fi.integrationhub.<Name>.v1"},
        "ce_source": {"type": "string", "format": "uri-reference",
                      "description": "the record's `source` (the publishing system or authority id) as an RFC 3986 URI-reference, an "
                                     "absolute path: <kind>:<rest> as /<kind>/<rest>, an id without a colon as one segment, each part "
                                     "percent-encoded where a path needs it (wellbeing_area:04 is /wellbeing_area/04, hub:routing "
                                     "/hub/routing, migri /migri); webhooks' CloudEvents `source` is the same"},
        "ce_time": {"type": "string", "format": "date-time", "description": "occurred_at of the record"},
        "content-type": {"type": "string", "const": "application/avro", "description": "Avro in the Confluent wire format (magic byte 0, 4-byte schema id, body)"},
        "hub_replay_of": {"type": "string", "description": "only on records republished by `hub replay` or `hub dead-letters replay` (which keeps the original headers too): "
                                               "<topic>/<partition>/<offset> of the original"},
    },
    "required": ["ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "content-type"],
}
SIGNED_HEADERS = {
    **CE_HEADERS,
    "description": "CloudEvents Kafka binary-mode attributes, and the publisher's signature: records on an input topic must be "
                   "signed when the deployment checks publishers (HUB_PUBLISHERS); an unsigned or wrongly signed record is "
                   "dead-lettered with the reason forbidden.",
    "properties": {
        **CE_HEADERS["properties"],
        publishers.PUBLISHER_HEADER: {"type": "string", "description": "the publisher's id, e.g. municipality:091, employment_authority:08 or migri"},
        publishers.SIGNATURE_HEADER: {"type": "string", "description": "v1,<base64 HMAC-SHA256 over ce_id + '.' + the value bytes>; "
                                                                      "several space-separated signatures during a key rotation"},
    },
}
# what a signed publisher may put in an identity field (hub.domain.publishers.IDENTITY_FIELDS)
_ALLOWANCE = {
    "sources": "its own id (or a source configured for it)",
    "authorities": "its own id (or an authority configured for it)",
    "employment_areas": "the code of its own employment area (employment_authority:<code>)",
}
KINDS = ["municipality", "wellbeing_area", "employment_authority"]


def _identity_rule(schema: str) -> str:
    fields = publishers.IDENTITY_FIELDS.get(schema, ())
    rules = "; ".join(f"`{name}` must be {_ALLOWANCE[allowance]}" for name, allowance in fields)
    return (f" Signed by its publisher (headers {publishers.PUBLISHER_HEADER}, {publishers.SIGNATURE_HEADER}); {rules}; "
            f"a record that breaks this is dead-lettered with the reason {publishers.FORBIDDEN}.") if fields else ""


def _channel_id(spec: topics.TopicSpec) -> str:
    name = spec.schema
    return name[0].lower() + name[1:]


def document(codec: Codec | None = None, version: str | None = None) -> dict:
    """The AsyncAPI document as a dict (deterministic: same code, same document)."""
    codec = codec or default_codec()
    if version is None:
        from importlib.metadata import version as package_version

        version = package_version("integration-hub")
    channels: dict = {}
    operations: dict = {}
    messages: dict = {}
    by_address: dict[str, str] = {}  # a topic (family) that carries several schemas is one channel with several messages
    for spec in topics.TOPICS:
        cid = by_address.setdefault(spec.address, _channel_id(spec))
        name = spec.schema
        raw = codec.raw_schema(name)
        messages[name] = {
            "name": name,
            "title": name,
            "summary": raw.get("doc", name),
            "contentType": "application/avro",
            "headers": SIGNED_HEADERS if spec.address in topics.INPUT_TOPICS else CE_HEADERS,
            "payload": {"schemaFormat": AVRO_FORMAT, "schema": raw},
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": spec.key},
                    "schemaIdLocation": "payload",
                    "schemaIdPayloadEncoding": "confluent",
                    "schemaLookupStrategy": "RecordNameStrategy" if spec.per_recipient else "TopicNameStrategy",
                    "bindingVersion": KAFKA_BINDING,
                }
            },
            "x-schema-id": codec.schema_id(name),
        }
        channel = {
            "address": spec.address,
            "title": spec.address,
            "description": spec.description + (_identity_rule(name) if spec.address in topics.INPUT_TOPICS else ""),
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {"kafka": {"bindingVersion": KAFKA_BINDING} if spec.per_recipient else {"topic": spec.address, "bindingVersion": KAFKA_BINDING}},
        }
        if spec.per_recipient:
            channel["description"] += " One topic per recipient: a recipient's credentials give access to its own topic only."
            channel["parameters"] = {
                "kind": {"enum": KINDS, "description": "The recipient's kind, as in its authority id <kind>:<code>."},
                "code": {
                    "description": "The recipient's code: municipality code (3 digits, e.g. 091), wellbeing area code (e.g. 04) or employment area code (e.g. 43); `hub authorities --municipality CODE` names them.",
                    "examples": ["091", "04", "43"],
                },
            }
        if cid in channels:  # another schema on a topic (family) listed before: its message joins that channel
            channels[cid]["messages"].update(channel["messages"])
            channels[cid]["description"] += " " + spec.description
        else:
            channels[cid] = channel
        ref = [{"$ref": f"#/channels/{cid}/messages/{name}"}]
        operations[f"send{name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{cid}"},
            "summary": f"Sent by: {', '.join(spec.publishers)}.",
            "messages": ref,
        }
        operations[f"receive{name}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{cid}"},
            "summary": f"Received by: {', '.join(spec.subscribers)}.",
            "messages": ref,
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Integration hub",
            "version": version,
            "description": (
                "Events of the integration hub (Act on the Promotion of Integration 681/2023): population-register changes in, "
                "and the routing facts of their authorities (jobseeker status from the employment authorities, residence permits "
                "from the Finnish Immigration Service, service needs from municipalities and wellbeing areas); newcomers routed to the responsible authorities as referrals, consent-gated plan requests and consent notices. Values are Avro in "
                "the Confluent wire format; the schemas are served read-only by `hub registry` (Confluent Schema Registry REST API) "
                "under the ids in x-schema-id. Every record carries CloudEvents binary-mode headers. Referrals carry a per-recipient "
                "`sequence` for gap detection (`hub resend --recipient ID --from-seq N` fills a gap)."
            ),
        },
        "defaultContentType": "application/avro",
        "servers": {
            "production": {
                "host": "kafka-1.example:9092",
                "protocol": "kafka",
                "description": "The deployment's Kafka cluster (HUB_KAFKA_URL); replace the host with yours.",
                "bindings": {"kafka": {"schemaRegistryUrl": "http://localhost:8081", "schemaRegistryVendor": "confluent", "bindingVersion": KAFKA_BINDING}},
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


class _Yaml12Dumper(yaml.SafeDumper):
    """A SafeDumper that quotes every string a YAML 1.2 reader would take for something else.

    PyYAML resolves plain scalars by YAML 1.1, so it writes the string "091" (no valid 1.1 octal)
    unquoted, and a YAML 1.2 reader (the AsyncAPI tools) reads it as the integer 91. With the YAML
    1.2 core schema's implicit types added, any string that looks like a 1.2 number, boolean or null
    is emitted quoted."""


for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("tag:yaml.org,2002:float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
     "-+.0123456789"),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL)$", "~nN"),
):
    _Yaml12Dumper.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


def render(doc: dict | None = None) -> str:
    """YAML text of the document (key order kept, unicode as is), read the same by YAML 1.1 and 1.2 readers."""
    return yaml.dump(doc or document(), Dumper=_Yaml12Dumper, sort_keys=False, allow_unicode=True, width=120)
