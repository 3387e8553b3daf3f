"""The routing rules: a versioned YAML file (rules as data), loaded and validated here.

The default file ships in the package (`data/rules.yaml`); a deployment may pass its own
(`hub route --rules FILE`; the agents take `register(hub, rules=load_rules(FILE))`). Every
problem in a rules file is a RulesError naming the file, the rule and what to change.
See data/rules.yaml for the condition language.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from hub.routing.model import LABOUR_FORCE_STATUSES, PURPOSES, RESIDENCE_BASES, SERVICE_NEEDS
from hub.routing.reference import KINDS

DEFAULT_RULES = Path(__file__).resolve().parent / "data" / "rules.yaml"
CONFIDENCES = ("high", "medium", "unconfirmed")
FALLBACKS = ("municipality", "none")

# condition keys -> what their value must look like (checked in _check_condition)
LEAVES = {
    "always": "true",
    "age": "range",
    "age_at_arrival": "range",
    "arrived_within": "period",
    "residence_basis": RESIDENCE_BASES,
    "labour_force_status": LABOUR_FORCE_STATUSES,
    "service_needs_any": SERVICE_NEEDS,
    "guardian_in_finland": "tristate",
}
COMBINATORS = ("all", "any", "not")
DUE_KINDS = ("years_after_arrival", "days_after_arrival", "until_age")


class RulesError(ValueError):
    """The rules file is not valid. The message names the file, the rule and the fix."""


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    citation: str
    confidence: str
    recipient: str  # authority kind
    purpose: str
    reason: str
    when: dict
    due: dict | None = None
    address_in_language: bool = False  # add the language to address the person in to the reasons


@dataclass(frozen=True, slots=True)
class Rules:
    version: str
    rules: tuple[Rule, ...]
    fallback: str = "municipality"  # role without an authority (Åland): give it to the municipality, or drop
    fallback_reason: str = ""
    source: str = "<memory>"
    # the day the rules take effect (681/2023: 1.1.2025); an event dated before it gets only the rules
    # named in `before_valid_from` (each decision with `before_valid_from_reason`), None: no limit
    valid_from: dt.date | None = None
    before_valid_from: tuple[str, ...] = ()
    before_valid_from_reason: str = ""

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.rules]


def load_rules(path: str | Path | None = None) -> Rules:
    """Load and validate a rules file (the packaged one by default). Raises RulesError."""
    path = Path(path) if path is not None else DEFAULT_RULES
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"cannot read rules file {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RulesError(f"rules file {path} is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    return parse_rules(data, source=str(path))


@lru_cache(maxsize=1)
def default_rules() -> Rules:
    """The packaged rules, read once per process."""
    return load_rules()


def parse_rules(data: Any, source: str = "<memory>") -> Rules:
    def fail(msg: str):
        raise RulesError(f"rules file {source}: {msg}")

    if not isinstance(data, dict):
        fail("the top level must be a mapping with 'version' and 'rules'")
    top_keys = ("version", "act", "valid_from", "before_valid_from", "description", "unrouted_roles", "rules")
    unknown_top = set(data) - set(top_keys)
    if unknown_top:
        fail(f"unknown top-level key(s) {sorted(unknown_top)}; allowed: {', '.join(top_keys)}")
    version = data.get("version")
    if not isinstance(version, (str, int, float)) or str(version).strip() == "":
        fail("'version' is missing; give the rules file a version such as \"2025.1\"")
    unrouted = data.get("unrouted_roles") or {}
    if not isinstance(unrouted, dict) or unrouted.get("fallback", "municipality") not in FALLBACKS:
        fail(f"'unrouted_roles.fallback' must be one of {', '.join(FALLBACKS)}")
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        fail("'rules' must be a non-empty list of rules")
    rules, seen = [], set()
    for i, raw in enumerate(raw_rules, 1):
        rules.append(_parse_rule(raw, i, fail))
        if rules[-1].id in seen:
            fail(f"rule id {rules[-1].id!r} appears twice; rule ids must be unique")
        seen.add(rules[-1].id)
    valid_from = _valid_from(data.get("valid_from"), fail)
    before = data.get("before_valid_from") or {}
    if not isinstance(before, dict) or set(before) - {"rules", "reason"}:
        fail("'before_valid_from' must be a mapping with 'rules' (rule ids applied to events dated before valid_from) and 'reason'")
    before_ids = before.get("rules") or []
    if not isinstance(before_ids, list) or any(not isinstance(i, str) for i in before_ids):
        fail("'before_valid_from.rules' must be a list of rule ids")
    unknown_ids = [i for i in before_ids if i not in seen]
    if unknown_ids:
        fail(f"'before_valid_from.rules' names no rule {unknown_ids}; use ids from 'rules'")
    if before_ids and valid_from is None:
        fail("'before_valid_from' needs 'valid_from' (the day the rules take effect, YYYY-MM-DD)")
    return Rules(
        version=str(version),
        rules=tuple(rules),
        fallback=unrouted.get("fallback", "municipality"),
        fallback_reason=str(unrouted.get("reason", "")),
        source=source,
        valid_from=valid_from,
        before_valid_from=tuple(before_ids),
        before_valid_from_reason=" ".join(str(before.get("reason") or "").split()),
    )


def _valid_from(value: Any, fail) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value  # YAML reads an unquoted 2025-01-01 as a date
    if isinstance(value, str) and len(value) == 10:
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    fail("'valid_from' must be a date YYYY-MM-DD (the day the rules take effect)")


def _parse_rule(raw: Any, index: int, fail) -> Rule:
    if not isinstance(raw, dict):
        fail(f"rule #{index} must be a mapping")
    rid = raw.get("id")
    if not isinstance(rid, str) or not rid.strip():
        fail(f"rule #{index} has no 'id'")
    where = f"rule {rid!r}"
    allowed = {"id", "citation", "confidence", "recipient", "purpose", "reason", "when", "due", "note", "address_in_language"}
    extra = set(raw) - allowed
    if extra:
        fail(f"{where}: unknown key(s) {sorted(extra)}; allowed: {', '.join(sorted(allowed))}")
    for key in ("citation", "reason"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            fail(f"{where}: '{key}' is required (text)")
    confidence = raw.get("confidence", "high")
    if confidence not in CONFIDENCES:
        fail(f"{where}: 'confidence' must be one of {', '.join(CONFIDENCES)}")
    if raw.get("recipient") not in KINDS:
        fail(f"{where}: 'recipient' must be one of {', '.join(KINDS)}")
    if raw.get("purpose") not in PURPOSES:
        fail(f"{where}: 'purpose' must be one of {', '.join(PURPOSES)}")
    when = raw.get("when", {"always": True})
    _check_condition(when, f"{where}: when", fail)
    due = raw.get("due")
    if due is not None:
        if not isinstance(due, dict) or len(due) != 1 or next(iter(due)) not in DUE_KINDS:
            fail(f"{where}: 'due' must be null or one of {{{', '.join(k + ': N' for k in DUE_KINDS)}}}")
        n = next(iter(due.values()))
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            fail(f"{where}: 'due' needs a whole number >= 0")
    in_language = raw.get("address_in_language", False)
    if not isinstance(in_language, bool):
        fail(f"{where}: 'address_in_language' must be true or false")
    return Rule(rid, raw["citation"].strip(), confidence, raw["recipient"], raw["purpose"], " ".join(raw["reason"].split()), when, due, in_language)


def _check_condition(cond: Any, where: str, fail) -> None:
    if not isinstance(cond, dict) or not cond:
        fail(f"{where} must be a non-empty mapping of conditions")
    for key, value in cond.items():
        here = f"{where}.{key}"
        if key in ("all", "any"):
            if not isinstance(value, list) or not value:
                fail(f"{here} must be a non-empty list of conditions")
            for j, sub in enumerate(value):
                _check_condition(sub, f"{here}[{j}]", fail)
            continue
        if key == "not":
            _check_condition(value, here, fail)
            continue
        kind = LEAVES.get(key)
        if kind is None:
            fail(f"{here}: unknown condition; known: {', '.join([*LEAVES, *COMBINATORS])}")
        if kind == "true":
            if value is not True:
                fail(f"{here} must be true")
        elif kind == "range":
            _check_mapping(value, {"min", "below", "if_unknown"}, here, fail)
            if "min" not in value and "below" not in value:
                fail(f"{here} needs 'min' and/or 'below' (whole years)")
            for bound in ("min", "below"):
                if bound in value and (not isinstance(value[bound], int) or isinstance(value[bound], bool)):
                    fail(f"{here}.{bound} must be a whole number of years")
        elif kind == "period":
            _check_mapping(value, {"years", "days", "if_unknown"}, here, fail)
            if not any(isinstance(value.get(k), int) and not isinstance(value.get(k), bool) for k in ("years", "days")):
                fail(f"{here} needs 'years' and/or 'days' (whole numbers)")
        elif kind == "tristate":
            if isinstance(value, dict):
                _check_mapping(value, {"is", "if_unknown"}, here, fail)
                value = value.get("is")
            if not isinstance(value, bool):
                fail(f"{here} must be true or false (or {{is: false, if_unknown: ...}})")
        else:
            if not isinstance(value, list) or not value or any(v not in kind for v in value):
                fail(f"{here} must be a non-empty list of: {', '.join(kind)}")


def _check_mapping(value: Any, keys: set, here: str, fail) -> None:
    if not isinstance(value, dict):
        fail(f"{here} must be a mapping with keys among {', '.join(sorted(keys))}")
    extra = set(value) - keys
    if extra:
        fail(f"{here}: unknown key(s) {sorted(extra)}; allowed: {', '.join(sorted(keys))}")
    if "if_unknown" in value and not isinstance(value["if_unknown"], bool):
        fail(f"{here}.if_unknown must be true or false")
