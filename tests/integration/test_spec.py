"""Request and response shapes against SendGrid's official OpenAPI description.

The spec files are read from ../shared/reference/sendgrid; without them these tests skip (the
project itself never needs them). Checks both sides: what the exporter sends is valid for
SendGrid, and the sandbox answers and refuses as the spec says.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema
import pytest
import requests
from azure.storage.blob import ContainerClient
from helpers import (
    API_KEY,
    FAST_RETRIES,
    LIST_ID,
    OTHER_LIST_ID,
    definition,
    reference_dir,  # noqa: I001
)
from jsonschema import Draft202012Validator

from shared.api import routes
from shared.sendgrid.client import SendGridClient
from tools.sample_export import csv_bytes, write_export


@cache
def spec(name: str) -> dict[str, Any]:
    return json.loads((reference_dir("sendgrid") / f"tsg_mc_{name}_v3.json").read_text())


def validator(name: str, schema: dict[str, Any]) -> Draft202012Validator:
    # Local $refs ("#/components/...") resolve against a root that carries the components.
    root = {**schema, "components": spec(name)["components"]}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def request_schema(name: str, path: str, method: str) -> Draft202012Validator:
    operation = spec(name)["paths"][path][method]
    return validator(name, operation["requestBody"]["content"]["application/json"]["schema"])


def response_schema(name: str, path: str, method: str, status: str) -> Draft202012Validator:
    response = spec(name)["paths"][path][method]["responses"][status]
    if "$ref" in response:
        response = spec(name)["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    return validator(name, response["content"]["application/json"]["schema"])


def call(sandbox: Any, method: str, path: str, body: Any = None, key: str = API_KEY) -> requests.Response:
    data = body if isinstance(body, bytes) else (None if body is None else json.dumps(body).encode())
    return requests.request(
        method,
        sandbox.url + path,
        data=data,
        timeout=30,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )


def test_every_body_the_exporter_sends_is_valid_for_put_contacts(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    columns = ("EMail", "FirstName", "LastName", "City", "Tier", "Value", "Since", "Address", "ExternalId")
    rows = [
        [
            f"p{i}@example.com",
            "Ana" * 20,
            "Costa",
            "Lisbon",
            "Gold",
            f"{i}.5",
            "2024-01-0" + str(1 + i % 9),
            "Rua Augusta 1",
            f"ext-{i}",
        ]
        for i in range(60)
    ]
    write_export(source_container, "CustomerInsights_test/SendGridExport", "HighValueCustomers", [csv_bytes(rows)], columns)
    app = app_factory(
        [
            definition(
                list_ids=[LIST_ID, OTHER_LIST_ID],
                mapping={
                    "email": "EMail",
                    "first_name": "FirstName",
                    "last_name": "LastName",
                    "city": "City",
                    "address_line_1": "Address",
                    "external_id": "ExternalId",
                },
                custom_fields={"loyalty_tier": "Tier", "lifetime_value": "Value", "member_since": "Since"},
            )
        ],
        services=dict(max_contacts_per_request=25),
    )
    assert routes.handle(app, "POST", "vip", "run", b'{"wait": true}').body["counts"]["sent"] == 60
    check = request_schema("contacts", "/v3/marketing/contacts", "put")
    assert len(sandbox.state.bodies) == 3
    for body in sandbox.state.bodies:
        check.validate(body)


def test_the_validator_is_strict_enough_to_catch_what_sendgrid_refuses() -> None:
    check = request_schema("contacts", "/v3/marketing/contacts", "put")
    with pytest.raises(jsonschema.ValidationError):
        check.validate({"list_ids": [LIST_ID], "contacts": [{"email": "a@example.com", "first_name": "x" * 51}]})
    with pytest.raises(jsonschema.ValidationError):
        check.validate({"list_ids": ["not-a-uuid"], "contacts": [{"email": "a@example.com"}]})
    with pytest.raises(jsonschema.ValidationError):
        check.validate({"list_ids": [LIST_ID], "contacts": [{"email": f"{i}@x.io"} for i in range(30_001)]})


def test_sandbox_answers_in_the_shapes_of_the_spec(sandbox: Any) -> None:
    fields = call(sandbox, "GET", "/v3/marketing/field_definitions")
    response_schema("custom_fields", "/v3/marketing/field_definitions", "get", "200").validate(fields.json())
    listed = call(sandbox, "GET", f"/v3/marketing/lists/{LIST_ID}")
    response_schema("lists", "/v3/marketing/lists/{id}", "get", "200").validate(listed.json())
    accepted = call(
        sandbox,
        "PUT",
        "/v3/marketing/contacts",
        {"list_ids": [LIST_ID], "contacts": [{"email": "jane_doe@example.com", "first_name": "Jane"}]},
    )
    assert accepted.status_code == 202
    response_schema("contacts", "/v3/marketing/contacts", "put", "202").validate(accepted.json())
    job = call(sandbox, "GET", f"/v3/marketing/contacts/imports/{accepted.json()['job_id']}").json()
    assert job["status"] == "pending"  # accepted is not applied
    sandbox.state.imports.join()  # SendGrid has processed it by the next poll
    job = call(sandbox, "GET", f"/v3/marketing/contacts/imports/{accepted.json()['job_id']}").json()
    response_schema("contacts", "/v3/marketing/contacts/imports/{id}", "get", "200").validate(job)
    assert job["status"] == "completed" and job["results"]["created_count"] == 1
    assert job["job_type"] == "upsert_contacts"  # as recorded (the spec's enum says "upsert")
    found = call(sandbox, "POST", "/v3/marketing/contacts/search/emails", {"emails": ["jane_doe@example.com"]})
    response_schema("contacts", "/v3/marketing/contacts/search/emails", "post", "200").validate(found.json())
    for headers in (fields.headers, accepted.headers):
        assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(headers)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"list_ids": [LIST_ID], "contacts": [{"email": "a@example.com", "first_name": "x" * 51}]}, 400),
        ({"list_ids": [LIST_ID], "contacts": [{"email": "a@example.com", "city": "x" * 61}]}, 400),
        ({"list_ids": [LIST_ID], "contacts": [{"first_name": "no identifier"}]}, 400),
        ({"list_ids": [LIST_ID], "contacts": [{"email": "not valid@example"}]}, 400),
        ({"list_ids": [LIST_ID], "contacts": [{"email": "a@example.com", "custom_fields": {"w99": "x"}}]}, 400),
        ({"list_ids": ["not-a-uuid"], "contacts": [{"email": "a@example.com"}]}, 400),
        ({"list_ids": [LIST_ID], "contacts": []}, 400),
        ({"list_ids": [LIST_ID], "contacts": [{"email": f"p{i}@example.com"} for i in range(30_001)]}, 400),
        (b"{broken", 400),
        (b'{"list_ids": [], "contacts": [{"email": "a@example.com", "first_name": "' + b"x" * 6_000_000 + b'"}]}', 413),
    ],
)
def test_sandbox_refuses_what_sendgrid_refuses(sandbox: Any, body: Any, status: int) -> None:
    response = call(sandbox, "PUT", "/v3/marketing/contacts", body)
    assert response.status_code == status
    if status == 400:
        response_schema("contacts", "/v3/marketing/contacts", "put", "400").validate(response.json())
    assert sandbox.state.jobs == {}


def test_sandbox_auth(sandbox: Any) -> None:
    assert call(sandbox, "GET", "/v3/marketing/field_definitions", key="SG.wrong").status_code == 401
    sandbox.state.read_only_keys.add("SG.read-only")
    assert (
        call(sandbox, "PUT", "/v3/marketing/contacts", {"contacts": [{"email": "a@example.com"}]}, key="SG.read-only").status_code
        == 403
    )


def test_the_mirror_calls_and_their_answers_match_the_spec(sandbox: Any) -> None:
    """What the client sends to search, SGQL search, batch and DELETE, and what the sandbox
    answers, against the spec (captured with a requests response hook: nothing is replaced)."""
    seen: list[requests.Response] = []
    session = requests.Session()
    session.hooks["response"].append(lambda response, *args, **kwargs: seen.append(response))
    client = SendGridClient(sandbox.url, lambda refresh: API_KEY, policy=FAST_RETRIES, session=session)
    accepted = call(
        sandbox,
        "PUT",
        "/v3/marketing/contacts",
        {
            "list_ids": [LIST_ID],
            "contacts": [{"email": e} for e in ("a@example.com", "b@example.com", "c" * 95 + "@example.com")],
        },
    )
    job = call(sandbox, "GET", f"/v3/marketing/contacts/imports/{accepted.json()['job_id']}").json()
    response_schema("contacts", "/v3/marketing/contacts/imports/{id}", "get", "200").validate(job)
    sandbox.state.imports.join()
    found = client.members.contact_ids(["a@example.com", "b@example.com", "c" * 95 + "@example.com", "broken@@x.io"])
    assert len(found.found) == 3
    call(sandbox, "POST", "/_sandbox/delete", {"emails": ["b@example.com"]})
    assert len(client.members.remove_from_list(LIST_ID, list(found.found.values()))) == 1
    templates = {
        "/v3/marketing/contacts/search/emails": ("contacts", "/v3/marketing/contacts/search/emails"),
        "/v3/marketing/contacts/search": ("contacts", "/v3/marketing/contacts/search"),
        "/v3/marketing/contacts/batch": ("contacts", "/v3/marketing/contacts/batch"),
        f"/v3/marketing/lists/{LIST_ID}/contacts": ("lists", "/v3/marketing/lists/{id}/contacts"),
    }
    checked = set()
    for response in seen:
        path = requests.utils.urlparse(response.request.url).path
        name, template = templates[path]
        method = response.request.method.lower()
        if response.request.body:
            request_schema(name, template, method).validate(json.loads(response.request.body))
        status = str(response.status_code)
        operation = spec(name)["paths"][template][method]["responses"][status]
        if "content" in operation or "$ref" in operation:
            response_schema(name, template, method, status).validate(response.json())
        checked.add((template, status))
    assert checked >= {
        ("/v3/marketing/contacts/search/emails", "200"),
        ("/v3/marketing/contacts/search/emails", "400"),
        ("/v3/marketing/contacts/search", "200"),
        ("/v3/marketing/contacts/batch", "200"),
        ("/v3/marketing/lists/{id}/contacts", "404"),
        ("/v3/marketing/lists/{id}/contacts", "202"),
    }
