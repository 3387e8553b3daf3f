"""Legal bases for disclosure without consent, read from a YAML file named in configuration.

The hub assumes none: the shipped file `legal_bases.yaml` is empty. A deployment that has a
statutory basis for passing assessment data to the plan-making authority names it in its own file
(HUB_CONSENT_LEGAL_BASES): per entry who discloses (`discloser_kinds`: the assessor's kind) to whom
(`recipient_kinds`: the plan maker's kind), the purpose, the data categories and the `section` of
the act that allows it; every disclosure made on it records its `name` in the audit table.
`legal_bases.681-2023.yaml` is a catalogue of candidate entries to copy from, each with its
citation and how sure that citation is; an entry marked `confidence: unconfirmed` is refused in
force until the deployment has checked the section and marks it `confirmed`.

Pure: `parse` reads text; `load` reads the file.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from hub.consent.model import CONSENT_ONLY_CATEGORIES, KINDS, PURPOSES, InvalidConsent, LegalBasis

DEFAULT_FILE = Path(__file__).resolve().parent / "legal_bases.yaml"
CATALOGUE_FILE = Path(__file__).resolve().parent / "legal_bases.681-2023.yaml"
REQUIRED = ("name", "section", "purpose", "discloser_kinds", "recipient_kinds", "data_categories")
OPTIONAL = ("confidence", "note")
CONFIDENCE = ("confirmed", "unconfirmed")
MIGRATION_HELP = "docs/consent.md, 'Legal bases: who discloses to whom'"


class LegalBasisFileError(ValueError):
    """The legal-basis file cannot be used; the message names the file and the entry."""


def load(path: Path | str | None = None, *, allow_unconfirmed: bool = False) -> tuple[LegalBasis, ...]:
    path = Path(path) if path else DEFAULT_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LegalBasisFileError(f"{path}: cannot read the legal-basis file ({type(exc).__name__}); fix HUB_CONSENT_LEGAL_BASES") from None
    return parse(text, str(path), allow_unconfirmed=allow_unconfirmed)


def parse(text: str, where_file: str = "legal bases", *, allow_unconfirmed: bool = False) -> tuple[LegalBasis, ...]:
    """The legal bases of a file's text. An entry in the form before bases named their discloser (no
    `discloser_kinds`) is refused with the fix: read as before, it would still cover every discloser."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise LegalBasisFileError(f"{where_file}: not YAML ({type(exc).__name__}); fix HUB_CONSENT_LEGAL_BASES") from None
    entries = (data.get("legal_bases") or []) if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise LegalBasisFileError(f"{where_file}: expected a mapping with a list 'legal_bases'")
    out: list[LegalBasis] = []
    for i, e in enumerate(entries, 1):
        where = f"{where_file}: legal_bases entry {i}"
        if not isinstance(e, dict):
            raise LegalBasisFileError(f"{where} is not a mapping of {', '.join(REQUIRED)}")
        if "name" in e:
            where = f"{where} ({e['name']})"
        if "recipient_kinds" in e and "discloser_kinds" not in e:
            raise LegalBasisFileError(
                f"{where} is in the old form, keyed by the recipient's kind only, which covered every discloser: add "
                f"`discloser_kinds` (the assessor kinds the section lets disclose, e.g. [municipality]) and `section` (the statute "
                f"and section); keep `name` as it was, so plan requests already decided on it still go ({MIGRATION_HELP})")
        missing = [k for k in REQUIRED if k not in e]
        if missing:
            raise LegalBasisFileError(f"{where} needs {', '.join(missing)} (an entry has {', '.join(REQUIRED)})")
        unknown = sorted(set(e) - set(REQUIRED) - set(OPTIONAL))
        if unknown:
            raise LegalBasisFileError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; an entry has {', '.join(REQUIRED + OPTIONAL)}")
        if e["purpose"] not in PURPOSES:
            raise LegalBasisFileError(f"{where}: purpose must be one of {', '.join(PURPOSES)}")
        lists = {}
        for key in ("discloser_kinds", "recipient_kinds", "data_categories"):
            value = e[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise LegalBasisFileError(f"{where}: {key} must be a list")
            lists[key] = frozenset(value)
        for key in ("discloser_kinds", "recipient_kinds"):
            if not lists[key] or not lists[key] <= set(KINDS):
                raise LegalBasisFileError(f"{where}: {key} must be a non-empty list of {', '.join(KINDS)}")
        if lists["data_categories"] & CONSENT_ONLY_CATEGORIES:
            health = ", ".join(sorted(lists["data_categories"] & CONSENT_ONLY_CATEGORIES))
            raise LegalBasisFileError(f"{where}: {health} may hold health data and passes on the person's consent only; "
                                      f"remove it from data_categories")
        confidence = e.get("confidence", "confirmed")
        if confidence not in CONFIDENCE:
            raise LegalBasisFileError(f"{where}: confidence must be one of {', '.join(CONFIDENCE)}")
        if confidence != "confirmed" and not allow_unconfirmed:
            raise LegalBasisFileError(f"{where}: its section is marked unconfirmed; check {e['section']} against the act in force "
                                      f"(Finlex) and set `confidence: confirmed`, or remove the entry")
        try:
            basis = LegalBasis(name=str(e["name"]), section=str(e["section"] or ""), purpose=e["purpose"],
                               discloser_kinds=lists["discloser_kinds"], recipient_kinds=lists["recipient_kinds"],
                               data_categories=lists["data_categories"])
        except InvalidConsent as exc:
            raise LegalBasisFileError(f"{where}: {exc}") from None
        if any(b.name == basis.name for b in out):
            raise LegalBasisFileError(f"{where}: the name is used by an earlier entry; each basis needs its own name (the audit records it)")
        out.append(basis)
    return tuple(out)
