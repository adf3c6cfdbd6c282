"""Reliability and data safety: confirmed delivery, resume after a kill or a time limit, one run
per export, hostile input, fault storms. All on Azurite and the SendGrid sandbox."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from helpers import (
    FOLDER,
    ROOT,
    SEGMENT,
    app_env,
    contacts_by_email,
    definition,
    person,
    put_requests,
    rejects_rows,
    run,
    run_all,
    sandbox_config,
    sandbox_get,
    write,
)

from shared.api import routes
from shared.run.exporter import JobPolling
from tools.sample_export import csv_bytes


def accepted_emails(sandbox: Any) -> Counter[str]:
    return Counter(c["email"] for body in sandbox.state.bodies for c in body["contacts"])


# -- accepted is not applied ---------------------------------------------------------------
def test_import_errors_are_found_by_polling_and_reported(
    app_factory: Any,
    source_container: ContainerClient,
    sandbox: Any,
    blob_service: BlobServiceClient,
    state_container_name: str,
) -> None:
    write(source_container, [[person(i) for i in range(1, 21)]])
    sandbox_config(sandbox, import_error_emails=["person4@example.com", "person17@example.com"])
    app = app_factory([definition()], services=dict(max_contacts_per_request=10))
    report = run(app).body
    assert report["status"] == "partial"
    assert report["counts"]["sent"] == 20 and report["counts"]["failed"] == 2
    assert [(j["status"], j["failed"], j["results"]["errored_count"]) for j in report["jobs"]] == [
        ("errored", 1, 1),
        ("errored", 1, 1),
    ]
    assert all("errors_url" not in j["results"] for j in report["jobs"])  # a signed link is not kept
    lines = sorted(rejects_rows(blob_service, state_container_name, report["rejects_blob"]), key=lambda r: int(r["row"]))
    assert [(r["row"], r["reason"]) for r in lines] == [("4", "failed in SendGrid import"), ("17", "failed in SendGrid import")]
    downloads = [r for r in sandbox_get(sandbox, "requests")["requests"] if r["path"].startswith("/_sandbox/errors/")]
    assert len(downloads) == 2 and not any(r["authorization"] for r in downloads)
    assert len(contacts_by_email(sandbox)) == 18


def test_import_failures_found_while_still_sending_are_all_listed(
    app_factory: Any,
    source_container: ContainerClient,
    sandbox: Any,
    blob_service: BlobServiceClient,
    state_container_name: str,
) -> None:
    # A streamed first delivery polls earlier jobs while it sends; here they are final at once, so
    # their failures are known while the key file is still being written.
    write(source_container, [[person(i) for i in range(1, 41)]])
    sandbox_config(sandbox, job_pending_polls=0, import_error_emails=["person4@example.com", "person25@example.com"])
    app = app_factory([definition()], services=dict(max_contacts_per_request=10))
    report = run(app).body
    assert report["streamed"] is True and report["counts"]["failed"] == 2
    lines = rejects_rows(blob_service, state_container_name, report["rejects_blob"])
    assert sorted((int(r["row"]), r["reason"]) for r in lines) == [
        (4, "failed in SendGrid import"),
        (25, "failed in SendGrid import"),
    ]


def test_a_job_that_fails_whole_fails_all_its_contacts(app_factory: Any, source_container: ContainerClient, sandbox: Any) -> None:
    write(source_container, [[person(i) for i in range(1, 21)]])
    sandbox_config(sandbox, fail_jobs=1)
    app = app_factory([definition()], services=dict(max_contacts_per_request=15))
    report = run(app).body
    assert report["status"] == "partial" and report["counts"]["failed"] == 15
    assert [j["status"] for j in report["jobs"]] == ["failed", "completed"]
    assert report["jobs"][0]["reason"] == "you have hit your contact limit"  # SendGrid's word, not just a count


def test_pending_jobs_are_checked_again_by_the_status_endpoint_and_the_next_run(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 11)]])
    sandbox_config(sandbox, job_pending_polls=1000, import_error_emails=["person2@example.com"])
    app = app_factory([definition()], services=dict(job_polling=JobPolling(max_wait=0.1, first_interval=0.02)))
    first = run(app).body
    # Nothing is final until SendGrid says so: the run awaits its job.
    assert first["status"] == "confirming" and first["jobs"][0]["status"] == "pending"
    assert first["awaiting"]["jobs"] == 1 and first["awaiting"]["until"] > first["finished_at"]
    # SendGrid finishes the job later, with one contact that did not import.
    sandbox_config(sandbox, job_pending_polls=0)
    latest = routes.handle(app, "GET", "vip", "status").body
    assert latest["run_id"] == first["run_id"]
    assert latest["jobs"][0]["status"] == "errored" and latest["counts"]["failed"] == 1
    assert latest["status"] == "partial"
    stored = app.services.state.latest_report("vip")
    assert stored["status"] == "partial"  # the stored report was updated, not only the answer

    # The next run checks the previous run's pending jobs before it starts.
    sandbox_config(sandbox, job_pending_polls=1000)
    second = run(app).body
    sandbox_config(sandbox, job_pending_polls=0)
    run(app)
    previous = json.loads(app.services.state._container.download_blob(f"runs/vip/{second['run_id']}.json").readall())
    assert previous["jobs"][0]["status"] == "errored"


def test_the_status_endpoint_never_rewrites_a_run_still_going_on(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 11)]])
    sandbox_config(sandbox, job_pending_polls=1000)
    app = app_factory([definition()], services=dict(job_polling=JobPolling(max_wait=0.05, first_interval=0.01)))
    first = run(app).body
    # What a run stores while it confirms: its interim report, status running, a job pending.
    interim = {**first, "status": "running", "finished_at": None}
    app.services.state.save_report(interim)
    stored = app.services.state.latest_report("vip")  # as stored (stamped with updated_at)
    sandbox_config(sandbox, job_pending_polls=0)
    polls_before = len(sandbox_get(sandbox, "requests")["requests"])
    answer = routes.handle(app, "GET", "vip", "status").body
    assert answer["status"] == "running" and answer["jobs"][0]["status"] == "pending"
    assert app.services.state.latest_report("vip") == stored  # not persisted by the status path
    assert len(sandbox_get(sandbox, "requests")["requests"]) == polls_before  # nor polled


def test_a_status_update_does_not_overwrite_a_report_written_meanwhile(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 6)]])
    app = app_factory([definition()])
    report = run(app).body
    state = app.services.state
    _, etag = state.latest_report_and_etag("vip")
    newer = {**report, "run_id": "20991231T235959Z-abcdef", "updated_at": "2099-12-31T23:59:59.000Z"}
    state.save_report(newer)  # a run finished between the status read and its write
    assert state.update_latest_report({**report, "status": "partial"}, etag) is False
    assert state.latest_report("vip") == newer


# -- one run per export at a time -----------------------------------------------------------
def test_a_second_run_of_the_same_export_is_refused_while_one_holds_it(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 6)]])
    app = app_factory([definition(), definition(name="other")])
    held = app.services.state.acquire_run_lease("vip", 15)
    try:
        refused = run(app)
        assert refused.status == 409 and refused.body["error"]["code"] == "run_in_progress"
        assert app.services.state.latest_report("vip") is None  # a refused run writes no report
        assert [(s["export"], s["status"]) for s in run_all(app)] == [("vip", "skipped"), ("other", "succeeded")]
        assert run(app, "vip", b'{"dry_run": true}').status == 200  # a dry run writes nothing, needs no lease
    finally:
        held.release()
    assert run(app).status == 200


# -- resumable runs -------------------------------------------------------------------------
def interrupted_run(app: Any, time_limit: float) -> dict[str, Any]:
    """A run stopped by its time limit, on a clock that moves one "second" per reading."""
    ticks = iter(range(1000))
    app.services = replace(app.services, max_contacts_per_request=10, time_limit=time_limit, clock=lambda: next(ticks))
    report = run(app).body
    app.services = replace(app.services, time_limit=10_000)
    return report


def test_a_run_stops_at_its_time_limit_and_the_next_one_finishes(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 51)]])
    app = app_factory([definition()])
    first = interrupted_run(app, 3.5)
    assert first["status"] == "partial" and first["resumable"] is True
    sent_first = first["counts"]["sent"]
    assert 0 < sent_first < 50

    second = run(app).body
    assert second["status"] == "succeeded" and second["counts"]["sent"] == 50
    assert second["resumed_from"] == {"run_id": first["run_id"], "contacts_skipped": sent_first}
    assert accepted_emails(sandbox) == Counter({f"person{i}@example.com": 1 for i in range(1, 51)})

    third = run(app).body  # a finished snapshot is not resumed, and nothing in it changed
    assert third["resumed_from"] is None and third["counts"]["sent"] == 0 and third["counts"]["unchanged"] == 50


@pytest.mark.parametrize("change", ["snapshot", "definition"])
def test_a_changed_snapshot_or_definition_starts_from_the_beginning(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, change: str
) -> None:
    write(source_container, [[person(i) for i in range(1, 31)]])
    app = app_factory([definition()])
    first = interrupted_run(app, 2.5)
    assert first["resumable"] is True and 0 < first["counts"]["sent"] < 30
    if change == "snapshot":
        write(source_container, [[person(i) for i in range(1, 31)]])  # Customer Insights exported again
    else:
        changed = app_factory([definition(mapping={"email": "EMail", "first_name": "FirstName"})])
        app.settings, app.services.sendgrid = changed.settings, changed.services.sendgrid
    fresh = run(app).body
    assert fresh["resumed_from"] is None and fresh["status"] == "succeeded"
    # What the stopped run had SendGrid apply is in the record now (its journal, merged): the same
    # contacts in a new snapshot are not sent again; a changed definition sends every one.
    resent = 30 - first["counts"]["sent"] if change == "snapshot" else 30
    assert fresh["counts"]["sent"] == resent and fresh["counts"]["unchanged"] == 30 - resent


@pytest.mark.slow
def test_a_run_killed_halfway_is_completed_by_the_next_resending_at_most_one_request(
    azurite: Any, source_container: ContainerClient, state_container_name: str, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 101)]])
    # Slow answers widen the window in which the kill lands mid-run.
    sandbox.state.faults.append(_slow_puts(0.25))
    env = {
        **os.environ,
        **app_env(azurite, source_container, state_container_name, sandbox.url, [definition()]),
        "SENDGRID_MAX_CONTACTS_PER_REQUEST": "10",
        "RUN_LEASE_SECONDS": "15",
        "JOB_WAIT_SECONDS": "5",
    }
    env.pop("KEY_VAULT_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "shared", "run", "vip"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(1 for r in put_requests(sandbox) if r.get("status") == 202) < 4:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    accepted_before = len(sandbox.state.bodies)
    assert 4 <= accepted_before < 10, "the kill should land halfway"

    sandbox.state.faults.clear()
    # The killed run's lease ends by itself (within RUN_LEASE_SECONDS); until then a run is refused.
    deadline = time.monotonic() + 30
    while True:
        result = subprocess.run(
            [sys.executable, "-m", "shared", "run", "vip", "--json"],
            check=False,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if "run_in_progress" not in result.stdout + result.stderr or time.monotonic() > deadline:
            break
        time.sleep(1)
    report = json.loads(result.stdout)
    assert report["status"] == "succeeded", report
    assert report["counts"]["sent"] == 100 and report["resumed_from"] is not None
    received = accepted_emails(sandbox)
    assert set(received) == {f"person{i}@example.com" for i in range(1, 101)}
    resent = [email for email, times in received.items() if times > 1]
    assert len(resent) <= 10  # at most one request's contacts went twice


def _slow_puts(seconds: float) -> Any:
    from tools.sendgrid_sandbox import Fault  # noqa: PLC0415

    return Fault(method="PUT", path="/v3/marketing/contacts", status=0, times=10_000, delay=seconds)


# -- hostile input -------------------------------------------------------------------------
def test_bad_rows_are_rejected_and_every_other_row_delivered(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    good = [csv_bytes([person(i) for i in range(1, 11)])]
    nasty = (
        csv_bytes([person(11)[:4], person(12) + ["extra", "columns"]])  # ragged rows
        + csv_bytes([person(13, FirstName="Nul\x00Byte")])
        + csv_bytes([person(14)]).replace(b"Lisbon", b"Lis\xffbon")  # not UTF-8
        + csv_bytes([person(15, LastName="x" * 1_000_000)])  # a field of a megabyte
        + csv_bytes([person(16)])
    )
    from helpers import COLUMNS  # noqa: PLC0415

    from tools.sample_export import write_export  # noqa: PLC0415

    write_export(source_container, FOLDER, SEGMENT, good + [nasty], COLUMNS)
    report = run(app_factory([definition()])).body
    assert report["status"] == "succeeded"
    assert report["counts"] == {
        "read": 16,
        "valid": 11,
        "rejected": 5,
        "duplicates": 0,
        "sent": 11,
        "failed": 0,
        "unchanged": 0,
        "removed": 0,
    }
    assert report["rejects"] == {"NUL byte": 1, "invalid encoding": 1, "value too large": 1, "wrong number of columns": 2}
    assert set(contacts_by_email(sandbox)) == {f"person{i}@example.com" for i in [*range(1, 11), 16]}


def test_an_export_of_only_empty_partitions_succeeds_with_no_request(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[], []])
    response = run(app_factory([definition()]))
    assert response.status == 200 and response.body["status"] == "succeeded"
    assert response.body["counts"]["read"] == 0 and response.body["requests"]["upserts"] == 0
    assert put_requests(sandbox) == []


@pytest.mark.parametrize("problem", ["missing", "not json", "no segment", "missing partition"])
def test_broken_metadata_refuses_the_run_before_anything_is_sent(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, problem: str
) -> None:
    write(source_container, [[person(1)], [person(2)]])
    model = f"{FOLDER}/model.json"
    if problem == "missing":
        source_container.delete_blob(model)
    elif problem == "not json":
        source_container.upload_blob(model, b"<html>oops</html>", overwrite=True)
    elif problem == "no segment":
        source_container.upload_blob(model, json.dumps({"entities": []}).encode(), overwrite=True)
    else:
        first = next(b.name for b in source_container.list_blobs(name_starts_with=FOLDER) if b.name.endswith("_1.csv"))
        source_container.delete_blob(first)
    response = run(app_factory([definition()]))
    assert response.status == 422
    assert response.body["error"]["code"] in ("source_not_found", "source_invalid")
    assert put_requests(sandbox) == []


# -- fault storms ---------------------------------------------------------------------------
@pytest.mark.slow
def test_a_storm_of_rate_limits_errors_and_drops_still_delivers_each_profile_once(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 21)]])
    sandbox_config(
        sandbox,
        rate_limit=1,
        rate_window=2.0,
        job_pending_polls=0,
        faults=[
            {"method": "PUT", "path": "/v3/marketing/contacts", "status": 503, "times": 1},
            {"method": "PUT", "path": "/v3/marketing/contacts", "drop": True, "times": 1},
            {"method": "GET", "path": "/v3/marketing/contacts/imports/", "status": 500, "times": 1},
        ],
    )
    app = app_factory([definition()], services=dict(max_contacts_per_request=10))
    report = run(app).body
    assert report["status"] == "succeeded", report
    assert accepted_emails(sandbox) == Counter({f"person{i}@example.com": 1 for i in range(1, 21)})
    log = sandbox_get(sandbox, "requests")["requests"]
    limited = [r for r in log if r["status"] == 429]
    served = [r for r in log if r["status"] in (200, 202)]
    assert report["requests"]["retries"] == len(log) - len(served)  # every failed answer was retried
    assert len(limited) <= len(served)  # waits, not hammering: about one 429 per window at most


def test_the_time_limit_is_checked_inside_the_read_loop(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 9001)]])
    app = app_factory([definition(sync_mode="mirror")], services=dict(time_limit=0))
    response = run(app)
    assert response.body["error"]["code"] == "time_limit"
    report = response.body["report"]
    assert report["counts"]["read"] == 4096 and report["counts"]["sent"] == 0  # stopped early, sent nothing


def test_a_corrupt_report_of_one_export_stops_neither_it_nor_the_others(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 6)]])
    app = app_factory([definition(), definition(name="other")])
    app.services.state.ensure()
    app.services.state._container.upload_blob("runs/vip/latest.json", b"{not json", overwrite=True)
    summaries = run_all(app)
    assert [(s["export"], s["status"]) for s in summaries] == [("vip", "succeeded"), ("other", "succeeded")]
    listing = routes.handle(app, "GET", None, None)
    assert listing.status == 200 and len(listing.body["exports"]) == 2


def test_jobs_are_confirmed_oldest_first_and_a_later_one_is_not_asked_about_while_an_earlier_pends(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    """Confirming asks about the jobs in turn: a round stops at the first one still pending, so
    while SendGrid works a round is one request, not one per job (the early polls made during
    sending aside)."""
    write(source_container, [[person(i) for i in range(1, 31)]])
    sandbox_config(sandbox, job_pending_polls=3)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    app = app_factory(
        [definition()],
        services=dict(max_contacts_per_request=10, sleep=sleep, job_polling=JobPolling(max_wait=30, first_interval=0.01)),
    )
    report = run(app).body
    assert [job["status"] for job in report["jobs"]] == ["completed"] * 3
    requests = sandbox_get(sandbox, "requests")["requests"]
    last_put = max(r["answered_seq"] for r in requests if r["method"] == "PUT")
    order = [job["job_id"] for job in report["jobs"]]
    asked = [
        order.index(r["path"].rsplit("/", 1)[-1])
        for r in requests
        if r["method"] == "GET" and "/imports/" in r["path"] and r["seq"] > last_put
    ]
    assert len(asked) > 3 and asked == sorted(asked)  # never back to an earlier job
    # The wait doubles while nothing ends, and starts again from the first once a job has ended.
    assert any(later < earlier for earlier, later in itertools.pairwise(waits))
