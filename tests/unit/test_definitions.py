"""Export definitions at their edges: names matched whole, list ids in one spelling, and the JSON
contract derived from the dataclass (one key per field, nothing listed twice)."""

from __future__ import annotations

import dataclasses
import json
from typing import get_args

import pytest
from helpers import LIST_ID, definition

from shared.definitions import (
    OVERLENGTH_POLICIES,
    SYNC_MODES,
    ExportDefinition,
    Overlength,
    SyncMode,
    is_export_name,
    parse_definition,
)
from shared.errors import ExportError
from shared.settings import SettingsError, parse_definitions_setting


@pytest.mark.parametrize("name", ["vip\n", "vip\r\nINJECTED", "\nvip", "vip ", "Vip", "-vip", "a" * 64, "", "vip\x00"])
def test_export_names_are_matched_whole(name: str) -> None:
    assert not is_export_name(name)
    with pytest.raises(ExportError) as caught:
        parse_definition(definition(name=name))
    assert caught.value.code == "invalid_definition" and ".name must be" in caught.value.message
    with pytest.raises(SettingsError, match=r"EXPORT_DEFINITIONS\[0\]\.name"):
        parse_definitions_setting(json.dumps([definition(name=name)]))


@pytest.mark.parametrize("name", ["vip", "a", "0-day_list", "a" * 63])
def test_good_export_names(name: str) -> None:
    assert is_export_name(name) and parse_definition(definition(name=name)).name == name


@pytest.mark.parametrize(
    "list_id",
    [LIST_ID.upper(), LIST_ID.replace("-", ""), "{" + LIST_ID + "}", "urn:uuid:" + LIST_ID, f" {LIST_ID}", LIST_ID + "\n"],
)
def test_list_ids_must_be_canonical_lower_case_uuids(list_id: str) -> None:
    # Each of these is the same UUID to uuid.UUID(), but a different string to the record and to
    # SendGrid: one list would have several spellings.
    with pytest.raises(ExportError) as caught:
        parse_definition(definition(list_ids=[list_id]))
    assert caught.value.code == "invalid_definition" and "list_ids" in caught.value.message


def test_list_ids_that_are_not_strings_are_refused() -> None:
    with pytest.raises(ExportError) as caught:
        parse_definition(definition(list_ids=[12345]))
    assert caught.value.code == "invalid_definition" and "strings" in caught.value.message


def test_the_public_dict_has_one_key_per_field_and_is_plain_json() -> None:
    parsed = parse_definition(definition(custom_fields={"loyalty_tier": "Tier"}, sync_mode="mirror"))
    public = parsed.to_public_dict()
    assert list(public) == [f.name for f in dataclasses.fields(ExportDefinition)]
    assert public["list_ids"] == [LIST_ID] and public["sync_mode"] == "mirror"
    assert json.loads(json.dumps(public)) == public
    # The public dict is itself a valid definition that parses back to the same thing.
    assert parse_definition(public) == parsed
    public["mapping"]["email"] = "changed"  # a copy: the frozen definition is not changed through it
    assert parsed.mapping["email"] == "EMail"


def test_every_field_is_an_accepted_key_and_nothing_else() -> None:
    with pytest.raises(ExportError, match="unknown field"):
        parse_definition(definition(surprise=True))
    full = parse_definition(definition()).to_public_dict()
    assert parse_definition(full).to_public_dict() == full


def test_sync_mode_and_overlength_literals() -> None:
    assert SYNC_MODES == get_args(SyncMode) == ("upsert", "mirror")
    assert OVERLENGTH_POLICIES == get_args(Overlength) == ("truncate", "reject")
    with pytest.raises(ExportError, match="sync_mode"):
        parse_definition(definition(sync_mode="replace"))
