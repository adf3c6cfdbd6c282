"""What the app sends to Application Insights, captured from the real Azure Monitor exporter.

The distro is configured once per process and instruments `requests` globally, so every run with
telemetry on happens in a child interpreter that calls the real HTTP or timer trigger (which
configures telemetry and flushes before returning), with the connection string's
IngestionEndpoint at a local ingestion stand-in (tools/ingestion_standin.py) that records every
POST /v2.1/track body. Statsbeat (the SDK's own usage reports to Microsoft) is off in the child:
nothing leaves the loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import ContainerClient
from helpers import API_KEY, ROOT, app_env, definition, person, tls_files, write

from shared import telemetry
from shared.errors import ExportError
from shared.report import Counts, RunReport
from tools import ingestion_standin

CHILD = r"""
import json, sys, time
import azure.functions as func
import export_http, export_timer
from azure.functions.timer import TimerRequest
from shared import telemetry
from shared.errors import ExportError
trigger = sys.argv[1]
for i in range(int(sys.argv[2])):
    if trigger == "http":
        request = func.HttpRequest(method="POST", url="/api/exports/vip/run", body=b'{"wait": true}',
                                   route_params={"name": "vip", "action": "run"})
        response = export_http.main(request)
        print(json.dumps({"status": response.status_code, "body": json.loads(response.get_body())}), flush=True)
    else:
        export_timer.main(TimerRequest(past_due=False))  # queues the run; the worker runs it
        import azure.functions.queue as fq, export_worker, os
        from azure.storage.queue import QueueClient
        q = QueueClient.from_connection_string(os.environ["SOURCE_STORAGE_CONNECTION_STRING"], os.environ["RUN_QUEUE"])
        deadline = time.monotonic() + 30  # the run, then its confirm message(s): the event comes when it is final
        while time.monotonic() < deadline:
            got = list(q.receive_messages(max_messages=1))
            if not got:
                if not q.get_queue_properties().approximate_message_count:
                    break
                time.sleep(0.2)
                continue
            m = got[0]
            export_worker.main(fq.QueueMessage(id=m.id, body=str(m.content).encode(), dequeue_count=m.dequeue_count))
            q.delete_message(m)
        print(json.dumps({"status": 0, "body": None}), flush=True)
print(json.dumps({"configured": telemetry._state.configured}), flush=True)
"""

PROFILE_VALUES = ("First", "Last", "Lisbon", "Lisboa", "1100-148", "Portugal", "@example.com")


@pytest.fixture
def environment(azurite: Any, source_container: ContainerClient, state_container_name: str, sandbox: Any) -> dict[str, str]:
    write(source_container, [[person(i) for i in range(1, 6)] + [person(9, email="not-an-email")]])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS", "OTEL_", "KEY_VAULT"))}
    env.update(
        {
            **app_env(azurite, source_container, state_container_name, sandbox.url, [definition()]),
            "JOB_WAIT_SECONDS": "30",
            "CONFIRM_INTERVAL_SECONDS": "1",
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def run_child(env: dict[str, str], trigger: str = "http", runs: int = 1) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, trigger, str(runs)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def captured_text(state: ingestion_standin.IngestionState) -> str:
    with state.lock:
        return "\n".join(state.bodies)


@pytest.fixture
def https_standin(tmp_path: Path) -> Any:
    cert_file, key_file, ca_file = tls_files(tmp_path)
    standin = ingestion_standin.start(cert_file, key_file)
    yield standin, ca_file
    standin.stop()


def test_a_run_through_the_real_exporter_sends_one_export_run_event_and_no_profile_data(
    environment: dict[str, str], https_standin: Any, sandbox: Any
) -> None:
    standin, ca_file = https_standin
    # The exporter speaks to the endpoint the connection string names, over HTTPS here (the CA
    # of the stand-in trusted through requests' REQUESTS_CA_BUNDLE, which azure-core honours).
    environment.update({"APPLICATIONINSIGHTS_CONNECTION_STRING": standin.connection_string, "REQUESTS_CA_BUNDLE": ca_file})
    lines = run_child(environment)
    answer, state = lines[0], lines[-1]
    assert state == {"configured": True}
    report = answer["body"]
    assert answer["status"] == 200 and report["status"] == "succeeded" and report["counts"]["sent"] == 5

    (event,) = standin.state.events(telemetry.EVENT_NAME)  # exactly one, after the child exited too
    # Exactly the properties, plus the one the exporter adds to every log-based item
    # (logger_name: the instrumentation scope, export/logs/_exporter.py).
    assert set(event["properties"]) == {*telemetry.EVENT_PROPERTIES, "logger_name"}
    assert event["properties"]["logger_name"] == telemetry.SERVICE_NAME
    assert set(event["measurements"]) == set(telemetry.EVENT_MEASUREMENTS)
    properties, measurements = event["properties"], event["measurements"]
    assert properties["run_id"] == report["run_id"] and properties["export"] == "vip"
    assert properties["status"] == "succeeded" and properties["trigger"] == "http" and properties["error_code"] == ""
    assert properties["sync_mode"] == "upsert" and properties["dry_run"] == "false"
    assert properties["unchanged_snapshot"] == "false"
    for name, value in report["counts"].items():
        assert measurements[name] == value, name
    assert measurements["upserts"] == report["requests"]["upserts"] and measurements["rejected"] == 1
    assert measurements["duration_seconds"] >= 0

    # Metrics: runs by status, contacts by outcome, the duration histogram.
    metrics = standin.state.of_type("MetricData")
    names = {m["name"] for data in metrics for m in data["metrics"]}
    assert {telemetry.METRIC_RUNS, telemetry.METRIC_CONTACTS, telemetry.METRIC_DURATION} <= names
    contacts = {
        (data["properties"]["outcome"]): m["value"]
        for data in metrics
        for m in data["metrics"]
        if m["name"] == telemetry.METRIC_CONTACTS
    }
    assert contacts == {"sent": 5, "rejected": 1}
    runs = [(data["properties"], m["value"]) for data in metrics for m in data["metrics"] if m["name"] == telemetry.METRIC_RUNS]
    assert runs == [({"export": "vip", "status": "succeeded"}, 1)]

    # Spans: one per stage carrying the run id; SendGrid calls as dependencies.
    dependencies = standin.state.of_type("RemoteDependencyData")
    stages = {d["name"]: d for d in dependencies if d.get("properties", {}).get("stage")}
    assert {"prepare", "read and send", "compare and confirm", "record"} <= set(stages)
    assert all(d["properties"]["run_id"] == report["run_id"] for d in stages.values())
    sendgrid = [d for d in dependencies if str(d.get("data", "")).startswith(sandbox.url)]
    assert any("/v3/marketing/contacts" in d["data"] for d in sendgrid)
    assert [d["data"] for d in sendgrid if "?" in d["data"]] == []
    # The Azure SDK's own storage spans too: no dependency URL keeps a query.
    assert [d.get("data", "") for d in dependencies if "?" in d.get("data", "")] == []

    # Nothing personal anywhere: no email, name, place, postcode, and no key.
    text = captured_text(standin.state)
    for value in (*PROFILE_VALUES, API_KEY, "not-an-email"):
        assert value not in text, value


def test_the_timer_trigger_sends_its_events_to_a_plain_http_endpoint_too(environment: dict[str, str]) -> None:
    standin = ingestion_standin.start()
    try:
        environment["APPLICATIONINSIGHTS_CONNECTION_STRING"] = standin.connection_string
        run_child(environment, trigger="timer")
        # One event, when the run became final (by its confirm message): none while it was confirming.
        (event,) = standin.state.events(telemetry.EVENT_NAME)
        assert event["properties"]["trigger"] == "timer" and event["properties"]["status"] == "succeeded"
    finally:
        standin.stop()


def test_a_second_run_on_the_same_snapshot_says_so(environment: dict[str, str]) -> None:
    standin = ingestion_standin.start()
    try:
        environment["APPLICATIONINSIGHTS_CONNECTION_STRING"] = standin.connection_string
        run_child(environment, runs=2)
        first, second = standin.state.events(telemetry.EVENT_NAME)
        assert first["properties"]["unchanged_snapshot"] == "false"
        assert second["properties"]["unchanged_snapshot"] == "true"
        assert second["measurements"]["unchanged"] == 5 and second["measurements"]["sent"] == 0
    finally:
        standin.stop()


def test_without_a_connection_string_nothing_is_configured_or_sent_but_the_event_is_known(environment: dict[str, str]) -> None:
    lines = run_child(environment)
    assert lines[-1] == {"configured": False} and lines[0]["status"] == 200


def test_a_cold_start_imports_no_opentelemetry() -> None:
    code = "import sys, export_http, export_timer; print(sorted(m for m in sys.modules if 'opentelemetry' in m))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.stdout.strip() == "[]"


def test_the_event_of_a_failed_run_carries_its_code_and_the_query_string_is_cut() -> None:
    report = RunReport(export="vip", trigger="timer", dry_run=False, counts=Counts(read=3, rejected=3))
    report.error = ExportError("sendgrid_auth_failed", "the key was refused")
    report.finish()
    event = telemetry.run_event(report, unchanged_snapshot=False)
    assert event["properties"]["status"] == "failed"
    assert event["properties"]["error_code"] == "sendgrid_auth_failed"
    assert event["measurements"]["rejected"] == 3
    url = "https://api.sendgrid.com/v3/marketing/lists/x/contacts?contact_ids=a,b#f"
    assert telemetry.strip_query(url) == "https://api.sendgrid.com/v3/marketing/lists/x/contacts"
    assert telemetry.strip_query("http://user:pw@127.0.0.1:8/x?email=a%40b.c") == "http://127.0.0.1:8/x"


def test_spans_flush_and_the_event_work_without_configuration() -> None:
    report = RunReport(export="vip", trigger="http", dry_run=True)
    with telemetry.span("prepare", report):
        pass
    telemetry.flush()
    event = telemetry.record_run(report)
    assert event is not None and telemetry.last_event() == event and event["properties"]["dry_run"] == "true"
