"""Logging of the hub: one setup, and a filter that keeps identity codes out of every log line.

Library loggers (faust, aiokafka, kafka-python) print raw record values at DEBUG, and record
values carry identity codes, so they are never set below INFO, whatever HUB_LOG_LEVEL says.
Every record passing the hub's handler is scrubbed of anything shaped like a henkilötunnus.
"""

from __future__ import annotations

import logging
import sys

from hub.domain.hetu import scrub

LIBRARIES = ("faust", "mode", "aiokafka", "kafka", "alembic", "urllib3")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class PersonalDataFilter(logging.Filter):
    """Replaces identity codes in the message, its arguments and any exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the template only
            message = str(record.msg)
        record.msg, record.args = scrub(message), ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
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
