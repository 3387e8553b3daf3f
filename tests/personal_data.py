"""Checks that a text holds no henkilötunnus, for the tests of logs, metrics and dead-letter messages."""

import re

from hub.domain import hetu

# Event ids are UUIDs, and a UUID's hex groups can take an identity code's shape: the event id
# 7b413613-0555-4126-... contains "413613-0555" (about 1 UUID in 100). They are not personal data.
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def identity_code_in(text: str):
    """The first identity-code-shaped string of `text` outside UUIDs (a re.Match), or None."""
    return hetu.PATTERN.search(UUID.sub("<uuid>", text))
