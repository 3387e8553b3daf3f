"""`hub topics`, `hub acls` and `hub healthcheck`: what an operator needs to run the hub on Kafka."""

from __future__ import annotations

import click

from hub.commands.context import load_settings

FORMATS = ("list", "json", "kafka-topics-sh", "strimzi")
ACL_FORMATS = ("list", "json", "kafka-acls-sh", "strimzi")


def _app_id(app_id: str | None) -> str:
    return app_id or load_settings().app_id


@click.command()
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="list", show_default=True,
              help="list: name, partitions, configs (tab-separated); json; kafka-topics-sh: idempotent create commands; "
                   "strimzi: KafkaTopic resources (YAML).")
@click.option("--partitions", type=click.IntRange(min=1), default=None,
              help="Partitions of the person-keyed topics [default: HUB_TOPIC_PARTITIONS].")
@click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True, help="Replication factor (3 on a production cluster).")
@click.option("--create", is_flag=True,
              help="Create the missing topics on HUB_KAFKA_URL (with its TLS/SASL settings) instead of printing; existing ones are left alone.")
def topics(fmt: str, partitions: int | None, replicas: int, create: bool) -> None:
    """Print every Kafka topic of the hub with its partitions and configs.

    The fixed event topics (retention), the dead letters (longer retention) and one referral, one
    plan-request and one notice topic per recipient authority of the 2025 reference data
    (`hub.referrals.<kind>.<code>.v1`, `hub.plan-requests.<kind>.<code>.v1`, `hub.notices.<kind>.<code>.v1`).
    """
    from hub.deploy import render
    from hub.deploy.topics import hub_topics
    from hub.routing.reference import default_reference

    settings = load_settings()
    specs = hub_topics(default_reference(), partitions=partitions or settings.topic_partitions, replicas=replicas)
    if create:
        from hub.adapters.kafka.admin import create_topic_specs
        from hub.adapters.kafka.security import KafkaSecurityError, kafka_client_options

        if not settings.kafka_url:
            raise click.UsageError("--create needs HUB_KAFKA_URL (the broker to create the topics on)")
        try:
            created = create_topic_specs(settings.kafka_url, specs, **kafka_client_options(settings))
        except KafkaSecurityError as exc:
            raise click.UsageError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - an operator needs the reason, not a traceback
            raise click.ClickException(f"creating topics on {settings.kafka_url} failed: {exc}") from None
        click.echo(f"{len(created)} topic(s) created, {len(specs) - len(created)} already there")
        return
    out = {"list": render.topics_list, "json": render.topics_json, "kafka-topics-sh": render.topics_script, "strimzi": render.strimzi_topics}[fmt]
    click.echo(out(specs), nl=False)


@click.command()
@click.option("--format", "fmt", type=click.Choice(ACL_FORMATS), default="list", show_default=True,
              help="list: principal, ALLOW, operations, resource type, pattern, name (tab-separated); json; "
                   "kafka-acls-sh: kafka-acls.sh commands; strimzi: KafkaUser resources (SCRAM-SHA-512) with these ACLs.")
@click.option("--app-id", default=None, help="the hub's app id = its Kafka user and the prefix of its consumer groups [default: HUB_APP_ID].")
def acls(fmt: str, app_id: str | None) -> None:
    """Print the Kafka ACLs: each recipient reads only its own referral and plan-request topics.

    Recipients (User:<kind>-<code>, e.g. User:municipality-091) write only referral statuses,
    assessments, consents and their kind's routing facts (employment authorities jobseeker
    statuses, municipalities and wellbeing areas service needs) and use consumer groups named
    `<user>.<anything>`; User:migri writes only residence permits; the hub's user gets what its
    workers need; only User:hub-ops reads the dead letters.
    """
    from hub.deploy import render
    from hub.deploy.acls import all_acls
    from hub.routing.reference import default_reference

    users = all_acls(default_reference(), app_id=_app_id(app_id))
    out = {"list": render.acls_list, "json": render.acls_json, "kafka-acls-sh": render.acls_script, "strimzi": render.strimzi_users}[fmt]
    click.echo(out(users), nl=False)


@click.command()
@click.option("--timeout", type=click.FloatRange(min=0.5), default=5.0, show_default=True, help="Seconds per check.")
@click.option("--skip-database", is_flag=True, help="Check only the broker.")
def healthcheck(timeout: float, skip_database: bool) -> None:
    """Check that the broker (HUB_KAFKA_URL, with its TLS/SASL settings) and the database
    (HUB_DATABASE_URL) answer. Exit 0 when both do, 1 otherwise (the container HEALTHCHECK and
    the Kubernetes readiness probe run this). Needs HUB_KAFKA_URL: it never starts a broker."""
    from hub.adapters.health import check_broker, check_database
    settings = load_settings()
    if not settings.kafka_url:
        raise click.UsageError("HUB_KAFKA_URL is not set: the health check needs the broker's address")
    checks = [check_broker(settings, settings.kafka_url, timeout)]
    if not skip_database:
        checks.append(check_database(settings.resolved_database_url(), timeout))
    for check in checks:
        click.echo(f"{check.name}: {'ok' if check.ok else 'FAILED'} ({check.detail})", err=not check.ok)
    if not all(c.ok for c in checks):
        raise SystemExit(1)


def register_commands(main: click.Group) -> None:
    for command in (topics, acls, healthcheck):
        main.add_command(command)
