"""`hub consent grant|revoke|show` and `hub audit` as an operator runs them, on SQLite."""

import datetime as dt
import json
import os
import subprocess
import sys

import pytest

from hub.domain import hetu

HUB = [sys.executable, "-m", "hub.cli"]
PERSON = hetu.make(dt.date(1988, 8, 8), 931)
OTHER = hetu.make(dt.date(1977, 7, 7), 932)
EMPLOY = "employment_authority:08"
MUNI = "municipality:091"


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "HUB_DATA_DIR": str(tmp_path), "HUB_DATABASE_URL": "", "HUB_KAFKA_URL": "", "HUB_CONSENT_LEGAL_BASES": ""}


def hub(env, *args):
    return subprocess.run([*HUB, *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=env)


@pytest.mark.parametrize("cmd", [["consent"], ["consent", "grant"], ["consent", "revoke"], ["consent", "show"], ["audit"]])
def test_every_consent_command_has_help(cmd):
    out = subprocess.run([*HUB, *cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Usage:" in out.stdout


def test_without_the_schema_the_command_says_to_upgrade(env):
    out = hub(env, "consent", "show", "--person", PERSON)
    assert out.returncode == 1 and "hub db upgrade" in out.stderr and "Traceback" not in out.stderr


def test_grant_show_revoke_and_audit(env, tmp_path):
    assert hub(env, "db", "upgrade").returncode == 0
    out = hub(env, "consent", "grant", "--person", PERSON, "--category", "education", "--category", "literacy", "--recipient", EMPLOY,
              "--valid-until", "2030-12-31", "--evidence", "form 17/2026", "--recorded-by", MUNI, "--consent-id", "c-cli-1")
    assert out.returncode == 0, out.stderr
    assert "consent c-cli-1 granted" in out.stdout and PERSON not in out.stdout

    again = hub(env, "consent", "grant", "--person", PERSON, "--category", "education", "--recipient", EMPLOY, "--recorded-by", MUNI, "--consent-id", "c-cli-1")
    assert again.returncode == 2 and "already in the registry" in again.stderr

    view = json.loads(hub(env, "consent", "show", "--person", PERSON, "--json").stdout)
    [c] = view["consents"]
    assert (c["consent_id"], c["status"], c["data_categories"], c["recipients"]) == ("c-cli-1", "active", ["education", "literacy"], [EMPLOY])
    assert c["valid_until"] == "2031-01-01T00:00:00Z"  # a date alone: through that day

    out = hub(env, "consent", "revoke", "c-cli-1", "--recorded-by", MUNI)
    assert out.returncode == 0 and "revoked" in out.stdout
    text = hub(env, "consent", "show", "--person", PERSON).stdout
    assert "c-cli-1: revoked" in text and "granted" in text and "revoked" in text
    assert "no consents recorded" in hub(env, "consent", "show", "--person", OTHER).stdout

    # the grant and revocation went into the outbox for hub.consents.v1, for the worker's relay
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'hub.sqlite3'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("select topic, schema_name from outbox order by id")).all() == [("hub.consents.v1", "Consent")] * 2
    engine.dispose()

    out = hub(env, "audit", "--person", PERSON)
    assert out.returncode == 0 and out.stdout.strip() == "no disclosures of this person's data"


def test_audit_prints_only_that_persons_disclosures(env, tmp_path):
    """Disclosures made by the registry's use case (as the agent does), then read by `hub audit`."""
    from hub.adapters import database
    from hub.consent import records
    from hub.adapters.consent_uow import SqlConsentUnits
    from hub.services.consent import ConsentRegistry
    from hub.schemas.codec import default_codec
    from hub.schemas.envelope import envelope

    from hub.adapters import sealing

    assert hub(env, "db", "upgrade").returncode == 0
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    engine = database.create_engine(url)
    sealing.configure([env["HUB_DATA_KEYS"]])  # this process reads and writes what the commands seal
    registry = ConsentRegistry(SqlConsentUnits(database.session_factory(engine)), person_key_secret=env["HUB_PERSON_KEY_SECRET"])
    for i, person in enumerate((PERSON, OTHER)):
        assert hub(env, "consent", "grant", "--person", person, "--category", "education", "--recipient", EMPLOY, "--recorded-by", MUNI,
                   "--consent-id", f"c{i}").returncode == 0
        rec = envelope(MUNI)
        rec.update(assessment_id=f"as-{i}", person_key=hetu.person_key(person, env["HUB_PERSON_KEY_SECRET"]), person_id=person, assessor=MUNI, plan_authority=EMPLOY, referral_id=None,
                   education="university", work_history=None, language_skills=[], literacy="literate", recommended_path=None, service_needs=[])
        registry.handle_assessment(records.assessment_from_avro(rec), default_codec().encode("AssessmentCompleted", rec))
    engine.dispose()

    lines = [json.loads(x) for x in hub(env, "audit", "--person", PERSON, "--json").stdout.splitlines()]
    assert [(x["recipient"], x["data_categories"], x["consent_id"], x["assessment_id"]) for x in lines] == [(EMPLOY, ["education"], "c0", "as-0")]
    text = hub(env, "audit", "--person", PERSON).stdout
    assert "as-0" in text and "as-1" not in text and PERSON not in text and OTHER not in text


@pytest.mark.parametrize("args, expect", [
    (["consent", "show", "--person", "010190-9999"], "check character"),
    (["consent", "show", "--person", "not-a-code"], "wrong shape"),
    (["audit", "--person", "311390-931X"], "not a real date"),
    (["consent", "grant", "--person", PERSON, "--category", "shoe_size", "--recipient", EMPLOY, "--recorded-by", MUNI], "shoe_size"),
    (["consent", "grant", "--person", PERSON, "--category", "education", "--recipient", "mayor:1", "--recorded-by", MUNI], "authority id"),
    (["consent", "grant", "--person", PERSON, "--category", "education", "--recipient", EMPLOY, "--recorded-by", MUNI, "--valid-until", "soon"], "YYYY-MM-DD"),
    (["consent", "grant", "--person", PERSON, "--category", "education", "--recipient", EMPLOY, "--recorded-by", MUNI,
      "--valid-from", "2030-01-01", "--valid-until", "2029-01-01"], "later than valid_from"),
])
def test_bad_input_is_a_usage_error_that_never_echoes_the_code(env, args, expect):
    out = hub(env, *args)
    assert out.returncode == 2 and expect in out.stderr and "Traceback" not in out.stderr
    for code in ("010190-9999", "311390-931X", PERSON):
        assert code not in out.stderr


def test_grant_over_the_consent_bounds_is_refused_before_anything_is_written(env):
    assert hub(env, "db", "upgrade").returncode == 0
    out = hub(env, "consent", "grant", "--person", PERSON, "--category", "education", "--recipient", EMPLOY,
              "--evidence", "x" * 5000, "--recorded-by", MUNI, "--consent-id", "c-too-long")
    assert out.returncode == 2 and "evidence" in out.stderr and "Traceback" not in out.stderr
    assert "no consents recorded" in hub(env, "consent", "show", "--person", PERSON).stdout


def test_revoking_a_revoked_consent_says_so_and_records_nothing(env):
    assert hub(env, "db", "upgrade").returncode == 0
    assert hub(env, "consent", "grant", "--person", PERSON, "--category", "education", "--recipient", EMPLOY, "--recorded-by", MUNI,
               "--consent-id", "c-twice").returncode == 0
    assert hub(env, "consent", "revoke", "c-twice", "--recorded-by", MUNI).returncode == 0
    again = hub(env, "consent", "revoke", "c-twice", "--recorded-by", EMPLOY)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    [line] = again.stderr.strip().splitlines()
    assert "consent c-twice of this person was already revoked" in line and f"by {MUNI}" in line and "nothing was recorded" in line
    history = json.loads(hub(env, "consent", "show", "--person", PERSON, "--json").stdout)["history"]
    assert [h["action"] for h in history] == ["granted", "revoked"]
