"""The settings are declared once (`hub.config.SETTINGS`): `Settings` has one attribute per declaration,
with its default, and docs/configuration.md is what the code generates from the same table."""

import dataclasses
from pathlib import Path

import pytest

from hub.config import REFERENCE_COMMAND, SETTINGS, Settings, reference

ROOT = Path(__file__).resolve().parents[2]


def test_committed_reference_is_the_generated_one():
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == reference(), f"docs/configuration.md is stale: run `{REFERENCE_COMMAND}` and commit it"


def test_every_attribute_is_declared_once_with_its_default_and_secrecy():
    declared = [s.field for s in SETTINGS if s.field]
    assert len(declared) == len(set(declared)), "a field declared twice in SETTINGS"
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    assert set(declared) == set(fields)
    for s in SETTINGS:
        if s.field:
            assert fields[s.field].default == s.default, s.env
            assert fields[s.field].repr is not s.secret, f"{s.env}: a secret must stay out of repr(settings)"
    names = [s.env for s in SETTINGS]
    assert len(names) == len(set(names)) and all(n.startswith("HUB_") for n in names)


def test_an_empty_environment_gives_the_declared_defaults():
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize("raw, expected", [("off", False), ("0", False), ("No", False), ("on", True), ("anything", True)])
def test_outbox_relay_is_on_unless_switched_off(raw, expected):
    assert Settings.from_env({"HUB_OUTBOX_RELAY": raw}).outbox_relay is expected


@pytest.mark.parametrize("raw, expected", [("on", True), ("TRUE", True), ("1", True), ("off", False), ("anything", False)])
def test_loopback_webhooks_are_off_unless_switched_on(raw, expected):
    assert Settings.from_env({"HUB_WEBHOOKS_ALLOW_LOOPBACK": raw}).webhooks_allow_loopback is expected


def test_values_are_parsed_as_before():
    s = Settings.from_env({"HUB_DATA_DIR": "/tmp/x", "HUB_LOG_LEVEL": "debug", "HUB_DATA_KEYS": " a, ,b ",
                           "HUB_KAFKA_SECURITY_PROTOCOL": " sasl_ssl ", "HUB_CONSENT_LEGAL_BASES": "bases.yaml",
                           "HUB_CLOCK_SKEW": "1.5", "HUB_KAFKA_URL": ""})
    assert s.data_dir == Path("/tmp/x") and s.log_level == "DEBUG" and s.data_keys == ("a", "b")
    assert s.kafka_security_protocol == "SASL_SSL" and s.consent_legal_bases == Path("bases.yaml")
    assert s.clock_skew_delta.total_seconds() == 1.5 and s.kafka_url is None
    with pytest.raises(ValueError, match="HUB_KAFKA_SASL_MECHANISM"):
        Settings.from_env({"HUB_KAFKA_SASL_MECHANISM": "MD5"})
