"""`hub consent grant|revoke|show` and `hub audit`: the consent registry from the command line.

They write through the same use cases as the stream processors (hub.services.consent). What a
command causes to be sent (the Consent event on hub.consents.v1, released plan requests, revocation
notices) is committed to the outbox with the consent record; a running `hub worker` publishes it.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import click

from hub.domain.clock import utcnow
from hub.commands.context import load_settings, wait_for
from hub.consent.model import DATA_CATEGORIES, PURPOSES, InvalidConsent


def _person(ctx, param, value):
    from hub.domain import hetu

    if value is None:
        return None
    try:
        return hetu.validate(value.strip().upper())
    except hetu.InvalidHetu as exc:
        raise click.BadParameter(str(exc)) from None  # the message never contains the code


def _authority(ctx, param, value):
    from hub.consent.model import AUTHORITY_ID, check_authority

    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if v is not None:
            try:
                check_authority(v, f"{v!r}" if not AUTHORITY_ID.match(v) else "the value")
            except InvalidConsent as exc:
                raise click.BadParameter(str(exc)) from None
    return value


def _time(end_of_day: bool):
    def convert(ctx, param, value):
        from hub.schemas.codec import parse_timestamp

        if value is None:
            return None
        try:
            ts = parse_timestamp(value)
        except ValueError:
            raise click.BadParameter("give a date YYYY-MM-DD or an RFC 3339 time with offset, e.g. 2026-12-31T23:59:59Z") from None
        if end_of_day and len(value) == 10:
            ts += dt.timedelta(days=1)  # a date alone: valid through the end of that day (UTC)
        return ts.astimezone(dt.timezone.utc)

    return convert


def _registry():
    """The registry over HUB_DATABASE_URL; a clear error when the schema is missing."""
    import sqlalchemy as sa

    from hub.adapters.consent_uow import SqlConsentUnits
    from hub.adapters.database import create_engine, session_factory
    from hub.consent import legal_bases
    from hub.services.consent import ConsentRegistry

    settings = load_settings(production=True)  # consents are found by person key and kept sealed: no demo secrets
    wait_for(settings, database_url=settings.resolved_database_url())
    engine = create_engine(settings.resolved_database_url())
    try:
        ready = sa.inspect(engine).has_table("consent_events")
    except sa.exc.OperationalError as exc:
        raise click.ClickException(f"cannot open the database ({type(exc.orig).__name__}); check HUB_DATABASE_URL") from None
    if not ready:
        raise click.ClickException("the database has no consent registry yet: run `hub db upgrade` first")
    try:
        bases = legal_bases.load(settings.consent_legal_bases)
    except legal_bases.LegalBasisFileError as exc:
        raise click.UsageError(str(exc)) from None
    return ConsentRegistry(SqlConsentUnits(session_factory(engine)), legal_bases=bases, person_key_secret=settings.person_key_secret)


def _report(action: str, consent_id: str, outcome) -> str:
    parts = [f"consent {consent_id} {action}"]
    if outcome.duplicate:
        return f"consent {consent_id}: already recorded (nothing changed)"
    if outcome.released:
        parts.append(f"{outcome.released} held item(s) released")
    if outcome.notices:
        parts.append(f"{len(outcome.notices)} notice(s) to earlier recipients: {', '.join(sorted({to for _, to in outcome.notices}))}")
    parts.append("queued in the outbox; a running `hub worker` publishes them")
    return "; ".join(parts)


@click.group()
def consent() -> None:
    """The consent registry: record grants and revocations, show a person's consents.

    Consents are append-only history; the current state is derived from it. Data of an initial
    assessment goes to the plan-making authority only under a consent in force (person, purpose,
    recipient, data category, time) or a legal basis named in HUB_CONSENT_LEGAL_BASES.
    """


@consent.command("grant")
@click.option("--person", required=True, callback=_person, metavar="HETU", help="The data subject's henkilötunnus.")
@click.option("--purpose", type=click.Choice(PURPOSES), default=PURPOSES[0], show_default=True, help="Purpose of the disclosure.")
@click.option("--category", "categories", multiple=True, required=True, type=click.Choice(DATA_CATEGORIES),
              help="A data category the consent covers; repeat for several.")
@click.option("--recipient", "recipients", multiple=True, required=True, callback=_authority, metavar="AUTHORITY",
              help="Authority id that may receive the data, e.g. employment_authority:08; repeat for several.")
@click.option("--valid-from", callback=_time(False), metavar="WHEN", help="Start of validity (YYYY-MM-DD or RFC 3339); default now.")
@click.option("--valid-until", callback=_time(True), metavar="WHEN", help="End of validity; a date alone means through that day (UTC). Default: until revoked.")
@click.option("--evidence", help="Reference to the evidence: signed form, case number.")
@click.option("--recorded-by", required=True, callback=_authority, metavar="AUTHORITY", help="Authority id recording the consent.")
@click.option("--consent-id", help="Id of the new consent (default: a new UUID). Never reuse one.")
def grant(person, purpose, categories, recipients, valid_from, valid_until, evidence, recorded_by, consent_id) -> None:
    """Record a consent granted by PERSON, and release the held items it covers (in order)."""
    from hub.consent import records
    from hub.schemas import bounds

    consent_id = consent_id or str(uuid.uuid4())
    try:
        rec = records.new_grant(consent_id=consent_id, person_id=person, recorded_by=recorded_by, purpose=purpose,
                                data_categories=frozenset(categories), recipients=frozenset(recipients),
                                valid_from=valid_from, valid_until=valid_until, evidence=evidence)
        bounds.check_record("Consent", records.consent_to_avro(rec))  # the same bounds as a Consent on the topic
    except (InvalidConsent, bounds.OutOfBounds) as exc:
        raise click.UsageError(str(exc)) from None
    registry = _registry()
    if registry.holders(consent_id):
        raise click.UsageError(f"consent id {consent_id} is already in the registry; a new consent needs a new id")
    try:
        outcome = registry.record_consent(rec, publish=True)
    except InvalidConsent as exc:  # the id was taken between the check and the write
        raise click.UsageError(str(exc)) from None
    click.echo(_report("granted", consent_id, outcome))


@consent.command("revoke")
@click.argument("consent_id")
@click.option("--person", callback=_person, metavar="HETU",
              help="The data subject's henkilötunnus: whose consent CONSENT_ID is. Needed when persons share the id (consent ids are the publishers' free text).")
@click.option("--recorded-by", required=True, callback=_authority, metavar="AUTHORITY", help="Authority id recording the revocation.")
@click.option("--evidence", help="Reference to the evidence of the revocation.")
def revoke(consent_id, person, recorded_by, evidence) -> None:
    """Record that CONSENT_ID was revoked: nothing more is disclosed under it, and each earlier
    recipient of data under it gets a revocation notice.

    A consent is a person's consent id. When several persons have a consent with this id, the
    command revokes nothing until --person says whose. A consent already revoked or expired is
    left as it is: exit 1 and one line saying when it ended.
    """
    from hub.consent import model
    from hub.domain.hetu import scrub

    registry = _registry()
    consent_id_shown = scrub(consent_id)  # free text: never echo an identity code typed in its place
    holders = registry.holders(consent_id)
    if not holders:
        raise click.ClickException(f"no consent {consent_id_shown} in the registry; `hub consent show --person HETU` lists a person's consents")
    if person is None and len(holders) > 1:
        raise click.UsageError(
            f"consent id {consent_id_shown} is held by {len(holders)} persons (consent ids come from the publishers and may repeat); "
            "nothing was revoked. Say whose: `hub consent revoke " + consent_id_shown + " --person HETU --recorded-by ...` "
            "(`hub consent show --person HETU` lists that person's consents)")
    if person is not None and person not in holders:
        raise click.ClickException(f"this person has no consent {consent_id_shown}; `hub consent show --person HETU` lists the person's consents")
    first = holders[person] if person is not None else next(iter(holders.values()))
    rec = model.ConsentRecord(event_id=str(uuid.uuid4()), consent_id=consent_id, person_id=first.person_id, action=model.REVOKED,
                              recorded_by=recorded_by, recorded_at=utcnow(), purpose=first.purpose, evidence=evidence)
    outcome = registry.record_consent(rec, publish=True)
    if outcome.already_ended is not None:
        ended = outcome.already_ended
        raise click.ClickException(f"consent {consent_id_shown} of this person was already {ended.action} "
                                   f"({ended.recorded_at.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, by {ended.recorded_by}); nothing was recorded "
                                   "and nobody is notified again")
    click.echo(_report("revoked", consent_id, outcome))


@consent.command("show")
@click.option("--person", required=True, callback=_person, metavar="HETU", help="The data subject's henkilötunnus.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def show(person, as_json) -> None:
    """Show PERSON's consents (current state, derived), their history and any held items."""
    view = _registry().person_view(person)
    if as_json:
        click.echo(json.dumps(view, ensure_ascii=False, indent=2))
        return
    if not view["consents"] and not view["history"]:
        click.echo("no consents recorded for this person")
    for c in view["consents"]:
        click.echo(f"consent {c['consent_id']}: {c['status']}; purpose {c['purpose']}; categories {', '.join(c['data_categories'])}; "
                   f"recipients {', '.join(c['recipients'])}; valid {c['valid_from'] or '-'} .. {c['valid_until'] or 'until revoked'}; "
                   f"evidence {c['evidence'] or '-'}; recorded by {c['recorded_by']}")
    if view["history"]:
        click.echo("history:")
        for h in view["history"]:
            click.echo(f"  {h['recorded_at']}  {h['action']:<8} {h['consent_id']}  by {h['recorded_by']}")
    for h in view["held_items"]:
        click.echo(f"held: assessment {h['assessment_id']} for {h['recipient']} since {h['held_at']} ({h['reason']})")


@click.command("audit")
@click.option("--person", required=True, callback=_person, metavar="HETU", help="The data subject's henkilötunnus.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per disclosure.")
def audit(person, as_json) -> None:
    """Show who received which categories of PERSON's data, when, and on which consent or legal basis.

    For authorised operators: prints that person's disclosures and nothing else.
    """
    rows = _registry().audit(person)
    for r in rows:
        if as_json:
            click.echo(json.dumps(r, ensure_ascii=False))
        else:
            basis = f"consent {r['consent_id']}" if r["consent_id"] else ""
            if r["legal_basis"]:
                basis = f"{basis}{'; ' if basis else ''}legal basis {r['legal_basis']}"
            click.echo(f"{r['disclosed_at']}  {r['recipient']}  {', '.join(r['data_categories']) or '(no data categories)'}  {basis}  "
                       f"assessment {r['assessment_id']} by {r['assessor']}  request {r['request_id']}")
    if not rows and not as_json:
        click.echo("no disclosures of this person's data")


def register_commands(main: click.Group) -> None:
    main.add_command(consent)
    main.add_command(audit)
