"""Checks that a text holds no henkilötunnus, for the tests of logs, metrics and dead-letter messages."""

import re

from hub.domain import hetu

# Event ids are UUIDs, and a UUID's hex groups can take an identity code's shape: the event id
# 7b413613-0555-4126-... contains "413613-0555" (about 1 UUID in 100). They are not personal data.
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def identity_code_in(text: str):
    """The first identity-code-shaped string of `text` outside UUIDs (a re.Match), or None."""
    return hetu.PATTERN.search(UUID.sub("<uuid>", text))


def digits_of(code: str) -> str:
    """An identity code's nine digits without its century sign and check character (010190-900P -> 010190900)."""
    return "".join(ch for ch in code[:10] if ch.isdigit())


def clear_in_tables(engine, tables, needles) -> list[str]:
    """Where any of `needles` occurs in clear in the raw rows of `tables` (read with plain SQL, every
    column, text and bytes alike): "table.column: needle" for each hit."""
    import sqlalchemy as sa

    hits = []
    with engine.connect() as conn:
        for table in tables:
            result = conn.execute(sa.text(f"SELECT * FROM {table}"))
            columns = list(result.keys())
            for row in result:
                for column, value in zip(columns, row):
                    if value is None:
                        continue
                    raw = bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else str(value).encode("utf-8")
                    hits += [f"{table}.{column}: {n}" for n in needles if n.encode("utf-8") in raw]
    return hits
