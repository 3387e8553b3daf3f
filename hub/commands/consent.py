"""`hub consent grant|revoke|show` and `hub audit`: the consent registry from the command line.

They write through the same use cases as the stream processors (hub.services.consent). What a
command causes to be sent (the Consent event on hub.consents.v1, released plan requests, revocation
notices) is committed to the outbox with the consent record; a running `hub worker` publishes it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid

import click

from hub.domain.clock import utcnow
from hub.commands.context import load_settings, wait_for
from hub.consent.model import DATA_CATEGORIES, PURPOSES, InvalidConsent


PERSON_ENV = "HUB_PERSON"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_STDIN = object()  # `--person -`: the code comes on standard input, or at a hidden prompt on a terminal
_HOW = (f"give `--person -` and the code on standard input (on a terminal: a hidden prompt), or put it in the environment: "
        f"{PERSON_ENV}, or the variable named by --person-env VAR")


def _no_code_on_argv(ctx, param, value):
    """`--person` takes `-` only: a command line is readable by every user of the machine (ps,
    /proc/PID/cmdline) and stays in the shell's history. A value from HUB_PERSON passes through."""
    from click.core import ParameterSource

    if value is None or ctx.get_parameter_source(param.name) is not ParameterSource.COMMANDLINE:
        return value
    if value != "-":  # never echoed: it may be an identity code
        raise click.BadParameter("an identity code is never given on the command line, where other users see it (ps, "
                                 f"/proc/PID/cmdline) and the shell history keeps it; {_HOW}", param_hint="'--person'")
    return _STDIN


def _env_name(ctx, param, value):
    if value is not None and not _ENV_NAME.fullmatch(value):  # never echoed: it may be the code itself
        raise click.BadParameter("give the name of an environment variable (letters, digits, _; not starting with a digit), not its value")
    return value


def person_options(*, required: bool, help: str):
    """`--person -` and `--person-env VAR` (and HUB_PERSON): the ways a command takes an identity
    code, none of which puts it in the process's arguments."""

    def decorate(f):
        f = click.option("--person-env", metavar="VAR", callback=_env_name,
                         help="Read the henkilötunnus from the environment variable VAR.")(f)
        return click.option("--person", metavar="-", envvar=PERSON_ENV, show_envvar=True, callback=_no_code_on_argv,
                            help=f"{help} `-`: read it from standard input (one line; on a terminal, a hidden prompt). "
                                 "Never the code itself: other users see the command line (ps) and the shell history keeps it."
                                 + (" With neither option: HUB_PERSON, else a hidden prompt on a terminal." if required else " With neither option: HUB_PERSON."))(f)

    return decorate


def _validated(value: str, source: str) -> str:
    from hub.domain import hetu

    try:
        return hetu.validate(value.strip().upper())
    except hetu.InvalidHetu as exc:
        raise click.BadParameter(str(exc), param_hint=source) from None  # the message never contains the code


def _prompt() -> str:
    return click.prompt("henkilötunnus", hide_input=True, err=True)


def _read_person(person, person_env, *, required: bool):
    """The identity code from standard input (`--person -`), the variable --person-env names, or
    HUB_PERSON; a hidden prompt when none is given and standard input is a terminal."""
    if person is _STDIN and person_env is not None:
        raise click.UsageError("give the identity code one way: `--person -` or --person-env VAR, not both")
    if person is _STDIN:
        stdin = click.get_text_stream("stdin")
        if stdin.isatty():
            return _validated(_prompt(), "'--person -'")
        line = stdin.readline()
        if not line.strip():
            raise click.BadParameter("standard input held no identity code (`--person -` reads one line)", param_hint="'--person -'")
        return _validated(line, "'--person -'")
    if person_env is not None:
        value = os.environ.get(person_env, "")
        if not value.strip():
            raise click.BadParameter(f"{person_env} is not set or is empty", param_hint="'--person-env'")
        return _validated(value, f"--person-env {person_env}")
    if person is not None:
        return _validated(person, PERSON_ENV)
    if not required:
        return None
    if click.get_text_stream("stdin").isatty():
        return _validated(_prompt(), "the prompt")
    raise click.UsageError(f"the command needs the person's identity code: {_HOW}")


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
@person_options(required=True, help="The data subject's henkilötunnus.")
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
def grant(person, person_env, purpose, categories, recipients, valid_from, valid_until, evidence, recorded_by, consent_id) -> None:
    """Record a consent granted by PERSON, and release the held items it covers (in order)."""
    from hub.consent import records
    from hub.schemas import bounds

    person = _read_person(person, person_env, required=True)
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
@person_options(required=False, help="The data subject's henkilötunnus: whose consent CONSENT_ID is. Needed when persons share the id "
                                      "(consent ids are the publishers' free text).")
@click.option("--recorded-by", required=True, callback=_authority, metavar="AUTHORITY", help="Authority id recording the revocation.")
@click.option("--evidence", help="Reference to the evidence of the revocation.")
def revoke(consent_id, person, person_env, recorded_by, evidence) -> None:
    """Record that CONSENT_ID was revoked: nothing more is disclosed under it, and each earlier
    recipient of data under it gets a revocation notice.

    A consent is a person's consent id. When several persons have a consent with this id, the
    command revokes nothing until --person - (or --person-env, HUB_PERSON) says whose. A consent
    already revoked or expired is left as it is: exit 1 and one line saying when it ended.
    """
    from hub.consent import model
    from hub.domain.hetu import scrub

    person = _read_person(person, person_env, required=False)
    registry = _registry()
    consent_id_shown = scrub(consent_id)  # free text: never echo an identity code typed in its place
    holders = registry.holders(consent_id)
    if not holders:
        raise click.ClickException(f"no consent {consent_id_shown} in the registry; `hub consent show --person -` lists a person's consents")
    if person is None and len(holders) > 1:
        raise click.UsageError(
            f"consent id {consent_id_shown} is held by {len(holders)} persons (consent ids come from the publishers and may repeat); "
            "nothing was revoked. Say whose: `hub consent revoke " + consent_id_shown + " --person - --recorded-by ...` with the code on standard input "
            "(`hub consent show --person -` lists that person's consents)")
    if person is not None and person not in holders:
        raise click.ClickException(f"this person has no consent {consent_id_shown}; `hub consent show --person -` lists the person's consents")
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
@person_options(required=True, help="The data subject's henkilötunnus.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def show(person, person_env, as_json) -> None:
    """Show PERSON's consents (current state, derived), their history and any held items."""
    person = _read_person(person, person_env, required=True)
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
@person_options(required=True, help="The data subject's henkilötunnus.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per disclosure.")
def audit(person, person_env, as_json) -> None:
    """Show who received which categories of PERSON's data, when, and on which consent or legal basis.

    For authorised operators: prints that person's disclosures and nothing else.
    """
    person = _read_person(person, person_env, required=True)
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
