"""The run engine end to end: HTTP and timer queue runs, the queue worker (played by
queue_harness.QueueHost on Azurite's queue) runs them, continues them, confirms their jobs by
delayed messages, runs on Event Grid events, and retries or poisons what fails unexpectedly."""

from __future__ import annotations

import base64
import json
from collections import Counter
from typing import Any

import pytest
from azure.storage.blob import ContainerClient
from helpers import FOLDER, contacts_by_email, definition, person, put_requests, sandbox_config, sandbox_get, write
from queue_harness import QueueHost, WorkerCrash, host_queue_settings

from shared.api import routes
from shared.engine import handlers, liveness
from shared.report import utc_now
from tools.sendgrid_sandbox import Fault


def post(app: Any, name: str = "vip", body: bytes = b"") -> routes.ApiResponse:
    return routes.handle(app, "POST", name, "run", body)


def report_of(app: Any, name: str, run_id: str) -> dict[str, Any]:
    response = routes.handle(app, "GET", name, "runs", run_id=run_id)
    assert response.status == 200, response.body
    return response.body


def accepted_emails(sandbox: Any) -> Counter[str]:
    return Counter(c["email"] for body in sandbox.state.bodies for c in body["contacts"])


def blob_created(container: str, path: str) -> dict[str, Any]:
    return {
        "id": "1",
        "topic": "/subscriptions/x/resourceGroups/y/providers/Microsoft.Storage/storageAccounts/z",
        "subject": f"/blobServices/default/containers/{container}/blobs/{path}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": utc_now(),
        "dataVersion": "",
        "data": {"api": "PutBlob", "url": f"https://z.blob.core.windows.net/{container}/{path}"},
    }


def test_post_answers_202_and_the_worker_delivers_every_contact(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(source_container, [[person(i) for i in range(1, 26)]])
    app = app_factory([definition()])
    response = post(app)
    assert response.status == 202 and response.body["status"] == "queued"
    run_id = response.body["run_id"]
    assert response.headers["Location"] == response.body["status_url"] == f"/api/exports/vip/runs/{run_id}"
    assert report_of(app, "vip", run_id)["status"] == "queued" and put_requests(sandbox) == []
    busy = post(app)  # queued: a second POST names the run that is waiting
    assert busy.status == 409 and busy.body["error"]["code"] == "run_in_progress" and busy.body["run_id"] == run_id

    QueueHost(app, monkeypatch).drain()
    report = report_of(app, "vip", run_id)
    assert report["status"] == "succeeded" and report["counts"]["sent"] == 25
    assert not [job for job in report["jobs"] if job["status"] == "pending"]
    assert set(contacts_by_email(sandbox)) == {f"person{i}@example.com" for i in range(1, 26)}
    assert post(app).status == 202  # finished: the export takes a new run


def test_one_timer_tick_runs_each_export_as_its_own_message(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(source_container, [[person(i) for i in range(1, 6)]])
    app = app_factory([definition(name="vip"), definition(name="other"), definition(name="off", enabled=False)])
    summaries = handlers.enqueue_all(app)
    assert [(s["export"], s["status"]) for s in summaries] == [("vip", "queued"), ("other", "queued"), ("off", "skipped")]
    assert put_requests(sandbox) == []  # the tick itself sends nothing
    runs = [i for i in QueueHost(app, monkeypatch).drain() if i.kind == "run"]
    assert sorted((i.export, i.outcome) for i in runs) == [("other", "done"), ("vip", "done")]
    for summary in summaries[:2]:
        report = report_of(app, summary["export"], summary["run_id"])
        assert report["trigger"] == "timer" and report["status"] == "succeeded" and report["counts"]["sent"] == 5


@pytest.mark.slow
def test_a_run_past_its_time_limit_continues_over_several_invocations(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(source_container, [[person(i) for i in range(1, 61)]])
    app = app_factory([definition()], services=dict(max_contacts_per_request=10, time_limit=3))
    sandbox.state.faults.append(Fault(method="PUT", path="/v3/marketing/contacts", status=0, times=10_000, delay=1.0))
    run_id = post(app).body["run_id"]
    done = QueueHost(app, monkeypatch).drain(timeout=120)
    handovers = sum(1 for i in done if i.kind == "continue")
    assert handovers >= 1 and all(i.outcome == "done" for i in done)
    report = report_of(app, "vip", run_id)
    assert report["status"] == "succeeded" and report["run_id"] == run_id
    accepted = accepted_emails(sandbox)
    assert set(accepted) == {f"person{i}@example.com" for i in range(1, 61)}
    resent = sum(n - 1 for n in accepted.values())
    assert resent <= 10 * handovers  # at most one request's contacts again per hand-over


def test_jobs_that_finish_late_are_confirmed_by_delayed_messages(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(source_container, [[person(i) for i in range(1, 11)]])
    sandbox_config(sandbox, job_pending_polls=3)  # the run's one poll, then two confirm messages see it pending
    app = app_factory([definition()])
    run_id = post(app).body["run_id"]
    done = QueueHost(app, monkeypatch).drain(timeout=60)
    confirms = [i for i in done if i.kind == "confirm"]
    assert len(confirms) >= 2 and all(i.outcome == "done" for i in done)
    report = report_of(app, "vip", run_id)
    assert report["jobs"] and all(job["status"] == "completed" for job in report["jobs"])
    assert report["status"] == "succeeded"


@pytest.mark.parametrize("encoding", ["base64", "plain", "cloudevents"])
def test_an_event_grid_event_runs_exactly_the_definition_of_that_folder(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, monkeypatch: pytest.MonkeyPatch, encoding: str
) -> None:
    write(source_container, [[person(i) for i in range(1, 6)]])
    app = app_factory([definition(name="vip"), definition(name="elsewhere", source_folder="Other/Folder")])
    event = blob_created(source_container.container_name, f"{FOLDER}/model.json")
    if encoding == "cloudevents":
        event = {
            "specversion": "1.0",
            "type": event["eventType"],
            "source": event["topic"],
            "subject": event["subject"],
            "id": "1",
            "time": event["eventTime"],
            "data": event["data"],
        }
    text = json.dumps(event)
    host = QueueHost(app, monkeypatch)
    host.put(base64.b64encode(text.encode()).decode() if encoding == "base64" else text)
    host.put(json.dumps(blob_created(source_container.container_name, f"{FOLDER}/HighValueCustomers/part-1.csv")))
    done = host.drain()
    assert [(i.kind, i.export) for i in done if i.kind == "run"] == [("run", "vip")]
    latest = routes.handle(app, "GET", "vip", "status").body
    assert latest["trigger"] == "event" and latest["status"] == "succeeded" and latest["counts"]["sent"] == 5
    assert routes.handle(app, "GET", "elsewhere", "status").status == 404  # not run

    # The same snapshot again (the timer after the event): nothing to do, no SendGrid request.
    before = len(sandbox_get(sandbox, "requests")["requests"])
    handlers.enqueue_all(app)
    host.drain()
    again = routes.handle(app, "GET", "vip", "status").body
    assert again["trigger"] == "timer" and again["status"] == "succeeded" and again["unchanged_snapshot"] is True
    assert len(sandbox_get(sandbox, "requests")["requests"]) == before


def test_a_worker_crash_mid_run_resumes_on_the_retry(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(source_container, [[person(i) for i in range(1, 51)]])
    crashed: list[bool] = []

    def clock() -> float:  # the instance dies once two requests were accepted
        if not crashed and len(put_requests(sandbox)) >= 2:
            crashed.append(True)
            raise WorkerCrash()
        return 0.0

    app = app_factory([definition()], services=dict(max_contacts_per_request=10, clock=clock))
    run_id = post(app).body["run_id"]
    done = QueueHost(app, monkeypatch).drain()
    runs = [(i.dequeue_count, i.outcome) for i in done if i.kind == "run"]
    assert runs == [(1, "retried"), (2, "done")]
    report = report_of(app, "vip", run_id)
    assert report["status"] == "succeeded" and report["resumed_from"] is not None
    accepted = accepted_emails(sandbox)
    assert set(accepted) == {f"person{i}@example.com" for i in range(1, 51)}
    assert sum(n - 1 for n in accepted.values()) <= 10  # at most one request's contacts resent


def test_a_message_that_always_fails_goes_to_poison_and_its_run_says_failed(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(source_container, [[person(i) for i in range(1, 6)]])

    def clock() -> float:
        raise RuntimeError("a bug")

    app = app_factory([definition()], services=dict(clock=clock))
    run_id = post(app).body["run_id"]
    host = QueueHost(app, monkeypatch)
    done = host.drain()
    assert [i.outcome for i in done] == ["retried"] * 4 + ["poisoned"]
    assert [json.loads(m)["run_id"] for m in host.poisoned()] == [run_id]
    report = report_of(app, "vip", run_id)
    assert report["status"] == "failed" and report["error"]["code"] == "internal_error"


def test_host_json_declares_what_the_engine_assumes() -> None:
    queues = host_queue_settings()
    assert queues["messageEncoding"] == "none"  # the worker reads plain JSON and Base64 itself
    assert queues["maxDequeueCount"] == handlers.MAX_DEQUEUE_COUNT == liveness.MAX_TRIES
    h, m, s = (int(p) for p in queues["visibilityTimeout"].split(":"))
    assert h * 3600 + m * 60 + s == liveness.RETRY_DELAY_SECONDS


def test_a_queued_run_whose_worker_is_gone_is_stale_and_failed(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 6)]])
    app = app_factory([definition()])
    run_id = post(app).body["run_id"]
    stored = report_of(app, "vip", run_id)
    assert post(app).status == 409
    # The same report as written an hour ago (its message lost, no run holding the lease).
    app.services.state.save_report({**stored, "status": "running", "updated_at": "2020-01-01T00:00:00Z"})
    status = routes.handle(app, "GET", "vip", "status").body
    assert status["status"] == "failed" and status["error"]["code"] == "internal_error" and status["abandoned"]
    assert report_of(app, "vip", run_id)["status"] == "failed"
    assert post(app).status == 202  # no longer blocks the export


def test_a_running_report_whose_run_holds_the_lease_is_not_stale(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 6)]])
    app = app_factory([definition()])
    run_id = post(app).body["run_id"]
    app.services.state.save_report({**report_of(app, "vip", run_id), "status": "running", "updated_at": "2020-01-01T00:00:00Z"})
    lease = app.services.state.acquire_run_lease("vip", 60)
    try:
        busy = post(app)
        assert busy.status == 409 and busy.body["run_id"] == run_id
    finally:
        lease.release()


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"kind": "explode", "export": "vip", "run_id": "x"}', b'{"hello": 1}', base64.b64encode(b"[1, 2]")],
)
def test_a_message_the_engine_cannot_read_is_dropped_not_retried(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, monkeypatch: pytest.MonkeyPatch, body: bytes
) -> None:
    app = app_factory([definition()])
    host = QueueHost(app, monkeypatch)
    host.put(body.decode())
    assert [i.outcome for i in host.drain()] == ["done"]
    assert put_requests(sandbox) == []
