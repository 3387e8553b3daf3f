"""One `muutokset` response (a page of the VTJ-muutosrajapinta), parsed so that each change keeps
its original JSON text and line number: dead letters carry the bytes exactly as DVV sent them.

Pure: text in, `Page` out. Shape errors raise `MalformedPage` naming the place and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from hub.domain.errors import Rejected
from hub.schemas import bounds

_DECODER = json.JSONDecoder()
_WS = " \t\r\n"


class MalformedPage(Rejected):
    """A response is not a `muutokset` page. The message names the location and what is wrong;
    `reason` is the dead-letter reason: malformed_page, or out_of_bounds (hub/schemas/bounds.py)."""

    def __init__(self, location: str, message: str, raw: str = "", reason: str = "malformed_page"):
        super().__init__(reason, message)
        self.location = location
        self.raw = raw  # the text of the page as received, for the dead letter

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass(frozen=True)
class RawChange:
    """One `muutos` of a page: the parsed object, its original text, and where it was."""

    obj: object
    text: str
    line: int  # 1-based line of the muutos' first character in its source
    index: int  # position within the page's `muutokset`


@dataclass(frozen=True)
class Page:
    """A `muutokset` response: the changes, the key to continue from, and whether it is the last."""

    next_key: int
    up_to_date: bool
    changes: tuple[RawChange, ...] = field(default_factory=tuple)
    origin: str = ""  # file name, or the request it came from
    text: str = ""  # the whole response as received
    record_key: int | None = None  # the key the page was read after (None for files)

    def location(self, change: RawChange) -> str:
        """Where a change came from: file:line, or the record key and position in the page."""
        if self.record_key is not None:
            return f"record key {self.record_key}, muutos {change.index}"
        if sum(1 for c in self.changes if c.line == change.line) > 1:  # JSON lines: several per line
            return f"{self.origin}:{change.line}, muutos {change.index}"
        return f"{self.origin}:{change.line}"


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WS:
        pos += 1
    return pos


def _line_of(text: str, pos: int, first_line: int) -> int:
    return first_line + text.count("\n", 0, pos)


def parse_key(value: object, location: str) -> int:
    """A record key (`viimeisinKirjausavain`): a JSON integer, or digits as text (accepted too)."""
    if isinstance(value, bool):
        raise MalformedPage(location, "viimeisinKirjausavain must be an integer, got true/false")
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise MalformedPage(location, f"viimeisinKirjausavain must be a non-negative integer, got {type(value).__name__}")


def parse_page(text: str | bytes, origin: str = "", first_line: int = 1) -> Page:
    """Parse one `muutokset` response. `first_line` is the line of `text` in its file (JSON lines)."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedPage(f"{origin}:{first_line}", f"response is not UTF-8 (byte {exc.start})", raw=bytes(text).decode("utf-8", "replace")) from None
    try:
        return _parse_page(text, origin, first_line)
    except MalformedPage as exc:
        exc.raw = text
        raise


def _parse_page(text: str, origin: str, first_line: int) -> Page:
    loc = f"{origin}:{first_line}" if origin else f"line {first_line}"
    pos = _skip(text, 0)
    if pos >= len(text) or text[pos] != "{":
        raise MalformedPage(loc, "a muutokset response must be a JSON object ({...})")
    try:  # before parsing: Python's parser fails with RecursionError on ~1,000 nested brackets
        bounds.check_json_depth(text, "the response")
    except bounds.OutOfBounds as exc:
        raise MalformedPage(loc, exc.message, reason=exc.reason) from None
    try:
        whole, end = _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        at = _line_of(text, exc.pos, first_line)
        raise MalformedPage(f"{origin}:{at}" if origin else f"line {at}", f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    if _skip(text, end) != len(text):
        at = _line_of(text, end, first_line)
        raise MalformedPage(f"{origin}:{at}" if origin else f"line {at}", "extra text after the JSON object")
    for name in ("viimeisinKirjausavain", "muutokset", "ajanTasalla"):
        if name not in whole:
            raise MalformedPage(loc, f"the response has no '{name}' field; is this a /muutokset response?")
    next_key = parse_key(whole["viimeisinKirjausavain"], loc)
    if not isinstance(whole["ajanTasalla"], bool):
        raise MalformedPage(loc, "ajanTasalla must be true or false")
    if not isinstance(whole["muutokset"], list):
        raise MalformedPage(loc, "muutokset must be a list")
    changes = tuple(_changes_with_spans(text, pos, whole["muutokset"], first_line))
    return Page(next_key=next_key, up_to_date=whole["ajanTasalla"], changes=changes, origin=origin, text=text)


def _changes_with_spans(text: str, pos: int, parsed: list, first_line: int, key_name: str = "muutokset"):
    """Walk the top-level object again to find each item's original text (the JSON is valid): the
    muutos of a `muutokset` response, or a person of a `perustiedot` response (`key_name`)."""
    pos = _skip(text, pos + 1)  # after '{'
    while text[pos] != "}":
        key, pos = _DECODER.raw_decode(text, pos)
        pos = _skip(text, pos)
        pos = _skip(text, pos + 1)  # ':'
        if key != key_name:
            _, pos = _DECODER.raw_decode(text, pos)
        else:
            pos = _skip(text, pos + 1)  # '['
            index = 0
            while text[pos] != "]":
                start = pos
                obj, pos = _DECODER.raw_decode(text, pos)
                yield RawChange(obj=obj, text=text[start:pos], line=_line_of(text, start, first_line), index=index)
                index += 1
                pos = _skip(text, pos)
                if text[pos] == ",":
                    pos = _skip(text, pos + 1)
            pos += 1
        pos = _skip(text, pos)
        if text[pos] == ",":
            pos = _skip(text, pos + 1)


def read_pages(text: str, origin: str, parse=None) -> list[Page | MalformedPage]:
    """The pages of a saved file: one response (pretty-printed JSON) or JSON lines of responses.

    A malformed page is returned as its `MalformedPage` error in place, so the caller can
    dead-letter it and go on with the rest of the file. `parse(text, origin, first_line)` reads one
    response (default `parse_page`; a register snapshot's `perustiedot` responses: hub.adapters.dvv.snapshot).
    """
    parse = parse or parse_page
    stripped = text.lstrip()
    if not stripped:
        return [MalformedPage(f"{origin}:1", "the file is empty; expected a muutokset response (JSON)", raw=text)]
    try:
        return [parse(text, origin)]
    except MalformedPage as single_error:
        # JSON lines are separated by "\n" only: str.splitlines() would also split inside a JSON string at
        # U+2028, U+2029 or U+0085, which JSON allows unescaped (a name with such a character broke its page)
        lines = [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]
        if len([ln for ln in lines if ln.strip()]) < 2:
            return [single_error]
        # JSON lines: one response per non-blank line
        out: list[Page | MalformedPage] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                out.append(parse(line, origin, first_line=number))
            except MalformedPage as exc:
                out.append(exc)
        # a pretty-printed file with an error is not JSON lines: report the single-document error
        if all(isinstance(p, MalformedPage) for p in out):
            return [single_error]
        return out
