"""The JSON Schema of a definitions file (schema/exports.schema.json): generated from the one
place definitions are declared (the fields of ExportDefinition and their metadata), committed as
generated, and in agreement with the parser: for every case of a corpus of valid and invalid
definitions, jsonschema and `parse_definition` both accept or both refuse. `validate FILE` and
`schema` of the CLI work with no app setting."""

from __future__ import annotations

import copy
import io
import json
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from helpers import LIST_ID, OTHER_LIST_ID, ROOT, definition

from shared.api import cli
from shared.definitions import (
    RESERVED_FIELD_MAX_LENGTH,
    SCHEMA_PATH,
    ExportDefinition,
    definition_schema,
    definitions_file_schema,
    parse_definition,
    schema_text,
)
from shared.errors import ExportError

SCHEMA = definitions_file_schema()
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)


def test_the_committed_schema_is_the_generated_one() -> None:
    committed = (ROOT / SCHEMA_PATH).read_text(encoding="utf-8")
    assert committed == schema_text(), f"{SCHEMA_PATH} is stale: run `python -m shared schema --write` and commit it"


def test_the_drift_check_can_fail() -> None:
    """The comparison above notices a changed description (what a drift looks like)."""
    changed = json.loads(schema_text())
    changed["definitions"]["definition"]["properties"]["name"]["description"] += " Changed."
    assert json.dumps(changed, indent=2, ensure_ascii=False) + "\n" != schema_text()


def test_it_is_a_valid_draft_7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"


def test_every_field_has_its_type_default_and_description() -> None:
    properties = definition_schema()["properties"]
    assert list(properties) == [item.name for item in fields(ExportDefinition)]
    for item in fields(ExportDefinition):
        entry = properties[item.name]
        assert entry["description"].endswith(".") and len(entry["description"]) > 30, item.name
        assert "type" in entry, item.name
        if item.default is not MISSING:
            assert entry["default"] == item.default, item.name
        elif item.default_factory is not MISSING:
            assert entry["default"] == item.default_factory(), item.name
    assert definition_schema()["required"] == ["name", "source_folder", "segment", "list_ids", "privacy_consent", "mapping"]
    assert set(properties["mapping"]["properties"]) == set(RESERVED_FIELD_MAX_LENGTH)
    assert definition_schema()["additionalProperties"] is False


def test_the_cli_prints_writes_and_checks_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    assert cli.main(["schema"], out=out) == 0 and out.getvalue() == schema_text()
    out = io.StringIO()
    assert cli.main(["schema", "--check"], out=out) == 0 and "up to date" in out.getvalue()
    # Against another app root: --check fails on a stale file, --write mends it.
    monkeypatch.setattr(cli, "APP_ROOT", tmp_path)
    (tmp_path / "schema").mkdir()
    (tmp_path / SCHEMA_PATH).write_text("{}\n")
    err = io.StringIO()
    assert cli.main(["schema", "--check"], out=io.StringIO(), err=err) == 1 and "--write" in err.getvalue()
    assert cli.main(["schema", "--write"], out=io.StringIO()) == 0
    assert (tmp_path / SCHEMA_PATH).read_text() == schema_text()


# -- the corpus: each case is accepted by both, or refused by both ------------------------------

FULL = definition(
    custom_fields={"loyalty_tier": "Tier", "lifetime_value": "Value"},
    max_profiles=5000,
    enabled=False,
    on_overlength="reject",
    sync_mode="mirror",
    max_removal_fraction=0.5,
    sendgrid_api_key_secret="sendgrid-key-eu",
    sendgrid_region="eu",
    list_ids=[LIST_ID, OTHER_LIST_ID],
)
VALID: dict[str, dict[str, Any]] = {
    "the README's": definition(),
    "every field": FULL,
    "minimal": {
        "name": "a",
        "source_folder": "f",
        "segment": "s",
        "list_ids": [LIST_ID],
        "privacy_consent": True,
        "mapping": {"email": "E"},
    },
    "display_name null": definition(display_name=None),
    "secret null": definition(sendgrid_api_key_secret=None),
    "max_profiles 100000.0 (a JSON integer)": definition(max_profiles=100000.0),
    "fraction 0": definition(max_removal_fraction=0),
    "fraction 1": definition(max_removal_fraction=1),
    "a 63-character name": definition(name="a" * 63),
    "name with digits, _ and -": definition(name="0-day_list"),
    "every reserved field": definition(mapping={k: k.title() for k in RESERVED_FIELD_MAX_LENGTH}),
    "empty custom_fields": definition(custom_fields={}),
    "a 127-character secret": definition(sendgrid_api_key_secret="k" * 127),
    "folder with slashes": definition(source_folder="/CustomerInsights_x/Export/"),
}


def without(key: str) -> dict[str, Any]:
    raw = definition()
    del raw[key]
    return raw


INVALID: dict[str, Any] = {
    "not an object": [definition()],
    "no name": without("name"),
    "name with a line break": definition(name="vip\n"),
    "name upper case": definition(name="Vip"),
    "name starting with -": definition(name="-vip"),
    "name of 64": definition(name="a" * 64),
    "name a number": definition(name=7),
    "display_name empty": definition(display_name=""),
    "display_name blank": definition(display_name="   "),
    "display_name a number": definition(display_name=5),
    "no source_folder": without("source_folder"),
    "source_folder blank": definition(source_folder=" \t"),
    "segment empty": definition(segment=""),
    "segment a list": definition(segment=["a"]),
    "no list_ids": without("list_ids"),
    "list_ids empty": definition(list_ids=[]),
    "list_ids a string": definition(list_ids=LIST_ID),
    "list id upper case": definition(list_ids=[LIST_ID.upper()]),
    "list id without hyphens": definition(list_ids=[LIST_ID.replace("-", "")]),
    "list id in braces": definition(list_ids=["{" + LIST_ID + "}"]),
    "list id with a line break": definition(list_ids=[LIST_ID + "\n"]),
    "list id a number": definition(list_ids=[12345]),
    "list id twice": definition(list_ids=[LIST_ID, LIST_ID]),
    "no consent": without("privacy_consent"),
    "consent false": definition(privacy_consent=False),
    "consent 1": definition(privacy_consent=1),
    "consent 'true'": definition(privacy_consent="true"),
    "no mapping": without("mapping"),
    "mapping without email": definition(mapping={"first_name": "FirstName"}),
    "mapping an unknown field": definition(mapping={"email": "EMail", "shoe_size": "Shoe"}),
    "mapping a blank column": definition(mapping={"email": "  "}),
    "mapping a number column": definition(mapping={"email": 3}),
    "mapping a list": definition(mapping=[["email", "EMail"]]),
    "custom field with a reserved name": definition(custom_fields={"email": "EMail"}),
    "custom field without a column": definition(custom_fields={"loyalty_tier": ""}),
    "custom_fields null": definition(custom_fields=None),
    "max_profiles 0": definition(max_profiles=0),
    "max_profiles true": definition(max_profiles=True),
    "max_profiles 1.5": definition(max_profiles=1.5),
    "max_profiles a string": definition(max_profiles="100"),
    "enabled 'no'": definition(enabled="no"),
    "enabled 0": definition(enabled=0),
    "on_overlength chop": definition(on_overlength="chop"),
    "sync_mode replace": definition(sync_mode="replace"),
    "fraction 1.5": definition(max_removal_fraction=1.5),
    "fraction -0.1": definition(max_removal_fraction=-0.1),
    "fraction true": definition(max_removal_fraction=True),
    "fraction '0.2'": definition(max_removal_fraction="0.2"),
    "secret with a space": definition(sendgrid_api_key_secret="my key"),
    "secret empty": definition(sendgrid_api_key_secret=""),
    "secret of 128": definition(sendgrid_api_key_secret="k" * 128),
    "secret with a line break": definition(sendgrid_api_key_secret="key\n"),
    "region us": definition(sendgrid_region="us"),
    "an unknown key": definition(sourcefolder="x"),
    "$schema inside a definition": definition(**{"$schema": "./schema/exports.schema.json"}),
}


def parser_accepts(raw: Any) -> bool:
    try:
        parse_definition(copy.deepcopy(raw))
    except ExportError:
        return False
    return True


def schema_accepts(raw: Any) -> bool:
    return bool(VALIDATOR.is_valid({"exports": [raw]})) and bool(VALIDATOR.is_valid([raw]))


@pytest.mark.parametrize("raw", VALID.values(), ids=VALID.keys())
def test_both_accept_a_valid_definition(raw: dict[str, Any]) -> None:
    assert parser_accepts(raw), "parse_definition refused it"
    assert schema_accepts(raw), list(VALIDATOR.iter_errors({"exports": [raw]}))


@pytest.mark.parametrize("raw", INVALID.values(), ids=INVALID.keys())
def test_both_refuse_an_invalid_definition(raw: Any) -> None:
    assert not parser_accepts(raw), "parse_definition accepted it"
    assert not schema_accepts(raw), "the schema accepted it"


def test_the_example_file_is_valid_for_both() -> None:
    document = json.loads((ROOT / "exports.example.json").read_text(encoding="utf-8"))
    assert VALIDATOR.is_valid(document) and document["$schema"] == f"./{SCHEMA_PATH}"
    assert all(parser_accepts(raw) for raw in document["exports"])


@pytest.mark.parametrize(
    "document",
    [{"exports": [definition()], "export": []}, {"$schema": "x"}, {"exports": {}}, "vip", [definition(), 3]],
    ids=["unknown top key", "no exports", "exports an object", "a string", "an entry not an object"],
)
def test_the_schema_refuses_a_file_of_the_wrong_shape(document: Any) -> None:
    assert not VALIDATOR.is_valid(document)


# -- validate FILE: the parser and the schema, no app settings ----------------------------------


def run_validate(path: Path, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["validate", str(path), *extra], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_validate_file_passes_the_example_without_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SOURCE_CONTAINER", "SOURCE_STORAGE_CONNECTION_STRING", "EXPORT_DEFINITIONS", "SENDGRID_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    code, out, _ = run_validate(ROOT / "exports.example.json")
    assert code == 0, out
    assert "exports.example.json: valid, 1 export" in out and "vip" in out and f"schema ({SCHEMA_PATH}): valid" in out


def test_validate_file_names_each_problem_and_refuses(tmp_path: Path) -> None:
    path = tmp_path / "exports.json"
    bad = definition(name="promo", list_ids=["ABC"], display_name="\x1b[2J\x1b[31mPROMO")
    path.write_text(json.dumps({"$schema": f"./{SCHEMA_PATH}", "exports": [definition(), bad]}, indent=2))
    code, out, _ = run_validate(path)
    assert code == 2
    assert "NOT valid, 2 exports" in out and "'list_ids' holds 'ABC'" in out
    assert "exports[1].list_ids[0]" in out  # the schema's error names where
    assert "\x1b" not in out  # a hostile value reaches the terminal escaped
    code, out, _ = run_validate(path, "--json")
    result = json.loads(out)
    assert code == 2 and result["valid"] is False and [e["valid"] for e in result["exports"]] == [True, False]
    assert result["schema"]["checked"] is True and any("list_ids" in line for line in result["schema"]["errors"])


def test_validate_file_with_broken_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "exports.json"
    path.write_text('{\n  "exports": [\n    {"name": "vip",}\n  ]\n}\n')
    code, out, _ = run_validate(path)
    assert code == 2 and "not valid JSON" in out and "line 3" in out
    code, out, _ = run_validate(tmp_path / "missing.json")
    assert code == 2 and "cannot be read" in out
