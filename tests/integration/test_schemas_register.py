"""`hub schemas register --url`: every version of every schema into a deployment's own registry,
under the hub's ids, versions in order per subject, idempotent, clear errors, a dry run.

The command's client is confluent-kafka's SchemaRegistryClient. The writable registry here is a
small stand-in written for this test, with Confluent's rules for what the command uses (lookup,
register with an id only in IMPORT mode, mode, config): no third-party Confluent-compatible
registry server installs from the package registries these machines and CI reach (PyPI, npm,
Debian). Karapace is not on PyPI and needs Python 3.12, a patched avro from GitHub and a Go build;
Apicurio and Confluent's own registry are Java from Maven Central or container images; Redpanda's
is a binary of its own. The read side is `hub registry` itself, and confluent-kafka's
AvroDeserializer reads the hub's records through the filled registry."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import re
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from hub.adapters.registry_server import serving
from hub.adapters.schema_export import plan, register
from hub.cli import main
from hub.schemas import topics
from hub.schemas.codec import default_codec
from hub.schemas.registry import canonical

pytestmark = pytest.mark.integration


class FakeConfluentRegistry:
    """Subjects -> versions [(version, id, schema)], per-subject modes and compatibility, global ids."""

    def __init__(self):
        self.subjects: dict[str, list[tuple[int, int, str]]] = {}
        self.schemas: dict[int, str] = {}
        self.modes: dict[str, str] = {}
        self.config: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []
        self.authorization: set[str | None] = set()
        self.lock = threading.Lock()

    def answer(self, method: str, path: str, body: dict | None):
        self.calls.append((method, path.split("?")[0]))
        path = path.split("?")[0]
        if m := re.fullmatch(r"/subjects/([^/]+)", path):
            subject = m.group(1)
            if subject not in self.subjects:
                return 404, {"error_code": 40401, "message": f"Subject '{subject}' not found."}
            for version, schema_id, text in self.subjects[subject]:
                if canonical(json.loads(text)) == canonical(json.loads(body["schema"])):
                    return 200, {"subject": subject, "version": version, "id": schema_id, "schema": text}
            return 404, {"error_code": 40403, "message": "Schema not found"}
        if m := re.fullmatch(r"/subjects/([^/]+)/versions", path):
            subject = m.group(1)
            if "id" in body and self.modes.get(subject, "READWRITE") != "IMPORT":
                return 422, {"error_code": 42205, "message": f"Subject {subject} is not in import mode"}
            schema_id = body.get("id") or max(self.schemas, default=100) + 1
            if self.schemas.get(schema_id, body["schema"]) != body["schema"]:
                return 422, {"error_code": 42207, "message": f"Overwrite new schema with id {schema_id} is not permitted."}
            versions = self.subjects.setdefault(subject, [])
            version = body.get("version") or len(versions) + 1
            if versions and version <= versions[-1][0]:
                return 422, {"error_code": 42202, "message": f"Version {version} is not after {versions[-1][0]}"}
            versions.append((version, schema_id, body["schema"]))
            self.schemas[schema_id] = body["schema"]
            return 200, {"id": schema_id}
        if m := re.fullmatch(r"/mode/([^/]+)", path):
            self.modes[m.group(1)] = body["mode"]
            return 200, {"mode": body["mode"]}
        if m := re.fullmatch(r"/config/([^/]+)", path):
            if method == "PUT":
                self.config[m.group(1)] = body["compatibility"]
                return 200, {"compatibility": body["compatibility"]}
            return 200, {"compatibilityLevel": self.config.get(m.group(1), "BACKWARD")}
        if m := re.fullmatch(r"/schemas/ids/([0-9]+)", path):
            text = self.schemas.get(int(m.group(1)))
            return (200, {"schema": text}) if text else (404, {"error_code": 40403, "message": "Schema not found"})
        return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}


@pytest.fixture
def fake():
    with _serving(FakeConfluentRegistry()) as registry:
        yield registry


@contextlib.contextmanager
def _serving(registry: FakeConfluentRegistry, tls: ssl.SSLContext | None = None):
    """`registry` on a loopback port (HTTPS with `tls`), its `url` set, until the block ends."""

    class Handler(BaseHTTPRequestHandler):
        def _do(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            with registry.lock:
                registry.authorization.add(self.headers.get("Authorization"))
                status, answer = registry.answer(self.command, self.path, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _do

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    registry.url = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    try:
        yield registry
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_every_version_goes_in_under_the_hubs_id_in_version_order_and_a_rerun_changes_nothing(fake):
    result = CliRunner().invoke(main, ["schemas", "register", "--url", fake.url, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert f"would register {len(plan())} version(s), 0 already there" in result.output and fake.subjects == {} and fake.config == {}

    result = CliRunner().invoke(main, ["schemas", "register", "--url", fake.url, "--import-mode"])
    assert result.exit_code == 0, result.output
    codec = default_codec()
    assert set(fake.subjects) == set(topics.subjects())
    for subject, name in topics.subjects().items():
        assert [(v, i) for v, i, _ in fake.subjects[subject]] == [(v.number, v.schema_id) for v in codec.versions(name)]
        assert fake.modes[subject] == "READWRITE"  # set back after the import
    assert fake.config["hub.population-changes.v1-value"] == "FULL_TRANSITIVE"
    assert json.loads(fake.schemas[17]) == codec.versions("PopulationChange")[0].raw

    writes = len([c for c in fake.calls if c[0] != "POST" or c[1].endswith("/versions")])
    result = CliRunner().invoke(main, ["schemas", "register", "--url", fake.url, "--import-mode"])
    assert result.exit_code == 0 and f"registered 0 version(s), {len(plan())} already there" in result.output
    assert len([c for c in fake.calls if c[0] != "POST" or c[1].endswith("/versions")]) - writes == len(topics.subjects())  # only config reads

    # the deployment's registry now resolves the hub's records with confluent-kafka's deserializer
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    record = codec.decode(codec.encode("Referral", _generated(codec.raw_schema("Referral"))), check_bounds=False).record
    ctx = SerializationContext(topics.referral_topic("municipality:091"), MessageField.VALUE)
    assert AvroDeserializer(SchemaRegistryClient({"url": fake.url}))(codec.encode("Referral", record), ctx) == record


def test_without_import_mode_the_error_names_the_subject_the_answer_and_the_fix(fake):
    result = CliRunner().invoke(main, ["schemas", "register", "--url", fake.url])
    assert result.exit_code == 1
    assert "error: fi.integrationhub.PopulationChange: HTTP 422, error_code 42205: Subject fi.integrationhub.PopulationChange is not in import mode" in result.output
    assert "--import-mode" in result.output
    assert all(not versions for versions in fake.subjects.values())


def test_a_version_there_under_another_id_is_a_conflict_and_left_alone(fake):
    v1 = default_codec().versions("PopulationChange")[0]
    fake.subjects["hub.population-changes.v1-value"] = [(1, 101, json.dumps(v1.raw))]
    fake.schemas[101] = json.dumps(v1.raw)
    outcome = register(fake.url, import_mode=True)
    assert [e.split(":")[0] for e in outcome.errors] == ["hub.population-changes.v1-value"]
    assert "under id 101, but the hub's records carry id 17" in outcome.errors[0]
    assert fake.subjects["hub.population-changes.v1-value"] == [(1, 101, json.dumps(v1.raw))]  # untouched, later versions not tried
    assert len(fake.subjects["fi.integrationhub.PopulationChange"]) == 3  # other subjects go on


def test_against_hub_registry_everything_is_already_there():
    with serving() as url:
        outcome = register(url)
    assert outcome.errors == [] and outcome.registered == [] and len(outcome.present) == len(plan())


def test_an_unreachable_registry_is_one_clear_error():
    result = CliRunner().invoke(main, ["schemas", "register", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1 and result.output.count("cannot reach http://127.0.0.1:9") == 1
    result = CliRunner().invoke(main, ["schemas", "register", "--url", "registry:8081"])
    assert result.exit_code == 2 and "http:// or https://" in result.output
    result = CliRunner().invoke(main, ["schemas", "register", "--url", "https://importer:s3cret@registry.example:8081"])
    assert result.exit_code == 2 and "--basic-auth-file" in result.output and "s3cret" not in result.output
    assert "IMPORT mode" in CliRunner().invoke(main, ["schemas", "register", "--help"]).output


def _self_signed(tmp_path):
    """A certificate for 127.0.0.1 and its key, as PEM files (no authority the client knows signed it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registry.test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "registry.crt", tmp_path / "registry.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_file, key_file


def test_https_is_verified_and_a_deployments_own_authority_comes_from_ssl_cert_file(tmp_path):
    cert_file, key_file = _self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    with _serving(FakeConfluentRegistry(), tls) as registry:
        refused = CliRunner().invoke(main, ["schemas", "register", "--url", registry.url, "--dry-run"], env={"SSL_CERT_FILE": None, "SSL_CERT_DIR": None})
        trusted = CliRunner().invoke(main, ["schemas", "register", "--url", registry.url, "--dry-run"], env={"SSL_CERT_FILE": str(cert_file)})
    assert refused.exit_code == 1 and "CERTIFICATE_VERIFY_FAILED" in refused.output and refused.output.count(f"cannot reach {registry.url}") == 1
    assert "Traceback" not in refused.output and registry.subjects == {}
    assert trusted.exit_code == 0 and f"would register {len(plan())} version(s)" in trusted.output, trusted.output


def _generated(raw: dict) -> dict:
    import fastavro
    import fastavro.utils

    return next(fastavro.utils.generate_many(fastavro.parse_schema(raw, named_schemas={}), 1))


def test_basic_authentication_comes_from_a_file(fake, tmp_path):
    import base64

    secret = tmp_path / "registry-auth"
    secret.write_text("hub-importer:s3cret\n")
    result = CliRunner().invoke(main, ["schemas", "register", "--url", fake.url, "--dry-run", "--basic-auth-file", str(secret)])
    assert result.exit_code == 0 and "s3cret" not in result.output
    assert fake.authorization == {"Basic " + base64.b64encode(b"hub-importer:s3cret").decode()}
    secret.write_text("no colon here")
    result = CliRunner().invoke(main, ["schemas", "register", "--url", fake.url, "--basic-auth-file", str(secret)])
    assert result.exit_code == 2 and "USERNAME:PASSWORD" in result.output
