"""`hub ingest dvv`: population-register change data (DVV VTJ-muutosrajapinta) into the hub."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import signal
import sys
import threading

import click

from hub.commands.context import configure_logging, load_settings, wait_for

EXIT_DEAD_LETTERS = 3  # some records went to dead letters (the rest was published)
EXIT_FAILED = 1  # the run stopped: broker, database or DVV unavailable, or a malformed page from DVV

log = logging.getLogger(__name__)


@click.group()
def ingest() -> None:
    """Bring external data into the hub."""


@ingest.command("dvv")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--dry-run", is_flag=True, help="Print PopulationChange events as JSON lines on stdout and bad records on stderr; publish nothing.")
@click.option("--poll", is_flag=True, help="Read the changes from the configured DVV endpoint (HUB_DVV_URL) from the stored cursor.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), help="With --poll: start from the first record key of this day (YYYY-MM-DD) instead of the stored cursor.")
@click.option("--max-pages", type=click.IntRange(min=1), help="With --poll: stop after this many pages.")
@click.option("--follow", is_flag=True,
              help="With --poll: keep reading (the production feed): when DVV is up to date, or unavailable, wait "
                   "HUB_DVV_POLL_INTERVAL seconds and read again, until SIGTERM or SIGINT (then it finishes the page at hand).")
@click.option("--snapshot", is_flag=True,
              help="FILE is a register snapshot (saved /perustiedot responses) for the go-live backfill: one `resident` event per person.")
@click.option("--taken-on", type=click.DateTime(formats=["%Y-%m-%d"]),
              help="With --snapshot: the day the snapshot was extracted (YYYY-MM-DD), for responses without `poimintapv`.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
def ingest_dvv(files: tuple[str, ...], dry_run: bool, poll: bool, since: dt.datetime | None, max_pages: int | None, follow: bool,
               snapshot: bool, taken_on: dt.datetime | None, quiet: bool) -> None:
    """Parse DVV change data (saved `muutokset` responses) and publish it.

    FILE is a saved response of POST /api/v1/muutokset (one JSON response per file, or JSON
    lines with one response per line). Each change becomes PopulationChange events on
    hub.population-changes.v1, keyed by the pseudonymous person key; a change that fails
    validation goes to hub.dead-letters.v1 with its original bytes, its file:line and a reason.
    Without HUB_KAFKA_URL the embedded broker is started for the run.

    --poll reads from HUB_DVV_URL instead of files, page by page, and stores the record key in
    the database (HUB_DATABASE_URL) after the broker acknowledged each page. It serves /metrics
    and /health on HUB_METRICS_ADDR:HUB_DVV_METRICS_PORT while it runs (not with --dry-run):
    hub_dvv_pages_total, hub_dvv_changes_total, hub_dvv_last_page_timestamp_seconds,
    hub_dvv_poll_failures_total, hub_dvv_unknown_data_groups_total, hub_dead_letters_total.
    --poll --follow is the long-running feed the deployments run: it reads again every
    HUB_DVV_POLL_INTERVAL seconds, and waits out an unavailable DVV instead of stopping.

    --snapshot (the go-live backfill) reads saved responses of POST /api/v1/perustiedot instead:
    each person becomes one PopulationChange of change type `resident`, and the worker's newcomer
    detection makes a newcomer of each foreign national still inside the integration period (by
    DVV's date of moving to Finland, or by the start of the first home municipality when the
    register names no earlier one; never guessed). Event ids derive from the snapshot's day and
    the person, so a second run of the same snapshot detects nobody again, and a person the hub
    already detected is never detected twice. Progress (persons, events, rate) goes to stderr.
    Go-live: backfill first, then start `--poll --since <the snapshot's day>`.

    Needs HUB_PERSON_KEY_SECRET and HUB_DATA_KEYS (exit 2 without them), except with --dry-run,
    whose person keys are computed under the demo secret when it is unset.

    Exit status: 0 all published; 3 some records went to dead letters; 1 the run stopped
    (broker, database or DVV unavailable, or DVV sent a malformed page; the cursor stays at the
    last acknowledged page; with --snapshot: a response without `poimintapv` and no --taken-on);
    2 usage error.
    """
    if poll and files:
        raise click.UsageError("give FILE arguments or --poll, not both")
    if not poll and not files:
        raise click.UsageError("give one or more FILE arguments (saved muutokset responses), or --poll")
    if (since or max_pages or follow) and not poll:
        raise click.UsageError("--since, --max-pages and --follow go with --poll")
    if follow and (max_pages or dry_run):
        raise click.UsageError("--follow keeps publishing: not with --max-pages or --dry-run")
    if snapshot and poll:
        raise click.UsageError("--snapshot reads saved /perustiedot responses (FILE...), not --poll")
    if taken_on and not snapshot:
        raise click.UsageError("--taken-on goes with --snapshot")
    if taken_on and taken_on.date() > dt.date.today():
        raise click.UsageError(f"--taken-on {taken_on.date().isoformat()} is in the future; give the day the snapshot was extracted")
    settings = load_settings(production=not dry_run)  # a dry run writes nothing: the demo secret is fine for trying a file
    configure_logging("ERROR" if dry_run or quiet else settings.log_level)
    progress = None if quiet else (lambda msg: click.echo(f"ingest dvv: {msg}", err=True))
    feed = _Feed(follow=follow)
    endpoint = _serve_metrics(settings, feed, progress) if poll and not dry_run else None  # a taken port is found before waiting
    try:
        if not dry_run:  # the broker, and with --poll the database (its cursor), waited for before anything is read
            wait_for(settings, kafka_url=settings.kafka_url, database_url=settings.resolved_database_url() if poll else None)
        try:
            report = asyncio.run(_run(settings, files, dry_run, poll, since.date() if since else None, max_pages, progress,
                                      snapshot=snapshot, taken_on=taken_on.date() if taken_on else None, feed=feed))
        except _Failed as exc:
            click.echo(f"ingest dvv: {exc}", err=True)
            sys.exit(EXIT_FAILED)
    finally:
        if endpoint is not None:
            endpoint.stop()
    summary = (
        f"ingest dvv: {report.pages} pages, {report.changes} {'persons' if snapshot else 'changes'}, {report.published} events {'printed (dry run)' if dry_run else 'published'}, "
        f"{sum(report.dead_letters.values())} dead letters"
        + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(report.dead_letters.items()))})" if report.dead_letters else "")
        + (f", unknown data groups: {', '.join(sorted(report.unknown_groups))}" if report.unknown_groups else "")
        + (f", cursor at {report.cursor}" if report.cursor is not None else "")
    )
    if not quiet:
        click.echo(summary, err=True)
    if not report.ok:
        sys.exit(EXIT_DEAD_LETTERS)


class _Failed(Exception):
    pass


class _Feed:
    """The state of a --poll run that /health reports, and its stop signal (SIGTERM, SIGINT with --follow)."""

    def __init__(self, follow: bool = False):
        self.follow = follow
        self.running = False
        self.stop = threading.Event()

    def not_running(self) -> list[str]:
        return [] if self.running else ["dvv-feed"]

    def until_stopped(self, pages):
        """The pages of `pages` until a stop was asked for: the page at hand is finished (published, cursor stored) first."""
        for page in pages:
            yield page
            if self.stop.is_set():
                return


def _serve_metrics(settings, feed: _Feed, progress=None):
    """/metrics and /health (200 while the feed runs, 503 `not running: dvv-feed` before and after) of a --poll run."""
    from hub.streams.ops_agents import MetricsEndpoint, MetricsPortUnavailable

    endpoint = MetricsEndpoint(settings.metrics_addr, settings.dvv_metrics_port, feed.not_running, port_setting="HUB_DVV_METRICS_PORT")
    try:
        endpoint.start()
    except MetricsPortUnavailable as exc:
        click.echo(f"ingest dvv: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    if progress:
        progress(f"metrics on {endpoint.url}")
    return endpoint


def _merge(total, report) -> None:
    total.pages += report.pages
    total.changes += report.changes
    total.events.update(report.events)
    total.dead_letters.update(report.dead_letters)
    total.unknown_groups.update(report.unknown_groups)
    if report.cursor is not None:
        total.cursor = report.cursor


async def _follow(settings, client, cursor, start, max_pages, progress, read, feed: _Feed):
    """Read the feed from `start` (`read(pages)` ingests them); with --follow again every
    HUB_DVV_POLL_INTERVAL seconds from the stored cursor until a stop is asked for. An unavailable
    DVV ends a plain --poll (exit 1) but only this round of --follow: the next round tries again,
    and hub_dvv_last_page_timestamp_seconds ages meanwhile (alert HubDvvFeedStale)."""
    from hub import metrics
    from hub.adapters.dvv.client import DvvUnavailable
    from hub.adapters.dvv.ingest import IngestReport

    total = IngestReport()
    loop = asyncio.get_running_loop()
    if feed.follow:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, feed.stop.set)
    feed.running = True
    try:
        while start is None:  # --follow, no cursor yet: the first read (`--poll --since DAY`) stores one
            if await asyncio.to_thread(feed.stop.wait, settings.dvv_poll_interval):
                return total
            start = _load(cursor)
        while True:
            try:
                _merge(total, await read(feed.until_stopped(client.pages(start, max_pages=max_pages))))
            except DvvUnavailable as exc:
                metrics.dvv_poll_failures.inc()
                if not feed.follow:
                    raise
                log.warning("DVV change feed: %s; reading again in %g s", exc, settings.dvv_poll_interval)
                if progress:
                    progress(f"{exc}; reading again in {settings.dvv_poll_interval:g} s")
            if not feed.follow or feed.stop.is_set():
                return total
            if await asyncio.to_thread(feed.stop.wait, settings.dvv_poll_interval):
                return total
            stored = _load(cursor) if cursor is not None else None
            start = stored if stored is not None else start
    finally:
        feed.running = False
        if feed.follow:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


def _load(cursor):
    try:
        return cursor.load()
    except Exception as exc:  # noqa: BLE001 - a database outage stops the run with one line; the cursor keeps its place
        raise _Failed(f"the DVV cursor could not be read from HUB_DATABASE_URL ({type(exc).__name__}); check the database") from None


async def _run(settings, files, dry_run, poll, since, max_pages, progress, snapshot=False, taken_on=None, feed: _Feed | None = None):
    from hub.adapters.dvv.client import DvvClient, DvvError, ClientConfig
    from hub.adapters.dvv.ingest import DryRunSink, KafkaSink, ingest, process_page, read_files
    from hub.adapters.dvv.snapshot import SnapshotDateMissing, read_snapshot_files, snapshot_processor
    from hub.adapters.kafka.errors import is_kafka_error
    from hub.adapters.kafka.security import kafka_client_options
    from hub.adapters.dvv.page import MalformedPage

    how = {"skew": settings.clock_skew_delta}
    if snapshot:
        how.update(process=snapshot_processor(taken_on), unit="persons", metric_topic="dvv.perustiedot")
    else:
        how.update(process=process_page)

    feed = feed or _Feed()
    cursor = client = start = None
    if poll:
        try:
            client = DvvClient(ClientConfig.from_settings(settings))
        except DvvError as exc:
            raise _Failed(str(exc)) from None
        cursor, start = _start_key(settings, client, since, dry_run, feed.follow)
        if progress:
            progress(f"reading changes after record key {start}" if start is not None else
                     "no stored DVV cursor yet: waiting for the first run, `hub ingest dvv --poll --since YYYY-MM-DD`")
    else:
        pages = read_snapshot_files(files) if snapshot else read_files(files)
    try:
        if dry_run:
            if poll:
                pages = client.pages(start, max_pages=max_pages)
            return await ingest(pages, DryRunSink(sys.stdout, sys.stderr), secret=settings.person_key_secret, progress=progress, **how)
        from hub.adapters.kafka.embedded_broker import BrokerError, kafka_url_for

        try:
            with kafka_url_for(settings) as url:
                key = settings.signing_key()
                signer = (settings.app_id, key) if key is not None else None
                async with KafkaSink(url, partitions=settings.topic_partitions, security=kafka_client_options(settings), signer=signer) as sink:
                    async def read(pages):
                        return await ingest(pages, sink, secret=settings.person_key_secret, cursor=cursor, progress=progress, **how)

                    if poll:
                        return await _follow(settings, client, cursor, start, max_pages, progress, read, feed)
                    return await read(pages)
        except BrokerError as exc:
            raise _Failed(str(exc)) from None
        except Exception as exc:
            if is_kafka_error(exc):
                raise _Failed(f"the broker did not take the events ({type(exc).__name__}); nothing after the last acknowledged page was recorded") from None
            raise
    except MalformedPage as exc:
        raise _Failed(f"DVV sent a malformed page: {exc}; the cursor stays at the last acknowledged page") from None
    except SnapshotDateMissing as exc:
        raise _Failed(f"{exc}; the pages before it were published, and a rerun publishes nothing twice") from None
    except DvvError as exc:
        raise _Failed(str(exc)) from None
    finally:
        if cursor is not None:
            cursor.dispose()


def _start_key(settings, client, since, dry_run, follow=False):
    from hub.adapters.database import upgrade
    from hub.adapters.dvv.client import DvvError
    from hub.adapters.dvv.cursor import CursorStore

    try:
        url = settings.resolved_database_url()
        upgrade(url)
        cursor = CursorStore.from_url(url)
        stored = cursor.load()
    except Exception as exc:
        raise _Failed(f"the database at HUB_DATABASE_URL is not usable ({type(exc).__name__}); check it and run `hub db upgrade`") from None
    if since is None and stored is None and follow and not dry_run:
        log.warning("no stored DVV cursor yet: waiting for the first run, `hub ingest dvv --poll --since YYYY-MM-DD`")
        return cursor, None
    if since is None and stored is None:
        cursor.dispose()
        raise _Failed("no stored DVV cursor yet: give --since YYYY-MM-DD for the first run")
    if since is not None:
        try:
            start = client.first_key(since)
        except DvvError as exc:
            cursor.dispose()
            raise _Failed(str(exc)) from None
    else:
        start = stored
    if dry_run:  # a dry run never moves the cursor
        cursor.dispose()
        return None, start
    _last_page_from(cursor)
    return cursor, start


def _last_page_from(cursor) -> None:
    """hub_dvv_last_page_timestamp_seconds starts at the stored cursor's time, so a restarted poller
    does not look fresh before it has read a page."""
    from hub import metrics

    try:
        saved = cursor.saved_at()
    except Exception as exc:  # noqa: BLE001 - the gauge is then set by the first page
        log.warning("the DVV cursor's time was not read: %s", type(exc).__name__)
        return
    if saved is not None:
        metrics.dvv_last_page.labels(feed=cursor.feed).set((saved if saved.tzinfo else saved.replace(tzinfo=dt.timezone.utc)).timestamp())


def register_commands(main: click.Group) -> None:
    main.add_command(ingest)
