"""The HTTP API's edges: nothing in a request is ignored (query string, duplicate keys), hostile
JSON is a 400 not a 500, and one export's unreadable report does not take the listing down."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContainerClient
from helpers import definition, person, put_requests, run, write

from shared.api import routes
from shared.services import App


@pytest.fixture
def app(app_factory: Any, source_container: ContainerClient) -> App:
    write(source_container, [[person(i) for i in range(1, 6)]])
    made: App = app_factory([definition()])
    return made


def test_dry_run_in_the_query_string_sends_nothing(app: App, sandbox: Any) -> None:
    # Before, the query string was not read: this was a real send of every contact.
    response = routes.handle(app, "POST", "vip", "run", b"", {"dry_run": "true", "code": "the-function-key"})
    assert response.status == 200 and response.body["dry_run"] is True
    assert response.body["plan"] == {"upsert": 5, "remove": 0}
    assert put_requests(sandbox) == []
    real = routes.handle(app, "POST", "vip", "run", query={"dry_run": "false", "wait": "true"})
    assert real.status == 200 and real.body["dry_run"] is False and real.body["counts"]["sent"] == 5


@pytest.mark.parametrize(
    ("body", "query"),
    [
        (b"", {"dry_run": "yes"}),
        (b"", {"dry_run": "True"}),
        (b"", {"dry_run": ""}),
        (b"", {"dryrun": "true"}),
        (b"", {"force": "true"}),
        (b'{"dry_run": false}', {"dry_run": "true"}),  # the two places disagree
        (b'{"dry_run": true, "dry_run": false}', {}),  # duplicate keys: which one was meant?
        (b'{"dry_run": false, "dry_run": false}', {}),
        (b'{"dry_run": ' + b"1" * 5000 + b"}", {}),  # ValueError in int(), before: a 500
        (b"[" * 100_000 + b"]" * 100_000, {}),  # RecursionError, before: a 500
        (b'{"dry_run": true, "pad": "' + b"x" * 100_000 + b'"}', {}),
    ],
)
def test_doubtful_run_requests_are_refused_and_nothing_is_sent(
    app: App, sandbox: Any, body: bytes, query: dict[str, str]
) -> None:
    response = routes.handle(app, "POST", "vip", "run", body, query)
    assert (response.status, response.body["error"]["code"]) == (400, "bad_request")
    assert put_requests(sandbox) == []


def test_agreeing_body_and_query_are_one_option(app: App, sandbox: Any) -> None:
    response = routes.handle(app, "POST", "vip", "run", b'{"dry_run": true}', {"dry_run": "true"})
    assert response.status == 200 and response.body["dry_run"] is True and put_requests(sandbox) == []


@pytest.mark.parametrize(("name", "action"), [(None, None), ("vip", None), ("vip", "status")])
def test_get_routes_refuse_query_parameters_but_the_function_key(app: App, name: str | None, action: str | None) -> None:
    assert routes.handle(app, "GET", name, action, query={"verbose": "1"}).status == 400
    assert routes.handle(app, "GET", name, action, query={"code": "key"}).status in (200, 404)


@pytest.mark.parametrize("name", ["vip\n", "vip\r\nX-Injected: 1", "VIP", "vip ", "../vip"])
def test_route_names_are_matched_whole(app: App, name: str) -> None:
    for method, action in [("GET", None), ("GET", "status"), ("POST", "run")]:
        response = routes.handle(app, method, name, action)
        assert (response.status, response.body["error"]["code"]) == (400, "bad_request")
        assert name not in response.body["error"]["message"]  # never echoed: no line break reaches a log


def test_an_unreadable_report_is_no_report_and_the_listing_still_answers(
    app_factory: Any, source_container: ContainerClient, blob_service: BlobServiceClient, state_container_name: str
) -> None:
    write(source_container, [[person(i) for i in range(1, 4)]])
    app = app_factory([definition(name="good"), definition(name="vip"), definition(name="odd")])
    assert run(app, "good").status == 200
    state = blob_service.get_container_client(state_container_name)
    try:
        state.create_container()
    except ResourceExistsError:
        pass
    state.upload_blob("runs/vip/latest.json", b'{"status": "succ', overwrite=True)
    state.upload_blob("runs/odd/latest.json", b"[1, 2]", overwrite=True)

    listing = routes.handle(app, "GET", None, None)
    assert listing.status == 200  # before: a JSONDecodeError, so a 500 for every export
    by_name = {e["name"]: e for e in listing.body["exports"]}
    assert by_name["good"]["last_run"]["status"] == "succeeded" and "last_run_problem" not in by_name["good"]
    for name in ("vip", "odd"):
        assert by_name[name]["last_run"] is None
        assert f"runs/{name}/latest.json" in by_name[name]["last_run_problem"]
    one = routes.handle(app, "GET", "vip", None)
    assert one.status == 200 and one.body["last_run"] is None and one.body["last_run_problem"]


def test_the_old_call_shape_still_works(app: App) -> None:
    assert routes.handle(app, "POST", "vip", "run", b'{"dry_run": true}').body["dry_run"] is True
    assert routes.parse_run_options(b"") == {} and routes.parse_run_options(b"", {"full_refresh": "true"}) == {
        "full_refresh": True
    }
