"""Logging of the hub: one setup, and a filter that keeps identity codes out of every log line.

Library loggers (faust, aiokafka, kafka-python) print raw record values at DEBUG, and record
values carry identity codes, so they are never set below INFO, whatever HUB_LOG_LEVEL says.
Every record passing the hub's handler is scrubbed of anything shaped like a henkilötunnus, except
the look-alikes inside identifiers (`scrub_identity_codes`).
"""

from __future__ import annotations

import logging
import re
import sys

from hub.domain import hetu

LIBRARIES = ("faust", "mode", "aiokafka", "kafka", "alembic", "urllib3")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PLACEHOLDER = "<henkilötunnus>"
# identifiers in which a code-shaped run is usually chance: UUIDs (event ids: '...e2123456-7890-4abc...'
# holds '123456-7890') and long runs of hex digits (upper-case hex holds the century signs A-F)
_IDENTIFIER = re.compile(r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}|[0-9A-Fa-f]{16,}")


def scrub_identity_codes(text: str) -> str:
    """Replace every identity-code-shaped run in `text` (hub.domain.hetu.PATTERN, no word boundaries),
    except one that lies inside a UUID or a long hex identifier and is not a valid code (its date and
    check character): ids stay readable, and a real code is replaced wherever it is."""
    identifiers = [m.span() for m in _IDENTIFIER.finditer(text)]

    def replace(match: re.Match) -> str:
        start, end = match.span()
        if any(a <= start and end <= b for a, b in identifiers) and not hetu.is_valid(match.group()):
            return match.group()
        return PLACEHOLDER

    return hetu.PATTERN.sub(replace, text)


class PersonalDataFilter(logging.Filter):
    """Replaces identity codes in the message, its arguments and any exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the template only
            message = str(record.msg)
        record.msg, record.args = scrub_identity_codes(message), ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub_identity_codes(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = scrub_identity_codes(record.stack_info)
        return True


def configure(level: str = "INFO", stream=None, quiet_libraries: bool = True) -> logging.Handler:
    """Install the hub's handler on the root logger (replacing earlier ones) and return it."""
    numeric = getattr(logging, str(level).upper(), logging.INFO)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(PersonalDataFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in LIBRARIES:
        # never below INFO (values at DEBUG); at the hub's INFO keep them at WARNING (chatty)
        floor = logging.WARNING if quiet_libraries else logging.INFO
        logging.getLogger(name).setLevel(max(numeric, floor))
    return handler
