"""Pure rules of webhook delivery: which callback URLs are allowed, when to retry, how to sign
(Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature = v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">), and the CloudEvents JSON body (structured mode)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import random
import secrets
from urllib.parse import urlsplit

MAX_ATTEMPTS = 8
BASE_DELAY = 1.0  # seconds before the 2nd attempt; doubles each time
MAX_DELAY = 3600.0
SECRET_PREFIX = "whsec_"


class WebhookError(ValueError):
    """A subscription that cannot be accepted; the message says what to do."""


def check_url(url: str) -> str:
    """The URL if allowed: https, or http only to a loopback address (local tests and sidecars)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(f"{url!r} is not an http(s) URL; give e.g. https://receiver.example.fi/hub-events")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise WebhookError(f"{url!r} is plain http: webhook URLs must be https (http is allowed only to localhost/127.0.0.1/::1)")
    return url


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def check_secret(secret: str) -> str:
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:
        raise WebhookError("the secret must be whsec_ followed by base64 (omit --secret to have one made)") from None
    if len(key) < 16:
        raise WebhookError("the secret must hold at least 16 bytes of key (omit --secret to have one made)")
    return secret


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/cloudevents+json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


def next_delay(attempts: int, rng: random.Random | None = None, base: float = BASE_DELAY, cap: float = MAX_DELAY) -> float:
    """Seconds to wait after `attempts` failed attempts: exponential, capped, with full jitter
    between half and the whole step (so receivers coming back are not hit by everyone at once)."""
    step = min(cap, base * 2 ** max(0, attempts - 1))
    return step * (0.5 + 0.5 * (rng or random).random())


def cloudevent_body(name: str, event: dict, jsonable: dict) -> bytes:
    """A hub record as a CloudEvents JSON (structured mode) body; `jsonable` is the codec's JSON form."""
    occurred = event.get("occurred_at")
    time = occurred.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z") if isinstance(occurred, dt.datetime) else None
    body = {
        "specversion": "1.0",
        "id": str(event["event_id"]),
        "type": f"fi.integrationhub.{name}.v1",
        "source": str(event.get("source") or "hub"),
        "time": time,
        "datacontenttype": "application/json",
        "data": jsonable,
    }
    return json.dumps({k: v for k, v in body.items() if v is not None}, ensure_ascii=False, separators=(",", ":")).encode()
