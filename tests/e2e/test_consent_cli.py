"""`hub consent grant|revoke|show` and `hub audit` as an operator runs them, on SQLite."""

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time

import pytest

from hub.domain import hetu
from tests.personal_data import digits_of

HUB = [sys.executable, "-m", "hub.cli"]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PERSON = hetu.make(dt.date(1988, 8, 8), 931)
OTHER = hetu.make(dt.date(1977, 7, 7), 932)
EMPLOY = "employment_authority:08"
MUNI = "municipality:091"


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "HUB_DATA_DIR": str(tmp_path), "HUB_DATABASE_URL": "", "HUB_KAFKA_URL": "", "HUB_CONSENT_LEGAL_BASES": ""}


def hub(env, *args, person=None):
    """Run `hub ARGS`; with `person`, the identity code goes on standard input (`--person -` is in ARGS)."""
    return subprocess.run([*HUB, *args], capture_output=True, text=True, timeout=120, env=env,
                          **({"input": f"{person}\n"} if person is not None else {"stdin": subprocess.DEVNULL}))


@pytest.mark.parametrize("cmd", [["consent"], ["consent", "grant"], ["consent", "revoke"], ["consent", "show"], ["audit"]])
def test_every_consent_command_has_help(cmd):
    out = subprocess.run([*HUB, *cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Usage:" in out.stdout


def test_without_the_schema_the_command_says_to_upgrade(env):
    out = hub(env, "consent", "show", "--person", "-", person=PERSON)
    assert out.returncode == 1 and "hub db upgrade" in out.stderr and "Traceback" not in out.stderr


def test_grant_show_revoke_and_audit(env, tmp_path):
    assert hub(env, "db", "upgrade").returncode == 0
    out = hub(env, "consent", "grant", "--person", "-", "--category", "education", "--category", "literacy", "--recipient", EMPLOY,
              "--valid-until", "2030-12-31", "--evidence", "form 17/2026", "--recorded-by", MUNI, "--consent-id", "c-cli-1", person=PERSON)
    assert out.returncode == 0, out.stderr
    assert "consent c-cli-1 granted" in out.stdout and PERSON not in out.stdout

    again = hub(env, "consent", "grant", "--person", "-", "--category", "education", "--recipient", EMPLOY, "--recorded-by", MUNI, "--consent-id", "c-cli-1",
                person=PERSON)
    assert again.returncode == 2 and "already in the registry" in again.stderr

    view = json.loads(hub(env, "consent", "show", "--person", "-", "--json", person=PERSON).stdout)
    [c] = view["consents"]
    assert (c["consent_id"], c["status"], c["data_categories"], c["recipients"]) == ("c-cli-1", "active", ["education", "literacy"], [EMPLOY])
    assert c["valid_until"] == "2031-01-01T00:00:00Z"  # a date alone: through that day

    out = hub(env, "consent", "revoke", "c-cli-1", "--recorded-by", MUNI)
    assert out.returncode == 0 and "revoked" in out.stdout
    text = hub(env, "consent", "show", "--person", "-", person=PERSON).stdout
    assert "c-cli-1: revoked" in text and "granted" in text and "revoked" in text
    assert "no consents recorded" in hub(env, "consent", "show", "--person", "-", person=OTHER).stdout

    # the grant and revocation went into the outbox for hub.consents.v1, for the worker's relay
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'hub.sqlite3'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("select topic, schema_name from outbox order by id")).all() == [("hub.consents.v1", "Consent")] * 2
    engine.dispose()

    out = hub(env, "audit", "--person", "-", person=PERSON)
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
        assert hub(env, "consent", "grant", "--person", "-", "--category", "education", "--recipient", EMPLOY, "--recorded-by", MUNI,
                   "--consent-id", f"c{i}", person=person).returncode == 0
        rec = envelope(MUNI)
        rec.update(assessment_id=f"as-{i}", person_key=hetu.person_key(person, env["HUB_PERSON_KEY_SECRET"]), person_id=person, assessor=MUNI, plan_authority=EMPLOY, referral_id=None,
                   education="university", work_history=None, language_skills=[], literacy="literate", recommended_path=None, service_needs=[])
        registry.handle_assessment(records.assessment_from_avro(rec), default_codec().encode("AssessmentCompleted", rec))
    engine.dispose()

    lines = [json.loads(x) for x in hub(env, "audit", "--person", "-", "--json", person=PERSON).stdout.splitlines()]
    assert [(x["recipient"], x["data_categories"], x["consent_id"], x["assessment_id"]) for x in lines] == [(EMPLOY, ["education"], "c0", "as-0")]
    text = hub(env, "audit", "--person", "-", person=PERSON).stdout
    assert "as-0" in text and "as-1" not in text and PERSON not in text and OTHER not in text


@pytest.mark.parametrize("args, code, expect", [
    (["consent", "show", "--person", "-"], "010190-9999", "check character"),
    (["consent", "show", "--person", "-"], "not-a-code", "wrong shape"),
    (["audit", "--person", "-"], "311390-931X", "not a real date"),
    (["audit", "--person", "-"], "", "standard input held no identity code"),
    (["consent", "grant", "--person", "-", "--category", "shoe_size", "--recipient", EMPLOY, "--recorded-by", MUNI], PERSON, "shoe_size"),
    (["consent", "grant", "--person", "-", "--category", "education", "--recipient", "mayor:1", "--recorded-by", MUNI], PERSON, "authority id"),
    (["consent", "grant", "--person", "-", "--category", "education", "--recipient", EMPLOY, "--recorded-by", MUNI, "--valid-until", "soon"], PERSON,
     "YYYY-MM-DD"),
    (["consent", "grant", "--person", "-", "--category", "education", "--recipient", EMPLOY, "--recorded-by", MUNI,
      "--valid-from", "2030-01-01", "--valid-until", "2029-01-01"], PERSON, "later than valid_from"),
])
def test_bad_input_is_a_usage_error_that_never_echoes_the_code(env, args, code, expect):
    out = hub(env, *args, person=code)
    assert out.returncode == 2 and expect in out.stderr and "Traceback" not in out.stderr
    for code in ("010190-9999", "311390-931X", PERSON):
        assert code not in out.stderr


def test_grant_over_the_consent_bounds_is_refused_before_anything_is_written(env):
    assert hub(env, "db", "upgrade").returncode == 0
    out = hub(env, "consent", "grant", "--person", "-", "--category", "education", "--recipient", EMPLOY,
              "--evidence", "x" * 5000, "--recorded-by", MUNI, "--consent-id", "c-too-long", person=PERSON)
    assert out.returncode == 2 and "evidence" in out.stderr and "Traceback" not in out.stderr
    assert "no consents recorded" in hub(env, "consent", "show", "--person", "-", person=PERSON).stdout


def test_revoking_a_revoked_consent_says_so_and_records_nothing(env):
    assert hub(env, "db", "upgrade").returncode == 0
    assert hub(env, "consent", "grant", "--person", "-", "--category", "education", "--recipient", EMPLOY, "--recorded-by", MUNI,
               "--consent-id", "c-twice", person=PERSON).returncode == 0
    assert hub(env, "consent", "revoke", "c-twice", "--recorded-by", MUNI).returncode == 0
    again = hub(env, "consent", "revoke", "c-twice", "--recorded-by", EMPLOY)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    [line] = again.stderr.strip().splitlines()
    assert "consent c-twice of this person was already revoked" in line and f"by {MUNI}" in line and "nothing was recorded" in line
    history = json.loads(hub(env, "consent", "show", "--person", "-", "--json", person=PERSON).stdout)["history"]
    assert [h["action"] for h in history] == ["granted", "revoked"]


# The identity code never travels in the process's arguments: other users of the machine read them
# (ps, /proc/PID/cmdline) and the shell history keeps them.

@pytest.mark.parametrize("args", [["consent", "grant", "--category", "education", "--recipient", EMPLOY, "--recorded-by", MUNI],
                                  ["consent", "revoke", "c-1", "--recorded-by", MUNI], ["consent", "show"], ["audit", "--json"]])
@pytest.mark.parametrize("value", [PERSON, "010190-9999", PERSON.lower(), "HETU", ""])
def test_an_identity_code_on_the_command_line_is_refused_without_echoing_it(env, tmp_path, args, value):
    out = hub({**env, "HUB_PERSON": OTHER}, *args, "--person", value)  # HUB_PERSON set too: the command line is still refused
    assert out.returncode == 2 and "Traceback" not in out.stderr and out.stdout == ""
    [line] = [x for x in out.stderr.splitlines() if x.startswith("Error:")]
    assert "never given on the command line" in line and "ps" in line and "shell history" in line
    assert "`--person -`" in line and "HUB_PERSON" in line and "--person-env" in line
    for code in (PERSON, PERSON.lower(), "010190-9999", OTHER):
        assert code not in out.stderr
    assert not (tmp_path / "hub.sqlite3").exists()  # refused before anything is opened


def test_the_code_from_standard_input_the_environment_or_a_named_variable(env):
    assert hub(env, "db", "upgrade").returncode == 0
    granted = hub({**env, "HUB_PERSON": PERSON}, "consent", "grant", "--category", "education", "--recipient", EMPLOY, "--recorded-by", MUNI,
                  "--consent-id", "c-env")
    assert granted.returncode == 0, granted.stderr
    assert "consent c-env granted" in granted.stdout

    def consents(out):
        assert out.returncode == 0, out.stderr
        return [c["consent_id"] for c in json.loads(out.stdout)["consents"]]

    assert consents(hub(env, "consent", "show", "--json", "--person", "-", person=f"  {PERSON.lower()}  ")) == ["c-env"]  # one line, stripped
    assert consents(hub({**env, "CASE_PERSON": PERSON}, "consent", "show", "--json", "--person-env", "CASE_PERSON")) == ["c-env"]
    assert consents(hub({**env, "HUB_PERSON": OTHER, "CASE_PERSON": PERSON}, "consent", "show", "--json", "--person-env", "CASE_PERSON")) == ["c-env"]
    assert consents(hub({**env, "HUB_PERSON": OTHER}, "consent", "show", "--json", "--person", "-", person=PERSON)) == ["c-env"]
    assert consents(hub({**env, "HUB_PERSON": OTHER}, "consent", "show", "--json")) == []

    revoked = hub({**env, "HUB_PERSON": PERSON}, "consent", "revoke", "c-env", "--recorded-by", MUNI)
    assert revoked.returncode == 0 and "consent c-env revoked" in revoked.stdout and PERSON not in revoked.stdout + revoked.stderr


@pytest.mark.parametrize("args, extra_env, stdin, expect", [
    (["consent", "show"], {}, None, "needs the person's identity code"),  # standard input not a terminal: no prompt
    (["audit", "--person", "-", "--person-env", "CASE_PERSON"], {"CASE_PERSON": PERSON}, PERSON, "not both"),
    (["audit", "--person-env", "CASE_PERSON"], {}, None, "CASE_PERSON is not set"),
    (["audit", "--person-env", PERSON], {}, None, "name of an environment variable"),
    (["audit", "--person-env", "CASE_PERSON"], {"CASE_PERSON": "010190-9999"}, None, "check character"),
    (["audit"], {"HUB_PERSON": "311390-931X"}, None, "not a real date"),
])
def test_a_missing_or_bad_code_from_the_environment_or_input_is_a_usage_error(env, tmp_path, args, extra_env, stdin, expect):
    out = hub({**env, **extra_env}, *args, person=stdin)
    assert out.returncode == 2 and expect in out.stderr and "Traceback" not in out.stderr
    for code in (PERSON, "010190-9999", "311390-931X"):
        assert code not in out.stderr + out.stdout
    assert not (tmp_path / "hub.sqlite3").exists()


def _cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_a_running_command_shows_no_identity_code_in_its_arguments(env):
    """`hub consent show --person -` as a process: its /proc/PID/cmdline, which every user can read,
    holds no identity code; a code given in the environment sits in /proc/PID/environ, readable by
    the same user only."""
    assert hub(env, "db", "upgrade").returncode == 0
    assert hub({**env, "HUB_PERSON": PERSON}, "consent", "grant", "--category", "education", "--recipient", EMPLOY, "--recorded-by", MUNI,
               "--consent-id", "c-ps").returncode == 0
    proc = subprocess.Popen([*HUB, "consent", "show", "--person", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while b"hub.cli" not in (cmdline := _cmdline(proc.pid)):  # until the exec is done
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert PERSON.encode() not in cmdline and digits_of(PERSON).encode() not in cmdline.replace(b"-", b"")
        out, err = proc.communicate(f"{PERSON}\n", timeout=120)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0 and "consent c-ps: active" in out, err

    proc = subprocess.Popen([*HUB, "audit"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**env, "HUB_PERSON": PERSON})
    try:
        mode = os.stat(f"/proc/{proc.pid}/environ").st_mode
        assert PERSON.encode() not in _cmdline(proc.pid)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill() if proc.poll() is None else None
    assert mode & 0o077 == 0  # owner only
    assert proc.returncode == 0 and "no disclosures" in out, err


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_on_a_terminal_the_command_asks_for_the_code_without_echoing_it(env):
    """Neither `--person -` nor the environment, standard input a terminal: a prompt, the typed code not echoed."""
    import select

    assert hub(env, "db", "upgrade").returncode == 0
    assert hub({**env, "HUB_PERSON": PERSON}, "consent", "grant", "--category", "education", "--recipient", EMPLOY, "--recorded-by", MUNI,
               "--consent-id", "c-tty").returncode == 0
    master, slave = os.openpty()
    proc = subprocess.Popen([*HUB, "consent", "show"], stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    os.close(slave)
    echoed = b""
    try:
        time.sleep(0.1)
        deadline = time.monotonic() + 60
        while not _echo_off(master):  # the prompt has turned echo off on the terminal
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        os.write(master, f"{PERSON}\n".encode())
        out, err = proc.communicate(timeout=120)
        while select.select([master], [], [], 0.2)[0]:
            try:
                echoed += os.read(master, 1024)
            except OSError:
                break
    finally:
        proc.kill() if proc.poll() is None else None
        os.close(master)
    assert proc.returncode == 0 and "consent c-tty: active" in out, err
    assert "henkilötunnus" in err and PERSON not in err + out and PERSON.encode() not in echoed


def _echo_off(fd) -> bool:
    import termios

    return not termios.tcgetattr(fd)[3] & termios.ECHO


DOC_FILES = [os.path.join(root, name) for top in ("docs", "scripts", "deploy") for root, _, names in os.walk(os.path.join(ROOT, top)) for name in names
             if name.endswith((".md", ".sh", ".yaml", ".yml", ".env", ".txt", ".py")) or "." not in name] + [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "Makefile")]


def _code_in(path):
    """(line number, text) of what is code in `path`: in Markdown the `spans` and fenced blocks, elsewhere every line."""
    fenced = False
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not path.endswith(".md"):
                yield n, line
            elif line.lstrip().startswith("```"):
                fenced = not fenced
            elif fenced:
                yield n, line
            else:
                yield from ((n, span) for span in re.findall(r"`([^`]+)`", line))


def test_no_documented_invocation_puts_an_identity_code_on_the_command_line():
    """Every `--person` in the docs, scripts and deployment files takes `-` (the code on standard
    input), and no `hub ...` line names an identity-code-shaped value."""
    person_values, codes = [], []
    for path in DOC_FILES:
        for n, code in _code_in(path):
            person_values += [f"{path}:{n}: --person {v}" for v in re.findall(r"--person(?![-\w])[ =]+([^\s|\]]+)", code) if v != "-"]
            if re.search(r"\bhub (consent|audit)\b", code) and hetu.PATTERN.search(code):
                codes.append(f"{path}:{n}")
    assert person_values == [] and codes == []
    assert len(DOC_FILES) > 5
