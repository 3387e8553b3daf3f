"""The pure routing function: `route(newcomer, rules, reference) -> list[Decision]`. No I/O.

Each rule's condition is evaluated in three-valued logic (True, False, None = unknown); a rule
fires only when its condition is True. Every evaluation is written to the decision trace.
"""

from __future__ import annotations

import datetime as dt

from hub.routing.model import SIGN_LANGUAGE, Decision, InputError, RoutingInput
from hub.routing.reference import MUNICIPALITY, Reference, UnknownMunicipality
from hub.routing.rules import Rule, Rules

Outcome = tuple[bool | None, str]  # (True/False/None, why)


def route(newcomer: RoutingInput, rules: Rules, reference: Reference) -> list[Decision]:
    """The referrals a newcomer needs. Raises InputError when the newcomer cannot be routed."""
    if newcomer.municipality_code is None:
        raise InputError("missing_municipality", "municipality_code is missing: a newcomer is routed by the municipality of residence (3 digits)")
    try:
        responsible = reference.authorities(newcomer.municipality_code)
    except UnknownMunicipality as exc:
        raise InputError("unknown_municipality", str(exc)) from None

    trace: list[str] = [f"rules {rules.version}; reference data valid from {reference.valid_from}"]
    early = _before_valid_from(newcomer, rules, trace)
    fired: list[tuple[Rule, str, list[str]]] = []  # (rule, authority, reasons)
    for rule in rules.rules:
        if early and rule.id not in rules.before_valid_from:
            trace.append(f"{rule.id}: not applied (the event is dated before the rules' validity start {rules.valid_from.isoformat()})")
            continue
        value, why = evaluate(rule.when, newcomer)
        if value is not True:
            trace.append(f"{rule.id}: not fired ({why})")
            continue
        holder = responsible[rule.recipient]
        authority, reasons = holder.authority, [rule.reason] + ([] if why == "always" else [f"because {why}"])
        if authority is None:
            if rules.fallback != "municipality":
                trace.append(f"{rule.id}: fired but dropped: no {rule.recipient} ({holder.note})")
                continue
            authority = responsible[MUNICIPALITY].authority
            reasons.append(f"no {rule.recipient}: {holder.note}; {rules.fallback_reason}".rstrip("; "))
        elif rule.recipient != MUNICIPALITY:
            # under turvakielto the reasons must not reveal the home municipality to other recipients
            reasons.append("recipient found from the home municipality (withheld: turvakielto)" if newcomer.turvakielto else holder.note)
        if rule.address_in_language:
            reasons.extend(language_reasons(newcomer))
        if early and rules.before_valid_from_reason:
            reasons.append(rules.before_valid_from_reason)
        trace.append(f"{rule.id}: fired ({why}) -> {authority} for {rule.purpose} [{rule.citation}]")
        fired.append((rule, authority, reasons))

    merged: dict[tuple[str, str], dict] = {}
    for rule, authority, reasons in fired:
        due = due_date(rule, newcomer)
        if due is not None:
            trace.append(f"{rule.id}: due {due.isoformat()} ({_due_basis(rule, newcomer)})")
        slot = merged.setdefault((authority, rule.purpose), {"rule": rule, "reasons": [], "due": None, "rules": []})
        slot["rules"].append(rule.id)
        slot["reasons"].extend(r for r in reasons if r not in slot["reasons"])
        if due is not None and (slot["due"] is None or due < slot["due"]):
            slot["due"] = due
    decisions = []
    for (authority, purpose), slot in merged.items():
        if len(slot["rules"]) > 1:
            slot["reasons"].append(f"also by rule(s) {', '.join(slot['rules'][1:])}")
        decisions.append(
            Decision(
                authority=authority,
                purpose=purpose,
                reasons=tuple(slot["reasons"]),
                rule=slot["rule"].id,
                rules_version=rules.version,
                due=slot["due"],
                citation=slot["rule"].citation,
                trace=tuple(trace),
            )
        )
    return decisions


def language_reasons(n: RoutingInput) -> list[str]:
    """How to address the person: the contact language, else the mother tongue; a sign-language user
    needs an interpreter (DVV 98); an unknown tongue (DVV 99, or none recorded) is asked at first contact."""
    out = []
    if n.contact_language and n.contact_language != SIGN_LANGUAGE:
        out.append(f"address the person in {n.contact_language} (contact language)")
    elif n.mother_tongue and n.mother_tongue != SIGN_LANGUAGE:
        out.append(f"address the person in {n.mother_tongue} (mother tongue{'' if n.contact_language else '; no contact language recorded'})")
    if SIGN_LANGUAGE in (n.mother_tongue, n.contact_language):
        out.append("sign language user (DVV language code 98): a sign language interpreter is needed for contact and services")
    elif not out:
        out.append("mother tongue unknown: ask the person's language at first contact and arrange an interpreter")
    return out


def _before_valid_from(n: RoutingInput, rules: Rules, trace: list[str]) -> bool:
    """Whether the event is dated before the rules take effect (then only `rules.before_valid_from` apply)."""
    if rules.valid_from is None:
        return False
    day = n.reference_date
    if day is None:
        trace.append(f"rules valid from {rules.valid_from.isoformat()}: not checked (no occurred_at)")
        return False
    if day >= rules.valid_from:
        return False
    kept = ", ".join(rules.before_valid_from) or "none"
    trace.append(f"event dated {day.isoformat()}, before the rules' validity start {rules.valid_from.isoformat()}: only rule(s) {kept} apply")
    return True


# -- conditions --------------------------------------------------------------------------------


def evaluate(cond: dict, n: RoutingInput) -> Outcome:
    """All keys of `cond` must hold (three-valued AND)."""
    outcomes = [_leaf(key, value, n) for key, value in cond.items()]
    return _and(outcomes)


def _and(outcomes: list[Outcome]) -> Outcome:
    false = [why for v, why in outcomes if v is False]
    if false:
        return False, "; ".join(false)
    unknown = [why for v, why in outcomes if v is None]
    if unknown:
        return None, "; ".join(unknown)
    return True, "; ".join(why for _, why in outcomes)


def _or(outcomes: list[Outcome]) -> Outcome:
    true = [why for v, why in outcomes if v is True]
    if true:
        return True, "; ".join(true)
    unknown = [why for v, why in outcomes if v is None]
    if unknown:
        return None, "; ".join(unknown)
    return False, " and ".join(why for _, why in outcomes)


def _unknown(spec, why: str) -> Outcome:
    if isinstance(spec, dict) and "if_unknown" in spec:
        value = spec["if_unknown"]
        return value, f"{why}, counted as {'met' if value else 'not met'}"
    return None, why


def _leaf(key: str, spec, n: RoutingInput) -> Outcome:
    if key == "all":
        return _and([evaluate(c, n) for c in spec])
    if key == "any":
        return _or([evaluate(c, n) for c in spec])
    if key == "not":
        value, why = evaluate(spec, n)
        return (None if value is None else not value), f"not ({why})"
    if key == "always":
        return True, "always"
    if key in ("age", "age_at_arrival"):
        on = n.reference_date if key == "age" else n.arrival_date
        if n.birth_date is None or on is None:
            missing = "birth date" if n.birth_date is None else ("occurred_at" if key == "age" else "arrival date")
            return _unknown(spec, f"{key.replace('_', ' ')} unknown (no {missing})")
        years = age_on(n.birth_date, on)
        ok = ("min" not in spec or years >= spec["min"]) and ("below" not in spec or years < spec["below"])
        return ok, f"{key.replace('_', ' ')} {years} {'within' if ok else 'outside'} {_range(spec)}"
    if key == "arrived_within":
        # the integration period starts at the first residence permit or registration when known
        day, start = n.reference_date, n.period_start
        if start is None or day is None:
            return _unknown(spec, f"arrival unknown ({'no first-permit or arrival date' if start is None else 'no occurred_at'})")
        limit = add_period(start, spec.get("years", 0), spec.get("days", 0))
        ok = day <= limit
        since = "integration period from" if n.integration_start is not None else "arrived"
        return ok, f"{since} {start.isoformat()}, {'within' if ok else 'past'} the limit {limit.isoformat()}"
    if key in ("residence_basis", "labour_force_status"):
        value = getattr(n, key)
        ok = value in spec
        return ok, f"{key} is {value}{'' if ok else ', not ' + '/'.join(spec)}"
    if key == "service_needs_any":
        hit = [s for s in n.service_needs if s in spec]
        return (True, f"service needs {', '.join(hit)}") if hit else (False, f"no service need among {'/'.join(spec)}")
    if key == "guardian_in_finland":
        want = spec["is"] if isinstance(spec, dict) else spec
        if n.guardian_in_finland is None:
            return _unknown(spec, "guardian in Finland unknown")
        ok = n.guardian_in_finland is want
        return ok, f"guardian in Finland: {'yes' if n.guardian_in_finland else 'no'}"
    raise ValueError(f"unknown condition {key!r}")  # the rules loader rejects these first


def _range(spec: dict) -> str:
    if "min" in spec and "below" in spec:
        return f"[{spec['min']}, {spec['below']})"
    return f">= {spec['min']}" if "min" in spec else f"< {spec['below']}"


# -- dates ---------------------------------------------------------------------------------


def age_on(birth: dt.date, day: dt.date) -> int:
    """Whole years of age on `day` (a person born on 29 February turns a year older on 1 March)."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def add_period(start: dt.date, years: int = 0, days: int = 0) -> dt.date:
    """`start` plus whole years (29 February -> 28 February) plus days."""
    try:
        moved = start.replace(year=start.year + years)
    except ValueError:
        moved = start.replace(year=start.year + years, day=28)
    return moved + dt.timedelta(days=days)


def due_date(rule: Rule, n: RoutingInput) -> dt.date | None:
    """The decision's due date: `until_age` from the birth date; the others from the start of the
    integration period (`RoutingInput.period_start`: the first permit or registration, else the arrival)."""
    if not rule.due:
        return None
    kind, amount = next(iter(rule.due.items()))
    if kind == "until_age":
        return None if n.birth_date is None else add_period(n.birth_date, amount)
    start = n.period_start
    if start is None:
        return None
    return add_period(start, years=amount) if kind == "years_after_arrival" else add_period(start, days=amount)


def _due_basis(rule: Rule, n: RoutingInput) -> str:
    kind, amount = next(iter(rule.due.items()))
    if kind == "until_age":
        return f"the day the person turns {amount}"
    unit = "years" if kind == "years_after_arrival" else "days"
    return f"{amount} {unit} from {n.period_start.isoformat()}, {n.period_start_source}"
