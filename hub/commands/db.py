"""`hub db upgrade|current|history|downgrade`: the database schema (Alembic migrations, hub/migrations).

Exit status of every `hub db` command: 0 done; 1 the database did not answer within
HUB_STARTUP_TIMEOUT (waited for with progress on stderr, as every command does); 2 a bad option (an
unknown revision, a target the history cannot reach from where the database is) or the demo secrets
where a migration converts rows; 3 a migration refused (a downgrade that cannot be undone; the line says
where the database is left).  Each failure is one line on stderr saying what to do.
"""

from __future__ import annotations

import click

from hub.commands.context import EXIT_USAGE, Refused, load_settings, wait_for

EXIT_REFUSED = 3


def _url() -> str:
    return load_settings().resolved_database_url()


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _reachable(url: str) -> None:
    """Wait for the database as every command does (HUB_STARTUP_TIMEOUT, progress on stderr), then
    refuse (exit 1) when it does not answer: before any migration runs, so that a migration's own
    database error is never mistaken for an outage."""
    wait_for(load_settings(), database_url=url)


def _run(what: str, url: str, fn) -> None:
    from alembic.util import CommandError

    from hub.config import DemoSecrets

    _reachable(url)
    try:
        fn()
    except DemoSecrets as exc:  # rows to convert (0013) under the demo secrets: nothing was changed
        raise Refused(str(exc), EXIT_USAGE) from None
    except CommandError as exc:  # unknown revision, or a target not reachable from the current one
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else "bad revision"
        raise Refused(f"{what}: {message}; `hub db history` lists the revisions, `hub db current` where the database is",
                      EXIT_USAGE) from None
    except RuntimeError as exc:  # a migration that refuses to run (e.g. 0013 is not undone)
        from hub.adapters.database import current_revisions

        # PostgreSQL undoes the whole run (transactional DDL); SQLite keeps the steps done before it
        now = ", ".join(sorted(current_revisions(url))) or "base"
        raise Refused(f"{what} refused: {exc}; the database is at {now}", EXIT_REFUSED) from None


@click.group("db")
def db_group() -> None:
    """Database schema management (Alembic migrations) of HUB_DATABASE_URL.

    The history is linear: `head` is its newest revision. `hub worker` upgrades to head at start
    (under a lock on PostgreSQL); `hub db upgrade` does it as a step of its own.

    Exit status: 0 done; 1 the database did not answer; 2 an unknown or unreachable revision, or
    the demo secrets where a migration converts rows; 3 a migration refused (the line says at
    which revision the database is left).
    """


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision (`hub db history`).")
def db_upgrade(revision: str) -> None:
    """Create or upgrade the hub's tables in HUB_DATABASE_URL (SQLite under HUB_DATA_DIR by default)."""
    from hub.adapters.database import current_revisions, upgrade

    url = _url()
    _run(f"upgrade to {revision!r}", url, lambda: upgrade(url, revision))
    click.echo(f"database at {_redact(url)} is at {', '.join(sorted(current_revisions(url))) or 'base'}")


@db_group.command("downgrade")
@click.option("--revision", required=True, help="Revision to go back to (`hub db history`), or `base`.")
def db_downgrade(revision: str) -> None:
    """Undo the migrations above REVISION. Take a backup first: some migrations cannot be undone
    (0013 removed identity codes it keeps nowhere in clear) and refuse, exit 3. On PostgreSQL the
    whole downgrade is then undone; on SQLite the steps above the refusing one stay done."""
    from hub.adapters.database import current_revisions, downgrade

    url = _url()
    _run(f"downgrade to {revision!r}", url, lambda: downgrade(url, revision))
    click.echo(f"database at {_redact(url)} is at {', '.join(sorted(current_revisions(url))) or 'base'}")


@db_group.command("current")
def db_current() -> None:
    """The revision the database is at, and whether that is head (exit 0 either way)."""
    from hub.adapters.database import current_revisions, head_revision

    url = _url()
    _reachable(url)
    current, head = current_revisions(url), head_revision(url)
    if not current:
        click.echo(f"database at {_redact(url)} has no tables of the hub (base); run `hub db upgrade`")
    elif current == {head}:
        click.echo(f"{head} (head)")
    else:
        click.echo(f"{', '.join(sorted(current))} (not at head {head}; run `hub db upgrade`)")


@db_group.command("history")
def db_history() -> None:
    """Every revision, newest first: id, the revisions it follows, what it does (no database needed)."""
    from alembic.script import ScriptDirectory

    from hub.adapters.database import alembic_config

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    for rev in script.walk_revisions():
        down = ", ".join(rev._versioned_down_revisions) or "base"
        doc = (rev.doc or "").strip().splitlines()[0] if rev.doc else ""
        head = " (head)" if rev.is_head else ""
        click.echo(f"{rev.revision}{head}  <- {down}  {doc}")


def register_commands(main: click.Group) -> None:
    main.add_command(db_group)
