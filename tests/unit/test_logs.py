"""No identity code reaches a log line, whoever logs it and however."""

import io
import logging

from hub.logs import configure


def test_identity_codes_are_scrubbed_from_messages_args_exceptions_and_bytes_reprs():
    stream = io.StringIO()
    configure("DEBUG", stream=stream)
    log = logging.getLogger("hub.test")
    log.info("person %s moved", "131052-308T")
    log.debug("raw value %r", b"\x00\x16120491-900F\x02")
    try:
        raise ValueError("bad 010594Y9032")
    except ValueError:
        log.exception("failed")
    text = stream.getvalue()
    for code in ("131052-308T", "120491-900F", "010594Y9032"):
        assert code not in text
    assert text.count("<henkilötunnus>") >= 3


def test_library_loggers_never_go_below_info():
    configure("DEBUG", stream=io.StringIO())
    for name in ("faust", "aiokafka", "kafka", "mode"):
        assert logging.getLogger(name).getEffectiveLevel() >= logging.INFO
