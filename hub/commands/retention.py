"""`hub retention`: the documented retention job (see hub/adapters/retention.py)."""

from __future__ import annotations

import datetime as dt
import json

import click

from hub.domain.clock import utcnow


@click.command()
@click.option("--older-than", "days", type=click.IntRange(1, 36500), required=True,
              help="Remove entries older than this many days (closed referrals, audit rows, ended consents, delivered webhooks, stored dead letters, ...).")
@click.option("--replay-horizon", "horizon_days", type=click.IntRange(0, 36500), envvar="HUB_REPLAY_HORIZON_DAYS", show_envvar=True,
              help="Days a topic can still deliver an event again (the longest retention.ms of the topics the hub consumes; "
                   "default: the event logs' 30). Idempotency marks and ended consents' tombstones are kept that long.")
@click.option("--run-by", default="retention-job", show_default=True, help="Who runs it (recorded in retention_runs).")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def retention(days: int, horizon_days: int | None, run_by: str, as_json: bool) -> None:
    """Remove ledger, audit and consent entries past the retention age; the run itself is recorded.

    Open referrals are never removed. An ended consent's history goes, but a tombstone (person key,
    consent id, end; no identity code) stays for the replay horizon, so a replay of the topics
    cannot bring the consent back. Works on HUB_DATABASE_URL (run `hub db upgrade` first).
    """
    from hub.adapters.database import create_engine, session_factory, upgrade
    from hub.adapters.retention import run_retention
    from hub.config import Settings

    settings = Settings.from_env()
    url = settings.resolved_database_url()
    upgrade(url)
    engine = create_engine(url)
    horizon = None if horizon_days is None else dt.timedelta(days=horizon_days)
    try:
        with session_factory(engine).begin() as s:
            removed = run_retention(s, dt.timedelta(days=days), utcnow(), run_by, replay_horizon=horizon)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(removed, sort_keys=True))
    else:
        for table, n in sorted(removed.items()):
            click.echo(f"{table:<18} {n}")


def register_commands(main: click.Group) -> None:
    main.add_command(retention)
