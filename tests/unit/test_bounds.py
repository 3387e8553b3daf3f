"""The declared bounds of the hub's inputs (hub/schemas/bounds.py): a value at its bound passes, one
over it is refused with `out_of_bounds` and a message naming the field and the bound; the codec's
decode path (which every consumer of an input topic goes through) and the JSON form apply them."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from hub.schemas import bounds
from hub.schemas.bounds import Code, IdentityCode, Items, OutOfBounds, Text
from hub.schemas.codec import CodecError, default_codec

codec = default_codec()
NOW = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.timezone.utc)
INPUTS = ("PopulationChange", "Newcomer", "AssessmentCompleted", "Consent", "ReferralStatus", "JobseekerStatus", "ResidencePermit", "ServiceNeeds")
PERSON = "010190-900P"


def _envelope() -> dict:
    return {"event_id": uuid.uuid4(), "occurred_at": NOW, "recorded_at": NOW, "source": "municipality:091", "schema_version": 1}


def good(name: str) -> dict:
    """A valid record of each input schema, every optional field filled."""
    rec = _envelope()
    if name == "PopulationChange":
        rec.update(person_id=PERSON, change_type="immigration", municipality_code="091", previous_municipality_code=None, previous_country="EE",
                   nationalities=["EE"], mother_tongue="et", birth_date=dt.date(1990, 1, 1), move_date=dt.date(2026, 11, 1), contact_language="fi",
                   dvv_batch_ref="5446623512", previous_person_id=None, guardian_in_finland=None, turvakielto=False, data_group="KOTIKUNTA",
                   destination_country=None, death_date=None)
    elif name == "Newcomer":
        rec.update(person_key="ab" * 16, person_id=PERSON, change="arrived", municipality_code="091", previous_municipality_code=None,
                   birth_date=dt.date(1990, 1, 1), arrival_date=dt.date(2026, 11, 1), residence_basis="work", labour_force_status="employed",
                   guardian_in_finland=None, service_needs=["health"], mother_tongue="et", contact_language="fi", nationalities=["EE"],
                   turvakielto=False, detected_from=str(uuid.uuid4()))
    elif name == "AssessmentCompleted":
        rec.update(assessment_id="A-1", person_key="ab" * 16, person_id=PERSON, assessor="municipality:091", plan_authority="municipality:091",
                   referral_id="r-1", education="secondary\nvocational", work_history="nurse", language_skills=[{"language": "fi", "skill": "overall", "cefr_level": "A2"}],
                   literacy="literate", recommended_path="work", service_needs=["health"])
    elif name == "Consent":
        rec.update(consent_id="C-1", person_id=PERSON, action="granted", purpose="integration_plan", data_categories=["education"],
                   recipients=["municipality:091"], valid_from=None, valid_until=None, evidence="signed form", recorded_by="municipality:091")
    elif name == "JobseekerStatus":
        rec.update(person_id=PERSON, status="registered", status_date=dt.date(2026, 11, 2), employment_area="08")
    elif name == "ResidencePermit":
        rec.update(person_id=PERSON, basis="family", first_permit_date=dt.date(2025, 6, 1))
    elif name == "ServiceNeeds":
        rec.update(person_id=PERSON, needs=["health", "literacy"], identified_by="municipality:091", identified_on=dt.date(2026, 11, 10))
    else:
        rec.update(referral_id="r-1", authority="municipality:091", status="declined", reason="moved abroad")
    return rec


def _decode_error(name: str, rec: dict) -> CodecError:
    with pytest.raises(CodecError) as err:
        codec.decode(codec.encode(name, rec), name)
    return err.value


# -- the kinds of bound -------------------------------------------------------------------------------
def test_a_code_at_its_bound_passes_one_over_is_refused_with_the_bound_in_the_message():
    Code(3).check("091", "X.municipality_code")
    with pytest.raises(OutOfBounds) as err:
        Code(3).check("0911", "X.municipality_code")
    assert err.value.reason == "out_of_bounds" and err.value.field == "X.municipality_code"
    assert "X.municipality_code has 4 characters; at most 3" in err.value.message


@pytest.mark.parametrize("char", ["\x00", "\n", "\t", "\x1b", "\x85", "\u200b", "\u2028", "\ud800"])
def test_a_code_takes_printable_characters_only(char):
    Code(20).check("consent 1/2026-ä", "c")  # spaces and letters are fine
    with pytest.raises(OutOfBounds) as err:
        Code(20).check(f"C-1{char}", "Consent.consent_id")
    assert f"U+{ord(char):04X}" in err.value.message and "Consent.consent_id" in err.value.message


def test_free_text_takes_line_breaks_but_no_nul():
    Text(30).check("line one\nline two\ttabbed", "t")
    with pytest.raises(OutOfBounds, match="U\\+0000"):
        Text(30).check("a\x00b", "t")
    with pytest.raises(OutOfBounds, match="at most 30"):
        Text(30).check("x" * 31, "t")


def test_an_identity_code_is_bounded_by_length_only_its_shape_is_hetu_validations():
    IdentityCode(11).check(PERSON, "p")
    IdentityCode(12).check(PERSON + "\n", "p")  # a control character is for hetu.validate to refuse (invalid_person_id)
    with pytest.raises(OutOfBounds) as err:
        IdentityCode(11).check(PERSON + "0", "Consent.person_id")
    assert PERSON not in err.value.message


def test_a_list_at_its_bound_passes_one_more_item_is_refused():
    Items(20, Code(8)).check(["FI"] * 20, "n")
    with pytest.raises(OutOfBounds, match="n has 21 items; at most 20"):
        Items(20, Code(8)).check(["FI"] * 21, "n")
    with pytest.raises(OutOfBounds, match=r"n\[1\] has 9 characters"):
        Items(20, Code(8)).check(["FI", "x" * 9], "n")
    with pytest.raises(OutOfBounds, match=r"s\[0\]\.language has 9 characters"):
        Items(2, {"language": Code(8)}).check([{"language": "x" * 9}], "s")


def test_wrong_types_are_left_to_the_schema_and_the_validators():
    for bound in (Code(1), Text(1), IdentityCode(1), Items(1, Code(1))):
        bound.check(12345, "f")
        bound.check({"a": 1}, "f")


# -- the table ------------------------------------------------------------------------------------------
def _string_and_array_fields(schema, prefix=""):
    """The fields of an Avro schema that hold text or lists (enums and logical types bound themselves)."""
    out = []
    for f in schema["fields"]:
        types = f["type"] if isinstance(f["type"], list) else [f["type"]]
        for t in types:
            if t == "string" or (isinstance(t, dict) and t.get("type") in ("string", "array") and "logicalType" not in t):
                out.append(prefix + f["name"])
                if isinstance(t, dict) and t["type"] == "array" and isinstance(t["items"], dict) and t["items"].get("type") == "record":
                    out += _string_and_array_fields(t["items"], prefix + f["name"] + "[].")
    return out


@pytest.mark.parametrize("name", INPUTS)
def test_every_text_and_list_field_of_every_input_schema_has_a_declared_bound(name):
    spec = bounds.SCHEMAS[name]
    declared = []
    for field, bound in spec.fields.items():
        declared.append(field)
        if isinstance(bound, Items) and isinstance(bound.item, dict):
            declared += [f"{field}[].{sub}" for sub in bound.item]
    missing = set(_string_and_array_fields(codec.raw_schema(name))) - set(declared)
    assert not missing, f"{name}: no bound declared for {sorted(missing)}"


def _column(model, name: str) -> int:
    return model.__table__.c[name].type.length


def test_bounds_fit_the_database_columns_the_values_end_in():
    from hub.adapters.idempotency import ProcessedEvent
    from hub.adapters.newcomer_facts import NewcomerFactRow
    from hub.adapters.person_states import PersonStateRow
    from hub.adapters.referral_ledger import ReferralEventRow, ReferralRow
    from hub.adapters import consent_store as store

    b = {name: spec.fields for name, spec in bounds.SCHEMAS.items()}
    n = b["Newcomer"]
    assert n["person_key"].max_chars <= min(_column(NewcomerFactRow, "person_key"), _column(ReferralRow, "person_key"), _column(PersonStateRow, "person_key"))
    assert n["municipality_code"].max_chars <= _column(NewcomerFactRow, "municipality")
    assert max(n["mother_tongue"].max_chars, n["contact_language"].max_chars) <= _column(NewcomerFactRow, "mother_tongue")
    nat = n["nationalities"]
    assert nat.max_items * (nat.item.max_chars + 1) - 1 <= _column(NewcomerFactRow, "nationalities"), "comma-separated in one column"
    assert n["event_id"].max_chars <= _column(NewcomerFactRow, "newcomer_event_id")
    assert b["PopulationChange"]["nationalities"] == nat and b["PopulationChange"]["municipality_code"] == n["municipality_code"]
    s = b["ReferralStatus"]
    assert s["referral_id"].max_chars <= _column(ReferralRow, "referral_id")
    assert s["authority"].max_chars <= _column(ReferralEventRow, "reported_by")
    assert s["event_id"].max_chars <= _column(ReferralEventRow, "event_id")
    c = b["Consent"]
    consent_events = store.Base.metadata.tables["consent_events"].c
    for field, column in (("consent_id", "consent_id"), ("purpose", "purpose"), ("recorded_by", "recorded_by"), ("event_id", "event_id")):
        assert c[field].max_chars <= consent_events[column].type.length, field
    a = b["AssessmentCompleted"]
    disclosures = store.Base.metadata.tables["disclosures"].c
    for field, column in (("assessment_id", "assessment_id"), ("person_key", "person_key"), ("assessor", "assessor"), ("plan_authority", "recipient")):
        assert a[field].max_chars <= disclosures[column].type.length, field
    assert a["referral_id"].max_chars <= _column(ReferralRow, "referral_id")
    assert a["event_id"].max_chars <= store.Base.metadata.tables["held_items"].c["assessment_event_id"].type.length
    assert all(spec.fields["event_id"].max_chars <= _column(ProcessedEvent, "event_id") for spec in bounds.SCHEMAS.values())


def _at_bounds(name: str) -> dict:
    """A record of `name` with every bounded field at its bound, text in 4-byte characters."""
    rec = good(name)

    def fill(bound):
        if isinstance(bound, Items):
            return [fill_record(bound.item) if isinstance(bound.item, dict) else fill(bound.item) for _ in range(bound.max_items)]
        return "\U0001F600" * bound.max_chars

    def fill_record(fields):
        return {k: fill(v) for k, v in fields.items()}

    for field, bound in bounds.SCHEMAS[name].fields.items():
        if field != "event_id":  # an Avro uuid on the wire
            rec[field] = fill(bound)
    if name == "ServiceNeeds":  # a list of enum symbols: the longest symbol, as many times as the bound allows
        rec["needs"] = ["mental_health"] * bounds.SCHEMAS[name].fields["needs"].max_items
    return rec


@pytest.mark.parametrize("name", INPUTS)
def test_a_record_with_every_field_at_its_bound_fits_the_record_bound_and_decodes(name):
    wire = codec.encode(name, _at_bounds(name))
    assert len(wire) <= bounds.SCHEMAS[name].max_bytes
    assert codec.decode(wire, name).record["source"] == "\U0001F600" * bounds.SOURCE.max_chars


# -- the codec: every consumer of an input topic decodes here --------------------------------------------
@pytest.mark.parametrize("name", INPUTS)
def test_a_good_record_of_every_input_schema_decodes(name):
    assert codec.decode(codec.encode(name, good(name)), name).name == name


@pytest.mark.parametrize(
    "name, change, field",
    [
        ("Newcomer", {"nationalities": ["FI"] * 70}, "Newcomer.nationalities"),
        ("Newcomer", {"person_key": "k" * 129}, "Newcomer.person_key"),
        ("Newcomer", {"person_key": "ab\x00cd"}, "Newcomer.person_key"),
        ("Newcomer", {"municipality_code": "0911"}, "Newcomer.municipality_code"),
        ("Newcomer", {"service_needs": ["health"] * 17}, "Newcomer.service_needs"),
        ("PopulationChange", {"nationalities": ["FI"] * 21}, "PopulationChange.nationalities"),
        ("PopulationChange", {"data_group": "KOTI\x00KUNTA"}, "PopulationChange.data_group"),
        ("PopulationChange", {"person_id": "1" * 33}, "PopulationChange.person_id"),
        ("ReferralStatus", {"referral_id": "r-\x00"}, "ReferralStatus.referral_id"),
        ("ReferralStatus", {"reason": "x" * 1001}, "ReferralStatus.reason"),
        ("Consent", {"consent_id": "C" * 129}, "Consent.consent_id"),
        ("Consent", {"recipients": ["municipality:091"] * 33}, "Consent.recipients"),
        ("Consent", {"evidence": "form\x00"}, "Consent.evidence"),
        ("AssessmentCompleted", {"person_key": "k" * 65}, "AssessmentCompleted.person_key"),
        ("AssessmentCompleted", {"education": "x" * 8001}, "AssessmentCompleted.education"),
        ("AssessmentCompleted", {"language_skills": [{"language": "fi\x00", "skill": "overall", "cefr_level": "A1"}]}, "AssessmentCompleted.language_skills[0].language"),
        ("JobseekerStatus", {"employment_area": "123456789"}, "JobseekerStatus.employment_area"),
        ("JobseekerStatus", {"employment_area": "0\n8"}, "JobseekerStatus.employment_area"),
        ("ResidencePermit", {"person_id": "1" * 33}, "ResidencePermit.person_id"),
        ("ResidencePermit", {"source": "m" * 129}, "ResidencePermit.source"),
        ("ServiceNeeds", {"needs": ["health"] * 17}, "ServiceNeeds.needs"),
        ("ServiceNeeds", {"identified_by": "municipality:" + "0" * 60}, "ServiceNeeds.identified_by"),
    ],
)
def test_a_record_over_a_bound_does_not_decode_and_says_which_field_and_bound(name, change, field):
    err = _decode_error(name, {**good(name), **change})
    assert err.reason == "out_of_bounds" and err.message.startswith(field), err.message
    assert "at most" in err.message or "U+" in err.message
    assert PERSON not in err.message


def test_a_record_over_the_size_bound_of_its_topic_does_not_decode():
    rec = {**good("AssessmentCompleted"), "service_needs": ["x" * 200] * 32, "education": "x" * 8000, "work_history": "y" * 8000}
    assert len(codec.encode("AssessmentCompleted", rec)) <= bounds.SCHEMAS["AssessmentCompleted"].max_bytes
    wire = codec.encode("ReferralStatus", {**good("ReferralStatus"), "reason": "x" * 900})
    big = codec.encode("ReferralStatus", {**good("ReferralStatus"), "reason": "\U0001F600" * 1000, "source": "s" * 128})
    assert len(big) <= bounds.SCHEMAS["ReferralStatus"].max_bytes  # the size bound refuses no record whose fields are in bounds
    huge = codec.encode("ReferralStatus", {**good("ReferralStatus"), "reason": "x" * 10_000})
    with pytest.raises(CodecError) as err:
        codec.decode(huge, "ReferralStatus")
    assert err.value.reason == "out_of_bounds" and f"{len(huge)} bytes" in err.value.message and "8192-byte bound" in err.value.message
    assert codec.decode(wire).name == "ReferralStatus"


def test_decode_without_bounds_reads_what_the_hub_wrote_itself():
    wire = codec.encode("Newcomer", {**good("Newcomer"), "nationalities": ["FI"] * 70})
    assert len(codec.decode(wire, check_bounds=False).record["nationalities"]) == 70


def test_schemas_the_hub_only_writes_have_no_input_bounds():
    letter = codec.decode(codec.encode("DeadLetter", {**_envelope(), "original_value": b"x" * 100_000, "reason": "r" * 500, "message": "m"})).record
    assert letter["reason"] == "r" * 500


def test_the_json_form_is_bounded_too():
    obj = codec.to_jsonable("Consent", {**good("Consent"), "recipients": ["municipality:091"] * 33})
    with pytest.raises(CodecError) as err:
        codec.from_jsonable("Consent", obj)
    assert err.value.reason == "out_of_bounds" and "Consent.recipients has 33 items" in err.value.message


# -- JSON nesting and size -------------------------------------------------------------------------------
def test_json_at_the_depth_bound_parses_one_level_deeper_is_refused_not_a_recursion_error():
    at = "[" * bounds.MAX_JSON_DEPTH + "]" * bounds.MAX_JSON_DEPTH
    assert bounds.loads(at, "the line") is not None
    for deeper in ("[" * 33 + "]" * 33, "[" * 1000 + "]" * 1000, '{"a":' * 1000 + "1" + "}" * 1000, "[" * 100_000):
        with pytest.raises(OutOfBounds) as err:
            bounds.loads(deeper, "the line")
        assert "the line nests JSON" in err.value.message and "at most 32" in err.value.message


def test_brackets_inside_strings_do_not_count_as_nesting():
    text = json.dumps({"a": "[" * 5000, "b": '\\"[[[' * 100, "c": [[["x"]]]})
    assert bounds.loads(text, "the line")["c"] == [[["x"]]]


def test_the_depth_scan_is_linear_on_adversarial_quotes():
    import time

    text = '["' + '\\"' * 500_000 + "[" * 40  # an unterminated string full of escaped quotes
    start = time.perf_counter()
    with pytest.raises(ValueError):
        bounds.loads(text, "the line")
    assert time.perf_counter() - start < 2


def test_a_json_text_over_its_size_bound_is_refused_before_parsing():
    with pytest.raises(OutOfBounds, match="the line of 101 bytes is over the bound of 100 bytes"):
        bounds.loads("1" * 101, "the line", max_bytes=100)
    with pytest.raises(OutOfBounds, match="over the bound of 100 bytes"):
        bounds.loads(b"1" * 101, "the line", max_bytes=100)
    assert bounds.loads("1" * 100, "the line", max_bytes=100) == int("1" * 100)
    with pytest.raises(OutOfBounds, match="the line of 103 bytes"):
        bounds.loads('"' + "\U0001F600" * 25 + '"' + " ", "the line", max_bytes=100)


def test_codec_from_json_refuses_deep_json_with_a_codec_error():
    with pytest.raises(CodecError) as err:
        codec.from_json("Consent", "[" * 1000 + "]" * 1000)
    assert err.value.reason == "out_of_bounds"


# -- the documentation ------------------------------------------------------------------------------------
def _describe(bound) -> str:
    if isinstance(bound, Items):
        if isinstance(bound.item, dict):
            return f"≤ {bound.max_items} items, each " + ", ".join(f"`{k}` {_describe(v)}" for k, v in bound.item.items())
        return f"≤ {bound.max_items} items, each {_describe(bound.item)}"
    kind = {Code: "code", Text: "text", IdentityCode: "identity code"}[type(bound)]
    return f"{kind} ≤ {bound.max_chars:,} characters"


def test_docs_input_bounds_lists_the_table_as_it_is():
    from pathlib import Path

    from hub.schemas import topics

    topic = {"PopulationChange": topics.POPULATION_CHANGES, "Newcomer": topics.NEWCOMERS, "AssessmentCompleted": topics.ASSESSMENTS,
             "Consent": topics.CONSENTS, "ReferralStatus": topics.REFERRAL_STATUS, "JobseekerStatus": topics.JOBSEEKER_STATUS,
             "ResidencePermit": topics.RESIDENCE_PERMITS, "ServiceNeeds": topics.SERVICE_NEEDS}
    doc = (Path(__file__).resolve().parents[2] / "docs" / "input-bounds.md").read_text(encoding="utf-8")
    for name, spec in bounds.SCHEMAS.items():
        row = f"| {name} (`{topic[name]}`) | {spec.max_bytes // 1024} KiB | " + "; ".join(f"`{f}` {_describe(b)}" for f, b in spec.fields.items()) + " |"
        assert row in doc, f"docs/input-bounds.md: the row of {name} is not the table's"
    assert f"nested at most {bounds.MAX_JSON_DEPTH} levels" in doc and f"| {bounds.MAX_ROUTE_LINE_BYTES // 1024} KiB |" in doc
    assert f"| {bounds.MAX_DVV_CHANGE_BYTES // 1024} KiB, at most {bounds.MAX_DVV_DATA_GROUPS} data groups" in doc
    assert f"| {bounds.MAX_JSON_BYTES // 1024 // 1024} MiB |" in doc
