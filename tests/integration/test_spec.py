"""Request and response shapes against SendGrid's documented API.

Every check runs on the project's own JSON Schema, tests/fixtures/sendgrid/marketing-api.schema.json
(written from the documented facts in docs/reference.md), wherever the tests run. Where SendGrid's
official OpenAPI files are present (CI_SENDGRID_REFERENCE_DIR, default ../shared/reference) the same
checks run against them too: the "official" cases, which skip elsewhere. Checks both sides: what the
exporter sends is valid for SendGrid, and the sandbox answers and refuses as documented.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any, Protocol
from urllib.parse import urlsplit

import jsonschema
import pytest
import requests
from azure.storage.blob import ContainerClient
from helpers import API_KEY, FAST_RETRIES, LIST_ID, OTHER_LIST_ID, definition, fixture_path, reference_dir
from jsonschema import Draft202012Validator

from shared.api import routes
from shared.sendgrid.client import SendGridClient
from tools.sample_export import csv_bytes, write_export


class Shapes(Protocol):
    """The documented shapes of the API's requests and answers, from one source."""

    def request(self, path: str, method: str) -> Draft202012Validator: ...

    def response(self, path: str, method: str, status: str) -> Draft202012Validator | None:
        """The answer's shape; None when the status is documented without a body. An
        undocumented status raises KeyError (the test fails)."""
        ...


def checker(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@cache
def project_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(fixture_path("sendgrid", "marketing-api.schema.json").read_text(encoding="utf-8"))
    return schema


class ProjectShapes:
    """tests/fixtures/sendgrid/marketing-api.schema.json: `$defs` "<METHOD> <path> request" and
    "<METHOD> <path> <status>"."""

    @staticmethod
    def shape(key: str) -> Draft202012Validator:
        definitions = project_schema()["$defs"]
        # Local $refs ("#/$defs/...") resolve against a root that carries the $defs.
        return checker({**definitions[key], "$defs": definitions})

    def request(self, path: str, method: str) -> Draft202012Validator:
        return self.shape(f"{method.upper()} {path} request")

    def response(self, path: str, method: str, status: str) -> Draft202012Validator | None:
        return self.shape(f"{method.upper()} {path} {status}")


# The official file each path is described in (twilio/sendgrid-oai spec/json/tsg_mc_<name>_v3.json).
SPEC_FILES = {
    "/v3/marketing/lists": "lists",
    "/v3/marketing/field_definitions": "custom_fields",
    "/v3/marketing/contacts": "contacts",
}


@cache
def official_spec(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads((reference_dir("sendgrid") / f"tsg_mc_{name}_v3.json").read_text(encoding="utf-8"))
    return spec


class OfficialShapes:
    """SendGrid's OpenAPI files, as they are (they skip where absent)."""

    @staticmethod
    def operation(path: str, method: str) -> tuple[str, dict[str, Any]]:
        name = next(file for prefix, file in SPEC_FILES.items() if path.startswith(prefix))
        operation: dict[str, Any] = official_spec(name)["paths"][path][method]
        return name, operation

    @staticmethod
    def shape(name: str, schema: dict[str, Any]) -> Draft202012Validator:
        # Local $refs ("#/components/...") resolve against a root that carries the components.
        return checker({**schema, "components": official_spec(name)["components"]})

    def request(self, path: str, method: str) -> Draft202012Validator:
        name, operation = self.operation(path, method)
        return self.shape(name, operation["requestBody"]["content"]["application/json"]["schema"])

    def response(self, path: str, method: str, status: str) -> Draft202012Validator | None:
        name, operation = self.operation(path, method)
        response = operation["responses"][status]
        if "$ref" in response:
            response = official_spec(name)["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
        if "content" not in response:
            return None
        return self.shape(name, response["content"]["application/json"]["schema"])


@pytest.fixture(params=["project", "official"])
def shapes(request: pytest.FixtureRequest) -> Shapes:
    if request.param == "official":
        reference_dir("sendgrid")  # skips where the official files are absent
        return OfficialShapes()
    return ProjectShapes()


def answer_shape(shapes: Shapes, path: str, method: str, status: str) -> Draft202012Validator:
    shape = shapes.response(path, method, status)
    assert shape is not None, f"{method} {path} {status} is documented without a body"
    return shape


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
    app_factory: Any, source_container: ContainerClient, sandbox: Any, shapes: Shapes
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
    check = shapes.request("/v3/marketing/contacts", "put")
    assert len(sandbox.state.bodies) == 3
    for body in sandbox.state.bodies:
        check.validate(body)


def test_the_validator_is_strict_enough_to_catch_what_sendgrid_refuses(shapes: Shapes) -> None:
    check = shapes.request("/v3/marketing/contacts", "put")
    with pytest.raises(jsonschema.ValidationError):
        check.validate({"list_ids": [LIST_ID], "contacts": [{"email": "a@example.com", "first_name": "x" * 51}]})
    with pytest.raises(jsonschema.ValidationError):
        check.validate({"list_ids": ["not-a-uuid"], "contacts": [{"email": "a@example.com"}]})
    with pytest.raises(jsonschema.ValidationError):
        check.validate({"list_ids": [LIST_ID], "contacts": [{"email": f"{i}@x.io"} for i in range(30_001)]})


# The documented limits of a contact (ContactRequest; docs/reference.md): at the limit it is valid,
# one over it is not, in the project's schema and in the official one alike.
@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("email", 254),
        ("external_id", 254),
        ("anonymous_id", 254),
        ("address_line_1", 100),
        ("address_line_2", 100),
        ("city", 60),
        ("country", 50),
        ("first_name", 50),
        ("last_name", 50),
        ("state_province_region", 50),
        ("alternate_emails", 5),
    ],
)
def test_the_documented_contact_limits(shapes: Shapes, field: str, limit: int) -> None:
    check = shapes.request("/v3/marketing/contacts", "put")

    def value(size: int) -> Any:
        if field == "alternate_emails":
            return [f"alt{i}@example.com" for i in range(size)]
        if field == "email":
            return "a" * (size - len("@example.com")) + "@example.com"
        return "x" * size

    def body(size: int) -> dict[str, Any]:
        contact = {"external_id": "id-1"} if field == "email" else {"email": "a@example.com"}
        return {"list_ids": [LIST_ID], "contacts": [{**contact, field: value(size)}]}

    check.validate(body(limit))
    with pytest.raises(jsonschema.ValidationError):
        check.validate(body(limit + 1))
    check.validate({"list_ids": [], "contacts": [{"email": "a@example.com", "postal_code": "9" * 500}]})  # no limit


@pytest.mark.parametrize(
    "body",
    [
        {"list_ids": [LIST_ID], "contacts": [{"first_name": "no identifier"}]},
        {"list_ids": [LIST_ID], "contacts": [{"email": "", "first_name": "an empty identifier"}]},
        {"list_ids": [LIST_ID], "contacts": [{"email": "a@example.com", "custom_fields": {"loyalty_tier": "Gold"}}]},
        {"list_ids": [LIST_ID], "contacts": [{"email": "a@example.com", "custom_fields": ["e1_T", "Gold"]}]},
        {"list_ids": [LIST_ID], "contacts": [{"email": "a@example.com", "custom_fields": {"e1_T": True}}]},
        {"list_ids": [LIST_ID], "contacts": [{"email": "a@example.com", "state": "Lisboa"}]},
        {"list_ids": [LIST_ID], "contacts": [{"email": "not an email"}]},
        {"list_ids": [LIST_ID], "contacts": [{"email": "a@example.com"}], "list_id": LIST_ID},
    ],
    ids=[
        "no-identifier",
        "empty-identifier",
        "custom-field-by-name",
        "custom-fields-not-an-object",
        "custom-value-not-text-or-number",
        "unknown-field",
        "not-an-email",
        "unknown-top-level-key",
    ],
)
def test_the_project_schema_also_holds_what_the_docs_say_in_prose(body: dict[str, Any]) -> None:
    """What the docs state beyond the OpenAPI schema (an identifier per contact; custom fields by
    id) and the exporter's own typos: refused by the project's schema."""
    with pytest.raises(jsonschema.ValidationError):
        ProjectShapes().request("/v3/marketing/contacts", "put").validate(body)


def test_the_project_schema_carries_the_official_limits() -> None:
    """Facts carry over: every limit the official OpenAPI states for what the exporter sends is
    the same in the project's schema (official files only; skips where they are absent)."""
    contacts = official_spec("contacts")
    definitions = project_schema()["$defs"]
    official_contact = contacts["components"]["schemas"]["ContactRequest"]["properties"]
    ours = definitions["contact"]["properties"]
    assert set(official_contact) == set(ours)
    for name, prop in official_contact.items():
        for keyword in ("maxLength", "maxItems"):
            assert ours[name].get(keyword) == prop.get(keyword), (name, keyword)
        if "items" in prop:
            assert ours[name]["items"].get("maxLength") == prop["items"].get("maxLength"), name
    official_body = contacts["paths"]["/v3/marketing/contacts"]["put"]["requestBody"]["content"]["application/json"]["schema"]
    our_body = definitions["PUT /v3/marketing/contacts request"]
    for keyword in ("minItems", "maxItems"):
        assert our_body["properties"]["contacts"][keyword] == official_body["properties"]["contacts"][keyword]
    assert official_body["properties"]["list_ids"]["items"]["format"] == definitions["uuid"]["format"]
    assert set(official_body["required"]) == set(our_body["required"])
    search = contacts["paths"]["/v3/marketing/contacts/search/emails"]["post"]["requestBody"]["content"]["application/json"]
    our_search = definitions["POST /v3/marketing/contacts/search/emails request"]["properties"]["emails"]
    assert our_search["items"]["maxLength"] == search["schema"]["properties"]["emails"]["items"]["maxLength"]
    batch = contacts["paths"]["/v3/marketing/contacts/batch"]["post"]["requestBody"]["content"]["application/json"]
    our_batch = definitions["POST /v3/marketing/contacts/batch request"]["properties"]["ids"]
    assert our_batch["maxItems"] == batch["schema"]["properties"]["ids"]["maxItems"]
    field_types = official_spec("custom_fields")["components"]["schemas"]["FieldType2"]["enum"]
    assert definitions["field_type"]["enum"] == field_types


def test_sandbox_answers_in_the_shapes_of_the_spec(sandbox: Any, shapes: Shapes) -> None:
    fields = call(sandbox, "GET", "/v3/marketing/field_definitions")
    answer_shape(shapes, "/v3/marketing/field_definitions", "get", "200").validate(fields.json())
    listed = call(sandbox, "GET", f"/v3/marketing/lists/{LIST_ID}")
    answer_shape(shapes, "/v3/marketing/lists/{id}", "get", "200").validate(listed.json())
    accepted = call(
        sandbox,
        "PUT",
        "/v3/marketing/contacts",
        {"list_ids": [LIST_ID], "contacts": [{"email": "jane_doe@example.com", "first_name": "Jane"}]},
    )
    assert accepted.status_code == 202
    answer_shape(shapes, "/v3/marketing/contacts", "put", "202").validate(accepted.json())
    job = call(sandbox, "GET", f"/v3/marketing/contacts/imports/{accepted.json()['job_id']}").json()
    assert job["status"] == "pending"  # accepted is not applied
    sandbox.state.imports.join()  # SendGrid has processed it by the next poll
    job = call(sandbox, "GET", f"/v3/marketing/contacts/imports/{accepted.json()['job_id']}").json()
    answer_shape(shapes, "/v3/marketing/contacts/imports/{id}", "get", "200").validate(job)
    assert job["status"] == "completed" and job["results"]["created_count"] == 1
    assert job["job_type"] == "upsert_contacts"  # as recorded (the spec's enum says "upsert")
    found = call(sandbox, "POST", "/v3/marketing/contacts/search/emails", {"emails": ["jane_doe@example.com"]})
    answer_shape(shapes, "/v3/marketing/contacts/search/emails", "post", "200").validate(found.json())
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
def test_sandbox_refuses_what_sendgrid_refuses(sandbox: Any, shapes: Shapes, body: Any, status: int) -> None:
    response = call(sandbox, "PUT", "/v3/marketing/contacts", body)
    assert response.status_code == status
    if status == 400:
        answer_shape(shapes, "/v3/marketing/contacts", "put", "400").validate(response.json())
    assert sandbox.state.jobs == {}


def test_sandbox_auth(sandbox: Any) -> None:
    assert call(sandbox, "GET", "/v3/marketing/field_definitions", key="SG.wrong").status_code == 401
    sandbox.state.read_only_keys.add("SG.read-only")
    assert (
        call(sandbox, "PUT", "/v3/marketing/contacts", {"contacts": [{"email": "a@example.com"}]}, key="SG.read-only").status_code
        == 403
    )


def test_the_mirror_calls_and_their_answers_match_the_spec(sandbox: Any, shapes: Shapes) -> None:
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
    answer_shape(shapes, "/v3/marketing/contacts/imports/{id}", "get", "200").validate(job)
    sandbox.state.imports.join()
    found = client.members.contact_ids(["a@example.com", "b@example.com", "c" * 95 + "@example.com", "broken@@x.io"])
    assert len(found.found) == 3
    call(sandbox, "POST", "/_sandbox/delete", {"emails": ["b@example.com"]})
    assert len(client.members.remove_from_list(LIST_ID, list(found.found.values()))) == 1
    templates = {
        "/v3/marketing/contacts/search/emails": "/v3/marketing/contacts/search/emails",
        "/v3/marketing/contacts/search": "/v3/marketing/contacts/search",
        "/v3/marketing/contacts/batch": "/v3/marketing/contacts/batch",
        f"/v3/marketing/lists/{LIST_ID}/contacts": "/v3/marketing/lists/{id}/contacts",
    }
    checked = set()
    for response in seen:
        template = templates[urlsplit(str(response.request.url)).path]
        method = str(response.request.method).lower()
        if response.request.body:
            shapes.request(template, method).validate(json.loads(response.request.body))
        status = str(response.status_code)
        shape = shapes.response(template, method, status)
        if shape is not None:
            shape.validate(response.json())
        checked.add((template, status))
    assert checked >= {
        ("/v3/marketing/contacts/search/emails", "200"),
        ("/v3/marketing/contacts/search/emails", "400"),
        ("/v3/marketing/contacts/search", "200"),
        ("/v3/marketing/contacts/batch", "200"),
        ("/v3/marketing/lists/{id}/contacts", "404"),
        ("/v3/marketing/lists/{id}/contacts", "202"),
    }
