"""`hub outbox parked|retry`: the outbox rows the relay could not send (hub.streams.outbox_relay)."""

from __future__ import annotations

import json

import click

from hub.commands.context import load_settings


def _sessions():
    from hub.adapters.database import create_engine, session_factory
    return session_factory(create_engine(load_settings().resolved_database_url()))


@click.group("outbox")
def outbox_group() -> None:
    """Outbox rows that were parked instead of sent (HUB_DATABASE_URL).

    A row that fails for a reason of its own (too large for the producer, refused by the broker as a
    record, not encodable) is parked so that the rows after it go on; the alert HubOutboxParked says
    so. A plan request whose consent or legal basis ended before it could be sent is withdrawn: it
    is listed here too, and never sent.
    """


@outbox_group.command("parked")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per row.")
def outbox_parked(as_json: bool) -> None:
    """List parked and withdrawn rows: id, topic, schema, event id, size, reason (never the content)."""
    from hub.adapters import outbox
    from hub.streams.outbox_relay import parked_rows_as_dicts

    with _sessions()() as s:
        rows = parked_rows_as_dicts(outbox.parked(s))
    for r in rows:
        if as_json:
            click.echo(json.dumps(r))
        else:
            what = "retry with `hub outbox retry %d`" % r["id"] if r["retryable"] else "withdrawn, never sent"
            click.echo(f"{r['id']}  {r['parked_at']}  {r['schema']} to {r['topic']}  event {r['event_id']}  {r['size']} bytes  "
                       f"{r['reason']} ({r['detail']}); {what}")
    if not rows and not as_json:
        click.echo("no parked outbox rows")


@outbox_group.command("retry")
@click.argument("row_id", type=int)
def outbox_retry(row_id: int) -> None:
    """Queue parked row ROW_ID again, after its cause is fixed (e.g. a larger producer limit): a
    running `hub worker` sends it before every later row; parked again if it still fails."""
    from hub.adapters import outbox

    with _sessions().begin() as s:
        try:
            row = outbox.unpark(s, row_id)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    if row is None:
        raise click.BadParameter(f"no parked outbox row {row_id}; `hub outbox parked` lists them", param_hint="ROW_ID")
    click.echo(f"outbox row {row_id} queued again")


def register_commands(main: click.Group) -> None:
    main.add_command(outbox_group)
