"""GET /api/sendgrid/lists and /fields against the sandbox (its lists and fields come from its
own state): the default account, another account by `?export=` (its own secret in the Key Vault
stand-in and the EU endpoint), pages of lists followed and capped, bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import ContainerClient
from helpers import LIST_ID, OTHER_LIST_ID, definition, make_app, person, sandbox_config, sandbox_get, write

from shared.api import routes
from shared.definitions import RESERVED_FIELD_MAX_LENGTH
from shared.sendgrid.client import LISTS_MAX_PAGES, LISTS_PATH, next_page_token
from shared.sendgrid.keys import ApiKeyStores
from shared.services import App
from tools import keyvault_standin, sendgrid_sandbox

DEFAULT_SECRET, EU_SECRET = "sendgrid-api-key", "sendgrid-eu-key"
EU_LIST = "5d3c1b2a-0f9e-4d8c-b7a6-112233445566"


@pytest.fixture
def app(app_factory: Any, source_container: ContainerClient, sandbox: Any) -> App:
    write(source_container, [[person(1)]])
    sandbox.state.contacts["someone@example.com"] = {"id": "c1", "email": "someone@example.com", "list_ids": {LIST_ID}}
    made: App = app_factory([definition()])
    return made


def get(app: App, item: str, **query: str) -> routes.ApiResponse:
    return routes.handle_setup(app, "GET", "sendgrid", item, b"", query)


def test_lists_come_from_the_account_with_their_contact_counts(app: App) -> None:
    answer = get(app, "lists")
    assert answer.status == 200 and answer.body["truncated"] is False
    assert sorted(answer.body["lists"], key=lambda item: item["name"]) == [
        {"id": LIST_ID, "name": "newsletter", "contact_count": 1},
        {"id": OTHER_LIST_ID, "name": "other", "contact_count": 0},
    ]


def test_fields_are_the_reserved_ones_the_app_maps_and_the_accounts_custom_ones(app: App) -> None:
    answer = get(app, "fields")
    assert answer.status == 200
    assert answer.body["reserved"] == [{"name": n, "type": "Text", "max_length": m} for n, m in RESERVED_FIELD_MAX_LENGTH.items()]
    by_name = {f["name"]: f for f in answer.body["custom"]}
    assert {n: f["type"] for n, f in by_name.items()} == {
        "loyalty_tier": "Text",
        "lifetime_value": "Number",
        "member_since": "Date",
    }
    assert all(f["id"] for f in by_name.values())


def test_pages_of_lists_are_followed_by_their_token_and_capped(app: App, sandbox: Any) -> None:
    """The sandbox answers one page; a first page with `_metadata.next` is played by a fault with
    status 200 (SendGrid's shape: tsg_mc_lists_v3.json), then the sandbox's own page follows."""
    first = {
        "result": [{"id": "11111111-2222-4333-8444-555555555555", "name": "page one", "contact_count": 3}],
        "_metadata": {"next": "https://api.sendgrid.com/v3/marketing/lists?page_size=1000&page_token=abc%3D"},
    }
    sandbox_config(sandbox, faults=[{"method": "GET", "path": LISTS_PATH, "status": 200, "times": 1, "body": first}])
    answer = get(app, "lists")
    assert [item["name"] for item in answer.body["lists"]][0] == "page one" and len(answer.body["lists"]) == 3
    queries = [r["query"] for r in sandbox_get(sandbox, "requests")["requests"] if r["path"] == LISTS_PATH]
    assert queries == ["page_size=1000", "page_size=1000&page_token=abc%3D"]

    # A SendGrid that always has a next page: LISTS_MAX_PAGES requests, then truncated.
    pages = [{**first, "_metadata": {"next": f"https://api.sendgrid.com/v3/marketing/lists?page_token=p{i}"}} for i in range(50)]
    sandbox_config(sandbox, faults=[{"method": "GET", "path": LISTS_PATH, "status": 200, "times": 1, "body": p} for p in pages])
    before = len(sandbox_get(sandbox, "requests")["requests"])
    answer = get(app, "lists")
    assert answer.body["truncated"] is True and len(answer.body["lists"]) == LISTS_MAX_PAGES
    assert len(sandbox_get(sandbox, "requests")["requests"]) - before == LISTS_MAX_PAGES


@pytest.mark.parametrize(
    ("metadata", "token"),
    [
        ({"next": "https://api.sendgrid.com/v3/marketing/lists?page_size=1000&page_token=xyz"}, "xyz"),
        ({"next": "https://api.sendgrid.com/v3/marketing/lists/?page_token=a%2Fb"}, "a/b"),
        ({"self": "https://api.sendgrid.com/v3/marketing/lists?page_size=100&page_token="}, None),  # the last page
        ({"next": "https://api.sendgrid.com/v3/marketing/contacts?page_token=xyz"}, None),  # another path
        ({"next": "https://api.sendgrid.com/v3/marketing/lists?page_token=a&page_token=b"}, None),
        ({"next": "https://api.sendgrid.com/v3/marketing/lists?page_token=" + "x" * 2000}, None),
        ({"next": 42}, None),
        (None, None),
    ],
)
def test_next_page_tokens_are_taken_only_from_a_next_page_of_lists(metadata: Any, token: str | None) -> None:
    assert next_page_token(metadata) == token


@pytest.mark.parametrize(("query", "status"), [({"export": "nope"}, 404), ({"export": "Bad\nName"}, 400), ({"page": "2"}, 400)])
def test_bad_queries_are_answered_in_the_usual_shape(app: App, query: dict[str, str], status: int) -> None:
    for item in ("lists", "fields"):
        answer = get(app, item, **query)
        assert answer.status == status and set(answer.body["error"]) == {"code", "message"}
        assert "Bad\nName" not in answer.body["error"]["message"]
    assert routes.handle_setup(app, "POST", "sendgrid", "lists").status == 405
    assert routes.handle_setup(app, "GET", "sendgrid", "segments").status == 404
    assert routes.handle_setup(app, "GET", "sendgrid", None).status == 404


# -- another account ----------------------------------------------------------------------------
@pytest.fixture
def eu_sandbox() -> Iterator[sendgrid_sandbox.SandboxServer]:
    state = sendgrid_sandbox.SandboxState(api_keys={"SG.eu-key"})
    state.add_list("newsletter-eu", EU_LIST)
    state.add_field("eu_only", "Text")
    server = sendgrid_sandbox.start(state)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def two_accounts(
    vault: tuple[keyvault_standin.KeyVaultStandIn, str],
    eu_sandbox: Any,
    sandbox: Any,
    azurite: Any,
    source_container: ContainerClient,
    state_container_name: str,
) -> App:
    standin, ca_file = vault
    standin.state.secrets.update({DEFAULT_SECRET: "SG.global-key", EU_SECRET: "SG.eu-key"})
    sandbox_config(sandbox, api_keys=["SG.global-key"])
    keys = ApiKeyStores(
        standin.vault_url, DEFAULT_SECRET, client_options={"verify_challenge_resource": False, "connection_verify": ca_file}
    )
    definitions = [definition(), definition(name="eu", sendgrid_api_key_secret=EU_SECRET, sendgrid_region="eu")]
    return make_app(
        azurite,
        source_container,
        state_container_name,
        sandbox.url,
        definitions,
        api_keys=keys,
        SENDGRID_EU_API_BASE_URL=eu_sandbox.url,
    )


def test_export_picks_that_exports_account(two_accounts: App, eu_sandbox: Any, sandbox: Any) -> None:
    assert [item["id"] for item in get(two_accounts, "lists", export="eu").body["lists"]] == [EU_LIST]
    assert [f["name"] for f in get(two_accounts, "fields", export="eu").body["custom"]] == ["eu_only"]
    assert {item["id"] for item in get(two_accounts, "lists").body["lists"]} == {LIST_ID, OTHER_LIST_ID}
    assert {item["id"] for item in get(two_accounts, "lists", export="vip").body["lists"]} == {LIST_ID, OTHER_LIST_ID}
    answer = get(two_accounts, "lists", export="eu")
    assert "SG." not in answer.json()
