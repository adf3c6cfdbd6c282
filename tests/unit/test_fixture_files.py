"""The project's own fixtures (tests/fixtures) still hold what they stand for: a checkout that
converted line ends or an edit that dropped a variant would otherwise weaken the tests that read
them without failing any."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from helpers import fixture_path
from jsonschema import Draft202012Validator

CDM = fixture_path("cdm")


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_the_sendgrid_schema_is_a_valid_2020_12_schema_whose_refs_resolve() -> None:
    schema = json.loads(fixture_path("sendgrid", "marketing-api.schema.json").read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert "docs/reference.md" in schema["description"]
    for ref in refs(schema):
        assert ref.startswith("#/$defs/") and ref.removeprefix("#/$defs/") in schema["$defs"], ref
    operations = [name for name in schema["$defs"] if name[0].isupper()]
    assert "PUT /v3/marketing/contacts request" in operations
    assert all(re.fullmatch(r"(GET|PUT|POST|DELETE) /v3/marketing/\S+ (request|[0-9]{3})", name) for name in operations)


def test_the_csv_files_of_the_headerless_folder_keep_their_crlf_and_quoting() -> None:
    folder = CDM / "model-json-headerless"
    files = sorted(folder.rglob("*.csv"))
    assert {p.relative_to(folder).as_posix() for p in files} >= {"Customers.csv", "Visits/part-2024.csv"}
    for path in files:
        data = path.read_bytes()
        assert data.endswith(b"\r\n") and data.count(b"\n") == data.count(b"\r\n"), path  # CRLF only
    customers = (folder / "Customers.csv").read_bytes()
    assert re.search(rb',"[^"]*\r\n[^"]*"', customers)  # a quoted field holding a line break
    assert b'""' in customers  # a doubled quote
    assert re.search(rb"[^ ] +(,|\r\n)", customers)  # a value ending in spaces
    model = (folder / "model.json").read_text(encoding="utf-8")
    assert "fileFormatSettings" not in model and "columnHeaders" not in model  # CDM defaults: no header row


def test_the_converted_model_json_keeps_its_bom_and_windows_path() -> None:
    folder = CDM / "model-json-bom-windows-path"
    data = (folder / "model.json").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data
    (partition,) = json.loads(data.decode("utf-8-sig"))["entities"][0]["partitions"]
    assert re.match(r"^[A-Z]:\\", partition["location"])
    assert partition["fileFormatSettings"]["columnHeaders"] is True
    assert not any(path.suffix == ".csv" for path in folder.rglob("*"))  # metadata only
    manifest = json.loads((folder / "default.manifest.cdm.json").read_text(encoding="utf-8"))
    assert manifest["entities"][0]["entitySchema"].startswith("local:/")
    assert any(key != key.rstrip() for key in manifest)  # a root key with a trailing space


def test_format_settings_and_traits_give_column_headers_as_strings() -> None:
    for name in ("model-json-csv-traits", "model-json-csv-settings"):
        (entity,) = json.loads((CDM / name / "model.json").read_text(encoding="utf-8"))["entities"]
        (partition,) = entity["partitions"]
        assert "attributes" not in entity  # metadata only, as the CDM SDK's partition-format inputs
        assert partition["fileFormatSettings"]["columnHeaders"] == "false"
        assert partition["cdm:traits"][0]["traitReference"] == "is.partition.format.CSV"


def test_the_manifest_partitions_hold_a_header_row_only() -> None:
    folder = CDM / "manifest-header-only"
    endings = set()
    for path in sorted(folder.glob("*/partition-data.csv")):
        data = path.read_bytes()
        assert data.rstrip(b"\r\n").count(b"\n") == 0, path
        endings.add(data.endswith(b"\r\n"))
    assert endings == {True, False}  # with and without a final line end
    manifest = (folder / "default.manifest.cdm.json").read_text(encoding="utf-8")
    assert '"value": "true"' in manifest and '"dataPartitions"' in manifest


def test_the_cdm_fixtures_hold_invented_addresses_only() -> None:
    found = set()
    for path in CDM.rglob("*"):
        if path.is_file():
            found |= set(re.findall(r"[\w.+-]+@[\w.-]+", path.read_text(encoding="utf-8-sig")))
    assert found and all(address.endswith("@example.com") for address in found), found
