"""Schema evolution, proven: every schema's versions (hub/schemas/history/<Name>/v<N>.avsc) are
checked against the compatibility mode written down in compatibility.json.

Two checks per (reader, writer) pair, both pure: a structural rule check (a reader field the writer
lacks needs a default; enum symbols and types must resolve, per the Avro resolution rules) and a
data check (fastavro writes generated records with the writer schema and reads them with the
reader schema). BACKWARD = the new schema reads the previous version's data; FORWARD = the
previous schema reads the new version's data; FULL = both; *_TRANSITIVE = against every earlier
version; NONE = no check.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import fastavro
import fastavro.utils

from hub.schemas.codec import SCHEMA_DIR, read_schema_table

MODES = ("BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE")
HISTORY = "history"
SAMPLES = 50

# Avro schema resolution: a writer's primitive type may be read as these reader types
_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}


@dataclass(frozen=True)
class Problem:
    """One incompatibility: which schema, which versions, which direction, what."""

    schema: str
    reader: str  # e.g. "v2"
    writer: str
    message: str

    def __str__(self) -> str:
        if self.writer == "-":  # not a pair of versions: a missing history, an unrecorded change, a schema id
            return f"{self.schema}: {self.message}"
        return f"{self.schema}: {self.reader} cannot read data written with {self.writer}: {self.message}"


def load_modes(schema_dir: Path = SCHEMA_DIR) -> dict[str, str]:
    """name -> mode, with the "default" entry applied to schemas not named (key "default" kept)."""
    raw = json.loads((schema_dir / "compatibility.json").read_text(encoding="utf-8"))
    modes = {k: v for k, v in raw.items() if not k.startswith("_")}
    for name, mode in modes.items():
        if mode not in MODES:
            raise ValueError(f"compatibility.json: {name} has mode {mode!r}; use one of {', '.join(MODES)}")
    modes.setdefault("default", "BACKWARD")
    return modes


def mode_of(name: str, modes: dict[str, str]) -> str:
    return modes.get(name, modes["default"])


def load_history(schema_dir: Path = SCHEMA_DIR) -> dict[str, list[dict]]:
    """name -> its versions, oldest first (v1, v2, ...), as raw schema dicts."""
    out: dict[str, list[dict]] = {}
    root = schema_dir / HISTORY
    for folder in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else ():
        files = sorted(folder.glob("v*.avsc"), key=lambda p: int(p.stem[1:]))
        numbers = [int(p.stem[1:]) for p in files]
        if numbers != list(range(1, len(files) + 1)):
            raise ValueError(f"{folder}: versions must be v1.avsc, v2.avsc, ... without gaps; found {[p.name for p in files]}")
        out[folder.name] = [json.loads(p.read_text(encoding="utf-8")) for p in files]
    return out


# -- structural rules ------------------------------------------------------------------------
def _type_name(schema) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return schema["type"] if isinstance(schema["type"], str) else _type_name(schema["type"])
    return schema


def _full_name(schema: dict) -> str:
    name = schema.get("name", "")
    ns = schema.get("namespace")
    return name if "." in name or not ns else f"{ns}.{name}"


def _resolve(named: dict, schema):
    if isinstance(schema, str) and schema in named:
        return named[schema]
    return schema


def _collect_named(schema, named: dict, namespace: str | None = None) -> None:
    if isinstance(schema, list):
        for branch in schema:
            _collect_named(branch, named, namespace)
    elif isinstance(schema, dict):
        t = schema.get("type")
        if t in ("record", "enum", "fixed"):
            ns = schema.get("namespace", namespace)
            full = schema["name"] if "." in schema["name"] else (f"{ns}.{schema['name']}" if ns else schema["name"])
            named[full] = schema
            named[schema["name"]] = schema
            for f in schema.get("fields", ()):
                _collect_named(f["type"], named, ns)
        elif t == "array":
            _collect_named(schema["items"], named, namespace)
        elif t == "map":
            _collect_named(schema["values"], named, namespace)
        elif isinstance(t, (dict, list)):
            _collect_named(t, named, namespace)


def rule_problems(reader: dict, writer: dict) -> list[str]:
    """Why `reader` cannot read every datum written with `writer` (empty: it can), by the Avro
    schema-resolution rules. Messages name fields and types, never values."""
    r_named: dict = {}
    w_named: dict = {}
    _collect_named(reader, r_named)
    _collect_named(writer, w_named)
    problems: list[str] = []
    _compare(_resolve(r_named, reader), _resolve(w_named, writer), r_named, w_named, _full_name(reader) if isinstance(reader, dict) else "", problems, set())
    return problems


def _compare(r, w, rn, wn, path, problems, seen) -> None:
    r, w = _resolve(rn, r), _resolve(wn, w)
    if isinstance(r, dict) and isinstance(r.get("type"), (dict, list)):
        r = r["type"]
    if isinstance(w, dict) and isinstance(w.get("type"), (dict, list)):
        w = w["type"]
    rt, wt = _type_name(r), _type_name(w)
    if wt == "union":
        for branch in w:  # every branch the writer may use must be readable
            if _readable(r, branch, rn, wn):
                continue
            problems.append(f"{path}: the writer's union branch {_type_name(_resolve(wn, branch))} has no matching type in the reader")
        return
    if rt == "union":
        for branch in r:
            if _readable(branch, w, rn, wn):
                _compare(branch, w, rn, wn, path, problems, seen)
                return
        problems.append(f"{path}: the reader's union has no branch for the writer's {wt}")
        return
    if rt != wt:
        if wt in _PROMOTIONS and rt in _PROMOTIONS[wt]:
            return
        problems.append(f"{path}: type changed from {wt} to {rt}")
        return
    if rt == "record":
        key = (_full_name(r), _full_name(w))
        if key in seen:
            return
        seen = seen | {key}
        w_fields = {f["name"]: f for f in w["fields"]}
        for alias_src in w["fields"]:
            for alias in alias_src.get("aliases", ()):
                w_fields.setdefault(alias, alias_src)
        for f in r["fields"]:
            wf = w_fields.get(f["name"]) or next((w_fields[a] for a in f.get("aliases", ()) if a in w_fields), None)
            if wf is None:
                if "default" not in f:
                    problems.append(f"{path}.{f['name']}: field without a default that the writer's schema lacks (added without a default, or removed while it had none)")
                continue
            _compare(f["type"], wf["type"], rn, wn, f"{path}.{f['name']}", problems, seen)
    elif rt == "enum":
        missing = [s for s in w["symbols"] if s not in r["symbols"]]
        if missing and "default" not in r:
            problems.append(f"{path}: enum symbols {missing} removed and the reader's enum has no default")
    elif rt == "array":
        _compare(r["items"], w["items"], rn, wn, f"{path}[]", problems, seen)
    elif rt == "map":
        _compare(r["values"], w["values"], rn, wn, f"{path}{{}}", problems, seen)
    elif rt == "fixed":
        if r.get("size") != w.get("size"):
            problems.append(f"{path}: fixed size changed from {w.get('size')} to {r.get('size')}")


def _readable(r, w, rn, wn) -> bool:
    probe: list[str] = []
    _compare(r, w, rn, wn, "", probe, set())
    return not probe


# -- data check ------------------------------------------------------------------------------
def data_problems(reader: dict, writer: dict, samples: int = SAMPLES) -> list[str]:
    """Write generated records with `writer`, read them with `reader` (fastavro's resolution)."""
    w = fastavro.parse_schema(writer, named_schemas={})
    r = fastavro.parse_schema(reader, named_schemas={})
    for record in fastavro.utils.generate_many(w, samples):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, w, record)
        buf.seek(0)
        try:
            fastavro.schemaless_reader(buf, w, r)
        except Exception as exc:  # noqa: BLE001 - any failure to resolve is the finding
            return [f"a generated record did not resolve: {type(exc).__name__}: {_short(exc)}"]
    return []


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


# -- the check ------------------------------------------------------------------------------
def pairs(mode: str, count: int) -> list[tuple[int, int]]:
    """(reader, writer) version indexes (0-based) the mode requires for the newest of `count` versions."""
    if mode == "NONE" or count < 2:
        return []
    new = count - 1
    earlier = range(new) if mode.endswith("_TRANSITIVE") else [new - 1]
    out = []
    for old in earlier:
        if mode.startswith(("BACKWARD", "FULL")):
            out.append((new, old))
        if mode.startswith(("FORWARD", "FULL")):
            out.append((old, new))
    return out


def check_versions(name: str, versions: list[dict], mode: str, samples: int = SAMPLES) -> list[Problem]:
    """Every version against its predecessors as the mode requires (each version once the newest)."""
    problems: list[Problem] = []
    done: set[tuple[int, int]] = set()
    for upto in range(2, len(versions) + 1):
        for reader, writer in pairs(mode, upto):
            if (reader, writer) in done:
                continue
            done.add((reader, writer))
            found = rule_problems(versions[reader], versions[writer]) or data_problems(versions[reader], versions[writer], samples)
            problems += [Problem(name, f"v{reader + 1}", f"v{writer + 1}", m) for m in found]
    return problems


def check_repository(schema_dir: Path = SCHEMA_DIR, samples: int = SAMPLES) -> tuple[list[str], list[Problem]]:
    """Check every schema of the package. Returns (lines describing what was checked, problems).

    Also a problem: a current schema (hub/schemas/*.avsc) that is not the newest version in its
    history folder, so a change cannot skip the check by not being recorded; and a schema id
    problem of schema_ids.json (a version without an id of its own, an id two versions share).
    """
    modes = load_modes(schema_dir)
    history = load_history(schema_dir)
    current = {}
    for path in sorted(schema_dir.glob("*.avsc")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        current[raw["name"]] = (path.name, raw)
    lines: list[str] = []
    problems: list[Problem] = []
    for name, (filename, raw) in current.items():
        versions = history.get(name)
        mode = mode_of(name, modes)
        if not versions:
            problems.append(Problem(name, "-", "-", f"no history: copy {filename} to {HISTORY}/{name}/v1.avsc"))
            continue
        if versions[-1] != raw:
            problems.append(
                Problem(name, f"v{len(versions)}", "-", f"{filename} differs from {HISTORY}/{name}/v{len(versions)}.avsc: add it as {HISTORY}/{name}/v{len(versions) + 1}.avsc (or revert)")
            )
            versions = versions + [raw]
        found = check_versions(name, versions, mode, samples)
        problems += found
        lines.append(f"{name}: {len(versions)} version(s), {mode}: {'ok' if not found else f'{len(found)} problem(s)'}")
    table = read_schema_table(schema_dir)
    id_problems = [m for m in table.problems if m.startswith("schema_ids.json")]
    problems += [Problem("schema_ids.json", "-", "-", m.removeprefix("schema_ids.json: ")) for m in id_problems]
    ids = sorted(table.ids.items(), key=lambda item: item[1])
    lines.append(f"schema ids: {len(ids)} version(s), each with its own id: {'ok' if not id_problems else f'{len(id_problems)} problem(s)'}")
    return lines, problems
