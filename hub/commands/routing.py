"""`hub route` and `hub authorities`: the routing rules on the command line, no broker needed."""

from __future__ import annotations

import json
import sys

import click


def _load_rules(path: str | None):
    from hub.routing.rules import RulesError, default_rules, load_rules

    try:
        return load_rules(path) if path else default_rules()
    except RulesError as exc:
        raise click.BadParameter(str(exc), param_hint="--rules") from None


def route_line(line: str, rules, reference, trace: bool = False) -> dict:
    """The output object for one input line (`hub route --help` shows its shape). Never raises for bad input."""
    from hub.routing.engine import route
    from hub.routing.model import InputError, RoutingInput
    from hub.schemas import bounds

    try:
        obj = bounds.loads(line, "the line", max_bytes=bounds.MAX_ROUTE_LINE_BYTES)
    except bounds.OutOfBounds as exc:
        return {"event_id": None, "error": {"code": exc.reason, "message": f"{exc.message}; give one Newcomer per line"}}
    except ValueError as exc:
        return {"event_id": None, "error": {"code": "invalid_json", "message": f"the line is not JSON ({type(exc).__name__} at character {getattr(exc, 'pos', '?')}); give one JSON object per line"}}
    event_id = obj.get("event_id") if isinstance(obj, dict) else None
    if event_id is not None and not isinstance(event_id, (str, int)):
        event_id = None
    try:
        bounds.check_record("Newcomer", obj)
    except bounds.OutOfBounds as exc:
        if exc.field == "Newcomer.event_id":
            event_id = None  # not echoed: it is the value over its bound
        return {"event_id": event_id, "error": {"code": exc.reason, "message": exc.message}}
    try:
        newcomer = RoutingInput.from_record(obj)
        decisions = route(newcomer, rules, reference)
    except InputError as exc:
        return {"event_id": event_id, "error": {"code": exc.reason, "message": exc.message}}
    except OverflowError:  # a date or time at the edge of the calendar (e.g. 9999-12-31T23:59Z) cannot be moved to Finnish time
        return {"event_id": event_id, "error": {"code": "invalid_date", "message": "a date or time is outside the range the rules can evaluate; check occurred_at and the dates"}}
    except Exception as exc:  # noqa: BLE001 - one line must never stop the others; the type only (texts may quote data)
        return {"event_id": event_id, "error": {"code": "internal_error", "message": f"the line could not be routed ({type(exc).__name__}); report it"}}
    out = {"event_id": event_id, "decisions": [d.as_dict() for d in decisions]}
    if trace:
        out["trace"] = list(decisions[0].trace) if decisions else []
    return out


@click.command("route")
@click.option("--rules", "rules_file", type=click.Path(dir_okay=False), default=None, help="Rules file (YAML) instead of the packaged one.")
@click.option("--trace", is_flag=True, help="Add the decision trace (every rule evaluated and its outcome) to each output line.")
def route_command(rules_file: str | None, trace: bool) -> None:
    """Route newcomers: Newcomer events as JSON lines on stdin, one JSON line per input on stdout.

    Each output line is {"event_id": ..., "decisions": [{"authority", "purpose", "reasons", "rule",
    "rules_version", "due"}, ...]} in input order, or {"event_id": ..., "error": {"code", "message"}}
    for a line that cannot be decided (invalid_json, invalid_input, invalid_field, invalid_date, invalid_person_id,
    missing_municipality, unknown_municipality, out_of_bounds: over a bound of hub/schemas/bounds.py,
    e.g. a line over 64 KiB or nested deeper than 32 levels, or more than 20 nationalities);
    processing goes on. Blank lines are skipped.
    Needs no broker and no database. Ages and time limits are evaluated on the day of occurred_at
    (Finnish time). The identity code is never printed.

    Input fields are the Newcomer's; all are optional (missing or null: unknown). integration_start
    (YYYY-MM-DD, optional) is the date of the first residence permit or registered right of
    residence, the start of the integration period: when given, due dates and the 3-year window
    count from it, else from arrival_date. The rules take effect on their validity start (valid_from
    in the rules file, 2025-01-01 in the packaged one): a line whose occurred_at is before it gets
    only the rules the file lists for that case (the packaged: the municipality's outreach), with a
    reason saying so, and --trace names every rule not applied.
    """
    from hub.routing.reference import default_reference

    rules = _load_rules(rules_file)
    reference = default_reference()
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        out.write(json.dumps(route_line(line, rules, reference, trace), ensure_ascii=False) + "\n")
        out.flush()


ROLE_TITLES = {"municipality": "municipality", "wellbeing_area": "wellbeing area", "employment_authority": "employment authority"}


def _purposes_by_role(rules) -> dict[str, list[str]]:
    by_role: dict[str, list[str]] = {}
    for rule in rules.rules:
        purposes = by_role.setdefault(rule.recipient, [])
        if rule.purpose not in purposes:
            purposes.append(rule.purpose)
    return by_role


def _find_municipality(reference, value: str):
    from hub.routing.reference import UnknownMunicipality

    if value.isdigit():
        try:
            return reference.municipality(value.zfill(3))
        except UnknownMunicipality as exc:
            raise click.BadParameter(str(exc), param_hint="--municipality") from None
    for muni in reference.municipalities.values():
        if value.casefold() in (muni.name_fi.casefold(), muni.name_sv.casefold()):
            return muni
    raise click.BadParameter(f"no 2025 municipality is named {value!r}; give the 3-digit code (e.g. 091) or the Finnish or Swedish name", param_hint="--municipality")


def _describe(reference, rules, code: str) -> dict:
    auth = reference.authorities(code)
    purposes = _purposes_by_role(rules)
    roles = []
    for role, holder in auth.roles.items():
        entry = holder.as_dict()
        entry["purposes"] = purposes.get(role, [])
        if holder.authority is None:
            entry["fallback"] = auth.roles["municipality"].authority if rules.fallback == "municipality" else None
        roles.append(entry)
    m = auth.municipality
    return {
        "municipality": {"code": m.code, "name_fi": m.name_fi, "name_sv": m.name_sv},
        "authorities": roles,
        "reference": {"source": reference.source, "valid_from": reference.valid_from},
        "rules_version": rules.version,
    }


@click.command("authorities")
@click.option("--municipality", "municipality", metavar="CODE", default=None, help="Municipality code (3 digits, e.g. 091) or name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--rules", "rules_file", type=click.Path(dir_okay=False), default=None, help="Rules file, for which purposes each role gets.")
def authorities_command(municipality: str | None, as_json: bool, rules_file: str | None) -> None:
    """Who is responsible for what in a municipality.

    With --municipality CODE: the municipality's own id (municipality:<code>), its wellbeing
    area's id (wellbeing_area:<code>; Helsinki: municipality:091, which arranges these services
    itself) and its employment authority's id (employment_authority:<code>), or why there is none
    (Åland), and which referral purposes go to each under the rules. Without it: every 2025
    municipality, one line each (with --json: a list).
    """
    from hub.routing.reference import default_reference

    reference = default_reference()
    rules = _load_rules(rules_file)
    if municipality is None:
        rows = [_describe(reference, rules, code) for code in sorted(reference.municipalities)]
        if as_json:
            click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
            return
        click.echo(f"# {len(rows)} municipalities; {reference.source}, valid from {reference.valid_from}")
        click.echo("# code name: municipality | wellbeing area | employment authority   (hub authorities --municipality CODE for details)")
        for row in rows:
            ids = [a["authority"] or "none" for a in row["authorities"]]
            click.echo(f"{row['municipality']['code']} {row['municipality']['name_fi']}: {' | '.join(ids)}")
        return
    muni = _find_municipality(reference, municipality.strip())
    info = _describe(reference, rules, muni.code)
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False, indent=1))
        return
    click.echo(f"{muni.name_fi} / {muni.name_sv} ({muni.code})")
    for a in info["authorities"]:
        who = f"{a['authority']} ({a['name']})" if a["authority"] else "none"
        click.echo(f"  {ROLE_TITLES[a['role']]:<21} {who}")
        click.echo(f"  {'':<21} {a['note']}")
        if a["purposes"]:
            target = "" if a["authority"] else (f" -> referred to {a['fallback']} instead" if a.get("fallback") else " -> not referred")
            click.echo(f"  {'':<21} referrals: {', '.join(a['purposes'])}{target}")
    click.echo(f"reference data: {reference.source}, valid from {reference.valid_from}; rules {rules.version}")


@click.command("referrals")
@click.option("--authority", default=None, metavar="ID", help="List this recipient's referrals (e.g. wellbeing_area:04) instead of the counts.")
@click.option("--overdue", is_flag=True, help="Only referrals past their due date.")
@click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="Day to compare due dates with (default: today in Finland).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def referrals_command(authority: str | None, overdue: bool, today, as_json: bool) -> None:
    """Open and overdue referrals from the coordination ledger (HUB_DATABASE_URL).

    Without --authority: per recipient, the number of open referrals and of those past their due
    date. With --authority ID: that recipient's open (or, with --overdue, overdue) referrals with
    id, purpose, state, due date and sequence. Needs the tables: run `hub db upgrade` first.
    """
    import datetime as dt

    import sqlalchemy as sa

    from hub.adapters.database import create_engine
    from hub.adapters.referral_ledger import ReferralLedger
    from hub.config import Settings
    from hub.routing.model import FINLAND

    try:
        url = Settings.from_env().resolved_database_url()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    day = today.date() if today else dt.datetime.now(FINLAND).date()
    engine = create_engine(url)
    try:
        ledger = ReferralLedger(engine)
        try:
            if authority is None:
                counts = ledger.counts_by_authority(day)
                rows = [{"authority": a, "open": o, "overdue": d} for a, (o, d) in sorted(counts.items()) if d or not overdue]
            else:
                found = ledger.overdue_referrals(day, authority) if overdue else ledger.open_referrals(authority)
                rows = [
                    {"referral_id": r.referral_id, "purpose": r.purpose, "state": r.state, "due": r.due.isoformat() if r.due else None, "sequence": r.sequence}
                    for r in found
                ]
        except sa.exc.OperationalError as exc:
            raise click.ClickException(f"cannot read the referral ledger ({type(exc.orig).__name__}); run `hub db upgrade` and check HUB_DATABASE_URL") from None
        except sa.exc.ProgrammingError as exc:
            raise click.ClickException(f"the referral ledger tables are missing ({type(exc.orig).__name__}); run `hub db upgrade`") from None
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    if authority is None:
        click.echo(f"# referrals per recipient on {day.isoformat()}: open, overdue")
        for r in rows:
            click.echo(f"{r['authority']:<28} {r['open']:>6} {r['overdue']:>6}")
    else:
        click.echo(f"# {'overdue' if overdue else 'open'} referrals of {authority} on {day.isoformat()}")
        for r in rows:
            click.echo(f"{r['referral_id']}  {r['purpose']:<27} {r['state']:<19} due {r['due'] or '-':<10} #{r['sequence']}")


def register_commands(main: click.Group) -> None:
    main.add_command(route_command)
    main.add_command(authorities_command)
    main.add_command(referrals_command)
