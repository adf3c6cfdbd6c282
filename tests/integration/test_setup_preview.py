"""POST /api/preview against Azurite and the sandbox: a draft completed with suggestions, its
problems (with did-you-mean), a masked sample made by the run's own mapping, reject counts, the
dry-run plan against the export's record, nothing written anywhere, no profile value logged."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from helpers import FOLDER, LIST_ID, SEGMENT, definition, fixture_path, person, run, sandbox_get, write

from shared.api import routes
from shared.definitions import parse_definition
from shared.services import App
from shared.setup.inputs import MAX_PREVIEW_BODY_BYTES
from tools.sample_export import csv_bytes, write_export

ROWS = [person(i) for i in range(1, 9)] + [person(9, email="not-an-email"), person(10, email="person1@example.com")]
PROFILE_VALUES = ("person1@example.com", "person2@example.com", "First1", "Last2", "1100-148")


@pytest.fixture
def app(app_factory: Any, source_container: ContainerClient) -> App:
    write(source_container, [ROWS[:5], ROWS[5:]])
    made: App = app_factory([definition()])
    return made


def preview(app: App, body: Any, **query: str) -> routes.ApiResponse:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return routes.handle_setup(app, "POST", "preview", None, data, query)


def writes(sandbox: Any) -> list[dict[str, Any]]:
    return [r for r in sandbox_get(sandbox, "requests")["requests"] if r["method"] != "GET"]


def state_blobs(blob_service: BlobServiceClient, name: str) -> list[str]:
    container = blob_service.get_container_client(name)
    return [b.name for b in container.list_blobs()] if container.exists() else []


def test_a_minimal_draft_is_completed_with_suggestions_and_says_what_is_missing(
    app: App, sandbox: Any, blob_service: BlobServiceClient, state_container_name: str
) -> None:
    answer = preview(app, {"source_folder": FOLDER, "segment": SEGMENT})
    assert answer.status == 200
    body = answer.body
    assert body["definition"]["mapping"] == definition()["mapping"]  # every reserved field found by name
    assert body["definition"]["name"] == "highvaluecustomers" and "privacy_consent" not in body["definition"]
    why = {s["field"]: s["why"] for s in body["suggestions"]}
    assert why["mapping.email"] == "column 'EMail' is what Customer Insights calls the primary email"
    assert {"mapping.postal_code", "mapping.state_province_region", "name"} <= set(why)
    assert {p["field"] for p in body["problems"]} == {"privacy_consent", "list_ids"}
    assert body["valid"] is False and body["plan"] is None
    assert body["rows_read"] == len(ROWS) and body["rejects"] == {"duplicate email": 1, "invalid email": 1}
    assert len(body["sample"]) == 5 and body["masked"] is True
    assert body["sample"][0] == {
        "email": "p***@e***.com",
        "first_name": "F***",
        "last_name": "L***",
        "city": "L***",
        "state_province_region": "L***",
        "postal_code": "1***",
        "country": "P***",
    }
    assert not any(value in answer.json() for value in PROFILE_VALUES)
    assert writes(sandbox) == [] and state_blobs(blob_service, state_container_name) == []

    # Completed once the user gives consent and a list: what parse_definition accepts.
    parse_definition({**body["definition"], "privacy_consent": True, "list_ids": [LIST_ID]})


def test_a_complete_draft_with_lists_by_name_gets_the_dry_run_plan_and_nothing_is_written(
    app: App, sandbox: Any, blob_service: BlobServiceClient, state_container_name: str
) -> None:
    draft = {"source_folder": FOLDER, "segment": SEGMENT, "lists": ["Newsletter"], "privacy_consent": True}
    body = preview(app, {**draft, "custom_fields": {"loyalty_tier": "Tier"}, "sample_size": 2}).body
    assert body["problems"] == [] and body["valid"] is True
    assert body["definition"]["list_ids"] == [LIST_ID] and "lists" not in body["definition"]
    assert {"field": "lists[0]", "value": LIST_ID, "why": "the list named 'newsletter'"} in body["suggestions"]
    assert body["plan"] == {"upsert": 8, "remove": 0}
    assert len(body["sample"]) == 2 and set(body["sample"][0]["custom_fields"].values()) == {"G***"}
    assert writes(sandbox) == [] and state_blobs(blob_service, state_container_name) == []
    parse_definition(body["definition"])


def test_a_named_draft_previews_against_that_exports_record_and_an_unnamed_one_as_a_first_delivery(app: App) -> None:
    assert run(app).status == 200  # vip delivered: its record holds every contact
    named = preview(app, definition()).body
    assert named["problems"] == [] and named["plan"] == {"upsert": 0, "remove": 0}
    unnamed = {k: v for k, v in definition().items() if k not in ("name", "display_name")}
    assert preview(app, unnamed).body["plan"] == {"upsert": 8, "remove": 0}


def test_unknown_names_are_problems_with_the_closest_existing_name(app: App) -> None:
    draft = {
        "source_folder": FOLDER,
        "segment": SEGMENT,
        "mapping": {"email": "Emial", "frist_name": "FirstName"},
        "custom_fields": {"loyalty_teir": "Tier", "lifetime_value": "Valeu"},
        "lists": ["Newsleter", "nothing like it"],
        "list_ids": ["0f9c3a4e-1b2d-4c5e-8f70-000000000000"],
        "privacy_consent": True,
    }
    body = preview(app, draft).body
    found = {p["field"]: (p["message"], p["did_you_mean"]) for p in body["problems"]}
    assert found["mapping.email"][1] == "EMail"
    assert found["mapping.frist_name"][1] == "first_name"
    assert found["custom_fields.loyalty_teir"][1] == "loyalty_tier"
    assert found["custom_fields.lifetime_value"] == ("column 'Valeu' is not in the segment", "Value")
    assert found["lists[0]"][1] == "newsletter" and found["lists[1]"][1] is None
    assert found["list_ids[0]"] == ("no list of the SendGrid account has this id", None)
    assert body["plan"] is None and body["sample"] == []


def test_a_column_whose_type_cannot_feed_a_number_field_and_an_unknown_segment_are_problems(
    app: App, source_container: ContainerClient
) -> None:
    folder = fixture_path("cdm", "manifest-header-only")
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            source_container.upload_blob(f"crm/{path.relative_to(folder).as_posix()}", path.read_bytes())
    body = preview(app, {"source_folder": "crm", "segment": "Contact", "custom_fields": {"lifetime_value": "createdOn"}}).body
    typed = next(p for p in body["problems"] if p["field"] == "custom_fields.lifetime_value")
    assert "CDM type DateTime, which cannot feed Number field 'lifetime_value'" in typed["message"]
    mapped = {s["field"]: s["value"] for s in body["suggestions"]}
    assert mapped["mapping.email"] == "EMailAddress1" and mapped["mapping.city"] == "address1City"
    assert mapped["mapping.first_name"] == "firstName" and mapped["mapping.postal_code"] == "address1PostalCode"

    unknown = preview(app, {"source_folder": "crm", "segment": "Contacts"}).body
    assert unknown["problems"][0] == {
        "field": "segment",
        "message": "the folder's default.manifest.cdm.json has no readable entity of this name",
        "did_you_mean": "Contact",
    }
    nowhere = preview(app, {"source_folder": "no/such/folder", "segment": "Contact"}).body
    assert nowhere["problems"][0]["field"] == "source_folder" and nowhere["sample"] == []


def test_custom_fields_are_suggested_by_name_and_a_draft_never_overrides_what_it_sets(
    app: App, source_container: ContainerClient
) -> None:
    columns = ("PrimaryEmail", "GivenName", "Surname", "Loyalty Tier", "Lifetime_Value", "Zip")
    rows = [[f"p{i}@example.com", "Ana", "Costa", "Gold", str(i * 10), "1100"] for i in range(3)]
    write_export(source_container, "ci/other", "Members", [csv_bytes(rows)], columns)
    draft = {"source_folder": "ci/other", "segment": "Members", "mapping": {"last_name": "GivenName"}, "name": "vip"}
    body = preview(app, draft).body
    definition_ = body["definition"]
    assert definition_["mapping"] == {"last_name": "GivenName", "email": "PrimaryEmail", "postal_code": "Zip"}
    assert definition_["custom_fields"] == {"loyalty_tier": "Loyalty Tier", "lifetime_value": "Lifetime_Value"}
    assert "name" not in {s["field"] for s in body["suggestions"]}
    assert body["sample"][0]["custom_fields"] and body["rejects"] == {}


@pytest.mark.parametrize("show", [False, True])
def test_no_profile_value_is_logged_with_or_without_show_values(app: App, caplog: pytest.LogCaptureFixture, show: bool) -> None:
    draft = {**definition(), "show_values": show, "sample_size": 20}
    with caplog.at_level(logging.DEBUG):
        body = preview(app, draft).body
    assert body["plan"] == {"upsert": 8, "remove": 0} and len(body["sample"]) == 8
    assert (body["sample"][0]["email"] == "person1@example.com") is show and body["masked"] is not show
    assert caplog.records  # the preview's dry run did log (counts)
    for value in PROFILE_VALUES:
        assert value not in caplog.text


@pytest.mark.parametrize(
    "body",
    [
        b'{"source_folder": "a", "segment": "b", "typo": 1}',
        b'{"source_folder": "a", "segment": "b", "<img src=x>": 1}',
        b'{"source_folder": "a", "segment": "b", "segment": "c"}',
        b'{"source_folder": "a"}',
        b'{"source_folder": "a\\n", "segment": "b"}',
        b'{"source_folder": "a", "segment": "b", "sample_size": 21}',
        b'{"source_folder": "a", "segment": "b", "rows": 0}',
        b'{"source_folder": "a", "segment": "b", "rows": 10001}',
        b'{"source_folder": "a", "segment": "b", "show_values": "yes"}',
        b'{"source_folder": "a", "segment": "b", "mapping": ["EMail"]}',
        b'{"source_folder": "a", "segment": "b", "lists": "Newsletter"}',
        b'{"source_folder": "a", "segment": "b", "lists": [1]}',
        b'["source_folder"]',
        b"not json",
        b'{"source_folder": "a", "segment": "b", "pad": "' + b"x" * MAX_PREVIEW_BODY_BYTES + b'"}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_bad_bodies_are_400_in_the_usual_shape_and_never_echoed(app: App, sandbox: Any, body: bytes) -> None:
    answer = preview(app, body)
    assert answer.status == 400 and set(answer.body) == {"error"} and answer.body["error"]["code"] == "bad_request"
    assert "<img" not in answer.body["error"]["message"] and "Newsletter" not in answer.body["error"]["message"]
    assert sandbox_get(sandbox, "requests")["requests"] == []


def test_only_post_and_no_query_parameters_but_the_function_key(app: App) -> None:
    draft = {"source_folder": FOLDER, "segment": SEGMENT}
    assert routes.handle_setup(app, "GET", "preview", None).status == 405
    assert preview(app, draft, code="the-function-key").status == 200
    assert preview(app, draft, dry_run="true").status == 400


def test_a_draft_naming_an_account_the_app_does_not_use_is_not_read_with_it(app: App, sandbox: Any) -> None:
    body = preview(app, {**definition(), "sendgrid_api_key_secret": "storage-connection-string"}).body
    assert {p["field"] for p in body["problems"]} == {"sendgrid_api_key_secret"} and body["plan"] is None
    assert sandbox_get(sandbox, "requests")["requests"] == []
