"""Kafka TLS/SASL settings: environment -> Settings -> faust credentials and kafka client options."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import faust
import pytest
from click.testing import CliRunner
from faust.types.auth import AuthProtocol, SASLMechanism

from hub.adapters.kafka.security import KafkaSecurityError, faust_credentials, kafka_client_options
from hub.cli import main
from hub.config import Settings
from hub.streams.pipeline import hub_app

SASL = {"HUB_KAFKA_SASL_USERNAME": "integration-hub", "HUB_KAFKA_SASL_PASSWORD": "s3cret-test-only"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A self-signed CA certificate and key made with openssl (used as CA and as client cert)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    d = tmp_path_factory.mktemp("pki")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=hub-test", "-days", "1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_defaults_are_plaintext_without_credentials():
    settings = Settings.from_env({})
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert faust_credentials(settings) is None
    assert kafka_client_options(settings) == {"security_protocol": "PLAINTEXT"}
    assert hub_app(settings, "kafka://localhost:9092").app.conf.broker_credentials is None


def test_sasl_plaintext_gives_scram_credentials():
    settings = Settings.from_env({"HUB_KAFKA_SECURITY_PROTOCOL": "sasl_plaintext", **SASL})
    creds = faust_credentials(settings)
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol is AuthProtocol.SASL_PLAINTEXT
    assert creds.mechanism is SASLMechanism.SCRAM_SHA_512  # the default mechanism
    assert (creds.username, creds.password, creds.ssl_context) == ("integration-hub", "s3cret-test-only", None)


def test_sasl_ssl_verifies_the_brokers_with_the_given_ca(pki):
    cert, _ = pki
    env = {"HUB_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "HUB_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "HUB_KAFKA_SSL_CAFILE": str(cert), **SASL}
    settings = Settings.from_env(env)
    creds = faust_credentials(settings)
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol is AuthProtocol.SASL_SSL and creds.mechanism is SASLMechanism.SCRAM_SHA_256
    assert creds.ssl_context.verify_mode == ssl.CERT_REQUIRED and creds.ssl_context.check_hostname
    assert any(c["subject"] == ((("commonName", "hub-test"),),) for c in creds.ssl_context.get_ca_certs())
    options = kafka_client_options(settings)
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert options["sasl_plain_username"] == "integration-hub" and isinstance(options["ssl_context"], ssl.SSLContext)


def test_mutual_tls_and_the_faust_app_gets_the_credentials(pki):
    cert, key = pki
    env = {"HUB_KAFKA_SECURITY_PROTOCOL": "SSL", "HUB_KAFKA_SSL_CAFILE": str(cert), "HUB_KAFKA_SSL_CERTFILE": str(cert), "HUB_KAFKA_SSL_KEYFILE": str(key)}
    settings = Settings.from_env(env)
    hub = hub_app(settings, "kafka://localhost:9093")
    creds = hub.app.conf.broker_credentials
    assert isinstance(creds, faust.SSLCredentials) and creds.protocol is AuthProtocol.SSL
    assert creds.context.verify_mode == ssl.CERT_REQUIRED
    assert "sasl_mechanism" not in kafka_client_options(settings)


@pytest.mark.parametrize(
    "env, names",
    [
        ({"HUB_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "HUB_KAFKA_SASL_USERNAME"),
        ({"HUB_KAFKA_SECURITY_PROTOCOL": "SSL", "HUB_KAFKA_SSL_CERTFILE": "/x.pem"}, "HUB_KAFKA_SSL_KEYFILE"),
        ({"HUB_KAFKA_SECURITY_PROTOCOL": "SSL", "HUB_KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "HUB_KAFKA_SSL_CAFILE"),
    ],
)
def test_incomplete_settings_name_the_variable_to_fix(env, names):
    with pytest.raises(KafkaSecurityError, match=names):
        faust_credentials(Settings.from_env(env))


def test_unknown_protocol_or_mechanism_is_a_usage_error():
    with pytest.raises(ValueError, match="HUB_KAFKA_SECURITY_PROTOCOL"):
        Settings.from_env({"HUB_KAFKA_SECURITY_PROTOCOL": "TLS"})
    with pytest.raises(ValueError, match="HUB_KAFKA_SASL_MECHANISM"):
        Settings.from_env({"HUB_KAFKA_SASL_MECHANISM": "md5"})
    result = CliRunner().invoke(main, ["topics"], env={"HUB_KAFKA_SECURITY_PROTOCOL": "TLS"})
    assert result.exit_code == 2 and "HUB_KAFKA_SECURITY_PROTOCOL" in result.output


def test_the_password_is_never_printed():
    settings = Settings.from_env({"HUB_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", **SASL})
    assert "s3cret-test-only" not in repr(settings)
    assert "s3cret-test-only" not in repr(faust_credentials(settings))
