"""GET /api/sources against Azurite: the project's CDM fixtures uploaded beside a Customer
Insights-shaped export and broken folders, paged with `continuation`, within a fixed number of
List Blobs pages per request, reading metadata only."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import ContainerClient
from helpers import COLUMNS, FOLDER, SEGMENT, definition, fixture_path, person, write

from shared.api import routes
from shared.services import App
from shared.source import discovery
from shared.source.blob import BlobSource

HTTP_LOGGER = "azure.core.pipeline.policies.http_logging_policy"
FIXTURES = (
    "manifest-header-only",
    "model-json-bom-windows-path",
    "model-json-csv-settings",
    "model-json-csv-traits",
    "model-json-headerless",
)
SECRET_IN_FILE = "jane.secret@example.com"


def upload_folder(container: ContainerClient, local: Path, prefix: str) -> None:
    for path in sorted(local.rglob("*")):
        if path.is_file() and path.name not in (".gitattributes", "README.md"):
            container.upload_blob(f"{prefix}/{path.relative_to(local).as_posix()}", path.read_bytes())


def model(entity: str, columns: list[tuple[str, str]], locations: list[str]) -> bytes:
    attributes = [{"name": n, "dataType": t} for n, t in columns]
    partitions = [{"name": f"p{i}", "location": loc} for i, loc in enumerate(locations)]
    return json.dumps(
        {"name": "m", "entities": [{"$type": "LocalEntity", "name": entity, "attributes": attributes, "partitions": partitions}]}
    ).encode()


@pytest.fixture
def populated(source_container: ContainerClient) -> ContainerClient:
    write(source_container, [[person(i) for i in range(1, 4)], [person(i) for i in range(4, 6)]])
    for name in FIXTURES:
        upload_folder(source_container, fixture_path("cdm", name), f"fixtures/{name}")
    # Broken: model.json that is not JSON (holding a profile value), and a manifest whose entity
    # document is missing.
    source_container.upload_blob("broken/unreadable/model.json", b'{"entities": [' + SECRET_IN_FILE.encode())
    manifest = {"entities": [{"entityName": "Gone", "entityPath": "Gone.cdm.json/Gone", "dataPartitions": []}]}
    source_container.upload_blob("broken/missing-doc/default.manifest.cdm.json", json.dumps(manifest).encode())
    source_container.upload_blob("not-an-export/readme.txt", b"nothing here")
    return source_container


@pytest.fixture
def app(app_factory: Any, populated: ContainerClient) -> App:
    made: App = app_factory([definition()])
    return made


def sources(app: App, **query: str) -> routes.ApiResponse:
    return routes.handle_setup(app, "GET", "sources", None, b"", query)


def test_every_export_folder_is_described_from_metadata_and_broken_ones_carry_their_problem(
    app: App, populated: ContainerClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=HTTP_LOGGER):
        answer = sources(app, limit="100")
    assert answer.status == 200 and answer.body["continuation"] is None
    found = {s["folder"]: s for s in answer.body["sources"]}
    assert set(found) == {FOLDER, *(f"fixtures/{n}" for n in FIXTURES), "broken/unreadable", "broken/missing-doc"}

    export = found[FOLDER]
    assert export["metadata"] == "model.json" and export["problem"] is None and export["snapshot_time"]
    (entity,) = export["entities"]
    assert entity["name"] == SEGMENT and [c["name"] for c in entity["columns"]] == list(COLUMNS)
    assert {c["data_type"] for c in entity["columns"]} == {"string"}
    sizes = [b.size for b in populated.list_blobs(name_starts_with=f"{FOLDER}/{SEGMENT}/")]
    assert entity["partitions"] == 2 and entity["bytes"] == sum(sizes)

    manifest = found["fixtures/manifest-header-only"]
    assert manifest["metadata"] == "default.manifest.cdm.json" and manifest["problem"] is None
    contact = next(e for e in manifest["entities"] if e["name"] == "Contact")
    assert {"name": "EMailAddress1", "data_type": "String"} in contact["columns"]
    assert {"name": "createdOn", "data_type": "DateTime"} in contact["columns"]
    assert contact["partitions"] == 1 and contact["bytes"] > 0

    headerless = found["fixtures/model-json-headerless"]
    assert {e["name"]: e["partitions"] for e in headerless["entities"]} == {"Customers": 1, "Visits": 3}
    assert "not in storage" in found["fixtures/model-json-bom-windows-path"]["problem"]
    assert "has no attributes" in found["fixtures/model-json-csv-traits"]["problem"]
    assert found["broken/unreadable"]["problem"].startswith("model.json is not valid JSON")
    assert found["broken/unreadable"]["entities"] == []
    missing = found["broken/missing-doc"]["problem"]
    assert "entity 'Gone'" in missing and "'Gone.cdm.json' is not in the folder" in missing
    assert SECRET_IN_FILE not in answer.json()

    # Metadata only: no partition (.csv) was downloaded; listings and metadata files were.
    urls = [r.getMessage() for r in caplog.records if r.name == HTTP_LOGGER and r.getMessage().startswith("Request URL")]
    assert urls and not [u for u in urls if ".csv" in u.split("?")[0]]


def test_paging_with_continuation_lists_each_folder_once(app: App, populated: ContainerClient) -> None:
    for i in range(7):
        populated.upload_blob(f"many/f{i}/model.json", model("Seg", [("Email", "string")], []))
    seen: list[str] = []
    pages = 0
    token: str | None = None
    while True:
        query = {"limit": "3", **({"continuation": token} if token else {})}
        answer = sources(app, **query)
        assert answer.status == 200 and len(answer.body["sources"]) <= 3
        seen += [s["folder"] for s in answer.body["sources"]]
        token, pages = answer.body["continuation"], pages + 1
        if token is None:
            break
        assert pages < 20
    assert len(seen) == len(set(seen)) == 7 + 1 + len(FIXTURES) + 2
    assert {f"many/f{i}" for i in range(7)} <= set(seen) and pages >= 5


def test_each_request_lists_at_most_its_page_budget_and_the_walk_still_ends(
    populated: ContainerClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Two names a page, at most 8 List Blobs calls a request: many requests, each bounded, each
    making progress, and the folders found are those a roomy walk finds."""
    for i in range(5):
        populated.upload_blob(f"many/f{i}/model.json", model("Seg", [("Email", "string")], []))
    source = BlobSource(populated)
    everything, token = discovery.discover(source, 100)
    assert token is None
    tight = discovery.Limits(page_size=2, request_pages=8, folder_pages=3, request_bytes=64 * 1024, folder_bytes=32 * 1024)
    seen: list[str] = []
    token, requests = None, 0
    while True:
        with caplog.at_level(logging.INFO, logger=HTTP_LOGGER):
            caplog.clear()
            found, token = discovery.discover(source, 100, token, tight)
        lists = [r for r in caplog.records if r.name == HTTP_LOGGER and "comp=list" in r.getMessage()]
        assert len(lists) <= tight.request_pages
        seen += [f.folder for f in found]
        requests += 1
        if token is None:
            break
        assert requests < 200
    assert sorted(seen) == sorted(f.folder for f in everything) and len(seen) == len(set(seen))
    assert requests > 2


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "ten"},
        {"limit": "-1"},
        {"limit": "٣"},  # a digit, but not an ASCII one
        {"continuation": "garbage"},
        {"continuation": "w1.bm90IGpzb24"},  # base64 of "not json"
        {"continuation": "w1." + "A" * 4000},
        {"continuation": "w1.eyJwIjoiYS8iLCJmIjpbW251bGwsMF1dfQ"},  # a prefix one level deeper than its frames
        {"continuation": "<script>"},
        {"verbose": "1"},
    ],
)
def test_bad_queries_are_400_in_the_usual_shape_and_never_echoed(app: App, query: dict[str, str]) -> None:
    answer = sources(app, **query)
    assert answer.status == 400 and answer.body["error"]["code"] == "bad_request"
    assert set(answer.body) == {"error"} and set(answer.body["error"]) == {"code", "message"}
    for value in query.values():
        if len(value) > 3:
            assert value not in answer.body["error"]["message"]


def test_the_function_key_parameter_is_allowed_and_other_methods_are_refused(app: App) -> None:
    assert sources(app, code="the-function-key").status == 200
    assert routes.handle_setup(app, "POST", "sources", None).status == 405
    assert routes.handle_setup(app, "GET", "sources", "extra").status == 404
    assert routes.handle_setup(app, "GET", "exports", None).status == 404


def test_a_folder_past_the_folders_caps_is_described_as_far_as_they_go_and_says_so(populated: ContainerClient) -> None:
    source = BlobSource(populated)
    limits = discovery.Limits(page_size=2, folder_pages=2, request_pages=10)
    budget = discovery.Budget.of(limits)
    for i in range(3):  # "extra/..." sorts before "model.json": the first 4 files listed are not it
        populated.upload_blob(f"{FOLDER}/extra/{i}.txt", b"x")
    big = discovery.describe_folder(source, FOLDER, limits, budget)
    assert big.metadata == "model.json" and big.snapshot_time and [e.name for e in big.entities] == [SEGMENT]
    assert big.problem == "the folder holds over 4 files: partitions and bytes count the first 4 only"
    assert budget.pages == limits.request_pages - 4  # two pages of the folder, two of what is directly in it
    few = discovery.Limits(entities=1, request_downloads=2)
    many = discovery.describe_folder(source, "fixtures/manifest-header-only", few, discovery.Budget.of(few))
    assert len(many.entities) == 1 and many.problem == "1 more entities not described (at most 1 are)"
