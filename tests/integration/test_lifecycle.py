"""A run's lifecycle across time (queued -> running -> confirming -> final): a status read while
import jobs are pending is never final; the ExportRun event is sent once, when the run becomes
final, by whichever invocation finalises it; every queue message is idempotent at any dequeue
count; a newer run never orphans an older run's jobs; a snapshot event for a busy export leaves
one follow-up run; two submits at once never queue two runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from typing import Any

import azure.functions.queue as func_queue
import pytest
from azure.storage.blob import ContainerClient
from helpers import FOLDER, ROOT, app_env, definition, person, put_requests, run, sandbox_config, write
from queue_harness import QueueHost

import export_worker
from shared.api import routes
from shared.engine import handlers
from shared.engine.messages import Work
from shared.report import utc_now
from shared.run.exporter import JobPolling
from tools import ingestion_standin

PENDING_FOREVER = 10_000  # polls a sandbox job answers "pending" before it ends


def post(app: Any, name: str = "vip") -> routes.ApiResponse:
    return routes.handle(app, "POST", name, "run", b"")


def stored(app: Any, run_id: str, name: str = "vip") -> dict[str, Any]:
    found = app.services.state.report("vip" if name == "vip" else name, run_id)
    assert found is not None
    return dict(found)


def deliver(app: Any, body: dict[str, Any], dequeue_count: int = 1) -> None:
    """A message as the host hands it to the worker (this process's app, as get_app answers)."""
    export_worker.main(func_queue.QueueMessage(id="m", body=json.dumps(body).encode(), dequeue_count=dequeue_count))


# -- 1. nothing is final until SendGrid says so; one event, when final ------------------------------
CHILD = r"""
import json, sys, time, os
import requests
import azure.functions as func, azure.functions.queue as fq
import export_http, export_worker
from azure.storage.queue import QueueClient
from shared.api import compose, routes

sandbox = sys.argv[1]
q = QueueClient.from_connection_string(os.environ["SOURCE_STORAGE_CONNECTION_STRING"], os.environ["RUN_QUEUE"])

def take(timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = list(q.receive_messages(max_messages=1))
        if got:
            m = got[0]
            export_worker.main(fq.QueueMessage(id=m.id, body=str(m.content).encode(), dequeue_count=m.dequeue_count))
            q.delete_message(m)
            return json.loads(str(m.content))["kind"]
        time.sleep(0.2)
    return None

request = func.HttpRequest(method="POST", url="/api/exports/vip/run", body=b"", route_params={"name": "vip", "action": "run"})
run_id = json.loads(export_http.main(request).get_body())["run_id"]
assert take(10) == "run"
app = compose.get_app()
print(json.dumps({"after_run": routes.handle(app, "GET", "vip", "status").body["status"]}), flush=True)
assert take(5) == "confirm"  # SendGrid still works on it: still confirming, no event
print(json.dumps({"after_confirm": routes.handle(app, "GET", "vip", "runs", run_id=run_id).body["status"]}), flush=True)
requests.post(f"{sandbox}/_sandbox/config", json={"job_pending_polls": 0}, timeout=10).raise_for_status()
final = routes.handle(app, "GET", "vip", "status").body  # the status endpoint finalises it
again = routes.handle(app, "GET", "vip", "status").body  # and another look changes nothing
while take(3):  # the confirm message that was still queued finds it final
    pass
print(json.dumps({"final": final["status"], "again": again["status"], "failed": final["counts"]["failed"],
                  "by": final.get("finalised_by")}), flush=True)
"""


def test_a_queued_run_is_confirming_until_its_jobs_end_and_sends_one_event_then(
    azurite: Any, source_container: ContainerClient, state_container_name: str, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 11)]])
    sandbox_config(sandbox, job_pending_polls=PENDING_FOREVER, import_error_emails=["person2@example.com"])
    standin = ingestion_standin.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS", "OTEL_", "KEY_VAULT"))}
    env.update(app_env(azurite, source_container, state_container_name, sandbox.url, [definition()]))
    env.update(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": standin.connection_string,
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "CONFIRM_INTERVAL_SECONDS": "1",
            "PYTHONPATH": str(ROOT),
        }
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, sandbox.url],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        assert lines[0] == {"after_run": "confirming"} and lines[1] == {"after_confirm": "confirming"}
        assert lines[2] == {"final": "partial", "again": "partial", "failed": 1, "by": "status endpoint"}
        events = standin.state.events("ExportRun")
        assert len(events) == 1, events  # none while confirming; one when final, whoever looked after
        assert events[0]["properties"]["status"] == "partial" and events[0]["measurements"]["failed"] == 1
    finally:
        standin.stop()


# -- 3. every message is idempotent at any dequeue count -------------------------------------------
def test_a_redelivered_run_or_continue_message_of_a_finished_run_changes_nothing(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(source_container, [[person(i) for i in range(1, 11)]])
    app = app_factory([definition()])
    run_id = post(app).body["run_id"]
    QueueHost(app, monkeypatch).drain()
    before, latest, requests_before = stored(app, run_id), app.services.state.latest_report("vip"), len(put_requests(sandbox))
    assert before["status"] == "succeeded"
    for kind in ("run", "continue", "confirm"):
        for dequeue_count in (1, 2, 5):
            deliver(app, Work(kind, "vip", run_id, "http").to_message(), dequeue_count)
    assert stored(app, run_id) == before and app.services.state.latest_report("vip") == latest
    assert len(put_requests(sandbox)) == requests_before


def test_the_same_run_message_delivered_twice_at_once_runs_the_run_once(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(source_container, [[person(i) for i in range(1, 31)]])
    app = app_factory([definition()], services=dict(max_contacts_per_request=10))
    monkeypatch.setattr(handlers, "BUSY_RETRY_SECONDS", 1)  # the copy put back comes again in a second, not a minute
    run_id = post(app).body["run_id"]
    host = QueueHost(app, monkeypatch)
    (message,) = host.queue.receive_messages(max_messages=1, visibility_timeout=1)
    body = json.loads(str(message.content))
    host.queue.delete_message(message)
    errors: list[BaseException] = []

    def worker(dequeue_count: int) -> None:
        try:
            deliver(app, body, dequeue_count)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    host.drain()  # the one put back as busy finds the run done
    report = stored(app, run_id)
    assert report["status"] == "succeeded" and report["counts"]["sent"] == 30
    emails = [c["email"] for body in sandbox.state.bodies for c in body["contacts"]]
    assert sorted(emails) == sorted(f"person{i}@example.com" for i in range(1, 31))  # each sent once


# -- 4. a newer run never orphans an older run's jobs ---------------------------------------------
def test_an_older_runs_late_jobs_are_settled_and_its_report_finalised_after_a_newer_run(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 6)]])
    sandbox_config(sandbox, job_pending_polls=PENDING_FOREVER, import_error_emails=["person2@example.com"])
    app = app_factory([definition()], services=dict(job_polling=JobPolling(max_wait=0)))
    first = run(app).body
    assert first["status"] == "confirming"
    write(source_container, [[person(i) for i in range(1, 8)]])  # a new snapshot
    second = run(app).body
    assert second["run_id"] != first["run_id"] and stored(app, first["run_id"])["status"] == "confirming"
    sandbox_config(sandbox, job_pending_polls=0)  # SendGrid ends the jobs: run 1's with a failure
    latest = routes.handle(app, "GET", "vip", "status").body
    assert latest["run_id"] == second["run_id"]
    older = stored(app, first["run_id"])
    assert older["status"] == "partial" and older["counts"]["failed"] == 1 and older["finalised_by"] == "status endpoint"
    assert older["jobs"][0]["reason"]  # SendGrid's reason, from the errors file, whoever finalised it
    assert app.services.state.confirming_runs("vip") == []


# -- 7. a snapshot event is never lost --------------------------------------------------------------
def blob_created(container: str, path: str) -> dict[str, Any]:
    return {
        "id": "1",
        "subject": f"/blobServices/default/containers/{container}/blobs/{path}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": utc_now(),
        "data": {"api": "PutBlob"},
    }


def test_events_for_a_busy_export_leave_exactly_one_follow_up_run(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(source_container, [[person(i) for i in range(1, 6)]])
    app = app_factory([definition()])
    host = QueueHost(app, monkeypatch)
    first = post(app).body["run_id"]  # queued: the export is busy
    event = blob_created(source_container.container_name, f"{FOLDER}/model.json")
    for _ in range(3):  # three new snapshots while it waits: one follow-up
        deliver(app, event)
    assert len([r for r in app.services.state._container.list_blobs(name_starts_with="followups/")]) == 1
    runs = [i for i in host.drain() if i.kind == "run"]
    assert len(runs) == 2 and all(i.outcome == "done" for i in runs)
    latest = routes.handle(app, "GET", "vip", "status").body
    assert latest["run_id"] != first and latest["trigger"] == "event" and latest["status"] == "succeeded"
    assert not list(app.services.state._container.list_blobs(name_starts_with="followups/"))


# -- 9. at most one run of an export is queued, whatever races ------------------------------------
def test_submits_at_the_same_moment_queue_one_run(app_factory: Any, source_container: ContainerClient) -> None:
    write(source_container, [[person(i) for i in range(1, 6)]])
    app = app_factory([definition()])
    start = threading.Barrier(6)
    answers: list[int] = []

    def submit(timer: bool) -> None:
        start.wait()
        if timer:
            answers.append(202 if handlers.enqueue_all(app)[0]["status"] == "queued" else 409)
        else:
            answers.append(post(app).status)

    threads = [threading.Thread(target=submit, args=(i >= 4,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(answers) == [202] + [409] * 5


# -- review: stale writers, late messages, a stale latest report ------------------------------------
def test_a_late_message_of_an_abandoned_run_or_of_a_removed_export_changes_nothing(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(source_container, [[person(i) for i in range(1, 6)]])
    app = app_factory([definition()])
    QueueHost(app, monkeypatch)
    run_id = post(app).body["run_id"]
    # Its worker died an hour ago and no retry came: the next read gives it up for lost.
    app.services.state.save_report({**stored(app, run_id), "status": "running", "updated_at": "2020-01-01T00:00:00Z"})
    assert routes.handle(app, "GET", "vip", "status").body["abandoned"] is True
    given_up = stored(app, run_id)
    deliver(app, Work("run", "vip", run_id, "http").to_message(), 2)  # the lost message turns up after all
    assert stored(app, run_id) == given_up and put_requests(sandbox) == []

    # A finished run's message again, after its export was removed from the definitions.
    finished = post(app).body["run_id"]
    QueueHost(app, monkeypatch).drain()
    before = stored(app, finished)
    assert before["status"] == "succeeded"
    gone = app_factory([definition(name="other")])
    QueueHost(gone, monkeypatch)
    deliver(gone, Work("run", "vip", finished, "http").to_message(), 3)
    assert stored(app, finished) == before
