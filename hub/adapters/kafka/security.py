"""Kafka TLS/SASL from Settings: faust broker credentials and the matching kafka-python options.

One place turns HUB_KAFKA_SECURITY_PROTOCOL and friends into client settings, so the faust worker
and the admin client (topic creation, health check) always connect the same way. PLAINTEXT (the
default) gives no credentials at all, which is what the embedded broker needs.
"""

from __future__ import annotations

import re
import ssl
from typing import Any

from hub.config import Settings


class KafkaSecurityError(ValueError):
    """The TLS/SASL settings do not fit together; the message names the variable to fix."""


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context: verifies the brokers (HUB_KAFKA_SSL_CAFILE or the system CAs) and
    presents a client certificate when HUB_KAFKA_SSL_CERTFILE is set (mutual TLS)."""
    if bool(settings.kafka_ssl_certfile) != bool(settings.kafka_ssl_keyfile):
        raise KafkaSecurityError("set both HUB_KAFKA_SSL_CERTFILE and HUB_KAFKA_SSL_KEYFILE for mutual TLS, or neither")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=settings.kafka_ssl_cafile)
        if settings.kafka_ssl_certfile:
            context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise KafkaSecurityError(
            f"cannot load the Kafka TLS files (HUB_KAFKA_SSL_CAFILE / HUB_KAFKA_SSL_CERTFILE / HUB_KAFKA_SSL_KEYFILE): {exc}"
        ) from None
    return context


def _check_sasl(settings: Settings) -> None:
    if not settings.kafka_sasl_username or not settings.kafka_sasl_password:
        raise KafkaSecurityError(
            f"HUB_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs HUB_KAFKA_SASL_USERNAME and HUB_KAFKA_SASL_PASSWORD"
        )


def faust_credentials(settings: Settings) -> Any:
    """The faust `broker_credentials` for the settings: None for PLAINTEXT."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    _check_sasl(settings)
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password,
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=ssl_context(settings) if protocol == "SASL_SSL" else None,
    )


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """Keyword options for kafka-python (KafkaAdminClient) and aiokafka clients: both take these names."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings)
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        _check_sasl(settings)
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    return options


def bootstrap_servers(kafka_url: str) -> list[str]:
    """The one parser of HUB_KAFKA_URL: `kafka://h1:9092;kafka://h2:9092` (faust's form) or
    `h1:9092,h2:9092` -> ["h1:9092", "h2:9092"], what kafka-python and aiokafka clients take."""
    return [part.strip().split("://", 1)[-1] for part in re.split(r"[;,]", kafka_url) if part.strip()]


def faust_url(kafka_url: str) -> str:
    """HUB_KAFKA_URL in faust's form: a bare `host:port` gets the `kafka://` scheme."""
    return kafka_url if "://" in kafka_url else f"kafka://{kafka_url}"
