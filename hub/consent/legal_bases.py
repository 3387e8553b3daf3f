"""Legal bases for disclosure without consent, read from a YAML file named in configuration.

The hub assumes none: the shipped file `legal_bases.yaml` is empty. A deployment that has a
statutory basis for passing assessment data to the plan-making authority names it in its own file
(HUB_CONSENT_LEGAL_BASES), with the statute and section, the purpose, the recipient kinds and the
data categories; every disclosure made on it records that name in the audit table.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from hub.consent.model import PURPOSES, InvalidConsent, LegalBasis, check_categories

DEFAULT_FILE = Path(__file__).resolve().parent / "legal_bases.yaml"
KINDS = ("municipality", "wellbeing_area", "employment_authority")


class LegalBasisFileError(ValueError):
    """The legal-basis file cannot be used; the message names the file and the entry."""


def load(path: Path | str | None = None) -> tuple[LegalBasis, ...]:
    path = Path(path) if path else DEFAULT_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LegalBasisFileError(f"{path}: cannot read the legal-basis file ({type(exc).__name__}); fix HUB_CONSENT_LEGAL_BASES") from None
    entries = (data.get("legal_bases") or []) if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise LegalBasisFileError(f"{path}: expected a mapping with a list 'legal_bases'")
    out = []
    for i, e in enumerate(entries, 1):
        where = f"{path}: legal_bases entry {i}"
        if not isinstance(e, dict) or not all(k in e for k in ("name", "purpose", "recipient_kinds", "data_categories")):
            raise LegalBasisFileError(f"{where} needs name, purpose, recipient_kinds and data_categories")
        if e["purpose"] not in PURPOSES:
            raise LegalBasisFileError(f"{where}: purpose must be one of {', '.join(PURPOSES)}")
        kinds = frozenset(e["recipient_kinds"] or ())
        if not kinds or not kinds <= set(KINDS):
            raise LegalBasisFileError(f"{where}: recipient_kinds must be a non-empty list of {', '.join(KINDS)}")
        try:
            cats = check_categories(e["data_categories"] or ())
        except InvalidConsent as exc:
            raise LegalBasisFileError(f"{where}: {exc}") from None
        out.append(LegalBasis(name=str(e["name"]), purpose=e["purpose"], recipient_kinds=kinds, data_categories=cats))
    return tuple(out)
