"""`hub report`: the municipal integration programme's indicators for a period, from the ledger."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import click

from hub.commands.context import Refused, wait_for
from hub.reporting.indicators import CHAIN, STEPS, Indicators


def _date(value: str, option: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date; give it as YYYY-MM-DD, e.g. 2025-01-31", param_hint=option) from None


def _plot_file(ctx, param, value):
    """--plot FILE: refused at once (exit 2, one line) when matplotlib is missing or cannot write FILE's
    format, before the ledger is read."""
    if value is None:
        return None
    from pathlib import Path

    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise Refused("--plot needs matplotlib: pip install 'integration-hub[report]' (or pip install matplotlib)") from None
    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = Path(value).suffix.lower().lstrip(".")
    if suffix not in formats:
        raise Refused(f"--plot {value}: {'.' + suffix if suffix else 'a name without a suffix'} is not a picture format matplotlib "
                      f"can write; end the name in one of {', '.join('.' + f for f in sorted(formats))} (e.g. report.png)")
    return value


def _rows(ind: Indicators) -> list[tuple[str, str, object]]:
    """(section, item, value) rows: the CSV form, and the order of the table."""
    rows: list[tuple[str, str, object]] = [("newcomers", "total", ind.newcomers)]
    rows += [("mother_tongue_group", k, v) for k, v in sorted(ind.by_mother_tongue_group.items())]
    rows += [("mother_tongue", k, v) for k, v in sorted(ind.by_mother_tongue.items())]
    rows += [("nationality", k, v) for k, v in sorted(ind.by_nationality.items())]
    rows += [("funnel", "referred", ind.referred), ("funnel", "reached", ind.reached)]
    rows += [("funnel", "assessments_started", ind.assessments_started), ("funnel", "assessments_done", ind.assessments_done)]
    rows += [("funnel", "plans_requested", ind.plans_requested)]
    rows += [("chain", key, ind.chain.get(key, 0)) for key, _, _ in CHAIN]
    rows += [("chain_only_from_a_later_step", key, ind.inferred[key]) for key, _, _ in CHAIN]
    rows += [("referrals_by_authority", k, v) for k, v in sorted(ind.referrals_by_authority.items())]
    for key, _title in STEPS:
        d = ind.steps[key]
        rows += [(f"days_{key}", "n", d.n), (f"days_{key}", "median", d.median_days), (f"days_{key}", "p90", d.p90_days)]
    rows += [("open_referrals", k, v) for k, v in sorted(ind.open_by_authority.items())] + [("open_referrals", "total", ind.open_referrals)]
    rows += [("overdue_referrals", k, v) for k, v in sorted(ind.overdue_by_authority.items())] + [("overdue_referrals", "total", ind.overdue_referrals)]
    return rows


def render_table(ind: Indicators) -> str:
    def fmt(v) -> str:
        return "-" if v is None else str(v)

    def pct(n: int) -> str:
        return f"{100 * n / ind.newcomers:5.1f} %" if ind.newcomers else "    -  "

    chain = []
    for key, label, why in CHAIN[1:]:
        chain.append(f"  {label:<30}{ind.chain.get(key, 0):>6}  {pct(ind.chain.get(key, 0))}")
        if ind.inferred[key]:
            chain.append(f"    {why}: {ind.inferred[key]}")
    lines = [
        f"Integration programme indicators: municipality {ind.municipality}, newcomers registered {ind.period_from} .. {ind.period_to} (states as of {ind.as_of})",
        "",
        f"newcomers                       {ind.newcomers:>6}",
        "  by mother tongue group:",
        *(f"    {k:<28}{v:>6}" for k, v in sorted(ind.by_mother_tongue_group.items())),
        "  by mother tongue:",
        *(f"    {k:<28}{v:>6}" for k, v in sorted(ind.by_mother_tongue.items(), key=lambda kv: (-kv[1], kv[0]))),
        "  by nationality (a person with two counts twice):",
        *(f"    {k:<28}{v:>6}" for k, v in sorted(ind.by_nationality.items(), key=lambda kv: (-kv[1], kv[0]))),
        "",
        "service chain (681/2023), persons at the step or further:",
        *chain,
        "",
        "each step as recorded (persons with the step itself on record):",
        f"referred                        {ind.referred:>6}  {pct(ind.referred)}",
        "  referrals by authority:",
        *(f"    {k:<28}{v:>6}" for k, v in sorted(ind.referrals_by_authority.items())),
        f"reached (outreach contacted)    {ind.reached:>6}  {pct(ind.reached)}",
        f"initial assessments started     {ind.assessments_started:>6}  {pct(ind.assessments_started)}",
        f"initial assessments done        {ind.assessments_done:>6}  {pct(ind.assessments_done)}",
        f"integration plans requested     {ind.plans_requested:>6}  {pct(ind.plans_requested)}",
        "",
        f"{'days between the steps':<54}{'n':>6} {'median':>8} {'p90':>8}",
        *(f"  {title:<52}{ind.steps[k].n:>6} {fmt(ind.steps[k].median_days):>8} {fmt(ind.steps[k].p90_days):>8}" for k, title in STEPS),
        "",
        f"open referrals                  {ind.open_referrals:>6}   overdue {ind.overdue_referrals}",
        *(f"    {a:<28}{ind.open_by_authority[a]:>6}   overdue {ind.overdue_by_authority.get(a, 0)}" for a in sorted(ind.open_by_authority)),
    ]
    return "\n".join(lines)


def render_csv(ind: Indicators) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["municipality", "from", "to", "section", "item", "value"])
    for section, item, value in _rows(ind):
        w.writerow([ind.municipality, ind.period_from.isoformat(), ind.period_to.isoformat(), section, item, "" if value is None else value])
    return buf.getvalue().rstrip("\n")


@click.command("report")
@click.option("--municipality", "municipality", required=True, metavar="CODE", help="Municipality code of the 2025 classification (3 digits, e.g. 091).")
@click.option("--from", "date_from", required=True, metavar="DATE", help="First day of the period (YYYY-MM-DD, Finnish time).")
@click.option("--to", "date_to", required=True, metavar="DATE", help="Last day of the period, inclusive (YYYY-MM-DD).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True, help="Output format.")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False, writable=True), default=None, metavar="FILE.png", callback=_plot_file,
              help="Also draw the funnel and the step durations into this file; its suffix gives the format (.png, .svg, .pdf, ...; "
                   "needs matplotlib: the `report` extra).")
@click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, help="Day against which due dates count as overdue (default: today in Finland).")
def report_command(municipality: str, date_from: str, date_to: str, fmt: str, plot_file: str | None, today) -> None:
    """The integration programme's indicators of one municipality for a period, from the ledger.

    The cohort is the newcomers whose registration in the municipality (the population-register
    change that made them newcomers) falls on a day from --from to --to, also those whose mother
    tongue the register does not give (counted as unknown). For them: counts by mother tongue
    group (Finnish, Swedish, Sámi, sign language, foreign language, unknown), mother tongue and nationality; the
    service chain of the act 681/2023 (referred -> reached -> initial assessment done -> integration
    plan requested), each person counted at the furthest step on record and at every step before
    it, so no step exceeds the one before; a line under a step says how many are there only
    through a later step (e.g. plans requested without a recorded assessment); then each step as
    recorded: referred per authority, reached (an outreach referral the municipality reported
    accepted or contacted), initial assessments started and done (a `completed` status, or the
    assessment itself received by the consent registry), integration plans requested (the
    disclosure audit); median and 90th-percentile days between the steps; their referrals still
    open, and overdue. Reads HUB_DATABASE_URL (run `hub db upgrade` first). Only aggregate counts
    are printed.
    """
    from hub.routing.model import FINLAND
    from hub.routing.reference import UnknownMunicipality, default_reference

    start, end = _date(date_from, "--from"), _date(date_to, "--to")
    if end < start:
        raise click.BadParameter(f"--to {end} is before --from {start}; give the period's first day in --from", param_hint="--to")
    code = municipality.strip()
    reference = default_reference()
    try:
        authorities = reference.authorities(code)
    except UnknownMunicipality as exc:
        raise click.BadParameter(str(exc), param_hint="--municipality") from None
    ids = {r.authority for r in authorities.roles.values() if r.authority}
    as_of = today.date() if today else dt.datetime.now(FINLAND).date()

    ind = _compute(code, start, end, as_of, ids)
    if plot_file:
        from hub.reporting.plot import PlotUnavailable, plot

        try:
            plot(ind, plot_file)
        except PlotUnavailable as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            raise click.ClickException(f"cannot write {plot_file}: {exc.strerror or exc}") from None
    if fmt == "json":
        click.echo(json.dumps(ind.as_dict(), ensure_ascii=False, indent=1))
    elif fmt == "csv":
        click.echo(render_csv(ind))
    else:
        click.echo(render_table(ind))
    if plot_file:
        click.echo(f"plot written to {plot_file}", err=True)


def _compute(code: str, start: dt.date, end: dt.date, as_of: dt.date, authorities: set[str]) -> Indicators:
    import sqlalchemy as sa

    from hub.adapters.database import create_engine
    from hub.config import Settings
    from hub.reporting import ledger_query
    from hub.reporting.indicators import compute

    try:
        settings = Settings.from_env()
        url = settings.resolved_database_url()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    wait_for(settings, database_url=url)
    engine = create_engine(url)
    try:
        rows = ledger_query.load(engine, code, start, end, authorities)
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
        raise click.ClickException(f"cannot read the coordination ledger ({type(exc.orig).__name__}); run `hub db upgrade` and check HUB_DATABASE_URL") from None
    finally:
        engine.dispose()
    return compute(code, start, end, as_of, rows.newcomers, rows.referrals, rows.statuses, rows.steps)


def register_commands(main: click.Group) -> None:
    main.add_command(report_command)
