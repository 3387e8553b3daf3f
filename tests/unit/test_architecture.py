"""The import architecture of `hub/`: no import circles, and no import from a lower layer to a higher one.

Every `import` and `from ... import` in hub/ counts, at module level or inside a function (a lazy
import is still a dependency). The layers, bottom to top (a module may import its own layer and
the layers below it; the longest matching prefix places a module):

1. hub.domain                          pure types and decisions: identity codes, time, errors, publishers
2. hub.schemas, hub.logs               the contract (topics, envelope, Avro codec and schemas); logging
3. hub.routing, hub.newcomers,         pure-ish use of the domain: routing rules and engine, newcomer
   hub.consent, hub.webhooks,          detection, consent rules, webhook policy, indicators, the
   hub.reporting, hub.deploy           deployment's topics and ACLs
4. hub.services                        use cases over small ports
5. hub.adapters, hub.config,           side effects: Kafka, the database and its stores (and
   hub.metrics, hub.migrations         hub.reporting.ledger_query), DVV, HTTP;
                                       the settings (read from the environment and files)
6. hub.streams                         the stream processors and the worker's app
7. hub.commands                        the CLI's commands and their shared context
8. hub.cli, hub.demo, hub.simulation   entrypoints

`KNOWN` lists the upward imports that remain in files other work is restructuring; it only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HUB = ROOT / "hub"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("hub.domain",),
    ("hub.schemas", "hub.logs"),
    ("hub.routing", "hub.newcomers", "hub.consent", "hub.webhooks", "hub.reporting", "hub.deploy"),
    ("hub.services",),
    ("hub.adapters", "hub.config", "hub.metrics", "hub.migrations",
     # a SQL store that lives beside its domain today
     "hub.reporting.ledger_query"),
    ("hub.streams",),
    ("hub.commands",),
    ("hub.cli", "hub.demo", "hub.simulation", "hub"),  # `hub` itself: hub/__init__.py
)

# Upward imports in modules that other restructuring work is rewriting: (importer, imported).
# Empty this set as they go; a pair that no longer occurs fails the test, so it cannot go stale.
KNOWN: frozenset[tuple[str, str]] = frozenset()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(HUB.rglob("*.py")) if "migrations/versions" not in p.as_posix()}


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The hub modules that `path` imports, anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` depends on pkg.mod when that is a module, else on pkg itself
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import hub.a.b` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports(path, name, known) for name, path in found.items()}


def layer(name: str) -> int:
    best, level = -1, None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            inside = name == prefix or (name.startswith(prefix + ".") and prefix != "hub")
            if inside and len(prefix) > best:
                best, level = len(prefix), i
    assert level is not None, f"{name} is on no layer: add it to LAYERS"
    return level


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def upward(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(a, b) for a, targets in edges.items() for b in targets if layer(b) > layer(a)}


def test_every_module_is_on_a_layer():
    for name in modules():
        layer(name)


def test_no_import_circles():
    assert circles(graph()) == []


def test_no_import_from_a_lower_layer_to_a_higher_one():
    found = upward(graph())
    assert sorted(found - KNOWN) == [], "upward imports: move the code down, or the dependency behind a port"
    assert sorted(KNOWN - found) == [], "gone from the code: strike these from KNOWN"


def test_the_contract_imports_only_the_domain():
    """hub.schemas is the bottom of the wire contract: topics, envelope, codec, schemas."""
    edges = graph()
    for name, targets in edges.items():
        if name.startswith("hub.schemas"):
            assert all(t.startswith(("hub.schemas", "hub.domain")) for t in targets), (name, targets)


def test_the_finder_sees_lazy_imports(tmp_path):
    """A function-level import counts as much as one at the top of the module."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from hub.schemas.topics import NEWCOMERS\n    import hub.domain.clock\n")
    assert imports(source, "hub.x", {"hub.schemas.topics", "hub.domain.clock", "hub.schemas", "hub.domain"}) == {
        "hub.schemas.topics", "hub.domain.clock"}
