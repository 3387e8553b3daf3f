"""Comments and docstrings explain the code as it is: none cites a work session, the benchmark results
file or a design section the repository does not have, and none quotes a benchmark figure (figures
drift; they belong in commit messages and bench/results.md)."""

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CITATIONS = re.compile(r"\bsessions? \d+|RESULTS\.md|\bdesign §", re.IGNORECASE)
# a measured figure: "135 -> 63 ms", "p50 65 ms", "4,100 events/s", "py-spy found ... 6 %"
FIGURES = re.compile(r"\d[\d,.]*\s*(?:ms|µs|s|%)?\s*->\s*~?\d|\bp(?:50|90|95|99)\s*(?:latency\s*)?(?:of\s*)?~?\d"
                     r"|\d[\d,.]*\s*events/s|\bpy-spy\b")


def _python_prose(text: str) -> list[tuple[int, str]]:
    """(line, text) of every comment and every docstring / bare string statement of a Python file."""
    prose = [(tok.start[0], tok.string) for tok in tokenize.generate_tokens(io.StringIO(text).readline)
             if tok.type == tokenize.COMMENT]
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            prose += [(node.lineno + i, line) for i, line in enumerate(node.value.value.splitlines())]
    return prose


def _files():
    for path in sorted((ROOT / "hub").rglob("*")):
        if path.is_file() and path.suffix in (".py", ".md", ".yaml", ".mako", ".avsc", ".json"):
            yield path
    for path in sorted((ROOT / "scripts").iterdir()):
        if path.is_file():
            yield path
    yield from sorted((ROOT / "bench").glob("*.py"))


def _hits() -> list[str]:
    hits = []
    for path in _files():
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT)
        if path.suffix == ".py" or text.startswith("#!/usr/bin/env python"):
            for line, prose in _python_prose(text):
                if CITATIONS.search(prose) or FIGURES.search(prose):
                    hits.append(f"{rel}:{line}: {prose.strip()[:100]}")
        else:
            for line, content in enumerate(text.splitlines(), 1):
                if CITATIONS.search(content):
                    hits.append(f"{rel}:{line}: {content.strip()[:100]}")
    return hits


def test_no_comment_or_docstring_cites_a_session_or_quotes_a_figure():
    hits = _hits()
    assert not hits, ("comments and docstrings must say why, not cite work sessions, the bench results page or "
                      "'design §', nor quote benchmark figures (put those in the commit message):\n" + "\n".join(hits))


def test_the_utc_clock_is_read_in_one_place():
    """`hub.domain.clock.utcnow` is the hub's one UTC clock (tests and callers pass their own `now`
    or clock); no other module reads the wall clock in UTC by itself."""
    pattern = re.compile(r"datetime\.(?:now\((?:dt\.)?(?:datetime\.)?timezone\.utc\)|utcnow\(\))")
    readers = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "hub").rglob("*.py"))
               if path.name != "clock.py" and pattern.search(path.read_text(encoding="utf-8"))]
    assert readers == [], f"read the clock through hub.domain.clock.utcnow: {readers}"
