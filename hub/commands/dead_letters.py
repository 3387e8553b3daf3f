"""`hub dead-letters show ID`: a dead letter kept whole in the hub database, read back
(`hub.adapters.dead_letter_store`: records too large for the dead-letter topic, whose record there
points at the row)."""

from __future__ import annotations

import base64
import json

import click

from hub.commands.context import load_settings


@click.group("dead-letters")
def dead_letters() -> None:
    """Dead letters kept in the hub database (too large for the dead-letter topic)."""


@dead_letters.command("show")
@click.argument("row_id", metavar="ID", type=click.IntRange(1))
def show(row_id: int) -> None:
    """Print dead letter ID as one JSON object: its reason, message, origin, and the original key and
    value as base64 (`original_value_base64`), ready for `base64 -d` and a replay after a fix.

    ID is the number in the topic record's location (`hub-db:dead_letters/ID`). Works on
    HUB_DATABASE_URL; the original is opened with HUB_DATA_KEYS."""
    from hub.adapters.database import create_engine
    from hub.adapters.dead_letter_store import DeadLetterStore
    import sqlalchemy as sa

    from hub.adapters.sealing import SealingError

    engine = create_engine(load_settings().resolved_database_url())
    try:
        row = DeadLetterStore(engine).get(row_id)
    except sa.exc.SQLAlchemyError as exc:
        raise click.ClickException(f"cannot read dead letters from the hub database ({type(exc).__name__}); check HUB_DATABASE_URL "
                                   "and run `hub db upgrade`") from None
    except SealingError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    if row is None:
        raise click.ClickException(f"no dead letter {row_id} in the hub database; the number is the one in the topic record's location")
    out = {k: v for k, v in row.items() if k not in ("original_key", "original_value")}
    out["created_at"] = row["created_at"].isoformat()
    out["original_key_base64"] = None if row["original_key"] is None else base64.b64encode(row["original_key"]).decode()
    out["original_value_base64"] = base64.b64encode(row["original_value"]).decode()
    out["original_value_bytes"] = len(row["original_value"])
    click.echo(json.dumps(out, ensure_ascii=False))


def register_commands(main: click.Group) -> None:
    main.add_command(dead_letters)
