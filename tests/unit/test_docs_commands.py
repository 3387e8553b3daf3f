"""Every `hub ...` command line the docs show parses against the real command tree (hub.cli `main`).

Checked: inline code spans starting with `hub ` (also `.venv/bin/hub`, or after VAR=value
assignments) and `hub` lines of fenced code blocks, in README.md, docs/*.md and deploy/**/*.md, and
the backticked commands of the alert texts (`summary`, `description`) of
deploy/prometheus/alerts.yml. For each: the subcommand path exists; every option named belongs to
that command; a value given to a choice, number or date option converts (placeholders excepted);
no more positional arguments than the command takes. A span that names a command without its
arguments (`hub consent revoke`) is a mention and passes; so do placeholders: upper-case words
(ID, HETU, N, FILE, ROW_ID, YYYY-MM-DD), `...`, `{{ $labels.x }}`, and `[optional]`, `(a | b)`, `a|b`, `a/b`
alternatives of subcommands and choice values.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
import yaml

from hub.cli import main

ROOT = Path(__file__).resolve().parents[2]
MARKDOWN = sorted({ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "deploy").glob("**/*.md")})
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
# The identity code's option: how it is passed is being changed; a doc line naming it is not failed for it.
TOLERATED_OPTIONS = {"--person"}
CONVERTIBLE = (click.Choice, click.types.IntParamType, click.types.FloatParamType, click.DateTime)

_COMMAND = re.compile(r"^(?:[A-Z][A-Z0-9_]*=\S*\s+)*(?:\S*/)?hub(?:\s+(?P<args>.*))?$", re.S)
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_TEMPLATE = re.compile(r"\{\{.*?\}\}")


def code_spans(text: str) -> list[tuple[int, str]]:
    """(line, content) of each inline code span outside fenced blocks (CommonMark's pairing of
    equal backtick runs; a span may run over lines), and of each line inside a fenced block."""
    spans: list[tuple[int, str]] = []
    prose: list[str] = []
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        opening = _FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
            prose.append("")
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            else:
                spans.append((number, line.split(" #")[0].strip().removeprefix("$ ")))
            prose.append("")
        else:
            prose.append(line)
    joined = "\n".join(prose)
    pos = 0
    for run in re.finditer(r"`+", joined):
        if run.start() < pos:
            continue
        closing = re.compile(r"(?<!`)" + run.group(0) + r"(?!`)").search(joined, run.end())
        if closing is None:
            pos = run.end()
            continue
        spans.append((joined.count("\n", 0, run.start()) + 1, joined[run.end():closing.start()]))
        pos = closing.end()
    return sorted(spans)


def commands_in(text: str) -> list[tuple[int, str]]:
    found = []
    for line, span in code_spans(text):
        flat = " ".join(span.split())
        if _COMMAND.match(flat):
            found.append((line, flat))
    return found


def _tokens(command: str) -> list[str]:
    args = _COMMAND.match(command).group("args") or ""
    args = _TEMPLATE.sub("LABEL", args).replace("\\|", "|")
    tokens = []
    for token in args.split():
        token = token.strip("[]()")
        if token and token != "|":
            tokens.append(token)
    return tokens


def _placeholder(token: str) -> bool:
    word = token.removesuffix("...")
    return word == "" or re.fullmatch(r"[A-Z][A-Z0-9_-]*", word) is not None


def _alternatives(token: str) -> list[str]:
    return [t for t in re.split(r"[|/]", token) if t]


def problems_of(command: str) -> list[str]:
    """What in `command` does not match the command tree; [] when it parses."""
    return _check(main, ["hub"], _tokens(command))


def _check(cmd: click.Command, path: list[str], tokens: list[str]) -> list[str]:
    where = " ".join(path)
    if isinstance(cmd, click.Group) and tokens and not tokens[0].startswith("-"):
        first, rest = tokens[0], tokens[1:]
        if _placeholder(first):
            return []
        problems = []
        for name in _alternatives(first):
            sub = cmd.commands.get(name)
            if sub is None:
                problems.append(f"{where} has no subcommand {name!r} (it has: {', '.join(sorted(cmd.commands))})")
            else:
                problems += _check(sub, [*path, name], rest)
        return problems
    params = {opt: p for p in cmd.params if isinstance(p, click.Option) for opt in (*p.opts, *p.secondary_opts)}
    for opt in ("--help", "-h"):
        params.setdefault(opt, None)
    arguments = [p for p in cmd.params if isinstance(p, click.Argument)]
    most = None if any(a.nargs == -1 for a in arguments) else sum(a.nargs for a in arguments)
    problems, positional, i = [], 0, 0
    ctx = click.Context(cmd, info_name=path[-1])
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token == "...":
            break  # the rest elided
        if token.startswith("-") and len(token) > 1:
            name, _, inline = token.partition("=")
            if name not in params:
                if name in TOLERATED_OPTIONS:
                    if i < len(tokens) and _placeholder(tokens[i]):
                        i += 1
                    continue
                known = sorted(o for o in params if o.startswith("--"))
                problems.append(f"{where}: no option {name} (it has: {', '.join(known)})")
                continue
            param = params[name]
            if param is None or param.is_flag or param.count:
                continue
            values = [inline] if inline else tokens[i:i + param.nargs]
            i += 0 if inline else len(values)
            for value in values:
                if _placeholder(value) or not isinstance(param.type, CONVERTIBLE):
                    continue
                for alternative in _alternatives(value) if isinstance(param.type, click.Choice) else [value]:
                    try:
                        param.type.convert(alternative, param, ctx)
                    except click.BadParameter as exc:
                        problems.append(f"{where} {name} {alternative}: {exc.message}")
            continue
        positional += 1
        if most is not None and positional > most:
            takes = ", ".join(a.human_readable_name for a in arguments) or "no arguments"
            problems.append(f"{where}: {token!r} is one positional argument too many (it takes {takes})")
    return problems


def _report(source: str, commands: list[tuple[int, str]]) -> list[str]:
    return [f"{source}:{line}: `{command}`: {p}" for line, command in commands for p in problems_of(command)]


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_hub_command_in_the_docs_parses(path):
    commands = commands_in(path.read_text(encoding="utf-8"))
    assert _report(str(path.relative_to(ROOT)), commands) == []


def _alert_commands() -> list[tuple[int, str]]:
    found = []
    for group in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            for key in ("summary", "description"):
                text = rule.get("annotations", {}).get(key, "")
                found += [(rule.get("alert"), command) for _, command in commands_in(text)]
    return found


def test_every_hub_command_in_the_alert_texts_parses():
    assert _report(str(ALERTS.relative_to(ROOT)), _alert_commands()) == []


def test_the_docs_show_many_commands_and_every_top_level_one():
    """A regex gone wrong would pass the checks above vacuously."""
    commands = [c for path in MARKDOWN for _, c in commands_in(path.read_text(encoding="utf-8"))]
    assert len(commands) > 100
    named = {_tokens(c)[0] for c in commands if _tokens(c)}
    assert set(main.commands) - named == set()
    assert len(_alert_commands()) >= 2


@pytest.mark.parametrize("command", [
    "hub webhooks deliverx",
    "hub consent audit --json",
    "hub webhooks redeliver SUBSCRIPTION_ID",
    "hub webhooks disable 3 4",
    "hub topics --format yaml",
    "hub resend --stream referrals|letters --from N",
    "hub gaps --recipient wellbeing_area:04 --from three",
    "hub db upgrade/sideways",
    "hub ingest dvv --since yesterday",
    "hub referrals --authority {{ $labels.authority }} --overdu",
])
def test_the_check_finds(command):
    assert problems_of(command) != []


@pytest.mark.parametrize("command", [
    "hub --help",
    "hub consent ...",
    "hub consent revoke",
    "hub webhooks add\\|list\\|disable\\|redeliver\\|serve",
    "hub db upgrade/current/history/downgrade",
    "hub replay --topic T (--from-offset N \\| --from-time T) [--to-offset M \\| --to-time T] [--partition P]",
    "hub ingest dvv --poll [--since DAY] [--max-pages N]] [FILE...]",
    "hub gaps --recipient ... --stream plan-requests --from 3",
    "hub outbox retry ROW_ID",
    "hub ingest dvv --poll --since YYYY-MM-DD",
    "hub referrals --authority {{ $labels.authority }} --overdue",
    "HUB_DATABASE_URL=sqlite:///.hub-data/demo.sqlite3 hub report ...",
    "hub consent show --person HETU --json",
])
def test_the_check_passes(command):
    assert problems_of(command) == []


def test_spans_pair_like_markdown():
    text = "run `hub db current`, not ``a `hub x` b``;\n```sh\n$ hub demo --quiet   # comment\n```\n`hub\ntopics`"
    assert commands_in(text) == [(1, "hub db current"), (3, "hub demo --quiet"), (5, "hub topics")]


def _schema_id_table() -> tuple[dict[str, int], dict[str, int]]:
    """docs/integrating.md's schema-id table: {"<Name>/v<N>": id} and {Name: the version it says the hub writes}."""
    text = (ROOT / "docs" / "integrating.md").read_text(encoding="utf-8")
    header = "| schema | version: id |\n|---|---|\n"
    assert text.count(header) == 1, "docs/integrating.md: the schema-id table's header moved"
    start = text.index(header) + len(header)
    ids, writes = {}, {}
    for row in text[start:text.index("\n\n", start)].splitlines():
        name, cell = (c.strip() for c in row.strip("|").split("|"))
        for version, schema_id in re.findall(r"v(\d+): (\d+)", cell):
            assert f"{name}/v{version}" not in ids, row
            ids[f"{name}/v{version}"] = int(schema_id)
        written = re.search(r"\(the hub writes v(\d+)\)", cell)
        writes[name] = int(written.group(1)) if written else None
    return ids, writes


def test_the_schema_id_table_in_integrating_md_is_schema_ids_json():
    from hub.schemas.codec import Codec

    ids, writes = _schema_id_table()
    expected = json.loads((ROOT / "hub" / "schemas" / "schema_ids.json").read_text(encoding="utf-8"))
    expected.pop("_comment")
    assert ids == expected
    codec = Codec()
    for name, version in writes.items():
        newest = codec.versions(name)[-1]
        assert newest.schema_id == codec.schema_id(name)
        # "(the hub writes vN)" where a schema has several versions, and then it is the one written
        assert version == (newest.number if len(codec.versions(name)) > 1 else None), name
