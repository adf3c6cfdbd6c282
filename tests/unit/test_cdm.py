"""The pure CDM reader: metadata of the project's CDM folders (tests/fixtures/cdm; the official
samples too where present), locations, CSV dialects."""

from __future__ import annotations

import io
import json
import tracemalloc
from dataclasses import dataclass

import pytest
from helpers import CdmFolder, official_cdm, project_cdm

from shared.errors import ExportError
from shared.source import cdm
from shared.source.csv_rows import OversizedRecord, read_records


def records(text: str, fmt: cdm.CsvFormat, columns: tuple[str, ...], **cap: int) -> list[tuple[int, list[str]]]:
    return list(read_records(io.StringIO(text, newline=""), fmt, columns, "partition 'p1'", **cap))


def refusal(text: str, fmt: cdm.CsvFormat = cdm.CsvFormat(), **cap: int) -> str:
    with pytest.raises(ExportError) as caught:
        records(text, fmt, ("A", "B"), **cap)
    assert caught.value.code == "source_invalid"
    return caught.value.message


def only_partition(model_json: bytes) -> cdm.PartitionRef:
    """The one partition of a metadata-only sample (its entity has no attributes, which
    parse_model_json refuses, so the partition is read the way parse_model_json reads it)."""
    (entity,) = json.loads(model_json)["entities"]
    with pytest.raises(ExportError, match="no attributes"):
        cdm.parse_model_json(model_json, entity["name"])
    (raw,) = entity["partitions"]
    fmt = cdm.partition_format(raw.get("fileFormatSettings"), raw.get("cdm:traits"), "partition")
    return cdm.PartitionRef(raw["name"], raw["location"], fmt)


# -- model.json: headerless partitions at absolute URLs ------------------------------------------
@dataclass(frozen=True)
class HeaderlessModel:
    folder: CdmFolder
    many: str  # the entity in many partitions
    many_columns: tuple[str, ...]
    partitions: dict[str, int]  # entity -> its number of partitions
    other: str
    other_leading: tuple[str, ...]  # the first columns of `other`


@pytest.mark.parametrize(
    "sample",
    [
        pytest.param(
            HeaderlessModel(
                project_cdm("model-json-headerless"),
                "Visits",
                ("VisitId", "CustomerId", "Channel", "VisitedOn"),
                {"Visits": 3, "Customers": 1},
                "Customers",
                ("CustomerId", "FirstName", "LastName"),
            ),
            id="project",
        ),
        pytest.param(
            HeaderlessModel(
                official_cdm("powerbi-dataflow-model-json"),
                "Actions",
                ("Id", "ActionType", "CreatedTime", "UpdatedTime"),
                {"Actions": 21, "Orders": 6},
                "Employees",
                ("EmployeeID", "LastName", "FirstName"),
            ),
            id="official",
        ),
    ],
)
def test_headerless_model_json_entities_columns_and_partitions(sample: HeaderlessModel) -> None:
    data = (sample.folder() / "model.json").read_bytes()
    many = cdm.parse_model_json(data, sample.many)
    assert many.columns == sample.many_columns
    for entity, count in sample.partitions.items():
        partitions = cdm.parse_model_json(data, entity).partitions
        assert len(partitions) == count, entity
        # No fileFormatSettings: the CDM defaults apply, so there is no header row.
        assert all(p.fmt == cdm.CsvFormat() for p in partitions)
        assert not partitions[0].fmt.header
    other = cdm.parse_model_json(data, sample.other)
    assert other.columns[: len(sample.other_leading)] == sample.other_leading


@pytest.mark.parametrize(
    "folder",
    [
        pytest.param(project_cdm("model-json-headerless"), id="project"),
        pytest.param(official_cdm("powerbi-dataflow-model-json"), id="official"),
    ],
)
def test_every_absolute_url_location_resolves_to_a_file_of_the_folder(folder: CdmFolder) -> None:
    local = folder()
    existing = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    data = (local / "model.json").read_bytes()
    names = [e["name"] for e in json.loads(data.decode("utf-8-sig"))["entities"]]
    locations = [p.location for name in names for p in cdm.parse_model_json(data, name).partitions]
    # Absolute URLs of another account, with ":443" and "?snapshot=" (not always both).
    assert all(location.startswith("https://") for location in locations)
    assert any(":443/" in location for location in locations) and any("?snapshot=" in location for location in locations)
    blobs = [cdm.resolve_location(location, existing) for location in locations]
    assert all(blob is not None and blob.endswith(".csv") for blob in blobs), dict(zip(locations, blobs, strict=True))
    assert len(set(blobs)) == len(blobs)  # each partition its own file


# -- partition formats: CSV traits and fileFormatSettings -----------------------------------------
@pytest.mark.parametrize(
    "folder",
    [
        pytest.param(project_cdm("model-json-csv-traits"), id="project"),
        pytest.param(official_cdm("cdm-sdk-modeljson-edgecases", "TestLoadingCsvPartitionTraits", "Input"), id="official"),
    ],
)
def test_traits_win_over_file_format_settings(folder: CdmFolder) -> None:
    partition = only_partition((folder() / "model.json").read_bytes())
    # fileFormatSettings say no header, ";" and no quoting; the CSV trait says the opposite.
    assert partition.fmt == cdm.CsvFormat(header=True, delimiter=",", quoting=True, encoding="utf-8-sig")


@pytest.mark.parametrize(
    "folder",
    [
        pytest.param(project_cdm("model-json-csv-settings"), id="project"),
        pytest.param(
            official_cdm("cdm-sdk-modeljson-edgecases", "TestLoadingCsvPartitionTraitsFromFileFormatSettings", "Input"),
            id="official",
        ),
    ],
)
def test_file_format_settings_apply_when_the_trait_has_no_format_arguments(folder: CdmFolder) -> None:
    partition = only_partition((folder() / "model.json").read_bytes())
    assert partition.fmt == cdm.CsvFormat(header=False, delimiter=";", quoting=False, encoding="ascii")


# -- model.json with a BOM and a Windows path; the manifest beside it -------------------------------
@dataclass(frozen=True)
class ConvertedModel:
    folder: CdmFolder
    entity: str
    columns: int
    first_column: str


CONVERTED = [
    pytest.param(ConvertedModel(project_cdm("model-json-bom-windows-path"), "Subscriber", 6, "createdOn"), id="project"),
    pytest.param(
        ConvertedModel(
            official_cdm("cdm-sdk-modeljson-edgecases", "TestModelJsonDataPartitionLocationConsistency", "Input"),
            "EpisodeOfCare",
            30,
            "createdOn",
        ),
        id="official",
    ),
]


@pytest.mark.parametrize("sample", CONVERTED)
def test_model_json_with_bom_and_windows_location(sample: ConvertedModel) -> None:
    data = (sample.folder() / "model.json").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    schema = cdm.parse_model_json(data, sample.entity)
    assert len(schema.columns) == sample.columns and schema.columns[0] == sample.first_column
    (partition,) = schema.partitions
    assert partition.fmt.header is True  # columnHeaders given as a JSON boolean here
    assert partition.location.startswith("C:\\")
    existing = {f"{sample.entity}/partition-data.csv"}
    assert cdm.resolve_location(partition.location, existing) == f"{sample.entity}/partition-data.csv"


@pytest.mark.parametrize("sample", CONVERTED)
def test_manifest_with_entity_schema_and_local_prefix(sample: ConvertedModel) -> None:
    folder = sample.folder()
    entity = cdm.parse_manifest((folder / "default.manifest.cdm.json").read_bytes(), sample.entity, "m")
    assert (entity.document_path, entity.definition_name) == (f"{sample.entity}.cdm.json", sample.entity)
    columns = cdm.parse_entity_document((folder / f"{sample.entity}.cdm.json").read_bytes(), sample.entity, "doc")
    assert len(columns) == sample.columns
    # The manifest and the model.json converted from it agree on the columns.
    assert columns == cdm.parse_model_json((folder / "model.json").read_bytes(), sample.entity).columns


# -- manifests ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("folder", "entities"),
    [
        pytest.param(project_cdm("manifest-header-only"), 2, id="project"),
        pytest.param(official_cdm("cdm-sdk-manifest-headers"), 10, id="official"),
    ],
)
def test_every_manifest_entity_has_columns_from_its_document(folder: CdmFolder, entities: int) -> None:
    local = folder()
    manifest = (local / "default.manifest.cdm.json").read_bytes()
    names = [e["entityName"] for e in json.loads(manifest)["entities"]]
    assert len(names) == entities
    for name in names:
        entity = cdm.parse_manifest(manifest, name, "default.manifest.cdm.json")
        columns = cdm.parse_entity_document(
            (local / entity.document_path).read_bytes(), entity.definition_name, entity.document_path
        )
        header = (local / name / "partition-data.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
        assert list(columns) == header, name  # the document's order is the file's order
        (partition,) = entity.partitions
        assert partition.fmt.header is True  # "true" given as a string in the trait arguments


# -- refusals ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"{not json", "source_invalid"),
        (b"[1, 2]", "source_invalid"),
        (b'{"entities": []}', "source_not_found"),
        (b'{"entities": [{"name": "Other", "attributes": [{"name": "a"}]}]}', "source_not_found"),
        (b'{"entities": [{"name": "Seg", "attributes": []}]}', "source_invalid"),
        (b'{"entities": [{"name": "Seg", "attributes": [{"name": "a"}], "partitions": [{"name": "p"}]}]}', "source_invalid"),
        (
            b'{"entities": [{"name": "Seg", "attributes": [{"name": "a"}], "partitions": [{"location": "x.csv",'
            b' "fileFormatSettings": {"$type": "CsvFormatSettings", "columnHeaders": "maybe"}}]}]}',
            "source_invalid",
        ),
        (
            b'{"entities": [{"name": "Seg", "attributes": [{"name": "a"}], "partitions": [{"location": "x.csv",'
            b' "fileFormatSettings": {"$type": "CsvFormatSettings", "encoding": "klingon"}}]}]}',
            "source_invalid",
        ),
        # Codecs Python knows but no CDM writer uses: they could smuggle lone surrogates or raise mid-read.
        *[
            (
                b'{"entities": [{"name": "Seg", "attributes": [{"name": "a"}], "partitions": [{"location": "x.csv",'
                b' "fileFormatSettings": {"$type": "CsvFormatSettings", "encoding": "%s"}}]}]}' % name,
                "source_invalid",
            )
            for name in (b"utf-7", b"rot13", b"zlib", b"base64", b"utf-32", b"punycode")
        ],
    ],
)
def test_broken_model_json_is_refused_with_a_code(data: bytes, code: str) -> None:
    with pytest.raises(ExportError) as caught:
        cdm.parse_model_json(data, "Seg")
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("UTF-8", "utf-8-sig"),
        ("utf8", "utf-8-sig"),
        ("UTF-16", "utf-16"),
        ("UTF-16LE", "utf-16-le"),
        ("ISO-8859-1", "iso8859-1"),
        ("windows-1252", "cp1252"),
        ("ASCII", "ascii"),
    ],
)
def test_encodings_cdm_writers_use_are_read(name: str, codec: str) -> None:
    assert cdm.partition_format({"encoding": name}, None, "p").encoding == codec


# -- locations -------------------------------------------------------------------------------
def test_locations_resolve_to_the_longest_existing_tail() -> None:
    existing = {
        "Actions/part-2015.csv",
        "part-2015.csv",
        "Customers.csv",
        "Seg/2026/11/28/0200/Seg_1.csv",
    }
    url = (
        "https://cdsaincrementalrefresh.blob.core.windows.net:443/afa6242c/Actions/part-2015.csv"
        "?snapshot=2018-08-16T09%3A11%3A17.5629752Z"
    )
    assert cdm.resolve_location(url, existing) == "Actions/part-2015.csv"
    assert cdm.resolve_location("https://x.blob.core.windows.net/c/Customers.csv?snapshot=1", existing) == "Customers.csv"
    assert (
        cdm.resolve_location("https://a.blob.core.windows.net/c/CI_1/Export/Seg/2026/11/28/0200/Seg_1.csv", existing)
        == "Seg/2026/11/28/0200/Seg_1.csv"
    )
    assert cdm.resolve_location("local:/Customers.csv", existing) == "Customers.csv"
    assert cdm.resolve_location(r"C:\data\Actions\part-2015.csv", existing) == "Actions/part-2015.csv"
    assert cdm.resolve_location("https://a/c/Missing.csv", existing) is None


# -- CSV records -----------------------------------------------------------------------------
def test_quoted_newlines_doubled_quotes_and_crlf() -> None:
    text = 'a1,"line one\r\nline two",x\r\n"b ""quoted""",b2,\r\n\r\n'
    rows = records(text, cdm.CsvFormat(), ("A", "B", "C"))
    assert rows == [(1, ["a1", "line one\r\nline two", "x"]), (2, ['b "quoted"', "b2", ""])]


def test_header_row_is_skipped_and_reordered_to_the_model_columns() -> None:
    text = "Email,Name\nx@example.com,X\n"
    rows = records(text, cdm.CsvFormat(header=True), ("Name", "Email"))
    assert rows == [(1, ["X", "x@example.com"])]


def test_header_only_partition_has_no_records() -> None:
    assert records("A,B\r\n", cdm.CsvFormat(header=True), ("A", "B")) == []
    assert records("", cdm.CsvFormat(header=True), ("A", "B")) == []


def test_other_delimiter_and_no_quoting() -> None:
    rows = records('a;"b";c\n', cdm.CsvFormat(delimiter=";", quoting=False), ("A", "B", "C"))
    assert rows == [(1, ["a", '"b"', "c"])]


def test_ragged_rows_are_passed_on_for_mapping_to_reject() -> None:
    rows = records("a,b\na\na,b,c\n", cdm.CsvFormat(), ("A", "B"))
    assert [len(values) for _, values in rows] == [2, 1, 3]


# -- malformed and oversized records -------------------------------------------------------------
def test_an_unterminated_quote_refuses_the_partition_naming_its_line() -> None:
    # Non-strict parsing took everything after line 4 as one field: one "too large" reject, and
    # a mirror run then unlinked every contact after it.
    text = "".join(f"x{i}@example.com,Ann\r\n" for i in range(3)) + 'x3@example.com,"Bob\r\n'
    text += "".join(f"x{i}@example.com,Ann\r\n" for i in range(4, 50))
    message = refusal(text)
    assert "partition 'p1'" in message and "line 4" in message


def test_text_after_a_closing_quote_refuses_the_partition() -> None:
    assert "line 2" in refusal('a,b\na,"b"c\n')


def test_a_record_over_the_cap_is_skipped_and_the_next_ones_read() -> None:
    text = "a,b\n" + "x" * 500 + ",y\n" + "c,d\n"
    rows = records(text, cdm.CsvFormat(), ("A", "B"), max_record_chars=100)
    assert rows == [(1, ["a", "b"]), (2, []), (3, ["c", "d"])]
    assert isinstance(rows[1][1], OversizedRecord)  # mapping rejects it: no values for the columns


def test_a_record_over_the_cap_whose_end_is_uncertain_refuses_the_partition() -> None:
    # A quote on the long line, or a quoted field running over many lines: the next record
    # cannot be found for sure, so the partition is refused rather than guessed at.
    assert "line 2" in refusal('a,b\n"' + "x" * 500 + '",y\nc,d\n', max_record_chars=100)
    assert "line 2" in refusal('a,b\n"' + "x\n" * 300 + '",y\nc,d\n', max_record_chars=100)
    assert "line 2" in refusal("a,b\n" + "x" * 500 + ',"y\nc",d\n', max_record_chars=100)


def test_a_30_mb_line_is_read_in_bounded_memory() -> None:
    line = b"y" * (30 * 1024 * 1024)
    data = io.BytesIO(b"a@example.com,b\r\n" + line + b",z\r\nc@example.com,d\r\n")
    text = io.TextIOWrapper(data, encoding="utf-8-sig", newline="")
    del line
    tracemalloc.start()
    try:
        rows = list(read_records(text, cdm.CsvFormat(), ("A", "B")))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [number for number, _ in rows] == [1, 2, 3] and rows[2][1] == ["c@example.com", "d"]
    assert peak < 8 * 1024 * 1024  # a few times the 1 MiB record cap, not the line (was > 100 MB)
