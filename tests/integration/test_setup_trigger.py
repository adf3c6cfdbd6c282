"""export_setup as the Functions host calls it: route parts in, JSON out, errors in the usual shape."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest
from azure.storage.blob import ContainerClient
from helpers import API_KEY, FOLDER, SEGMENT, app_env, definition, person, write

import export_setup
from shared.api.compose import reset_app


@pytest.fixture
def environment(
    monkeypatch: pytest.MonkeyPatch, azurite: Any, source_container: ContainerClient, state_container_name: str, sandbox: Any
) -> Iterator[None]:
    write(source_container, [[person(i) for i in range(1, 4)]])
    monkeypatch.delenv("KEY_VAULT_URL", raising=False)
    for name, value in app_env(azurite, source_container, state_container_name, sandbox.url, [definition()]).items():
        monkeypatch.setenv(name, value)
    reset_app()
    yield
    reset_app()


def call(method: str, area: str, item: str | None = None, body: bytes = b"", **params: str) -> tuple[int, Any]:
    route = {"area": area, **({"item": item} if item else {})}
    url = "http://localhost:7071/api/" + "/".join(route.values())
    response = export_setup.main(func.HttpRequest(method, url, body=body, route_params=route, params=params))
    assert response.mimetype == "application/json"
    return response.status_code, json.loads(response.get_body())


def test_each_setup_path_answers_through_the_trigger(environment: None) -> None:
    status, listing = call("GET", "sources", limit="5")
    assert status == 200 and [s["folder"] for s in listing["sources"]] == [FOLDER]
    status, lists = call("GET", "sendgrid", "lists")
    assert status == 200 and {item["name"] for item in lists["lists"]} == {"newsletter", "other"}
    assert call("GET", "SendGrid", "Fields")[0] == 200  # the host's routing ignores case: so do the routes
    draft = json.dumps({"source_folder": FOLDER, "segment": SEGMENT, "lists": ["newsletter"], "privacy_consent": True})
    status, preview = call("POST", "preview", body=draft.encode())
    assert status == 200 and preview["plan"] == {"upsert": 3, "remove": 0} and API_KEY not in json.dumps(preview)


def test_errors_come_back_in_the_usual_shape(environment: None) -> None:
    assert call("GET", "sources", limit="0") == (
        400,
        {"error": {"code": "bad_request", "message": "'limit' must be a whole number from 1 to 100"}},
    )
    status, body = call("GET", "sendgrid", "segments")
    assert status == 404 and body["error"]["code"] == "not_found" and "segments" not in body["error"]["message"]
    assert call("GET", "preview")[0] == 405
    assert call("GET", "sendgrid", "lists", export="nope")[0] == 404
