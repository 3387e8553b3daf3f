"""Commands for the subscribers' side: `hub registry`, `hub schemas check`, `hub replay`,
`hub resend`, `hub gaps`, `hub asyncapi`."""

from __future__ import annotations

import asyncio
import errno
import socket
import sys

import click

from hub.adapters.kafka.security import faust_url
from hub.commands.context import load_settings, wait_for
from hub.domain.clock import iso_utc

EXIT_FAILED = 1


def _kafka_url(holds: str = "the topic", nothing_to: str = "replay") -> str:
    """HUB_KAFKA_URL, waited for; without it a usage error naming what the broker must hold and
    what the command would do (`holds`, `nothing_to`)."""
    settings = load_settings()
    if not settings.kafka_url:
        raise click.UsageError(f"set HUB_KAFKA_URL to the broker that holds {holds} (the embedded broker starts empty, so there is nothing to {nothing_to})")
    url = faust_url(settings.kafka_url)
    wait_for(settings, kafka_url=url)
    return url


def _security() -> dict:
    """TLS/SASL options for the Kafka clients of these commands (HUB_KAFKA_SECURITY_PROTOCOL and friends)."""
    from hub.adapters.kafka.security import KafkaSecurityError, kafka_client_options

    try:
        return kafka_client_options(load_settings())
    except KafkaSecurityError as exc:
        raise click.UsageError(str(exc)) from None


@click.command("registry")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for every interface, as in a container).")
@click.option("--port", default=8081, show_default=True, type=click.IntRange(0, 65535), help="Port (8081 is the Schema Registry's usual one; 0 picks a free port).")
def registry_command(host: str, port: int) -> None:
    """Serve the hub's Avro schemas as a Confluent Schema Registry in READONLY mode.

    Every version of every schema, each with its own permanent id (hub/schemas/schema_ids.json),
    so standard serializers and deserializers (confluent-kafka's AvroSerializer with its default
    settings and AvroDeserializer, Kafka Connect, ksqlDB) pointed at http://HOST:PORT resolve the
    id in any record the hub or a publisher wrote. Subjects: <topic>-value for the fixed topics
    and fi.integrationhub.<Name> (RecordNameStrategy) for every schema. Registering a schema
    identical to one of a subject's versions answers that version's id; any other write is
    refused (error 42205): the schemas change only in the hub's repository. GET /health answers
    probes. Runs until SIGTERM or Ctrl-C, then finishes the requests in flight.
    """
    from hub.adapters.registry_server import serve
    from hub.commands.context import configure_logging

    configure_logging(load_settings().log_level)  # HUB_LOG_LEVEL; INFO logs each request (logger hub.registry.access)

    def ready(bound: int) -> None:
        click.echo(f"schema registry on http://{host}:{bound} (READONLY; Ctrl-C stops)", err=True)

    try:
        asyncio.run(serve(host, port, on_ready=ready))
    except OSError as exc:
        raise click.UsageError(f"cannot listen on {host}:{port}: {_listen_fix(exc)}") from None
    except KeyboardInterrupt:
        pass


def _listen_fix(exc: OSError) -> str:
    """Why `hub registry` could not listen, and which option fixes it."""
    if isinstance(exc, socket.gaierror):
        return f"{exc.strerror or exc}: --host names no address; give this machine's address or name (0.0.0.0 for every interface)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "--host is not an address of this machine; give one of its addresses (0.0.0.0 for every interface)"
    if exc.errno == errno.EACCES:
        return "permission denied (a port below 1024 needs privileges); choose another --port"
    if exc.errno == errno.EADDRINUSE:
        return "the port is in use; choose another --port (0 picks a free one)"
    return f"{exc.strerror or exc}; check --host and --port"


@click.group("schemas")
def schemas_group() -> None:
    """The hub's Avro schemas: compatibility and ids of their versions; registering them in a registry of your own."""


@schemas_group.command("check")
@click.option("--samples", default=50, show_default=True, type=click.IntRange(1, 10000), help="Generated records per version pair for the data check.")
def schemas_check(samples: int) -> None:
    """Check every schema's versions against its compatibility mode.

    Versions are hub/schemas/history/<Name>/v1.avsc, v2.avsc, ...; the newest must equal the
    schema in hub/schemas/. Modes are in hub/schemas/compatibility.json (BACKWARD by default).
    Each required (reader, writer) pair passes the Avro resolution rules (a field the writer lacks
    needs a default in the reader) and reads generated records written with the other.
    Exit status 0: compatible; 1: problems, each printed.
    """
    from hub.schemas.compatibility import check_repository

    lines, problems = check_repository(samples=samples)
    for line in lines:
        click.echo(line)
    for problem in problems:
        click.echo(f"INCOMPATIBLE {problem}", err=True)
    if problems:
        sys.exit(EXIT_FAILED)


@schemas_group.command("register")
@click.option("--url", required=True, help="The deployment's own Confluent-compatible schema registry, e.g. https://registry.example:8081.")
@click.option("--dry-run", is_flag=True, help="Only look up: print what would be registered or changed, change nothing.")
@click.option("--import-mode", is_flag=True,
              help="Put each subject that needs a version in IMPORT mode first (PUT /mode/<subject>) and back in READWRITE after.")
@click.option("--compatibility/--no-compatibility", "set_compatibility", default=True, show_default=True,
              help="Set each subject's compatibility level to the hub's (hub/schemas/compatibility.json).")
@click.option("--basic-auth-file", type=click.Path(exists=True, dir_okay=False),
              help="A file whose first line is USERNAME:PASSWORD, for a registry with basic authentication.")
def schemas_register(url: str, dry_run: bool, import_mode: bool, set_compatibility: bool, basic_auth_file: str | None) -> None:
    """Put every version of every schema into a schema registry the deployment runs itself.

    For a deployment whose serializers and tools use its own Confluent-compatible registry
    instead of `hub registry`. Every subject `hub registry` serves (<topic>-value of the fixed
    topics, fi.integrationhub.<Name> of every schema) gets every version of its schema, v1 first,
    each under the hub's own id (hub/schemas/schema_ids.json), because records carry those ids. A
    registry takes a given id only for a subject in IMPORT mode: set it yourself or pass
    --import-mode. Idempotent: a version already there under the hub's id is left alone; one there
    under another id is reported as a conflict and the subject is left as it is.

    Credentials for a registry with basic authentication: --basic-auth-file (never on the
    command line itself).

    Exit status 0: every version is there (or, with --dry-run, the plan was printed); 1: a subject
    failed, each printed with the registry's answer.
    """
    from pathlib import Path

    from hub.adapters.schema_export import register

    username = password = None
    if basic_auth_file:
        lines = Path(basic_auth_file).read_text(encoding="utf-8").splitlines()
        if not lines or ":" not in lines[0]:
            raise click.UsageError(f"--basic-auth-file {basic_auth_file}: the first line must be USERNAME:PASSWORD")
        username, _, password = lines[0].partition(":")
    try:
        outcome = register(url, dry_run=dry_run, import_mode=import_mode, set_compatibility=set_compatibility,
                           username=username, password=password,
                           progress=lambda line: click.echo(line, err=line.startswith("error")))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    verb = "would register" if dry_run else "registered"
    click.echo(f"{verb} {len(outcome.registered)} version(s), {len(outcome.present)} already there"
               + (f", {len(outcome.errors)} subject(s) failed" if outcome.errors else ""))
    if outcome.errors:
        sys.exit(EXIT_FAILED)


def _timestamp(ctx, param, value):
    if value is None:
        return None
    from hub.schemas.codec import parse_timestamp

    try:
        return parse_timestamp(value)
    except ValueError:
        raise click.BadParameter("give an RFC 3339 time with offset, e.g. 2026-11-16T08:00:00Z, or a date YYYY-MM-DD (midnight UTC)") from None


@click.command("replay")
@click.option("--topic", required=True, help="Topic to reprocess, e.g. hub.newcomers.v1.")
@click.option("--from-offset", type=click.IntRange(min=0), help="First offset (inclusive, in each partition).")
@click.option("--from-time", callback=_timestamp, help="First record time (RFC 3339 or YYYY-MM-DD).")
@click.option("--to-offset", type=click.IntRange(min=0), help="Last offset (inclusive). Default: the end of the topic now.")
@click.option("--to-time", callback=_timestamp, help="Last record time (inclusive).")
@click.option("--partition", "partitions", type=click.IntRange(min=0), multiple=True, help="Only this partition (repeatable). Default: all.")
def replay_command(topic: str, from_offset, from_time, to_offset, to_time, partitions) -> None:
    """Reprocess a range of a topic: republish its records onto the same topic.

    The records go back byte for byte (key, value, CloudEvents headers) with a header
    hub_replay_of=<topic>/<partition>/<offset>. The hub's processors are idempotent by event id,
    so a replay makes no duplicate referrals: it only redoes what was lost (e.g. a record that was
    dead-lettered before a fix). Topics the hub discloses on (hub.referrals.*, hub.plan-requests.*,
    hub.notices.*) are refused: replay the input topic instead, or `hub resend` for referrals.
    Needs HUB_KAFKA_URL. Prints how many records were replayed, or "nothing to replay" (exit 0) when
    no record is in the range, e.g. a --from-time after the newest record.
    """
    from hub.adapters.replay import Range, ReplayRefused, check_replayable, replay

    try:
        check_replayable(topic)
    except ReplayRefused as exc:
        raise click.UsageError(str(exc)) from None
    try:
        window = Range(from_offset, from_time, to_offset, to_time)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    url, security = _kafka_url(), _security()
    try:
        result = asyncio.run(replay(url, topic, window, partitions=list(partitions) or None, security=security))
    except LookupError as exc:
        raise click.UsageError(str(exc)) from None
    except Exception as exc:  # broker unreachable and the like: a message, not a traceback
        click.echo(f"replay failed: {type(exc).__name__}: {exc}; check HUB_KAFKA_URL and that the broker is up", err=True)
        sys.exit(EXIT_FAILED)
    if not result.republished:
        start = f"from {iso_utc(from_time)}" if from_time is not None else f"from offset {from_offset}"
        click.echo(f"nothing to replay: {topic} has no record {start} on" + (" in the range given" if to_offset is not None or to_time else ""))
        return
    ranges = ", ".join(f"partition {p}: offsets {a}-{b}" for p, (a, b) in sorted(result.ranges.items()))
    click.echo(f"replayed {result.republished} record(s) of {topic} ({ranges})")


STREAM_CHOICE = click.Choice(["referrals", "plan-requests", "notices"])


def known_recipient(recipient: str) -> str:
    """`recipient` when it is an authority of the reference data (a recipient of a per-recipient
    topic); else a usage error (exit 2) naming the known ids nearest to it and how many there are."""
    from hub.routing.reference import known_authority_ids
    from hub.schemas.topics import referral_topic

    known = known_authority_ids()
    if recipient in known:
        return recipient
    kinds = {}
    for authority in known:
        kinds.setdefault(authority.split(":", 1)[0], []).append(authority)
    counts = ", ".join(f"{len(ids)} {kind}" for kind, ids in sorted(kinds.items()))
    try:
        referral_topic(recipient)
    except ValueError:
        # an identity code typed here by mistake is shown as <henkilötunnus> (hub.cli scrubs every error)
        raise click.BadParameter(f"{recipient!r} is not an authority id; use <kind>:<code> with a kind of {', '.join(sorted(kinds))}, "
                                 f"e.g. municipality:091, wellbeing_area:04, employment_authority:43", param_hint="--recipient") from None
    kind, code = recipient.split(":", 1)
    same = sorted(kinds.get(kind, ()))

    def distance(authority: str) -> tuple:
        other = authority.split(":", 1)[1]
        return (abs(int(other) - int(code)), other) if other.isdigit() and code.isdigit() else (0 if other[:1] == code[:1] else 1, other)

    nearest = sorted(same, key=distance)[:5]
    known_text = (f"known {kind} ids: {same[0]} to {same[-1]}, nearest {', '.join(sorted(nearest))}" if same
                  else f"no known id is of kind {kind!r}")
    raise click.BadParameter(f"unknown recipient {recipient}: not an authority of the reference data ({known_text}; {len(known)} recipients in all: "
                             f"{counts}; `hub topics` lists their topics)", param_hint="--recipient")


@click.command("resend")
@click.option("--recipient", required=True, metavar="AUTHORITY", help="Recipient authority id, e.g. wellbeing_area:04.")
@click.option("--stream", default="referrals", show_default=True, type=STREAM_CHOICE,
              help="The recipient's stream: its referrals (with withdrawals and due-date updates), plan requests or notices.")
@click.option("--from-seq", "--from", "from_seq", required=True, type=click.IntRange(min=1), help="First sequence number to send again.")
@click.option("--to-seq", "--to", "to_seq", type=click.IntRange(min=1), help="Last sequence number (inclusive). Default: the newest.")
def resend_command(recipient: str, stream: str, from_seq: int, to_seq: int | None) -> None:
    """Republish a recipient's records of one stream, from sequence number N on (to M).

    For a subscriber that found a gap in the `sequence` numbers of its topic (`hub gaps`): referrals
    (hub.referrals.<kind>.<code>.v1; Referral, ReferralWithdrawn and ReferralUpdated records share the numbering)
    from the referral ledger, plan requests (hub.plan-requests...) and notices (hub.notices...) from
    the outbox, as they were sent. The records keep their event ids, so repeats are recognisable;
    person_id is null in resent referrals (the ledger never stores identity codes). A number that is
    not sent again is listed with its reason: not sent yet, parked, withdrawn with a number no later
    record could take (its consent or legal basis ended: never sent), or a plan request whose
    consent or legal basis no longer holds.
    An id that is no recipient of the reference data is refused (exit 2), naming the known ones.
    Needs HUB_KAFKA_URL and HUB_DATABASE_URL.
    """
    from hub.adapters.database import create_engine
    from hub.schemas.topics import stream_topic

    known_recipient(recipient)
    if to_seq is not None and to_seq < from_seq:
        raise click.UsageError(f"--to-seq {to_seq} is before --from-seq {from_seq}")
    url, security = _kafka_url("the recipient's topics", "resend"), _security()
    settings = load_settings()
    wait_for(settings, database_url=settings.resolved_database_url())
    engine = create_engine(settings.resolved_database_url())
    topic = stream_topic(stream, recipient)
    skipped: dict[int, str] = {}
    try:
        if stream == "referrals":
            from hub.adapters.referral_ledger import ReferralLedger
            from hub.adapters.resend import resend

            sent = asyncio.run(resend(ReferralLedger(engine), url, recipient, from_seq, to_seq, security=security))
        else:
            sent, skipped = _resend_outbox(settings, engine, url, recipient, stream, from_seq, to_seq, security)
    except click.UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - broker or database unavailable: a message, not a traceback
        click.echo(f"resend failed: {type(exc).__name__}; check HUB_KAFKA_URL and HUB_DATABASE_URL (run `hub db upgrade` first)", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        engine.dispose()
    for sequence, why in sorted(skipped.items()):
        click.echo(f"sequence {sequence} not sent again: {why}", err=True)
    span = f"sequence {sent[0]}-{sent[-1]}" if sent else f"nothing published from sequence {from_seq}"
    click.echo(f"resent {len(sent)} record(s) to {topic} ({span})")


def _resend_outbox(settings, engine, url: str, recipient: str, stream: str, from_seq: int, to_seq: int | None, security: dict):
    """Plan requests or notices from the outbox; a plan request only while its consent or legal basis holds."""
    from hub.domain import publishers as identity
    from hub.adapters.database import session_factory
    from hub.adapters.disclosure_check import DisclosureCheck
    from hub.adapters.resend import resend_outbox
    from hub.consent import legal_bases

    sessions = session_factory(engine)
    try:
        check = DisclosureCheck(sessions, legal_bases.load(settings.consent_legal_bases)).why_not
    except legal_bases.LegalBasisFileError as exc:
        raise click.UsageError(str(exc)) from None
    key = settings.signing_key()
    sign = None if key is None else (lambda headers, value: identity.sign_headers(headers, value, settings.app_id, key))
    done = asyncio.run(resend_outbox(sessions, url, recipient, stream, from_seq, to_seq, why_not=check, sign=sign, security=security))
    return done.sent, done.skipped


@click.command("gaps")
@click.option("--recipient", required=True, metavar="AUTHORITY", help="Recipient authority id, e.g. wellbeing_area:04.")
@click.option("--stream", "streams", multiple=True, type=STREAM_CHOICE, help="Only this stream (repeatable). Default: all three.")
@click.option("--from-seq", "--from", "from_seq", type=click.IntRange(min=1),
              help="Count from this number (e.g. the first one your system kept). Default: 1, or the lowest on the topic once retention removed its start.")
def gaps_command(recipient: str, streams: tuple[str, ...], from_seq: int | None) -> None:
    """A recipient's gap check: read its own topic of each stream from the start and print the missing
    `sequence` ranges, with the `hub resend` command that fills each.

    Reads as a plain consumer without a group (the recipient's own Kafka user may run it: it reads
    only its own topics). Numbers after the last record on the topic cannot be told missing here.
    Records without a number (written before the stream was numbered) are counted, not checked.
    Exit status 0: no gap; 1: gaps (printed); 2: an id that is no recipient (the known ones are named).
    Needs HUB_KAFKA_URL.
    """
    from hub.adapters.resend import gaps, read_sequences
    from hub.schemas.topics import stream_topic

    known_recipient(recipient)
    url, security = _kafka_url("the recipient's topics", "check"), _security()
    found = False
    for stream in streams or ("referrals", "plan-requests", "notices"):
        topic = stream_topic(stream, recipient)
        try:
            sequences, unnumbered, trimmed = asyncio.run(read_sequences(url, topic, security=security))
        except LookupError:
            click.echo(f"{stream}: {topic}: no such topic (nothing sent to {recipient} on it yet)")
            continue
        except Exception as exc:  # noqa: BLE001 - broker unreachable, not authorised: a message, not a traceback
            click.echo(f"gap check failed: {type(exc).__name__}: {exc}; check HUB_KAFKA_URL and the Kafka user's read access to {topic}", err=True)
            sys.exit(EXIT_FAILED)
        first = from_seq or (min(sequences) if trimmed and sequences else 1)
        missing = gaps([n for n in sequences if n >= first], first=first)
        extra = f", {unnumbered} without a number" if unnumbered else ""
        if not sequences:
            click.echo(f"{stream}: {topic}: no numbered record{extra}")
            continue
        head = f"{stream}: {topic}: {len(sequences)} record(s), sequence {min(sequences)}-{max(sequences)}{extra}"
        if not missing:
            click.echo(f"{head}; no gap from {first}")
            continue
        found = True
        click.echo(f"{head}; missing {', '.join(f'{a}' if a == b else f'{a}-{b}' for a, b in missing)}")
        for a, b in missing:
            click.echo(f"  hub resend --recipient {recipient} --stream {stream} --from {a} --to {b}")
    if found:
        sys.exit(EXIT_FAILED)


@click.command("asyncapi")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), help="Write to this file instead of stdout (the repository keeps docs/asyncapi.yaml).")
def asyncapi_command(output: str | None) -> None:
    """Print the AsyncAPI 3.0 document of every hub topic (YAML).

    Channels (with the per-recipient address pattern hub.referrals.{kind}.{code}.v1 and its
    parameters), messages with their Avro schemas and schema ids, CloudEvents headers, Kafka
    bindings, and who sends and who receives each. Generated from the code, so it cannot drift:
    a test compares it with docs/asyncapi.yaml.
    """
    from hub.schemas.asyncapi import render

    text = render()
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


def _webhook_store():
    """The subscriptions and deliveries in HUB_DATABASE_URL; a database without their tables (never
    `hub db upgrade`d) is refused in one line naming the fix."""
    from hub.adapters.database import create_engine
    from hub.adapters.webhooks import WebhookStore
    from hub.commands.context import require_tables

    settings = load_settings(production=True)  # secrets and bodies sealed: no demo key
    wait_for(settings, database_url=settings.resolved_database_url())
    engine = create_engine(settings.resolved_database_url())
    require_tables(engine, {"webhook_subscriptions": (), "webhook_deliveries": ("sequence",)}, "webhook")
    return WebhookStore(engine, allow_loopback=settings.webhooks_allow_loopback)


class _WebhooksGroup(click.Group):
    """Every `hub webhooks` command: a database error is one line naming the fix (never a traceback
    with the SQL and its parameters, such as a callback URL)."""

    def invoke(self, ctx):
        from hub.commands.context import database_errors

        with database_errors("hub webhooks"):
            return super().invoke(ctx)


@click.group("webhooks", cls=_WebhooksGroup)
def webhooks_group() -> None:
    """Webhook delivery for recipients without Kafka (subscriptions in HUB_DATABASE_URL).

    Each record of a recipient's own topics (its referrals, plan requests and notices) is POSTed to its
    callback URL as a CloudEvents JSON body, signed per Standard Webhooks (webhook-id = the event
    id, webhook-timestamp, webhook-signature), in order per subscription, every subscription on its
    own; a failed attempt is retried on a schedule spanning hours (HUB_WEBHOOKS_RETRY_SCHEDULE,
    with jitter), then parked until `hub webhooks redeliver`. Run `hub db upgrade` first;
    `hub webhooks serve` is the delivery service (with /metrics and /health).
    """


@webhooks_group.command("add")
@click.option("--recipient", required=True, metavar="AUTHORITY", help="Recipient authority id, e.g. wellbeing_area:04.")
@click.option("--url", required=True, help="Callback URL: https to a public host (loopback, and http to it, only with HUB_WEBHOOKS_ALLOW_LOOPBACK=on).")
@click.option("--secret", default=None, help="Signing secret whsec_<base64> (default: a new random one, printed once).")
def webhooks_add(recipient: str, url: str, secret: str | None) -> None:
    """Subscribe a recipient's callback URL; prints the subscription id and the signing secret.

    Refused: plain http, and hosts that are loopback, link-local, private or otherwise not public
    (in any address form), cloud metadata names and internal-only names. Each delivery resolves the
    host again and connects only to a checked address; redirects are never followed. An id that
    is no recipient of the reference data is refused (exit 2), naming the known ones.
    """
    from hub.webhooks.policy import WebhookError, redact_url

    known_recipient(recipient)
    try:
        sub, secret = _webhook_store().add(recipient, url, secret)
    except WebhookError as exc:
        raise click.BadParameter(str(exc)) from None
    except ValueError:
        raise click.BadParameter(f"{recipient!r} is not an authority id; use <kind>:<code>, e.g. wellbeing_area:04", param_hint="--recipient") from None
    click.echo(f"subscription {sub.id}: {sub.recipient} -> {redact_url(sub.url)}")
    click.echo(f"secret (give it to the receiver; it is not shown again): {secret}")


@webhooks_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of text.")
def webhooks_list(as_json: bool) -> None:
    """Every subscription with its state and its own queue (pending, delivered, parked, withdrawn);
    never the secret, and the URL without credentials (user:password@ and query values shown as ***)."""
    import json

    from hub.webhooks.policy import redact_url

    store = _webhook_store()
    counts = store.counts_by_subscription()
    for sub in store.subscriptions():
        per = {state: n for (sub_id, state), n in sorted(counts.items()) if sub_id == sub.id}
        url = redact_url(sub.url)
        row = {"id": sub.id, "recipient": sub.recipient, "url": url, "active": sub.active, "queue": per}
        click.echo(json.dumps(row) if as_json else f"{sub.id} {'active' if sub.active else 'disabled'} {sub.recipient} {url} {per}")


@webhooks_group.command("disable")
@click.argument("subscription_id", type=int)
def webhooks_disable(subscription_id: int) -> None:
    """Stop delivering to a subscription (its queue is kept)."""
    if not _webhook_store().disable(subscription_id):
        raise click.BadParameter(f"no subscription {subscription_id}; `hub webhooks list` shows them", param_hint="SUBSCRIPTION_ID")
    click.echo(f"subscription {subscription_id} disabled")


@webhooks_group.command("redeliver")
@click.option("--subscription", "subscription_id", type=int, help="Every parked delivery of this subscription (with --stream and --from: its delivered records by number).")
@click.option("--delivery", "delivery_id", type=int, help="This one parked delivery.")
@click.option("--stream", type=STREAM_CHOICE, help="With --subscription and --from: the subscription's records of this stream.")
@click.option("--from-seq", "--from", "from_seq", type=click.IntRange(min=1), help="With --stream: first sequence number to deliver again.")
@click.option("--to-seq", "--to", "to_seq", type=click.IntRange(min=1), help="With --stream: last sequence number (inclusive). Default: the newest.")
def webhooks_redeliver(subscription_id: int | None, delivery_id: int | None, stream: str | None, from_seq: int | None, to_seq: int | None) -> None:
    """Queue deliveries again (attempts start over).

    --subscription ID: its parked deliveries; --delivery ID: that parked delivery. --subscription ID
    --stream S --from N [--to M]: the subscription's records of stream S with `sequence` N to M,
    delivered (or parked) before, for a receiver that lost or missed them; they go out again in
    their order with their webhook-ids, ahead of what was queued since. A number not queued again is
    named with why (withdrawn, queued already, body removed by `hub retention`, none such). A plan request
    whose consent or legal basis has ended since is withdrawn at its next attempt, not delivered.
    An unknown subscription or delivery is refused (exit 2).
    """
    if (stream is None) != (from_seq is None):
        raise click.UsageError("give --stream and --from together (with --subscription)")
    if stream is not None and (subscription_id is None or delivery_id is not None):
        raise click.UsageError("--stream and --from go with --subscription ID, not --delivery")
    if to_seq is not None and from_seq is None:
        raise click.UsageError("--to goes with --stream and --from")
    if to_seq is not None and to_seq < from_seq:
        raise click.UsageError(f"--to {to_seq} is before --from {from_seq}")
    if subscription_id is None and delivery_id is None:
        raise click.UsageError("give --subscription ID or --delivery ID")
    store = _webhook_store()
    sub = None
    if subscription_id is not None:
        sub = store.subscription(subscription_id)
        if sub is None:
            raise click.BadParameter(f"no subscription {subscription_id}; `hub webhooks list` shows them", param_hint="--subscription")
    if delivery_id is not None:
        found = store.delivery_state(delivery_id)
        if found is None or (subscription_id is not None and found[0] != subscription_id):
            raise click.BadParameter(f"no delivery {delivery_id}" + (f" of subscription {subscription_id}" if subscription_id is not None else ""),
                                     param_hint="--delivery")
        if found[1] != "parked":
            click.echo(f"delivery {delivery_id} is {found[1]}, not parked; a delivered record goes again with "
                       f"--subscription {found[0]} --stream S --from N", err=True)
    if stream is not None:
        from hub.schemas.topics import stream_topic

        done = store.redeliver_sequences(sub.id, stream_topic(stream, sub.recipient), from_seq, to_seq)
        for sequence, why in sorted(done.skipped.items()):
            click.echo(f"sequence {sequence} not queued again: {why}", err=True)
        for a, b in _spans(done.missing):
            click.echo(f"sequence {a if a == b else f'{a}-{b}'} not queued again: no delivery of it to subscription {sub.id} "
                       "(not on the topic yet, or removed by `hub retention`)", err=True)
        if not done.queued and not done.skipped and not done.missing:
            click.echo(f"nothing queued again: no {stream} delivery of subscription {sub.id} from sequence {from_seq}" + (f" to {to_seq}" if to_seq else ""))
            return
        span = f" (sequence {', '.join(f'{a}' if a == b else f'{a}-{b}' for a, b in _spans(done.queued))})" if done.queued else ""
        click.echo(f"{len(done.queued)} {stream} deliver{'y' if len(done.queued) == 1 else 'ies'} of subscription {sub.id} queued again{span}")
        return
    n = store.redeliver(subscription_id=subscription_id, delivery_id=delivery_id)
    click.echo(f"{n} parked deliver{'y' if n == 1 else 'ies'} queued again")


def _spans(numbers: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs of the numbers given, in their order: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    runs: list[tuple[int, int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


def _delivery_worker(max_attempts: int | None, timeout: float | None):
    """The delivery service as configured (HUB_WEBHOOKS_*), with the send-time consent check."""
    from hub.adapters.disclosure_check import DisclosureCheck
    from hub.adapters.webhooks import DeliveryWorker
    from hub.consent import legal_bases

    settings = load_settings()
    if not settings.kafka_url:
        raise click.UsageError("set HUB_KAFKA_URL to the broker with the recipients' topics: the delivery service reads them")
    security = _security()  # an incomplete TLS/SASL setting is a usage error before any connection
    url = _kafka_url()
    store = _webhook_store()
    try:  # each plan request's consent or legal basis is checked again before every attempt
        check = DisclosureCheck(store.Session, legal_bases.load(settings.consent_legal_bases)).why_not
    except legal_bases.LegalBasisFileError as exc:
        raise click.UsageError(str(exc)) from None
    return DeliveryWorker(store, url, app_id=settings.app_id, max_attempts=max_attempts, schedule=settings.webhooks_retry_schedule, jitter=settings.webhooks_retry_jitter,
                          timeout=timeout or settings.webhooks_timeout, concurrency=settings.webhooks_concurrency, security=security,
                          disclosure_check=check)


def _run_delivery(worker, port: int | None, addr: str) -> None:
    """Run the service until SIGTERM or Ctrl-C; with `port`, /metrics and /health on it."""
    import signal

    from hub import metrics

    server = None
    if port is not None:
        try:
            server, _thread = metrics.serve(port, addr, worker.stopped)
        except OSError as exc:
            raise click.UsageError(f"cannot serve /metrics on {addr}:{port} ({exc.strerror or exc}); set HUB_METRICS_PORT to a free port "
                                   "(0 picks one) or HUB_METRICS_ADDR to another address") from None
        host = f"[{addr}]" if ":" in addr else addr
        click.echo(f"webhooks: /metrics and /health on http://{host}:{server.server_port}", err=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
                pass
        await worker.run(stop)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


@webhooks_group.command("serve")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port of /metrics and /health (default: HUB_METRICS_PORT; 0 picks a free one).")
@click.option("--host", default=None, help="Address of /metrics and /health (default: HUB_METRICS_ADDR; 0.0.0.0 in a container).")
def webhooks_serve(port: int | None, host: str | None) -> None:
    """Run the delivery service until SIGTERM or Ctrl-C: what the shipped deployments run.

    Needs HUB_KAFKA_URL and HUB_DATABASE_URL. Every active subscription is delivered on its own (its
    own consumer group <HUB_APP_ID>-webhooks.<id>, in order), so a slow or dead receiver holds up only its
    own queue; subscriptions added or disabled meanwhile are picked up within seconds. Serves
    /metrics (hub_webhook_*) and /health (200, or 503 naming what is not working: the database,
    or the broker for every subscription).
    """
    settings = load_settings()
    worker = _delivery_worker(None, None)
    _run_delivery(worker, settings.metrics_port if port is None else port, host or settings.metrics_addr)


@webhooks_group.command("deliver")
@click.option("--max-attempts", default=None, type=click.IntRange(1, 100), help="Attempts before a delivery is parked (default: the schedule's waits + 1).")
@click.option("--timeout", default=None, type=click.FloatRange(0.1, 300), help="Seconds to wait for a receiver's answer (default: HUB_WEBHOOKS_TIMEOUT).")
def webhooks_deliver(max_attempts: int | None, timeout: float | None) -> None:
    """Run the delivery service in the foreground without /metrics, until Ctrl-C (needs HUB_KAFKA_URL
    and HUB_DATABASE_URL); `hub webhooks serve` is the same with /metrics and /health."""
    _run_delivery(_delivery_worker(max_attempts, timeout), None, "")


def register_commands(main: click.Group) -> None:
    for command in (registry_command, schemas_group, replay_command, resend_command, gaps_command, asyncapi_command, webhooks_group):
        main.add_command(command)
