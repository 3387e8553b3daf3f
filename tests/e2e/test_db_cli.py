"""`hub db upgrade|current|history|downgrade` as an operator runs them: one line per failure, the
documented exit status (0 done, 1 database down, 2 unknown revision, 3 a migration refused)."""

import pytest

from tests.conftest import throwaway_database
from tests.e2e.test_startup_errors import one_error
from tests.e2e.test_subscribers_cli import run

HEAD = "0024_webhook_sequences"


def _no_traceback(done):
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_upgrade_current_and_history_on_sqlite(tmp_path):
    env = {"HUB_DATA_DIR": str(tmp_path)}
    empty = run("db", "current", env=env)
    assert empty.returncode == 0 and "(base); run `hub db upgrade`" in empty.stdout

    history = run("db", "history", env=env)
    lines = history.stdout.splitlines()
    assert history.returncode == 0 and lines[0].startswith(f"{HEAD} (head)") and sum("(head)" in line for line in lines) == 1
    assert any(line.startswith("0001_base ") for line in lines)

    up = run("db", "upgrade", "--revision", "head", env=env)
    assert up.returncode == 0 and up.stdout.strip().endswith(f"is at {HEAD}"), up.stderr[-2000:]
    assert run("db", "current", env=env).stdout.strip() == f"{HEAD} (head)"
    assert run("db", "upgrade", env=env).returncode == 0  # default target head, nothing to do


@pytest.mark.parametrize("command", ["upgrade", "downgrade"])
def test_an_unknown_revision_is_one_line_and_exit_2(tmp_path, command):
    env = {"HUB_DATA_DIR": str(tmp_path)}
    assert run("db", "upgrade", env=env).returncode == 0
    done = run("db", command, "--revision", "no_such_rev", env=env)
    assert done.returncode == 2, done.stderr
    _no_traceback(done)
    assert "Can't locate revision identified by 'no_such_rev'" in done.stderr and "hub db history" in done.stderr


def test_a_downgrade_a_migration_refuses_is_one_line_and_exit_3(pg_admin_url):
    with throwaway_database(pg_admin_url, "hub_dbcli") as url:
        env = {"HUB_DATABASE_URL": url}
        assert run("db", "upgrade", env=env).returncode == 0
        back = run("db", "downgrade", "--revision", "0014_webhook_secrets", env=env)
        assert back.returncode == 0 and back.stdout.strip().endswith("is at 0004_dvv_cursor, 0005_newcomer_facts, 0008_retention, 0014_webhook_secrets")
        refused = run("db", "downgrade", "--revision", "0009_person_states", env=env)
        assert refused.returncode == 3, refused.stderr
        _no_traceback(refused)
        assert "0013_sealed_personal_data is not undone" in refused.stderr
        # PostgreSQL undid the whole run: still where it was
        assert "the database is at 0004_dvv_cursor, 0005_newcomer_facts, 0008_retention, 0014_webhook_secrets" in refused.stderr
        assert "not at head" in run("db", "current", env=env).stdout
        assert run("db", "upgrade", env=env).returncode == 0
        assert run("db", "current", env=env).stdout.strip() == f"{HEAD} (head)"


@pytest.mark.parametrize("command", [("current",), ("upgrade",), ("downgrade", "--revision", "base")])
def test_an_unreachable_database_is_one_line_and_exit_1(command):
    done = run("db", *command, env={"HUB_DATABASE_URL": "postgresql+psycopg://hub:s3cret@127.0.0.1:1/hub", "HUB_STARTUP_TIMEOUT": "2"}, timeout=120)
    assert done.returncode == 1, done.stderr
    error = one_error(done)  # after the progress of the wait (HUB_STARTUP_TIMEOUT)
    assert "hub: waiting for the database" in done.stderr
    assert "did not answer" in error and "s3cret" not in done.stderr and "HUB_DATABASE_URL" in error
