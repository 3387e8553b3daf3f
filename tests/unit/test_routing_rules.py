"""The rules file: the packaged one is valid and cites 681/2023; bad files give clear errors."""

import copy

import pytest
import yaml

from hub.routing.rules import DEFAULT_RULES, RulesError, default_rules, load_rules, parse_rules

OLD_ACT = ("1386/2010",)


def test_packaged_rules_are_valid_versioned_and_cite_the_act():
    rules = default_rules()
    assert rules.version == "2025.1"
    assert len(rules.ids) == len(set(rules.ids)) >= 8
    for rule in rules.rules:
        assert "681/2023" in rule.citation or "322/2024" in rule.citation, rule.id
        assert not any(old in rule.citation for old in OLD_ACT)
        assert rule.confidence in ("high", "medium", "unconfirmed")
        # repealed sections must not be cited (HaVM 24/2024)
        for repealed in ("§ 15 ", "§ 17 ", "§ 21 ", "§ 48 "):
            assert repealed not in rule.citation + " "


def test_unconfirmed_sections_are_marked_as_such():
    for rule in default_rules().rules:
        if "unconfirmed" in rule.citation and rule.confidence == "high":
            # a high rule may only have an unconfirmed *subsection* (the 3-year window)
            assert "subsection unconfirmed" in rule.citation, rule.id


def _raw():
    return yaml.safe_load(DEFAULT_RULES.read_text(encoding="utf-8"))


def _broken(mutate):
    raw = copy.deepcopy(_raw())
    mutate(raw)
    return raw


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: r.pop("version"), "'version' is missing"),
        (lambda r: r.update(rules=[]), "non-empty list"),
        (lambda r: r["rules"][0].update(recipient="police"), "'recipient' must be one of"),
        (lambda r: r["rules"][0].update(purpose="lunch"), "'purpose' must be one of"),
        (lambda r: r["rules"][0].pop("citation"), "'citation' is required"),
        (lambda r: r["rules"][1].update(id=r["rules"][0]["id"]), "appears twice"),
        (lambda r: r["rules"][1].update(when={"shoe_size": 3}), "unknown condition"),
        (lambda r: r["rules"][1].update(when={"labour_force_status": ["astronaut"]}), "must be a non-empty list of"),
        (lambda r: r["rules"][1].update(when={"age": {"below": "eighteen"}}), "whole number of years"),
        (lambda r: r["rules"][1].update(when={"age": {}}), "needs 'min' and/or 'below'"),
        (lambda r: r["rules"][1].update(when={"guardian_in_finland": "no"}), "true or false"),
        (lambda r: r["rules"][1].update(due={"weeks": 2}), "'due' must be null or one of"),
        (lambda r: r["rules"][1].update(colour="red"), "unknown key"),
        (lambda r: r["rules"][0].update(address_in_language="yes"), "'address_in_language' must be true or false"),
        (lambda r: r.update(unrouted_roles={"fallback": "somewhere"}), "unrouted_roles.fallback"),
    ],
)
def test_bad_rules_are_reported_clearly(mutate, expected):
    with pytest.raises(RulesError) as info:
        parse_rules(_broken(mutate), source="custom.yaml")
    assert expected in str(info.value) and "custom.yaml" in str(info.value)


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules: [\n", encoding="utf-8")
    with pytest.raises(RulesError, match="not valid YAML at line"):
        load_rules(bad)
    with pytest.raises(RulesError, match="cannot read rules file"):
        load_rules(tmp_path / "missing.yaml")
    with pytest.raises(RulesError, match="top level must be a mapping"):
        parse_rules(["a"])


def test_a_deployment_file_is_loaded(tmp_path):
    raw = _raw()
    raw["version"] = "local-7"
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    assert load_rules(path).version == "local-7"
