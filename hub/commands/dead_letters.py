"""`hub dead-letters show ID`: a dead letter kept whole in the hub database, read back
(`hub.adapters.dead_letter_store`: records too large for the dead-letter topic, whose record there
points at the row). `hub dead-letters replay`: dead letters put back on their topics after a fix,
with their original headers (`hub.adapters.replay.replay_dead_letters`)."""

from __future__ import annotations

import base64
import json

import click

from hub.commands.context import load_settings


@click.group("dead-letters")
def dead_letters() -> None:
    """Dead letters: put back on their topics after a fix, or read back from the hub database (too large for the topic)."""


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


def _time(ctx, param, value):
    from hub.commands.subscribers import _timestamp

    return _timestamp(ctx, param, value)


@dead_letters.command("replay")
@click.option("--from-offset", type=click.IntRange(min=0), help="First offset of hub.dead-letters.v1 (inclusive, in each partition).")
@click.option("--from-time", callback=lambda ctx, param, value: _time(ctx, param, value), help="First dead letter's time (RFC 3339 or YYYY-MM-DD).")
@click.option("--to-offset", type=click.IntRange(min=0), help="Last offset (inclusive). Default: the end of the topic now.")
@click.option("--to-time", callback=lambda ctx, param, value: _time(ctx, param, value), help="Last dead letter's time (inclusive).")
@click.option("--partition", "partitions", type=click.IntRange(min=0), multiple=True, help="Only this partition of the dead-letter topic (repeatable).")
@click.option("--reason", help="Only dead letters with this reason code, e.g. unprocessable.")
@click.option("--original-topic", help="Only dead letters that came from this topic, e.g. hub.newcomers.v1.")
def replay_dead_letters_command(from_offset, from_time, to_offset, to_time, partitions, reason, original_topic) -> None:
    """Put dead letters back on the topics they came from, after the fix that lets them through.

    Each original record goes back with its key, its value bytes and its Kafka headers as they came
    (CloudEvents attributes, the publisher's signature), and a header hub_replay_of=<topic>/<partition>/<offset>
    of the original; the hub's processors are idempotent by event id, so nothing is done twice. Dead
    letters of files and DVV pages (ingest them again), of topics the hub discloses on, and, without
    the hub database, those whose original is kept there are left and counted. Needs HUB_KAFKA_URL (as a
    user that reads hub.dead-letters.v1 and writes the original topics: User:hub-ops with Write on
    them); HUB_DATABASE_URL and HUB_DATA_KEYS for originals kept in the database."""
    import asyncio
    import sys

    from hub.adapters.replay import Range, replay_dead_letters
    from hub.commands.subscribers import EXIT_FAILED, _kafka_url, _security
    from hub.schemas.codec import default_codec

    try:
        window = Range(from_offset, from_time, to_offset, to_time)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    url, security = _kafka_url(), _security()
    engine = None

    def kept(row_id: int) -> dict | None:
        nonlocal engine
        from hub.adapters.database import create_engine
        from hub.adapters.dead_letter_store import DeadLetterStore

        engine = engine or create_engine(load_settings().resolved_database_url())
        return DeadLetterStore(engine).get(row_id)

    try:
        result = asyncio.run(replay_dead_letters(url, window, default_codec(), partitions=list(partitions) or None, reason=reason,
                                                 original_topic=original_topic, kept=kept, security=security))
    except LookupError as exc:
        raise click.UsageError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - broker or database unavailable: a message, not a traceback
        click.echo(f"dead-letter replay failed: {type(exc).__name__}; check HUB_KAFKA_URL (and HUB_DATABASE_URL, HUB_DATA_KEYS for "
                   "originals kept in the database)", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        if engine is not None:
            engine.dispose()
    put_back = ", ".join(f"{topic}: {n}" for topic, n in sorted(result.republished.items())) or "none"
    left = ", ".join(f"{why}: {n}" for why, n in sorted(result.skipped.items()))
    click.echo(f"replayed {sum(result.republished.values())} of {result.read} dead letter(s) onto their topics ({put_back})"
               + (f"; left {sum(result.skipped.values())} ({left})" if left else ""))


def register_commands(main: click.Group) -> None:
    main.add_command(dead_letters)
