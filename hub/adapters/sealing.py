"""Encryption at rest for the personal data the database must keep (identity codes, assessment data,
webhook secrets): Fernet (AES-128-CBC + HMAC-SHA256, `cryptography`) under keys from the environment.

`HUB_DATA_KEYS`: one or more Fernet keys, comma-separated (32 url-safe base64-encoded bytes
each, as `Fernet.generate_key()` or `openssl rand -base64 32 | tr '+/' '-_'` make them). The first encrypts; every one decrypts, so a key is rotated by putting
the new one first and keeping the old one until its rows are re-sealed or removed. Unset, the hub
uses a key derived from a fixed demo text: fine for the embedded demo, refused by production
commands (`Settings.require_production_secrets`).

A column declared `Sealed()` is encrypted on write and decrypted on read through the process's
sealer (`configure`, called by the composition root; the demo key until then).
"""

from __future__ import annotations

import base64
import hashlib

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

DEMO_KEY_TEXT = "embedded-demo-data-key-change-me"


def demo_key() -> str:
    """The Fernet key derived from the demo text (the embedded demo's; never a production key)."""
    return base64.urlsafe_b64encode(hashlib.sha256(DEMO_KEY_TEXT.encode()).digest()).decode()


def new_key() -> str:
    """A fresh random key for HUB_DATA_KEYS."""
    return Fernet.generate_key().decode()


class SealingError(ValueError):
    """A key is malformed, or a sealed value does not open under any configured key."""


class Sealer:
    def __init__(self, keys: tuple[str, ...] | list[str] = ()) -> None:
        keys = tuple(k.strip() for k in keys if k and k.strip()) or (demo_key(),)
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        except (ValueError, TypeError):
            raise SealingError("HUB_DATA_KEYS holds a key that is not a Fernet key (32 url-safe base64 bytes); "
                               "make one with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'") from None
        self.is_demo = keys == (demo_key(),)

    def seal(self, plain: bytes) -> bytes:
        return self._fernet.encrypt(plain)

    def open(self, sealed: bytes) -> bytes:
        try:
            return self._fernet.decrypt(sealed)
        except InvalidToken:
            raise SealingError("a sealed value does not open under any key in HUB_DATA_KEYS (a key was removed too early?)") from None

    def seal_text(self, text: str | None) -> bytes | None:
        return None if text is None else self.seal(text.encode("utf-8"))

    def open_text(self, sealed: bytes | None) -> str | None:
        return None if sealed is None else self.open(sealed).decode("utf-8")


_current = Sealer()


def configure(keys: tuple[str, ...] | list[str]) -> Sealer:
    """Set the process's sealer (the composition root, from Settings.data_keys). Returns it."""
    global _current
    _current = Sealer(keys)
    return _current


def current() -> Sealer:
    return _current


class Sealed(sa.types.TypeDecorator):
    """A bytes column stored encrypted: the Python side sees plain bytes, the database a Fernet token."""

    impl = sa.LargeBinary
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else _current.seal(bytes(value))

    def process_result_value(self, value, dialect):
        return None if value is None else _current.open(bytes(value))


class SealedText(sa.types.TypeDecorator):
    """A text column stored encrypted (as bytes): the Python side sees str."""

    impl = sa.LargeBinary
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return _current.seal_text(value)

    def process_result_value(self, value, dialect):
        return _current.open_text(None if value is None else bytes(value))
