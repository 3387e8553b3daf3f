"""The publisher check, pure: signatures, who may publish as whom, and the publishers file."""

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.adapters.publisher_keys import PublishersFileError, load, parse
from hub.config import Settings
from hub.domain import hetu
from hub.domain.publishers import (
    FORBIDDEN,
    PUBLISHER_HEADER,
    SIGNATURE_HEADER,
    Publisher,
    Publishers,
    authenticate,
    decide,
    header,
    sign_headers,
)
from tests.personal_data import identity_code_in

KEY_091 = b"k" * 32
KEY_092 = b"m" * 32
HUB_KEY = b"h" * 32
PUBS = Publishers.of([
    Publisher("municipality:091", (KEY_091,), frozenset({"helsinki-kotoutuminen"})),
    Publisher("municipality:092", (KEY_092,)),
    Publisher("integration-hub", (HUB_KEY,), frozenset({"*"}), frozenset({"*"})),
])
HETU = hetu.make(dt.date(1990, 4, 1), 931)


def assessment(assessor="municipality:091", source="municipality:091", event_id="e-1"):
    return {"event_id": event_id, "source": source, "assessor": assessor, "person_id": HETU, "plan_authority": "employment_authority:43"}


def signed(value=b"\x00value", event_id="e-1", who="municipality:091", key=KEY_091):
    return sign_headers([("ce_id", event_id.encode()), ("ce_type", b"x")], value, who, key)


def test_a_correctly_signed_record_in_its_own_name_is_allowed():
    v = decide(signed(), b"\x00value", "AssessmentCompleted", assessment(), PUBS)
    assert v.allowed and v.publisher == "municipality:091"
    # a source it is allowed besides its id
    assert decide(signed(), b"\x00value", "AssessmentCompleted", assessment(source="helsinki-kotoutuminen"), PUBS).allowed


@pytest.mark.parametrize("name, record, field", [
    ("AssessmentCompleted", assessment(assessor="municipality:092"), "assessor"),
    ("AssessmentCompleted", assessment(source="municipality:092"), "source"),
    ("Consent", {"event_id": "e-1", "source": "municipality:091", "recorded_by": "municipality:092", "person_id": HETU}, "recorded_by"),
    ("ReferralStatus", {"event_id": "e-1", "source": "municipality:091", "authority": "wellbeing_area:04"}, "authority"),
    ("PopulationChange", {"event_id": "e-1", "source": "dvv", "person_id": HETU}, "source"),
])
def test_publishing_as_someone_else_is_forbidden_naming_publisher_and_field(name, record, field):
    v = decide(signed(), b"\x00value", name, record, PUBS)
    assert not v.allowed and v.reason == FORBIDDEN
    assert "municipality:091" in v.message and f"{field}=" in v.message
    assert not identity_code_in(v.message)


def test_unsigned_unknown_and_badly_signed_records_are_forbidden():
    record = assessment()
    cases = {
        "unsigned": [("ce_id", b"e-1")],
        "no signature": [("ce_id", b"e-1"), (PUBLISHER_HEADER, b"municipality:091")],
        "unknown": signed(who="municipality:999"),
        "other's key": signed(key=KEY_092),
        "no ce_id": [(k, v) for k, v in signed() if k != "ce_id"],
        "ce_id changed": [(k, b"e-2" if k == "ce_id" else v) for k, v in signed()],
    }
    for what, headers in cases.items():
        v = decide(headers, b"\x00value", "AssessmentCompleted", record, PUBS)
        assert not v.allowed and v.reason == FORBIDDEN, what
    assert not decide(signed(), b"\x00other", "AssessmentCompleted", record, PUBS).allowed  # altered value
    # the signature binds ce_id; the record's event id must be that ce_id
    assert not decide(signed(event_id="e-9"), b"\x00value", "AssessmentCompleted", record, PUBS).allowed


def test_a_record_that_does_not_decode_is_judged_by_its_signature_only():
    assert decide(signed(), b"\x00value", None, None, PUBS).allowed
    assert not decide([("ce_id", b"e-1")], b"\x00value", None, None, PUBS).allowed


def test_the_hub_may_publish_as_anyone_and_key_rotation_accepts_either_key():
    assert decide(signed(who="integration-hub", key=HUB_KEY), b"\x00value", "Consent",
                  {"event_id": "e-1", "source": "hub:consent-cli", "recorded_by": "wellbeing_area:04"}, PUBS).allowed
    rotating = Publishers.of([Publisher("municipality:091", (b"new" * 8, KEY_091))])
    assert authenticate(signed(), b"\x00value", rotating).allowed
    two = signed(key=b"new" * 8)
    both = [(k, v + b" " + dict(signed())[SIGNATURE_HEADER] if k == SIGNATURE_HEADER else v) for k, v in two]
    assert authenticate(both, b"\x00value", PUBS).allowed  # several signatures: one must verify


def test_messages_never_quote_an_identity_code_from_the_record_or_the_headers():
    v = decide(signed(who=HETU), b"\x00value", "AssessmentCompleted", assessment(), PUBS)
    assert not v.allowed and HETU not in v.message
    v = decide(signed(), b"\x00value", "AssessmentCompleted", assessment(source=f"x {HETU}"), PUBS)
    assert not v.allowed and HETU not in v.message and "source=" in v.message
    v = decide(signed(), b"\x00value", "AssessmentCompleted", assessment(assessor=HETU), PUBS)
    assert not v.allowed and HETU not in v.message


@settings(max_examples=200, deadline=None)
@given(value=st.binary(max_size=200), event_id=st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s),
       flip=st.integers(min_value=0, max_value=10_000))
def test_property_any_change_to_a_signed_value_is_refused(value, event_id, flip):
    headers = sign_headers([("ce_id", event_id.encode())], value, "municipality:092", KEY_092)
    assert authenticate(headers, value, PUBS).allowed
    if value:
        i = flip % len(value)
        altered = value[:i] + bytes([value[i] ^ 0x01]) + value[i + 1:]
        assert not authenticate(headers, altered, PUBS).allowed
    assert not authenticate(headers, value + b"x", PUBS).allowed
    # the same bytes signed by another publisher's key but claiming to be 092
    forged = sign_headers([("ce_id", event_id.encode())], value, "municipality:092", KEY_091)
    assert not authenticate(forged, value, PUBS).allowed


@settings(max_examples=200, deadline=None)
@given(claimed=st.sampled_from(["municipality:091", "municipality:092", "wellbeing_area:04", "integration-hub", "dvv"]),
       field=st.sampled_from(["source", "assessor"]))
def test_property_a_municipality_may_claim_only_itself(claimed, field):
    record = assessment(**{field: claimed})
    v = decide(signed(), b"\x00value", "AssessmentCompleted", record, PUBS)
    assert v.allowed == (claimed == "municipality:091")


def test_header_reads_lists_dicts_and_bytes_names():
    assert header([("a", b"1"), ("a", b"2")], "a") == "2"
    assert header({"a": b"1"}, "a") == "1"
    assert header([(b"a", b"1")], "a") == "1"
    assert header([("a", b"\xff")], "a") is None and header(None, "a") is None


# --- the publishers file -------------------------------------------------------------------

FILE = """
publishers:
  - id: integration-hub
    key_env: HUB_SIGNING_KEY
    sources: ["*"]
    authorities: ["*"]
  - id: municipality:091
    key_env: [KEY_091_NEW, KEY_091_OLD]
    sources: [helsinki-kotoutuminen]
"""
ENV = {"HUB_SIGNING_KEY": "h" * 32, "KEY_091_NEW": "n" * 32, "KEY_091_OLD": "o" * 32}


def test_the_file_names_keys_that_come_from_the_environment(tmp_path):
    path = tmp_path / "publishers.yaml"
    path.write_text(FILE)
    pubs = load(path, ENV)
    p = pubs.get("municipality:091")
    assert p.keys == (b"n" * 32, b"o" * 32) and p.sources == {"municipality:091", "helsinki-kotoutuminen"}
    assert p.authorities == {"municipality:091"}
    assert "n" * 32 not in repr(p)
    settings = Settings.from_env({"HUB_PUBLISHERS": str(path), "HUB_APP_ID": "integration-hub", **ENV})
    assert settings.signing_key() == b"h" * 32 and "h" * 32 not in repr(settings)
    assert Settings.from_env({}).publishers is None and Settings.from_env({}).signing_key() is None


@pytest.mark.parametrize("data, env, expected", [
    ({"publishers": [{"id": "municipality:091", "key_env": "K"}]}, {}, "K (its key) is not set"),
    ({"publishers": [{"id": "municipality:091", "key_env": "K"}]}, {"K": "short"}, "shorter than"),
    ({"publishers": [{"id": "municipality:091", "key": "inline-secret-value-123"}]}, {}, "unknown keys"),
    ({"publishers": [{"id": "municipality:091"}]}, {}, "key_env"),
    ({"publishers": [{"key_env": "K"}]}, {"K": "x" * 20}, "needs an `id`"),
    ({"publishers": [{"id": "a", "key_env": "K"}, {"id": "a", "key_env": "K"}]}, {"K": "x" * 20}, "twice"),
    ({"publishers": [{"id": "a", "key_env": "K", "sources": "ok"}, ]}, {"K": "x" * 20}, None),
    ({"publishers": [{"id": "a", "key_env": "K", "sources": [1]}]}, {"K": "x" * 20}, "list of strings"),
    ([], {}, "publishers"),
])
def test_file_errors_name_the_entry_and_never_the_key(data, env, expected):
    if expected is None:
        assert parse(data, env).get("a").sources == {"a", "ok"}
        return
    with pytest.raises(PublishersFileError) as err:
        parse(data, env)
    assert expected in str(err.value)
    assert "inline-secret-value-123" not in str(err.value) and "x" * 20 not in str(err.value)


def test_an_unreadable_file_names_the_setting(tmp_path):
    with pytest.raises(PublishersFileError, match="HUB_PUBLISHERS"):
        load(tmp_path / "missing.yaml", {})


# --- the hub's own records ---------------------------------------------------------------------

def test_the_hub_signs_what_it_publishes_only_when_it_has_a_key_of_its_own():
    from hub.streams.pipeline import hub_app
    from hub.schemas.envelope import cloudevent_headers, envelope

    record = envelope("municipality:091")
    headers = cloudevent_headers("ReferralStatus", record)
    plain = hub_app(Settings(app_id="integration-hub"), "kafka://127.0.0.1:1")
    assert plain.publisher.signed(headers, b"v") == headers and not plain.publisher_check.checks_publishers("hub.consents.v1")
    hub = hub_app(Settings(app_id="integration-hub", publishers=PUBS), "kafka://127.0.0.1:1")
    signed_headers = hub.publisher.signed(headers, b"v")
    assert header(signed_headers, PUBLISHER_HEADER) == "integration-hub"
    assert authenticate(signed_headers, b"v", PUBS).allowed and hub.publisher_check.checks_publishers("hub.consents.v1")
    verifier_only = hub_app(Settings(app_id="another-hub", publishers=PUBS), "kafka://127.0.0.1:1")
    assert verifier_only.publisher.signed(headers, b"v") == headers  # checks records, has no key to sign with


# --- `hub publish` ---------------------------------------------------------------------------

def test_hub_publish_signs_a_record_and_refuses_another_authoritys_name(tmp_path):
    import json

    from click.testing import CliRunner

    from hub.cli import main
    from hub.schemas.codec import default_codec
    from hub.schemas.envelope import envelope

    (tmp_path / "publishers.yaml").write_text(FILE)
    env = {"HUB_PUBLISHERS": str(tmp_path / "publishers.yaml"), **ENV}
    codec = default_codec()
    status = envelope("municipality:091")
    status.update(referral_id="r-1", authority="municipality:091", status="accepted", reason=None)
    (tmp_path / "ok.json").write_text(codec.to_json("ReferralStatus", status))
    out = CliRunner().invoke(main, ["publish", "--topic", "hub.referral-status.v1", "--as", "municipality:091", "--dry-run", str(tmp_path / "ok.json")], env=env)
    assert out.exit_code == 0, out.output
    sent = json.loads(out.output)
    value = codec.encode("ReferralStatus", codec.from_jsonable("ReferralStatus", sent["record"]))
    pubs = load(tmp_path / "publishers.yaml", ENV)
    assert authenticate(list(sent["headers"].items()), value, pubs).allowed and sent["key"] == "r-1"

    (tmp_path / "forged.json").write_text(codec.to_json("ReferralStatus", dict(status, authority="wellbeing_area:04")))
    out = CliRunner().invoke(main, ["publish", "--topic", "hub.referral-status.v1", "--as", "municipality:091", "--dry-run", str(tmp_path / "forged.json")], env=env)
    assert out.exit_code == 1 and "authority='wellbeing_area:04'" in out.output
    assert CliRunner().invoke(main, ["publish", "--help"]).exit_code == 0
