"""Pure rules of webhook delivery: which callback URLs and addresses are allowed, when to retry (the retry
schedule, `retry_delay`), how to sign
(Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature = v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">). The CloudEvents JSON body is `hub.schemas.envelope.cloudevent_body`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import random
import secrets
from urllib.parse import urlsplit, urlunsplit

# The waits after each failed attempt, the first attempt being immediate: Standard Webhooks'
# recommended schedule; after the last one fails the delivery is parked. HUB_WEBHOOKS_RETRY_SCHEDULE
# replaces it. Written here only: RETRY_SCHEDULE (seconds), MAX_ATTEMPTS and the setting's default
# and documentation (hub/config.py, docs/configuration.md) are derived from it.
RETRY_SCHEDULE_TEXT = "5s,5m,30m,2h,5h,10h,10h"
RETRY_JITTER = 0.2  # each wait is drawn uniformly within +-20 % of the schedule's step
BASE_DELAY = 1.0  # `next_delay`: seconds before the 2nd attempt; doubles each time
MAX_DELAY = 3600.0
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_schedule(text: str) -> tuple[float, ...]:
    """`"30s,2m,1h"` -> (30.0, 120.0, 3600.0) seconds. Units: ms, s, m (min), h, d; a bare number is seconds.
    ValueError naming the bad step and the form expected."""
    steps = []
    for part in (p.strip().lower() for p in text.split(",")):
        if not part:
            continue
        number, unit = part, "s"
        for suffix in sorted(_UNITS, key=len, reverse=True):
            if part.endswith(suffix):
                number, unit = part[: -len(suffix)], suffix
                break
        try:
            value = float(number) * _UNITS[unit]
        except ValueError:
            raise ValueError(f"retry step {part!r} is not a duration; give e.g. 5s,5m,30m,2h") from None
        if value < 0 or value != value:
            raise ValueError(f"retry step {part!r} is negative; give e.g. 5s,5m,30m,2h")
        steps.append(value)
    if not steps:
        raise ValueError("the retry schedule is empty; give at least one wait, e.g. 5s,5m,30m,2h")
    return tuple(steps)


RETRY_SCHEDULE: tuple[float, ...] = parse_schedule(RETRY_SCHEDULE_TEXT)  # seconds
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1
SECRET_PREFIX = "whsec_"
# The delivery service's Kafka consumer groups, one per subscription (its own offsets), under the
# deployment's app id: `<app id>-webhooks.<id>`, so two deployments on one cluster never share
# offsets, and the prefix is the service's own: the hub's workers own the groups `<app id>.<name>`
# (their ACL is the prefix `<app id>.`), which must not cover the service's groups, nor the
# service's cover theirs. `<app id>-webhooks` is also the service's Kafka user (hub.deploy.acls), so
# its groups are `<its user>.<id>`, as every user's groups are `<user>.<name>`.
CONSUMER_GROUP_SUFFIX = "-webhooks."


def consumer_group_prefix(app_id: str) -> str:
    """Every consumer group of the delivery service of the deployment `app_id` starts with this."""
    return f"{app_id}{CONSUMER_GROUP_SUFFIX}"


def consumer_group(app_id: str, subscription_id: int) -> str:
    """The consumer group of one subscription's lane: `<app id>-webhooks.<subscription id>`."""
    return f"{consumer_group_prefix(app_id)}{subscription_id}"


# Targets refused whatever the DNS says: the names of cloud instance-metadata services (GCP, AWS,
# Tencent; their addresses, 169.254.169.254, fd00:ec2::254, 100.100.100.200, are refused as
# link-local, private and shared too) and names that only mean something inside a network.
METADATA_NAMES = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal", "metadata.tencentyun.com",
})
INTERNAL_SUFFIXES = (".internal", ".local", ".localdomain", ".home.arpa", ".intranet", ".lan")
LOOPBACK_NAME, LOOPBACK_SUFFIX = "localhost", ".localhost"

# (network, reason) in the order checked; anything else that is not globally routable is "reserved"
_REFUSED_NETWORKS = tuple((ipaddress.ip_network(net), reason) for net, reason in (
    ("0.0.0.0/8", "unspecified"), ("127.0.0.0/8", "loopback"), ("169.254.0.0/16", "link-local"),
    ("10.0.0.0/8", "private"), ("172.16.0.0/12", "private"), ("192.168.0.0/16", "private"),
    ("100.64.0.0/10", "shared (carrier-grade NAT)"), ("192.0.0.0/24", "reserved"), ("198.18.0.0/15", "reserved"),
    ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"), ("::1/128", "loopback"), ("fe80::/10", "link-local"), ("fec0::/10", "site-local"),
    ("fc00::/7", "private (unique local)"), ("ff00::/8", "multicast"), ("64:ff9b:1::/48", "private (local NAT64)"),
    ("2001::/32", "reserved (Teredo)"), ("100::/64", "reserved"),
))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_V4_COMPATIBLE = ipaddress.ip_network("::/96")


class WebhookError(ValueError):
    """A subscription that cannot be accepted; the message says what to do."""


class TargetRefused(WebhookError):
    """A callback URL or the address it resolves to is one the hub never sends to (reason: `target_refused`)."""

    reason = "target_refused"


def check_url(url: str, *, allow_loopback: bool = False) -> str:
    """The URL if allowed, else WebhookError (TargetRefused for a refused host).

    https to a public host. Never: link-local, private, shared, reserved, multicast or unspecified
    addresses (in any form the resolver accepts: ::ffff:127.0.0.1, 2130706433, 0177.0.0.1, ...),
    cloud metadata names, internal-only names. Loopback (127.0.0.0/8, ::1, localhost) only with
    `allow_loopback` (HUB_WEBHOOKS_ALLOW_LOOPBACK: local tests and development), and then plain
    http too. A host name is resolved and its every address checked again at each delivery
    (hub.adapters.webhooks.resolve_target), so a name cannot point somewhere refused later.
    """
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - ValueError for a port that is not a number
    except ValueError:
        raise WebhookError(f"{shown!r} is not a valid URL; give e.g. https://receiver.example.fi/hub-events") from None
    if parts.scheme not in ("http", "https") or not host:
        raise WebhookError(f"{shown!r} is not an http(s) URL; give e.g. https://receiver.example.fi/hub-events")
    loopback = check_host(host, allow_loopback=allow_loopback)
    if parts.scheme == "http" and not loopback:
        raise WebhookError(f"{shown!r} is plain http: webhook URLs must be https"
                           + (" (http is allowed only to a loopback address)" if allow_loopback else ""))
    return url


def check_host(host: str, *, allow_loopback: bool = False) -> bool:
    """Whether `host` (a name or an address literal) is loopback (allowed only with `allow_loopback`);
    TargetRefused when it is never allowed. Pure: a name is judged by its form, not resolved."""
    name = host.strip().rstrip(".").lower()
    address = ip_literal(name)
    if address is not None:
        reason = refused_address(address, allow_loopback=allow_loopback)
        if reason:
            raise TargetRefused(f"{host!r} is refused ({reason} address): webhooks go only to public addresses")
        return _unwrap(address).is_loopback
    if name == LOOPBACK_NAME or name.endswith(LOOPBACK_SUFFIX):
        if not allow_loopback:
            raise TargetRefused(f"{host!r} is a loopback name: webhooks go only to public addresses")
        return True
    if name in METADATA_NAMES:
        raise TargetRefused(f"{host!r} is a cloud metadata service: webhooks go only to public addresses")
    if "." not in name or name.endswith(INTERNAL_SUFFIXES):
        raise TargetRefused(f"{host!r} is an internal-only name: give the receiver's public DNS name")
    return False


def refused_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_loopback: bool = False) -> str | None:
    """Why the hub never connects to `address` ("loopback", "link-local", "private", ...), or None."""
    address = _unwrap(address)
    if allow_loopback and address.is_loopback:
        return None
    for network, reason in _REFUSED_NETWORKS:
        if address.version == network.version and address in network:
            return reason
    if not address.is_global:
        return "reserved"
    return None


def _unwrap(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), else itself."""
    if address.version == 6:
        address = ipaddress.IPv6Address(int(address))  # without a scope id (fe80::1%eth0)
        if address.ipv4_mapped:
            return address.ipv4_mapped
        if address.sixtofour:
            return address.sixtofour
        if address in _NAT64 or (address in _V4_COMPATIBLE and int(address) > 1):
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host literal means to the resolver, including the legacy IPv4 forms
    inet_aton accepts (2130706433, 0x7f.1, 0177.0.0.1, 127.1); None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = []
    for part in parts:
        try:
            if part[:2] in ("0x", "0X"):
                values.append(int(part[2:], 16))
            elif len(part) > 1 and part.startswith("0"):
                values.append(int(part, 8))
            else:
                values.append(int(part, 10) if part.isascii() and part.isdigit() else -1)
        except ValueError:
            return None
    if any(v < 0 for v in values) or any(v > 255 for v in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        return None
    number = values[-1]
    for i, v in enumerate(values[:-1]):
        number |= v << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def redact_url(url: str) -> str:
    """The URL without credentials: user:password@ and query values become ***, the fragment goes."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
    except ValueError:
        return "<unparsable URL>"
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(f"{pair.split('=', 1)[0]}=***" if pair else pair for pair in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def loggable_url(url: str) -> str:
    """The URL as logs may show it: scheme://host[:port]/path; no user:password@, no query, no fragment."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "<unparsable URL>"
    if not host:
        return "<unparsable URL>"
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


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


def retry_delay(failed_attempts: int, schedule: tuple[float, ...] = RETRY_SCHEDULE, rng: random.Random | None = None,
                jitter: float = RETRY_JITTER) -> float | None:
    """Seconds to wait before the next attempt after `failed_attempts` failed ones (1 after the first),
    from `schedule`, jittered within +-`jitter` of the step (so receivers coming back are not hit by
    every queue at once); None when the schedule is exhausted: the delivery is parked."""
    if failed_attempts < 1 or failed_attempts > len(schedule):
        return None
    step = schedule[failed_attempts - 1]
    return max(0.0, step * (1 + jitter * (2 * (rng or random).random() - 1)))
