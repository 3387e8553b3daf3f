"""The log scrubber leaves event ids (UUIDs) and hex identifiers alone, and still replaces every
real identity code, including one that sits inside an id-shaped token."""

import datetime as dt
import io
import logging
import random
import uuid

from hub.domain import hetu
from hub.logs import PLACEHOLDER, configure, scrub_identity_codes

# event ids whose hex holds a code-shaped run ('123456-7890', '654321-0987', '123456A789B')
LOOKALIKES = ["e2123456-7890-4abc-8def-0123456789ab", "AB654321-0987-4ABC-8DEF-0123456789AB", "DEADBEEF123456A789B00042"]


def test_uuids_and_hex_ids_with_a_code_shaped_run_stay_intact():
    for token in LOOKALIKES:
        assert hetu.PATTERN.search(token)  # the shape is there
        assert scrub_identity_codes(f"event {token} dead-lettered") == f"event {token} dead-lettered"
    rng = random.Random(1)
    for _ in range(2000):  # about 1 in 100 random UUIDs holds a code-shaped run, 1 in 200,000 a valid code (that one is replaced)
        token = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        assert scrub_identity_codes(token) == token


def test_real_codes_are_still_scrubbed_everywhere():
    code, y2k = hetu.make(dt.date(1991, 4, 12), 900), hetu.make(dt.date(2005, 4, 1), 911)
    for text in (f"person {code} moved", f"raw {bytes([0, 22]) + code.encode()!r}", f"x{y2k}y", f"{code}{code}"):
        scrubbed = scrub_identity_codes(text)
        assert code not in scrubbed and y2k not in scrubbed and PLACEHOLDER in scrubbed
    # a code wrapped in an id-shaped token is still a code: replaced when its date and check character hold
    serial = next(n for n in range(900, 1000) if hetu.make(dt.date(1991, 4, 12), n)[-1] in "0123456789ABCDEF")
    inner = hetu.make(dt.date(1991, 4, 12), serial)
    token = f"ab{inner[:6]}-{inner[7:]}-4abc-8def-0123456789ab"
    assert inner not in scrub_identity_codes(token)
    # outside identifiers every code-shaped run goes, valid or not (a mistyped code is still personal data)
    assert scrub_identity_codes("person 120491-900X moved") == f"person {PLACEHOLDER} moved"


def test_log_lines_keep_event_ids():
    stream = io.StringIO()
    configure("INFO", stream=stream)
    code = hetu.make(dt.date(1991, 4, 12), 900)
    logging.getLogger("hub.test").warning("event %s of %s dead-lettered", LOOKALIKES[0], code)
    line = stream.getvalue()
    assert LOOKALIKES[0] in line and code not in line and PLACEHOLDER in line
