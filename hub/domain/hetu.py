"""The Finnish personal identity code (henkilötunnus): validation, and the pseudonymous person key.

Format DDMMYYCZZZQ: birth date, century sign ('+' 1800s; '-' and, since 2023, 'Y X W V U' 1900s;
'A' and, since 2023, 'B C D E F' 2000s), individual number 002-899 (900-999 are test codes) and
the check character. Errors never contain the code itself.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re

from hub.domain.errors import Rejected

CHECK_CHARS = "0123456789ABCDEFHJKLMNPRSTUVWXY"
CENTURIES = {"+": 1800, **dict.fromkeys("-YXWVU", 1900), **dict.fromkeys("ABCDEF", 2000)}
# ASCII classes only, matched whole (`fullmatch`): `\d` would also take fullwidth or Arabic-Indic
# digits and `$` a trailing newline, and each such spelling of one code would get another person key.
_SHAPE = re.compile(r"([0-9]{2})([0-9]{2})([0-9]{2})([-+A-FU-Y])([0-9]{3})([0-9A-Y])", re.ASCII)
LENGTH = 11
# anything that looks like an identity code, for scrubbing text (logs, messages). No word
# boundaries on purpose: in the repr of Avro bytes a code follows its length prefix directly
# (b"\x16120491-900F"), and a missed code is worse than a scrubbed look-alike.
PATTERN = re.compile(r"\d{6}[-+A-FU-Y]\d{3}[0-9A-Y]")


class InvalidHetu(Rejected):
    """The value is not a valid henkilötunnus. `reason` is a stable code; the message has no code."""


def check_char(digits: str) -> str:
    """Check character for the nine digits DDMMYYZZZ."""
    return CHECK_CHARS[int(digits) % 31]


def validate(value: object, *, allow_test_codes: bool = True) -> str:
    """Return the code when valid; raise InvalidHetu naming what is wrong (never the code)."""
    if not isinstance(value, str):
        raise InvalidHetu("invalid_person_id", f"identity code must be text, got {type(value).__name__}")
    m = _SHAPE.fullmatch(value) if len(value) == LENGTH else None
    if not m:
        if not value.isascii():
            raise InvalidHetu("invalid_person_id", "identity code has characters other than ASCII digits, letters, '-' and '+' "
                                                   "(fullwidth or other non-ASCII digits?); send it in the canonical form DDMMYYCZZZQ")
        if value != value.strip():
            raise InvalidHetu("invalid_person_id", "identity code has white space or a line break around it; send it in the canonical form DDMMYYCZZZQ")
        raise InvalidHetu("invalid_person_id", f"identity code has the wrong shape (length {len(value)}; expected DDMMYYCZZZQ)")
    dd, mm, yy, sign, serial, check = m.groups()
    try:
        dt.date(CENTURIES[sign] + int(yy), int(mm), int(dd))
    except ValueError:
        raise InvalidHetu("invalid_person_id", "identity code's date part is not a real date") from None
    if int(serial) < 2:
        raise InvalidHetu("invalid_person_id", "identity code's individual number must be 002-999")
    if not allow_test_codes and int(serial) >= 900:
        raise InvalidHetu("invalid_person_id", "identity code is a test code (individual number 900-999)")
    if check_char(dd + mm + yy + serial) != check:
        raise InvalidHetu("invalid_person_id", "identity code's check character does not match")
    return value


def is_valid(value: object) -> bool:
    try:
        validate(value)
        return True
    except InvalidHetu:
        return False


def birth_date(value: str) -> dt.date:
    """Birth date of a valid code."""
    m = _SHAPE.fullmatch(validate(value))
    dd, mm, yy, sign = m.group(1), m.group(2), m.group(3), m.group(4)
    return dt.date(CENTURIES[sign] + int(yy), int(mm), int(dd))


def make(born: dt.date, serial: int, sign: str | None = None) -> str:
    """Build a valid code (tests and synthetic data use serials 900-999)."""
    sign = sign or {1800: "+", 1900: "-", 2000: "A"}[born.year // 100 * 100]
    if CENTURIES.get(sign) != born.year // 100 * 100:
        raise ValueError("century sign does not match the birth year")
    digits = born.strftime("%d%m%y") + f"{serial:03d}"
    return f"{digits[:6]}{sign}{digits[6:]}{check_char(digits)}"


def person_key(value: str, secret: str) -> str:
    """Pseudonymous person key: HMAC-SHA256 of the code under the configured secret (hex, 32 chars).

    Used as the Kafka key so that the identity code itself is never a key, a label or a log field.
    `value` must be a code `validate` accepted: only the canonical spelling of a code has one key.
    """
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]


def scrub(text: str) -> str:
    """Replace anything shaped like an identity code in free text."""
    return PATTERN.sub("<henkilötunnus>", text)
