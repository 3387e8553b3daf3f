"""`hub publish`: a publisher's helper to send one signed record from its JSON form."""

from __future__ import annotations

import asyncio
import json

import click

from hub.commands.context import Refused, load_settings, wait_for
from hub.schemas import facts
from hub.schemas import topics as names

SCHEMA_OF_TOPIC = {
    names.POPULATION_CHANGES: "PopulationChange",
    names.ASSESSMENTS: "AssessmentCompleted",
    names.CONSENTS: "Consent",
    names.REFERRAL_STATUS: "ReferralStatus",
    **facts.SCHEMA_OF_TOPIC,  # jobseeker status, residence permits, service needs
}


@click.command("publish")
@click.option("--topic", required=True, help="Input topic, e.g. hub.assessments.v1 or hub.jobseeker-status.v1.")
@click.option("--as", "publisher_id", default=None, help="Your publisher id in HUB_PUBLISHERS, e.g. municipality:091 (required unless --unsigned).")
@click.option("--schema", "name", default=None, help="Avro schema name (default: the topic's).")
@click.option("--key", "record_key", default=None,
              help="Kafka key (default: the record's person_key or referral_id; none for a routing fact). Give the routing facts "
                   "a stable key of the person in your system (e.g. your client number), never the identity code.")
@click.option("--dry-run", is_flag=True, help="Print the headers and the record's JSON form instead of sending.")
@click.option("--unsigned", is_flag=True,
              help="Send without a signature, for a deployment that runs without publisher identity (HUB_PUBLISHERS unset, e.g. a test deployment).")
@click.argument("file", type=click.File("rb"))
def publish_command(topic: str, publisher_id: str | None, name: str | None, record_key: str | None, dry_run: bool, unsigned: bool, file) -> None:
    """Sign FILE (one record in the JSON form of its Avro schema) as --as and publish it on --topic.

    The key comes from the publishers file (HUB_PUBLISHERS) and the variable it names. The record is
    checked first as the hub will check it: a record in another authority's name is refused here.
    A deployment without publisher identity (its hub runs without HUB_PUBLISHERS) takes records
    unsigned: send them with --unsigned (refused when HUB_PUBLISHERS is set, where the hub would
    dead-letter an unsigned record). Exit status: 0 sent; 1 the record is refused or the broker did
    not answer; 2 a usage error.
    """
    from hub.domain import hetu
    from hub.domain.publishers import authorize, sign_headers
    from hub.schemas.codec import CodecError, default_codec
    from hub.schemas.envelope import cloudevent_headers

    settings = load_settings()
    publisher = None
    if unsigned:
        if settings.publishers is not None:
            raise Refused("--unsigned: this deployment checks publisher identity (HUB_PUBLISHERS is set) and would dead-letter an "
                          "unsigned record; sign it with --as YOUR_ID instead")
    elif settings.publishers is None:
        raise Refused("HUB_PUBLISHERS is not set, so there is no key to sign with. On a deployment without publisher identity "
                      "(its hub runs without HUB_PUBLISHERS) send the record with --unsigned; otherwise set HUB_PUBLISHERS to the "
                      "publishers file holding your id and the variable of your key, and give --as YOUR_ID")
    elif publisher_id is None:
        raise Refused("--as YOUR_ID is required to sign: your publisher id in the publishers file (HUB_PUBLISHERS)")
    else:
        publisher = settings.publishers.get(publisher_id)
        if publisher is None:
            raise Refused(f"--as {publisher_id}: not in the publishers file (HUB_PUBLISHERS)")
    if record_key is not None and hetu.PATTERN.search(record_key):
        raise click.UsageError("--key holds an identity code (henkilötunnus), which never goes in a Kafka key; "
                               "use your own id of the person, e.g. your client number")
    if topic not in SCHEMA_OF_TOPIC and names.spec_for_topic(topic) is not None:
        raise click.UsageError(f"--topic {topic}: only the hub writes it; publish on an input topic ({', '.join(SCHEMA_OF_TOPIC)})")
    name = name or SCHEMA_OF_TOPIC.get(topic)
    if name is None:
        raise click.UsageError(f"--topic {topic} is not an input topic; give --schema")
    codec = default_codec()
    try:
        record = codec.from_json(name, file.read())
        value = codec.encode(name, record)
    except CodecError as exc:
        raise click.ClickException(f"{file.name}: not a valid {name}: {exc.message}") from None
    headers = cloudevent_headers(name, record)
    if publisher is not None:
        verdict = authorize(publisher, name, record)
        if not verdict.allowed:
            raise click.ClickException(f"{file.name}: {verdict.message}")
        headers = sign_headers(headers, value, publisher.id, publisher.keys[0])
    key = record_key or record.get("person_key") or record.get("referral_id")
    if dry_run:
        click.echo(json.dumps({"topic": topic, "key": key, "headers": {k: v.decode() for k, v in headers},
                               "record": codec.to_jsonable(name, record)}, ensure_ascii=False))
        return
    if not settings.kafka_url:
        raise click.UsageError("set HUB_KAFKA_URL to the hub's broker")
    wait_for(settings, kafka_url=settings.kafka_url)
    from hub.adapters.kafka.producer import EventProducer
    from hub.adapters.kafka.security import kafka_client_options

    async def send() -> None:
        async with EventProducer(settings.kafka_url, codec, security=kafka_client_options(settings)) as producer:
            await producer.send_raw(topic, key.encode() if key else None, value, headers)

    asyncio.run(send())
    click.echo(str(record["event_id"]))


def register_commands(main: click.Group) -> None:
    main.add_command(publish_command)
