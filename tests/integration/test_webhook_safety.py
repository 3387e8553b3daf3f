"""Webhook delivery where it could leak, on PostgreSQL with real local receivers (which verify the
signatures with the standardwebhooks library): a redirect is never followed and never counts as
delivered; a host that resolves to a refused address is refused at connection time; secrets and
bodies are sealed at rest (also rows written before migration 0014); delivered deliveries go with
the retention job."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook

from hub.adapters import database, sealing
from hub.adapters.webhooks import DELIVERED, PARKED, PENDING, DeliveryWorker, WebhookStore, purge_delivered, resolve_target
from hub.domain import hetu
from hub.webhooks import policy
from hub.schemas.envelope import cloudevent_body
from hub.webhooks.policy import TargetRefused

pytestmark = pytest.mark.integration

RECIPIENT = "wellbeing_area:04"
NOW = dt.datetime.now(dt.timezone.utc)
CODE = hetu.make(dt.date(1991, 4, 12), 901)


class Receiver:
    """A local endpoint answering every POST with `status` (and Location when it redirects); it keeps
    what it received and checks the signature of each with the standardwebhooks library."""

    def __init__(self, secret: str | None = None, status: int = 204, location: str | None = None):
        self.verifier = Webhook(secret) if secret else None
        self.status, self.location = status, location
        self.received: list[tuple[dict, bytes]] = []
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.received.append((headers, body))
                if receiver.verifier is not None:
                    try:
                        receiver.verifier.verify(body, headers)
                    except Exception:
                        receiver.bad_signatures += 1
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_PUT = do_POST

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def body_of(event_id: str) -> bytes:
    return cloudevent_body("PlanRequest", {"event_id": event_id, "source": "hub:consent"}, {"person_id": CODE, "to": RECIPIENT})


def deliver_until_settled(worker: DeliveryWorker, store: WebhookStore, sub_id: int) -> None:
    """Attempts until nothing is pending (the worker's backoff is a few milliseconds)."""
    async def run():
        for _ in range(200):
            await worker.deliver_due()
            if not any(d.state == PENDING for d in store.deliveries(sub_id)):
                return
            await asyncio.sleep(0.05)
        raise AssertionError("still pending")

    asyncio.run(run())


def test_a_redirect_is_never_followed_and_never_counts_as_delivered(database_url):
    database.upgrade(database_url)
    engine = database.create_engine(database_url)
    store = WebhookStore(engine, allow_loopback=True)
    admin = Receiver()  # e.g. an internal admin URL the policy would refuse: it must receive nothing
    try:
        sub, secret = store.add(RECIPIENT, "http://127.0.0.1:1/placeholder")
        store.disable(sub.id)
        redirector = Receiver(secret, status=302, location=f"http://127.0.0.1:{admin.port}/admin/hook")
        try:
            sub, _ = store.add(RECIPIENT, f"http://127.0.0.1:{redirector.port}/hook", secret=secret)
            event_id = str(uuid.uuid4())
            assert store.enqueue(sub.id, event_id, "hub.plan-requests.wellbeing_area.04.v1", "PlanRequest", body_of(event_id), NOW)
            worker = DeliveryWorker(store, "kafka://unused:9092", disclosure_check=lambda plan: None, max_attempts=3, base_delay=0.01)
            deliver_until_settled(worker, store, sub.id)
        finally:
            redirector.close()
        assert admin.received == []  # no request, no webhook headers, no body
        assert len(redirector.received) == 3 and redirector.bad_signatures == 0
        [delivery] = store.deliveries(sub.id)
        assert delivery.state == PARKED and delivery.delivered_at is None
        assert delivery.last_error.startswith("redirect_refused: HTTP 302")
        assert [a.status_code for a in store.attempts(delivery.id)] == [302, 302, 302]
        assert all(a.error.startswith("redirect_refused") for a in store.attempts(delivery.id))
    finally:
        admin.close()
        engine.dispose()


def test_a_name_resolving_to_a_refused_address_is_refused_when_connecting(database_url):
    # `localhost` resolves to a loopback address: refused once resolved unless the allowance is on
    with pytest.raises(TargetRefused, match="loopback"):
        resolve_target("localhost", 443)
    assert all(sockaddr[0] in ("127.0.0.1", "::1") for _, sockaddr in resolve_target("localhost", 443, allow_loopback=True))

    database.upgrade(database_url)
    engine = database.create_engine(database_url)
    receiver = Receiver()
    try:
        # subscribed while the allowance was on; delivered by a worker where it is off
        sub, _ = WebhookStore(engine, allow_loopback=True).add(RECIPIENT, f"http://localhost:{receiver.port}/hook")
        store = WebhookStore(engine)
        event_id = str(uuid.uuid4())
        store.enqueue(sub.id, event_id, "hub.plan-requests.wellbeing_area.04.v1", "PlanRequest", body_of(event_id), NOW)
        deliver_until_settled(DeliveryWorker(store, "kafka://unused:9092", disclosure_check=lambda plan: None, max_attempts=2, base_delay=0.01), store, sub.id)
        assert receiver.received == []
        [delivery] = store.deliveries(sub.id)
        assert delivery.state == PARKED and delivery.last_error.startswith("target_refused:")
        # the same worker with the allowance on reaches it (the check is the only difference)
        store.redeliver(subscription_id=sub.id)
        deliver_until_settled(DeliveryWorker(store, "kafka://unused:9092", disclosure_check=lambda plan: None, base_delay=0.01, allow_loopback=True), store, sub.id)
        assert len(receiver.received) == 1 and store.deliveries(sub.id)[0].state == DELIVERED
    finally:
        receiver.close()
        engine.dispose()


def test_secrets_and_bodies_are_sealed_at_rest(database_url):
    database.upgrade(database_url)
    engine = database.create_engine(database_url)
    try:
        store = WebhookStore(engine)
        sub, secret = store.add(RECIPIENT, "https://receiver.example.fi/hook")
        event_id = str(uuid.uuid4())
        store.enqueue(sub.id, event_id, "hub.plan-requests.wellbeing_area.04.v1", "PlanRequest", body_of(event_id), NOW)
        with engine.connect() as conn:
            raw_secret = conn.execute(sa.text("SELECT secret FROM webhook_subscriptions WHERE id = :id"), {"id": sub.id}).scalar_one()
            raw_body = conn.execute(sa.text("SELECT body FROM webhook_deliveries WHERE subscription_id = :id"), {"id": sub.id}).scalar_one()
        key = secret.removeprefix("whsec_")
        assert secret.encode() not in bytes(raw_secret) and key.encode() not in bytes(raw_secret)
        assert CODE.encode() not in bytes(raw_body) and b"person_id" not in bytes(raw_body)
        assert store.secret(sub.id) == secret and CODE in store.deliveries(sub.id)[0].body
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_migration_0014_seals_the_rows_already_there(backend, own_database_url, tmp_path):
    url = own_database_url if backend == "postgresql" else f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    secret = policy.new_secret()
    database.upgrade(url, "0007_webhooks")
    database.upgrade(url, "0009_person_states")
    engine = database.create_engine(url)
    try:
        with engine.begin() as conn:  # rows as the hub wrote them before: in clear
            conn.execute(sa.text("INSERT INTO webhook_subscriptions (recipient, url, secret, active, created_at) VALUES (:r, :u, :s, :a, :c)"),
                         {"r": RECIPIENT, "u": "https://receiver.example.fi/hook", "s": secret, "a": True, "c": NOW})
            sub_id = conn.execute(sa.text("SELECT id FROM webhook_subscriptions")).scalar_one()
            conn.execute(sa.text("INSERT INTO webhook_deliveries (subscription_id, message_id, topic, schema, body, state, attempts, next_attempt_at, created_at) "
                                 "VALUES (:s, 'e-1', 't', 'PlanRequest', :b, 'pending', 0, :c, :c)"), {"s": sub_id, "b": body_of("e-1").decode(), "c": NOW})
        database.upgrade(url)
        with engine.connect() as conn:
            raw_secret = bytes(conn.execute(sa.text("SELECT secret FROM webhook_subscriptions")).scalar_one())
            raw_body = bytes(conn.execute(sa.text("SELECT body FROM webhook_deliveries")).scalar_one())
        assert secret.encode() not in raw_secret and CODE.encode() not in raw_body
        store = WebhookStore(engine)
        assert store.secret(sub_id) == secret and store.deliveries(sub_id)[0].body == body_of("e-1").decode()
        assert sealing.current().open_text(raw_secret) == secret
    finally:
        engine.dispose()


def test_retention_removes_delivered_deliveries_only(own_database_url):
    database.upgrade(own_database_url)
    engine = database.create_engine(own_database_url)
    try:
        store = WebhookStore(engine)
        sub, _ = store.add(RECIPIENT, "https://receiver.example.fi/hook")
        old, recent, parked, pending = (str(uuid.uuid4()) for _ in range(4))
        for event_id in (old, recent, parked, pending):
            store.enqueue(sub.id, event_id, "t", "PlanRequest", body_of(event_id), NOW - dt.timedelta(days=400))
        ids = {d.message_id: d.id for d in store.deliveries(sub.id)}
        store.record_attempt(ids[old], NOW - dt.timedelta(days=400), 204, None, 8, None)
        store.record_attempt(ids[recent], NOW - dt.timedelta(days=10), 204, None, 8, None)
        store.record_attempt(ids[parked], NOW - dt.timedelta(days=400), 500, "HTTP 500", 1, None)
        with database.session_factory(engine).begin() as s:
            removed = purge_delivered(s, NOW - dt.timedelta(days=365))
        assert removed == {"webhook_deliveries": 1, "webhook_attempts": 1}
        assert {d.message_id: d.state for d in store.deliveries(sub.id)} == {recent: DELIVERED, parked: PARKED, pending: PENDING}
        assert store.attempts(ids[old]) == []
    finally:
        engine.dispose()


def _self_signed(tmp_path, name: str):
    """A certificate for DNS name `name` (its own CA) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_file, key_file


def test_https_to_the_pinned_address_keeps_the_name_for_sni_host_and_the_certificate(tmp_path):
    import ssl

    from hub.adapters.webhooks import default_tls, post

    cert_file, key_file = _self_signed(tmp_path, "localhost")
    receiver = Receiver()
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_file, key_file)
    names: list[str | None] = []
    server_tls.sni_callback = lambda sock, name, ctx: names.append(name)
    receiver.server.socket = server_tls.wrap_socket(receiver.server.socket, server_side=True)
    try:
        client_tls = ssl.create_default_context(cafile=str(cert_file))
        url = f"https://hub:pw@localhost:{receiver.port}/hook?tenant=04"
        with pytest.raises(TargetRefused):  # the name resolves to loopback: refused without the allowance
            post(url, b"{}", {"content-type": "application/json"}, 5, tls=client_tls)
        assert post(url, b"{}", {"content-type": "application/json"}, 5, allow_loopback=True, tls=client_tls) == 204
        [(headers, _)] = receiver.received
        assert names == ["localhost"] and headers["host"] == f"localhost:{receiver.port}"
        assert headers["authorization"] == "Basic aHViOnB3"  # hub:pw
        # the certificate is checked against the name, not the address connected to
        other_cert, _ = _self_signed(tmp_path, "receiver.example.fi")
        with pytest.raises(ssl.SSLCertVerificationError):
            post(url, b"{}", {}, 5, allow_loopback=True, tls=ssl.create_default_context(cafile=str(other_cert)))
        # by default the system's CAs (made once, shared by the sending threads), which do not know this certificate
        with pytest.raises(ssl.SSLCertVerificationError):
            post(url, b"{}", {}, 5, allow_loopback=True)
        assert default_tls() is default_tls() and default_tls().check_hostname and default_tls().verify_mode == ssl.CERT_REQUIRED
    finally:
        receiver.close()


def test_migration_0014_seals_with_the_environment_keys_when_the_caller_did_not_configure_them(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'hub.sqlite3'}"
    key = sealing.new_key()
    monkeypatch.setenv("HUB_DATA_KEYS", key)
    sealing.configure(())  # the process's sealer as a command that does not configure it leaves it: the demo key
    database.upgrade(url, "0007_webhooks")
    database.upgrade(url, "0009_person_states")
    engine = database.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO webhook_subscriptions (recipient, url, secret, active, created_at) VALUES (:r, :u, :s, :a, :c)"),
                         {"r": RECIPIENT, "u": "https://receiver.example.fi/hook", "s": "whsec_x", "a": True, "c": NOW})
        assert sealing.current().is_demo  # as in a command that migrates without configuring sealing
        database.upgrade(url)
        with engine.connect() as conn:
            raw = bytes(conn.execute(sa.text("SELECT secret FROM webhook_subscriptions")).scalar_one())
        assert sealing.Sealer([key]).open_text(raw) == "whsec_x"
    finally:
        engine.dispose()
