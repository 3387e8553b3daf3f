"""Schema evolution: each schema's versions satisfy its written-down mode; the check catches breaks."""

import copy

from hub.schemas.compatibility import check_repository, check_versions, data_problems, load_history, load_modes, pairs, rule_problems


def test_every_schema_is_compatible_with_its_history():
    lines, problems = check_repository()
    assert problems == []
    assert "PopulationChange: 3 version(s), FULL_TRANSITIVE: ok" in lines


def test_population_change_v1_and_v2_read_each_other():
    v1, v2 = load_history()["PopulationChange"][:2]
    assert {f["name"] for f in v2["fields"]} - {f["name"] for f in v1["fields"]} == {"destination_country", "death_date"}
    assert rule_problems(v2, v1) == [] and data_problems(v2, v1) == []  # old data, new reader
    assert rule_problems(v1, v2) == [] and data_problems(v1, v2) == []  # new data, old reader


def test_population_change_v3_adds_the_arrival_in_finland_and_the_resident_symbol_readable_both_ways():
    _, v2, v3 = load_history()["PopulationChange"]
    assert {f["name"] for f in v3["fields"]} - {f["name"] for f in v2["fields"]} == {"arrived_in_finland"}
    kinds = {f["name"]: f["type"] for f in v3["fields"]}["change_type"]
    assert kinds["symbols"][-1] == "resident" and kinds["default"] == "other"  # an older reader reads a snapshot row as `other`
    assert rule_problems(v3, v2) == [] and data_problems(v3, v2) == []
    assert rule_problems(v2, v3) == [] and data_problems(v2, v3) == []


def _with_field(schema, field):
    out = copy.deepcopy(schema)
    out["fields"].append(field)
    return out


def test_a_field_added_without_a_default_fails_backward():
    (v1,) = load_history()["Referral"]
    v2 = _with_field(v1, {"name": "priority", "type": "int"})
    problems = check_versions("Referral", [v1, v2], "BACKWARD")
    assert [(p.reader, p.writer) for p in problems] == [("v2", "v1")]
    assert "priority" in problems[0].message and "without a default" in problems[0].message
    # the data check alone finds it too
    assert data_problems(v2, v1)
    # with a default it passes, both ways
    assert check_versions("Referral", [v1, _with_field(v1, {"name": "priority", "type": "int", "default": 0})], "FULL_TRANSITIVE") == []


def test_removing_a_required_field_fails_forward_and_type_changes_fail():
    (v1,) = load_history()["Referral"]
    without_rule = dict(v1, fields=[f for f in v1["fields"] if f["name"] != "rule"])
    assert check_versions("Referral", [v1, without_rule], "BACKWARD") == []
    assert [(p.reader, p.writer) for p in check_versions("Referral", [v1, without_rule], "FORWARD")] == [("v1", "v2")]
    retyped = copy.deepcopy(v1)
    next(f for f in retyped["fields"] if f["name"] == "sequence")["type"] = "string"
    assert check_versions("Referral", [v1, retyped], "BACKWARD")
    promoted = copy.deepcopy(v1)
    next(f for f in promoted["fields"] if f["name"] == "sequence")["type"] = "double"  # long -> double is a promotion
    assert check_versions("Referral", [v1, promoted], "BACKWARD") == []
    fewer = copy.deepcopy(v1)
    next(f for f in fewer["fields"] if f["name"] == "purpose")["type"]["symbols"].remove("outreach")
    assert check_versions("Referral", [v1, fewer], "BACKWARD") and check_versions("Referral", [v1, fewer], "FORWARD") == []


def test_modes_and_pairs():
    assert pairs("BACKWARD", 3) == [(2, 1)]
    assert pairs("BACKWARD_TRANSITIVE", 3) == [(2, 0), (2, 1)]
    assert pairs("FORWARD", 2) == [(0, 1)]
    assert pairs("FULL", 2) == [(1, 0), (0, 1)]
    assert pairs("NONE", 5) == [] and pairs("FULL", 1) == []
    modes = load_modes()
    assert modes["default"] == "BACKWARD" and modes["Referral"] == "FULL_TRANSITIVE"


def test_an_unrecorded_schema_change_is_reported(tmp_path):
    import json
    import shutil

    from hub.schemas.codec import SCHEMA_DIR

    shutil.copytree(SCHEMA_DIR, tmp_path / "schemas", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    path = tmp_path / "schemas" / "referral.avsc"
    changed = _with_field(json.loads(path.read_text()), {"name": "priority", "type": "int"})
    path.write_text(json.dumps(changed))
    _, problems = check_repository(tmp_path / "schemas", samples=5)
    messages = [str(p) for p in problems]
    assert any("differs from history/Referral/v1.avsc" in m for m in messages)
    assert any("priority" in m and "without a default" in m for m in messages)


def test_schemas_check_fails_when_two_versions_would_share_an_id(tmp_path, monkeypatch):
    import json
    import shutil

    from click.testing import CliRunner

    from hub.cli import main
    from hub.schemas import compatibility
    from hub.schemas.codec import SCHEMA_DIR

    shutil.copytree(SCHEMA_DIR, tmp_path / "schemas", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    ids_path = tmp_path / "schemas" / "schema_ids.json"
    ids = json.loads(ids_path.read_text())
    ids["PopulationChange/v1"] = ids["PopulationChange/v2"]  # the old mistake: v1 and v2 under one id
    ids_path.write_text(json.dumps(ids))
    _, problems = check_repository(tmp_path / "schemas", samples=2)
    assert any("share id 1" in str(p) for p in problems)
    real = compatibility.check_repository
    monkeypatch.setattr(compatibility, "check_repository", lambda samples: real(tmp_path / "schemas", samples=samples))
    result = CliRunner().invoke(main, ["schemas", "check", "--samples", "2"])
    assert result.exit_code == 1 and "share id 1" in result.output
    del ids["PopulationChange/v1"]  # a version without an id
    ids_path.write_text(json.dumps(ids))
    result = CliRunner().invoke(main, ["schemas", "check", "--samples", "2"])
    assert result.exit_code == 1 and "PopulationChange/v1 has no id" in result.output
