"""The function folders as the Functions host calls them, and the HTTP API's error answers."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any, cast

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest
from azure.storage.blob import ContainerClient
from helpers import API_KEY, ROOT, definition, sandbox_get
from queue_harness import QueueHost

import export_http
import export_timer
from shared.api import routes
from shared.api.compose import get_app, reset_app
from tools.sample_export import csv_bytes, write_export


def function_json(name: str) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads((ROOT / name / "function.json").read_text()))


def test_function_bindings_and_host() -> None:
    (http_in, http_out) = function_json("export_http")["bindings"]
    assert http_in["type"] == "httpTrigger" and http_in["authLevel"] == "function"
    assert http_in["route"] == "exports/{name?}/{action?}/{id?}" and set(http_in["methods"]) == {"get", "post"}
    assert http_out == {"type": "http", "direction": "out", "name": "$return"}
    (timer,) = function_json("export_timer")["bindings"]
    assert timer["type"] == "timerTrigger" and timer["schedule"] == "%EXPORT_SCHEDULE%"
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0" and host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    (queue_in,) = function_json("export_worker")["bindings"]
    assert queue_in["type"] == "queueTrigger" and queue_in["queueName"] == "%RUN_QUEUE%"
    assert queue_in["connection"] == "AzureWebJobsStorage" and queue_in["name"] == "msg"
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    assert {"SOURCE_CONTAINER", "EXPORT_SCHEDULE", "SENDGRID_API_BASE_URL"} <= set(sample)
    assert "EXPORT_DEFINITIONS" not in sample  # locally too, definitions come from exports.json (the setting would win)


@pytest.fixture
def environment(
    monkeypatch: pytest.MonkeyPatch, azurite: Any, source_container: ContainerClient, state_container_name: str, sandbox: Any
) -> Iterator[None]:
    write_export(
        source_container,
        "CustomerInsights_test/SendGridExport",
        "HighValueCustomers",
        [csv_bytes([["a@example.com"], ["b@example.com"], ["nope"]])],
        ("EMail",),
    )
    values = {
        "SOURCE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "SOURCE_CONTAINER": source_container.container_name,
        "STATE_CONTAINER": state_container_name,
        "SENDGRID_API_BASE_URL": sandbox.url,
        "SENDGRID_API_KEY": API_KEY,
        "EXPORT_DEFINITIONS": json.dumps([definition(mapping={"email": "EMail"})]),
        "RUN_QUEUE": f"runs-{uuid.uuid4().hex[:12]}",
        "CONFIRM_INTERVAL_SECONDS": "1",
    }
    monkeypatch.delenv("KEY_VAULT_URL", raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    reset_app()
    yield
    reset_app()


def call_http(
    method: str, name: str | None = None, action: str | None = None, body: bytes = b"", run_id: str | None = None
) -> tuple[int, Any]:
    status, payload, _ = call_http_headers(method, name, action, body, run_id)
    return status, payload


def call_http_headers(
    method: str, name: str | None = None, action: str | None = None, body: bytes = b"", run_id: str | None = None
) -> tuple[int, Any, dict[str, str]]:
    params = {k: v for k, v in {"name": name, "action": action, "id": run_id}.items() if v}
    url = "http://localhost:7071/api/exports" + "".join(f"/{v}" for v in params.values())
    response = export_http.main(func.HttpRequest(method, url, body=body, route_params=params))
    assert response.mimetype == "application/json"
    return response.status_code, json.loads(response.get_body()), dict(response.headers)


def test_http_trigger_queues_the_run_and_the_worker_runs_it(environment: None, monkeypatch: pytest.MonkeyPatch) -> None:
    status, listing = call_http("GET")
    assert status == 200 and listing["exports"][0]["name"] == "vip" and listing["exports"][0]["last_run"] is None
    assert API_KEY not in json.dumps(listing)
    assert call_http("GET", "vip", "status")[0] == 404  # no run yet
    status, queued, headers = call_http_headers("POST", "vip", "run", b'{"dry_run": false}')
    run_id = queued["run_id"]
    assert status == 202 and queued["status"] == "queued"
    assert queued["status_url"] == headers["Location"] == f"http://localhost:7071/api/exports/vip/runs/{run_id}"
    assert call_http("GET", "vip", "runs", run_id=run_id) == (200, call_http("GET", "vip", "status")[1])
    assert call_http("GET", "vip", "runs", run_id=run_id)[1]["status"] == "queued"
    QueueHost(get_app(), monkeypatch).drain()
    status, report = call_http("GET", "vip", "runs", run_id=run_id)
    assert status == 200 and report["status"] == "succeeded" and report["counts"]["sent"] == 2
    assert report["trigger"] == "http"
    status, latest = call_http("GET", "vip", "status")
    assert status == 200 and latest["run_id"] == run_id
    status, one = call_http("GET", "vip")
    assert status == 200 and one["last_run"]["status"] == "succeeded" and one["valid"] is True
    status, inline = call_http("POST", "vip", "run", b'{"wait": true}')  # as before: the report
    assert status == 200 and inline["status"] == "succeeded" and inline["run_id"] != run_id


@pytest.mark.parametrize(
    ("method", "name", "action", "body", "status", "code"),
    [
        ("POST", "vip", "run", b"{not json", 400, "bad_request"),
        ("POST", "vip", "run", b"[true]", 400, "bad_request"),
        ("POST", "vip", "run", b'{"dry_run": "yes"}', 400, "bad_request"),
        ("POST", "vip", "run", b'{"dryrun": true}', 400, "bad_request"),
        ("POST", "vip", "run", b"\xff\xfe", 400, "bad_request"),
        ("GET", "vip", "run", b"", 405, "method_not_allowed"),
        ("POST", "vip", "status", b"", 405, "method_not_allowed"),
        ("POST", None, None, b"", 405, "method_not_allowed"),
        ("GET", "vip", "explode", b"", 404, "not_found"),
        ("POST", "nobody", "run", b"", 404, "not_found"),
    ],
)
def test_bad_requests_get_json_errors(
    environment: None, method: str, name: str | None, action: str | None, body: bytes, status: int, code: str
) -> None:
    got_status, payload = call_http(method, name, action, body)
    assert (got_status, payload["error"]["code"]) == (status, code)
    assert payload["error"]["message"]


def test_timer_trigger_queues_the_exports(environment: None, sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    export_timer.main(TimerRequest(past_due=True))  # the concrete class the host decodes into
    status, latest = call_http("GET", "vip", "status")
    assert latest["trigger"] == "timer" and latest["status"] == "queued"
    assert not [r for r in sandbox_get(sandbox, "requests")["requests"] if r["method"] == "PUT"]
    QueueHost(get_app(), monkeypatch).drain()
    status, latest = call_http("GET", "vip", "status")
    assert latest["trigger"] == "timer" and latest["status"] == "succeeded" and latest["counts"]["sent"] == 2


def test_bad_settings_are_a_json_error_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_CONTAINER", "customer-insights")
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.x")
    monkeypatch.setenv("SOURCE_STORAGE_CONNECTION_STRING", "UseDevelopmentStorage=true")
    monkeypatch.setenv("EXPORT_DEFINITIONS", "[oops")
    reset_app()
    try:
        status, payload = call_http("GET")
    finally:
        reset_app()
    assert status == 500 and "EXPORT_DEFINITIONS" in payload["error"]["message"]


def test_the_http_trigger_answers_as_the_api_does(environment: None) -> None:
    # Behaviour, not source text: the trigger's answer is the API's answer for the same request.
    for method, name, action, body in [
        ("GET", None, None, b""),
        ("GET", "vip", None, b""),
        ("POST", "vip", "run", b'{"dry_run": true}'),
        ("GET", "vip", "explode", b""),
    ]:
        status, payload = call_http(method, name, action, body)
        expected = routes.handle(get_app(), method, name, action, body)
        assert status == expected.status
        if method == "GET":
            assert payload == expected.body
        else:  # two dry runs: same plan, different run ids
            assert payload["dry_run"] is True and payload["plan"] == expected.body["plan"]
    assert routes.parse_run_options(b"") == {}


def test_the_http_trigger_reads_the_query_string(environment: None, sandbox: Any) -> None:
    request = func.HttpRequest(
        "POST",
        "/api/exports/vip/run",
        body=b"",
        route_params={"name": "vip", "action": "run"},
        params={"dry_run": "true", "code": "function-key"},
    )
    response = export_http.main(request)
    assert response.status_code == 200 and json.loads(response.get_body())["dry_run"] is True
    assert not [r for r in sandbox_get(sandbox, "requests")["requests"] if r["method"] == "PUT"]
    unknown = func.HttpRequest("GET", "/api/exports", body=b"", params={"verbose": "1"})
    assert export_http.main(unknown).status_code == 400


def test_operator_cli(environment: None, capsys: pytest.CaptureFixture[str]) -> None:
    from shared.api.cli import main  # noqa: PLC0415

    # --json: the API's answers (tables, progress and exit codes: tests/integration/test_cli.py).
    assert main(["validate"]) == 0
    capsys.readouterr()
    assert main(["run", "vip", "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] is True and dry["plan"] == {"upsert": 2, "remove": 0}
    assert main(["status", "vip", "--json"]) == 2  # a dry run stores nothing: 404, a refusal
    capsys.readouterr()
    assert main(["run", "vip", "--json"]) == 0  # inline: the report when the run ends
    assert json.loads(capsys.readouterr().out)["status"] == "succeeded"
    assert main(["status", "vip", "--json"]) == 0
    latest = json.loads(capsys.readouterr().out)
    assert latest["dry_run"] is False and latest["counts"]["valid"] == 2 and latest["counts"]["sent"] == 2
    assert main(["run", "vip", "--queue", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "queued"
    assert main(["status", "nobody"]) == 2


def test_health_probe_says_only_whether_settings_are_valid(environment: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import export_health  # noqa: PLC0415

    (binding, _) = function_json("export_health")["bindings"]
    assert binding["authLevel"] == "anonymous" and binding["methods"] == ["get"]
    ok = export_health.main(func.HttpRequest("GET", "/api/health", body=b""))
    assert ok.status_code == 200 and json.loads(ok.get_body()) == {"status": "ok"}
    # Broken JSON, a 5,000-digit number, deep nesting, a name with a line break: 503 naming the
    # setting (before, the last three escaped as a 500), never the value or the parser's message.
    for bad_value in ["not json", "[" + "1" * 5000 + "]", "[" * 100_000, json.dumps([{"name": "vip\n"}])]:
        monkeypatch.setenv("EXPORT_DEFINITIONS", bad_value)
        reset_app()
        bad = export_health.main(func.HttpRequest("GET", "/api/health", body=b""))
        answer = json.loads(bad.get_body())
        assert bad.status_code == 503 and answer["status"] == "unhealthy" and answer["setting"] == "EXPORT_DEFINITIONS"
        assert "vip" not in bad.get_body().decode() and "line" not in answer["reason"]
    reset_app()


def test_the_deployed_package_needs_nothing_that_is_not_deployed() -> None:
    # shared/ and the function folders are deployed; tools/, bench/ and tests/ are not (.funcignore).
    ignored = (ROOT / ".funcignore").read_text().split()
    assert {"tools/", "bench/", "tests/", "node_modules/", ".venv/"} <= set(ignored)
    for path in [*(ROOT / "shared").glob("*.py"), *ROOT.glob("export_*/__init__.py")]:
        source = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+(tools|bench|tests)\b", source, re.M), path
