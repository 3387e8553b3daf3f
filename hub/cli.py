"""The `hub` command: parses arguments, calls the use case, prints. No domain logic here."""

from __future__ import annotations

import contextlib

import click

from hub.commands.context import Refused, configure_logging, load_settings, wait_for


@contextlib.contextmanager
def _errors_without_identity_codes():
    """Click's error messages quote the values given (`'120491-900F' is not a valid integer`); an
    identity code given to the wrong option or as a stray argument must not be echoed."""
    try:
        yield
    except click.ClickException as exc:
        from hub.logs import scrub_identity_codes

        for name in ("message", "param_hint", "ui_filename", "option_name"):
            value = getattr(exc, name, None)
            if isinstance(value, str):
                setattr(exc, name, scrub_identity_codes(value))
        if getattr(exc, "possibilities", None):
            exc.possibilities = [scrub_identity_codes(p) for p in exc.possibilities]
        raise


class _Hub(click.Group):
    """The root group: every usage error of every subcommand (they are parsed and run inside this
    group's make_context / invoke) passes through one scrub before click prints it."""

    def make_context(self, *args, **kwargs):
        with _errors_without_identity_codes():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with _errors_without_identity_codes():
            return super().invoke(ctx)


@click.group(cls=_Hub, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="integration-hub")
def main() -> None:
    """Integration hub: population-register changes in, newcomers referred to the responsible
    authorities (municipality, wellbeing area, employment authority), consent-gated propagation
    of initial-assessment results.

    Configuration comes from HUB_* environment variables (see the README). Without
    HUB_KAFKA_URL the hub starts its embedded broker; without HUB_DATABASE_URL it uses SQLite
    under HUB_DATA_DIR (default .hub-data).
    """


@main.command()
@click.option("--quiet", is_flag=True, help="Print only the summary.")
@click.option("--changes", type=click.IntRange(0, 1_000_000), default=3000, show_default=True,
              help="Synthetic DVV changes to generate on top of the hand-written sample day.")
@click.option("--keep-running", is_flag=True, help="After the summary, keep the pipeline and /metrics up until Ctrl-C (for a Prometheus to scrape).")
def demo(quiet: bool, changes: int, keep_running: bool) -> None:
    """Run the main job on embedded defaults and print a summary.

    Starts the bundled broker (unless HUB_KAFKA_URL is set), feeds synthetic population
    changes (test identity codes only) through the stream processors and prints what
    happened. Exits 0 on success; stops every process it started. On the embedded defaults
    each run starts from an empty database, HUB_DATA_DIR/demo.sqlite3 (kept afterwards, e.g.
    for `hub report`), as the bundled broker starts empty.
    """
    from hub.demo import run_demo

    settings = load_settings()
    configure_logging("ERROR" if quiet else settings.log_level)
    progress = (lambda msg: None) if quiet else (lambda msg: click.echo(f"demo: {msg}", err=True))
    summary = run_demo(settings, progress, changes=changes, keep_running=keep_running)
    if not keep_running:
        click.echo(summary.render())


@main.command()
def worker() -> None:
    """Run the production worker until stopped (Ctrl-C or SIGTERM).

    Reads HUB_KAFKA_URL (the embedded broker when unset), HUB_DATABASE_URL, HUB_APP_ID,
    HUB_TOPIC_PARTITIONS and the HUB_KAFKA_* consumer-group timings; serves Prometheus metrics
    on http://HUB_METRICS_ADDR:HUB_METRICS_PORT/metrics (default 127.0.0.1:9108); see the README.
    Needs HUB_PERSON_KEY_SECRET and HUB_DATA_KEYS (exit 2 without them; `hub demo` runs on demo values).

    A broker or database that is down at start is waited for up to HUB_STARTUP_TIMEOUT seconds
    (default 60, progress on stderr). Exit status: 1 a service did not answer in that time; 2 a bad
    setting or file (HUB_ROUTING_RULES, the secrets); each with one line saying
    what to do.
    """
    import faust

    from hub.adapters.kafka.embedded_broker import kafka_url_for
    from hub.routing.rules import RulesError, load_rules
    from hub.streams.ops_agents import MetricsEndpoint, MetricsPortUnavailable
    from hub.streams.pipeline import build

    settings = load_settings(production=True)
    if settings.routing_rules:  # checked before anything starts, as `hub route --rules` checks it
        try:
            load_rules(settings.routing_rules)
        except RulesError as exc:
            raise Refused(f"HUB_ROUTING_RULES: {exc}; fix the file or unset HUB_ROUTING_RULES for the shipped rules") from None
    from hub.consent import legal_bases

    try:  # a legal-basis file that cannot be used (e.g. an entry in the old form) stops the worker before anything starts
        legal_bases.load(settings.consent_legal_bases)
    except legal_bases.LegalBasisFileError as exc:
        raise Refused(f"HUB_CONSENT_LEGAL_BASES: {exc}") from None
    if settings.metrics_port:  # a taken /metrics port is found before waiting for the services
        probe = MetricsEndpoint(settings.metrics_addr, settings.metrics_port)
        try:
            probe.start()
        except MetricsPortUnavailable as exc:
            raise click.ClickException(str(exc)) from None
        probe.stop()
    configure_logging(settings.log_level)
    wait_for(settings, kafka_url=settings.kafka_url, database_url=settings.resolved_database_url())
    with kafka_url_for(settings) as url:
        pipeline = build(settings, url)
        hub = pipeline.hub
        try:  # bind /metrics now: a taken port is a clear error, and it answers during start-up
            pipeline.ops.endpoint.start()
        except MetricsPortUnavailable as exc:
            raise click.ClickException(str(exc)) from None
        hub.publisher.ensure_topics()
        faust.Worker(hub.app, loglevel=settings.log_level, quiet=True, override_logging=False).execute_from_commandline()


from hub.commands.ingest import register_commands as _register_ingest; _register_ingest(main)  # noqa: E402
from hub.commands.routing import register_commands as _routing_commands; _routing_commands(main)  # noqa: E402
from hub.commands.consent import register_commands as _consent; _consent(main)  # noqa: E402,E702
from hub.commands.report import register_commands as _report_commands; _report_commands(main)  # noqa: E402
from hub.commands.deploy import register_commands as _deploy_commands; _deploy_commands(main)  # noqa: E402
from hub.commands.retention import register_commands as _retention_commands; _retention_commands(main)  # noqa: E402
from hub.commands.subscribers import register_commands as _subscriber_commands; _subscriber_commands(main)  # noqa: E402
from hub.commands.publish import register_commands as _publish_commands; _publish_commands(main)  # noqa: E402
from hub.commands.dead_letters import register_commands as _dead_letter_commands; _dead_letter_commands(main)  # noqa: E402
from hub.commands.outbox import register_commands as _outbox_commands; _outbox_commands(main)  # noqa: E402
from hub.commands.db import register_commands as _db_commands; _db_commands(main)  # noqa: E402


if __name__ == "__main__":  # pragma: no cover
    main()
