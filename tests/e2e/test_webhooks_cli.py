"""`hub webhooks` as an operator runs it: no credential of a callback URL and no secret is ever
printed after `add`; loopback receivers only with HUB_WEBHOOKS_ALLOW_LOOPBACK=on; `hub retention`
removes delivered deliveries."""

import datetime as dt
import json
import sqlite3

from tests.e2e.test_subscribers_cli import run  # no HUB_* of the caller but the production secrets

URL = "https://hub-user:pa55-word@receiver.example.fi/hook?token=tok-9f8e7d&tenant=04"


def test_webhooks_list_and_add_never_print_credentials(tmp_path):
    env = {"HUB_DATA_DIR": str(tmp_path)}
    assert run("db", "upgrade", env=env).returncode == 0
    added = run("webhooks", "add", "--recipient", "wellbeing_area:04", "--url", URL, env=env)
    assert added.returncode == 0, added.stderr
    secret = added.stdout.split("whsec_", 1)[1].strip()
    listed = run("webhooks", "list", env=env).stdout + run("webhooks", "list", "--json", env=env).stdout
    for shown in (listed, added.stdout + added.stderr):
        assert "pa55-word" not in shown and "hub-user" not in shown and "tok-9f8e7d" not in shown
    assert secret not in listed
    assert json.loads(listed.splitlines()[-1])["url"] == "https://***@receiver.example.fi/hook?token=***&tenant=***"
    # nor in the database file: the secret is sealed
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("hub.sqlite3*"))  # with the WAL, if any
    assert secret.encode() not in raw and secret.removeprefix("whsec_").encode() not in raw


def test_loopback_receivers_only_with_the_allowance(tmp_path):
    env = {"HUB_DATA_DIR": str(tmp_path)}
    assert run("db", "upgrade", env=env).returncode == 0
    for url in ("http://127.0.0.1:8080/hook", "https://169.254.169.254/latest", "https://metadata.google.internal/", "https://[::ffff:127.0.0.1]/"):
        refused = run("webhooks", "add", "--recipient", "wellbeing_area:04", "--url", url, env=env)
        assert refused.returncode == 2 and "public" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
    allowed = run("webhooks", "add", "--recipient", "wellbeing_area:04", "--url", "http://127.0.0.1:8080/hook", env={**env, "HUB_WEBHOOKS_ALLOW_LOOPBACK": "on"})
    assert allowed.returncode == 0, allowed.stderr
    refused = run("webhooks", "add", "--recipient", "wellbeing_area:04", "--url", "https://10.0.0.5/hook", env={**env, "HUB_WEBHOOKS_ALLOW_LOOPBACK": "on"})
    assert refused.returncode == 2 and "private" in refused.stderr


def test_retention_removes_delivered_webhook_deliveries(tmp_path):
    env = {"HUB_DATA_DIR": str(tmp_path)}
    assert run("db", "upgrade", env=env).returncode == 0
    assert run("webhooks", "add", "--recipient", "wellbeing_area:04", "--url", "https://receiver.example.fi/hook", env=env).returncode == 0
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=400)).isoformat(" ")
    with sqlite3.connect(tmp_path / "hub.sqlite3") as db:  # one delivered long ago, one parked long ago
        for message_id, state, delivered in (("e-old", "delivered", old), ("e-parked", "parked", None)):
            db.execute("INSERT INTO webhook_deliveries (subscription_id, message_id, topic, schema, body, state, attempts, next_attempt_at, created_at, delivered_at) "
                       "VALUES (1, ?, 't', 'PlanRequest', x'00', ?, 1, ?, ?, ?)", (message_id, state, old, old, delivered))
    out = run("retention", "--older-than", "365", "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["webhook_deliveries"] == 1
    with sqlite3.connect(tmp_path / "hub.sqlite3") as db:
        assert [r[0] for r in db.execute("SELECT message_id FROM webhook_deliveries")] == ["e-parked"]


def test_webhooks_list_counts_each_subscriptions_own_queue(tmp_path):
    """Two subscriptions of one recipient (e.g. its old and new receiver): each shows its own queue."""
    env = {"HUB_DATA_DIR": str(tmp_path)}
    assert run("db", "upgrade", env=env).returncode == 0
    for url in ("https://old.example.fi/hook", "https://new.example.fi/hook"):
        assert run("webhooks", "add", "--recipient", "wellbeing_area:04", "--url", url, env=env).returncode == 0
    now = dt.datetime.now(dt.timezone.utc).isoformat(" ")
    with sqlite3.connect(tmp_path / "hub.sqlite3") as db:
        # the same records queued for both, in different states: per recipient they would add up
        rows = [(1, "e-1", "parked"), (1, "e-2", "pending"), (1, "e-3", "pending"),
                (2, "e-1", "delivered"), (2, "e-2", "parked"), (2, "e-3", "parked"), (2, "e-4", "parked"), (2, "e-5", "pending")]
        for sub, message_id, state in rows:
            db.execute("INSERT INTO webhook_deliveries (subscription_id, message_id, topic, schema, body, state, attempts, next_attempt_at, created_at) "
                       "VALUES (?, ?, 't', 'Referral', x'00', ?, 1, ?, ?)", (sub, message_id, state, now, now))
    listed = run("webhooks", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = list(map(json.loads, listed.stdout.splitlines()))
    assert {row["recipient"] for row in rows} == {"wellbeing_area:04"}
    queues = {row["id"]: row["queue"] for row in rows}
    assert queues == {1: {"parked": 1, "pending": 2}, 2: {"delivered": 1, "parked": 3, "pending": 1}}
    text = run("webhooks", "list", env=env).stdout.splitlines()
    assert text[0].startswith("1 active wellbeing_area:04 https://old.example.fi/hook") and "'parked': 1, 'pending': 2" in text[0]
    assert text[1].startswith("2 active wellbeing_area:04 https://new.example.fi/hook") and "'parked': 3, 'pending': 1" in text[1]


def test_unknown_recipients_subscriptions_and_deliveries_are_refused(tmp_path):
    env = {"HUB_DATA_DIR": str(tmp_path)}
    assert run("db", "upgrade", env=env).returncode == 0
    refused = run("webhooks", "add", "--recipient", "municipality:999", "--url", "https://receiver.example.fi/hook", env=env)
    assert refused.returncode == 2 and "unknown recipient municipality:999" in refused.stderr and "`hub topics`" in refused.stderr, refused.stderr
    assert run("webhooks", "list", env=env).stdout == ""  # nothing subscribed
    for args, says in ((("--subscription", "999"), "no subscription 999"), (("--delivery", "999"), "no delivery 999"),
                       (("--subscription", "999", "--stream", "referrals", "--from", "1"), "no subscription 999")):
        out = run("webhooks", "redeliver", *args, env=env)
        assert out.returncode == 2 and says in out.stderr and "queued again" not in out.stdout, (args, out.stdout, out.stderr)
    disabled = run("webhooks", "disable", "999", env=env)
    assert disabled.returncode == 2 and "no subscription 999" in disabled.stderr


def _refused_without_schema(env) -> None:
    """Every `hub webhooks` command on a database without the hub's tables: one line naming `hub db
    upgrade`, exit 1, no traceback, no SQL and none of the callback URL."""
    for args in (("list",), ("list", "--json"), ("add", "--recipient", "wellbeing_area:04", "--url", URL), ("disable", "1"),
                 ("redeliver", "--subscription", "1"), ("redeliver", "--delivery", "1"),
                 ("redeliver", "--subscription", "1", "--stream", "plan-requests", "--from", "3")):
        out = run("webhooks", *args, env=env)
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        assert "`hub db upgrade`" in out.stderr and len(out.stderr.strip().splitlines()) == 1, (args, out.stderr)
        for leak in ("Traceback", "SELECT", "INSERT", "receiver.example.fi", "pa55-word", "tok-9f8e7d"):
            assert leak not in out.stdout + out.stderr, (args, leak, out.stderr)


def test_webhooks_on_an_empty_sqlite_file_name_hub_db_upgrade(tmp_path):
    (tmp_path / "hub.sqlite3").touch()
    _refused_without_schema({"HUB_DATA_DIR": str(tmp_path)})


def test_webhooks_on_an_empty_postgresql_database_name_hub_db_upgrade(own_database_url):
    _refused_without_schema({"HUB_DATABASE_URL": own_database_url})


def test_redeliver_by_sequence_from_the_command_line(tmp_path, monkeypatch):
    """`hub webhooks redeliver --subscription ID --stream S --from N --to M` queues the delivered ones
    again and names each number it does not."""
    from click.testing import CliRunner

    from hub.adapters import database
    from hub.adapters.webhooks import DELIVERED, PENDING, WebhookStore
    from hub.cli import main
    from hub.schemas.envelope import cloudevent_body
    from hub.schemas.topics import referral_topic

    monkeypatch.setenv("HUB_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    added = runner.invoke(main, ["webhooks", "add", "--recipient", "wellbeing_area:04", "--url", "https://receiver.example.fi/hook"])
    assert added.exit_code == 0, added.output  # and the process's sealing keys are HUB_DATA_KEYS now
    store = WebhookStore(database.create_engine(f"sqlite:///{tmp_path / 'hub.sqlite3'}"))
    now = dt.datetime.now(dt.timezone.utc)
    topic = referral_topic("wellbeing_area:04")
    for n in (1, 2, 3, 5):
        body = cloudevent_body("Referral", {"event_id": f"e-{n}", "source": "hub:test"}, {"sequence": n})
        store.enqueue(1, f"e-{n}", topic, "Referral", body, now, sequence=n)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE webhook_deliveries SET state = 'delivered', attempts = 1, delivered_at = next_attempt_at WHERE message_id != 'e-3'")
    out = runner.invoke(main, ["webhooks", "redeliver", "--subscription", "1", "--stream", "referrals", "--from", "2", "--to", "5"])
    assert out.exit_code == 0, out.output
    assert "sequence 3 not queued again: queued already" in out.output and "sequence 4 not queued again: no delivery of it" in out.output
    assert "2 referrals deliveries of subscription 1 queued again (sequence 2, 5)" in out.output
    states = {d.message_id: (d.state, d.attempts) for d in store.deliveries(1)}
    assert states == {"e-1": (DELIVERED, 1), "e-2": (PENDING, 0), "e-3": (PENDING, 0), "e-5": (PENDING, 0)}
    # usage: --stream needs --from and --subscription
    for args in (["--subscription", "1", "--stream", "referrals"], ["--delivery", "1", "--stream", "referrals", "--from", "1"],
                 ["--subscription", "1", "--stream", "referrals", "--from", "3", "--to", "2"]):
        assert runner.invoke(main, ["webhooks", "redeliver", *args]).exit_code == 2, args
    store.engine.dispose()
