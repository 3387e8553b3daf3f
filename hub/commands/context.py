"""What every `hub` command shares: the settings from the environment, logging, the start-up wait
for the broker and the database, and the one-line refusal with its exit status."""

from __future__ import annotations

from contextlib import contextmanager

import click

from hub.config import Settings

EXIT_UNAVAILABLE = 1  # a broker or database the command needs did not answer within HUB_STARTUP_TIMEOUT
EXIT_USAGE = 2  # a bad option, file or setting


class Refused(click.ClickException):
    """One line on stderr (`Error: ...`) and the given exit status: what failed and what to do."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def load_settings(production: bool = False) -> Settings:
    """The settings from the environment. `production`: a command that writes person keys or personal
    data outside the embedded demo; it refuses the demo secrets (exit 2, one line naming the variable)."""
    from hub.adapters import sealing

    try:
        settings = Settings.from_env()
        sealing.configure(settings.data_keys)  # personal data at rest (HUB_DATA_KEYS)
        if production:
            settings.require_production_secrets()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    return settings


def wait_for(settings: Settings, *, kafka_url: str | None = None, database_url: str | None = None) -> None:
    """Wait for the services a command needs (HUB_STARTUP_TIMEOUT seconds each, progress on stderr);
    one that stays down is refused with one line and EXIT_UNAVAILABLE. The one shared start-up check
    of every command that needs the broker or the database."""
    from hub.adapters.health import ServiceUnavailable, wait_for_broker, wait_for_database

    def progress(msg: str) -> None:
        click.echo(f"hub: {msg}", err=True)

    if kafka_url:  # a TLS/SASL setting that cannot work is a usage error, not a broker to wait for
        from hub.adapters.kafka.security import KafkaSecurityError, kafka_client_options

        try:
            kafka_client_options(settings)
        except KafkaSecurityError as exc:
            raise Refused(str(exc)) from None
    try:
        if kafka_url:
            wait_for_broker(settings, kafka_url, progress)
        if database_url:
            wait_for_database(settings, database_url, progress)
    except ServiceUnavailable as exc:
        raise Refused(str(exc), EXIT_UNAVAILABLE) from None


def require_tables(engine, tables: dict[str, tuple[str, ...]], what: str) -> None:
    """Refuse (one line, EXIT_UNAVAILABLE) a database that lacks one of `tables` (name -> columns
    it must have): one never `hub db upgrade`d, or not upgraded since those came. Names no
    table, no column and no SQL: only what is missing in general, and the fix."""
    import sqlalchemy as sa

    with database_errors(what):
        inspector = sa.inspect(engine)
        for table, columns in tables.items():
            if not inspector.has_table(table):
                raise Refused(f"the database at HUB_DATABASE_URL has no {what} tables: run `hub db upgrade` first", EXIT_UNAVAILABLE)
            have = {c["name"] for c in inspector.get_columns(table)}
            if not set(columns) <= have:
                raise Refused(f"the database at HUB_DATABASE_URL is not upgraded for {what}: run `hub db upgrade`", EXIT_UNAVAILABLE)


@contextmanager
def database_errors(what: str):
    """A database error inside becomes one line naming the error's class and the fix (EXIT_UNAVAILABLE):
    never a traceback, the SQL or its parameters (a callback URL, personal data)."""
    import sqlalchemy as sa

    from hub.adapters.sealing import SealingError

    try:
        yield
    except SealingError as exc:  # a sealed value that no key in HUB_DATA_KEYS opens: its message names the setting
        raise Refused(f"{what}: {exc}", EXIT_UNAVAILABLE) from None
    except sa.exc.SQLAlchemyError as exc:
        cause = type(getattr(exc, "orig", None) or exc).__name__
        raise Refused(f"{what}: the database failed ({cause}); check HUB_DATABASE_URL and run `hub db upgrade`", EXIT_UNAVAILABLE) from None


def configure_logging(level: str) -> None:
    from hub.logs import configure

    configure(level)
