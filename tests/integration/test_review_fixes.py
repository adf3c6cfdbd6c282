"""Bugs a review found in the run, each shown first against the real stand-ins (these tests
failed before the fixes): a pending update that then fails, a job SendGrid does not know, the
unchanged-snapshot short cut, the checkpoint cleared too early, a failed early poll."""

from __future__ import annotations

import time
from typing import Any

from azure.storage.blob import ContainerClient
from helpers import (
    LIST_ID,
    contacts_by_email,
    definition,
    person,
    put_requests,
    rejects_rows,
    run,
    sandbox_config,
    sandbox_get,
    write,
)

from shared.services import App, JobPolling

PENDING = dict(job_polling=JobPolling(max_wait=0.05, first_interval=0.01))


def record(app: App) -> str:
    return app.services.state._container.download_blob("delivered/vip.tsv").readall().decode()


def test_a_pending_update_that_fails_goes_back_to_what_sendgrid_holds(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    people = [person(i) for i in range(1, 11)]
    write(source_container, [people])
    sandbox_config(sandbox, job_pending_polls=0)
    app = app_factory([definition(sync_mode="mirror")], services=PENDING)
    assert run(app).body["status"] == "succeeded"
    # Person 3 changes and empties a first name; the job is pending when the record is written, then fails.
    people[2] = person(3, City="Porto", FirstName="")
    write(source_container, [people])
    sandbox_config(sandbox, job_pending_polls=1000, import_error_emails=["person3@example.com"])
    run(app)
    assert "person3@example.com\t" in record(app)
    # The job ends (person 3 not applied): the entry goes back to the delivered version, so the
    # update is sent again, with the first name cleared.
    sandbox_config(sandbox, job_pending_polls=0, import_error_emails=[])
    write(source_container, [people])
    again = run(app).body
    assert again["settled"]["not_applied"] == 1 and again["counts"]["sent"] == 1
    assert not contacts_by_email(sandbox)["person3@example.com"].get("first_name")
    # And when person 3 leaves, mirror mode still knows it put them on the list.
    write(source_container, [people[:2] + people[3:]])
    left = run(app).body
    assert left["plan"]["remove"] == 1 and LIST_ID not in contacts_by_email(sandbox)["person3@example.com"]["list_ids"]


def test_a_job_sendgrid_does_not_know_does_not_wedge_the_export(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 6)]])
    sandbox_config(sandbox, job_pending_polls=1000)
    app = app_factory([definition()], services=PENDING)
    assert run(app).body["jobs"][0]["status"] == "pending"
    sandbox.state.jobs.clear()  # another account, or a job SendGrid forgot: 404
    sandbox_config(sandbox, job_pending_polls=0)
    write(source_container, [[person(i) for i in range(1, 7)]])
    report = run(app).body
    assert report["status"] == "succeeded" and report["settled"]["not_applied"] == 5
    assert report["counts"]["sent"] == 6  # nothing of the unknown job counts as applied: all sent again


def test_the_short_cut_is_not_taken_while_earlier_jobs_are_pending_in_the_record(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    people = [person(i) for i in range(1, 6)]
    write(source_container, [people])
    sandbox_config(sandbox, job_pending_polls=1000, import_error_emails=["person2@example.com"])
    first = run(app_factory([definition()], services=dict(job_polling=JobPolling(max_wait=0)))).body
    slow = first["jobs"][0]["job_id"]
    time.sleep(0.3)
    sandbox.state.jobs[slow]["polls"] = -1000  # SendGrid is slow with the first import
    sandbox_config(sandbox, job_pending_polls=0, import_error_emails=[])
    write(source_container, [[*people, person(6)]])
    patient = app_factory([definition()], services=dict(job_polling=JobPolling(max_wait=5, first_interval=0.01)))
    second = run(patient).body
    assert second["status"] == "succeeded" and second["settled"]["pending"] == 5
    sandbox.state.jobs[slow]["polls"] = 10  # the first import ends: person 2 not applied
    third = run(patient).body  # the same snapshot as the second run
    assert third["unchanged_snapshot"] is False and "person2@example.com" in contacts_by_email(sandbox)


def test_an_error_after_the_last_send_does_not_make_the_next_run_resend(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 21)]])
    sandbox_config(sandbox, job_pending_polls=0)
    app = app_factory([definition()], services=dict(job_polling=JobPolling(max_wait=1, first_interval=0.01)))
    run(app)
    write(source_container, [[person(i, City="Porto") if i <= 10 else person(i) for i in range(1, 21)]])
    sandbox_config(
        sandbox, faults=[{"method": "GET", "path": "/v3/marketing/contacts/imports/", "status": 500, "times": 6}]
    )  # the status endpoint is down after the sends went through
    second = run(app).body["report"]
    assert second["counts"]["sent"] == 10 and second["error"]["code"] == "sendgrid_unavailable"
    sandbox_config(sandbox, faults=[])
    sent_before = len(put_requests(sandbox))
    third = run(app).body
    assert third["resumed_from"] is not None and len(put_requests(sandbox)) == sent_before


def test_a_failed_early_poll_does_not_stop_the_delivery(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 31)]])
    sandbox_config(
        sandbox,
        job_pending_polls=1000,
        faults=[{"method": "GET", "path": "/v3/marketing/contacts/imports/", "status": 500, "times": 6}],
    )
    app = app_factory([definition()], services=dict(max_contacts_per_request=5, **PENDING))
    report = run(app).body
    assert report["counts"]["sent"] == 30 and len(put_requests(sandbox)) == 6


def test_the_last_finished_run_is_found_when_two_runs_share_a_second(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    from shared.run.unchanged import last_finished  # noqa: PLC0415

    state = app_factory([definition()]).services.state
    earlier = {
        "export": "vip",
        "run_id": "20261128T120000Z-ffffff",
        "status": "succeeded",
        "dry_run": False,
        "started_at": "2026-11-28T12:00:00.100Z",
        "finished_at": "2026-11-28T12:00:00.400Z",
        "updated_at": "2026-11-28T12:00:00.400Z",
        "jobs": [],
    }
    state.save_report(earlier)
    # This run was made in the same second, and its random suffix sorts before the earlier one's.
    assert last_finished(state, "vip", "20261128T120000Z-000000") == earlier


def test_a_status_poll_never_holds_up_the_next_request(app_factory: Any, source_container: ContainerClient, sandbox: Any) -> None:
    """The early poll after a request is asked by a poller thread: the sender makes the next
    request while SendGrid (here, the sandbox, holding the first poll 3 s) has not answered it."""
    write(source_container, [[person(i) for i in range(1, 31)]])
    sandbox_config(
        sandbox,
        job_pending_polls=1000,
        faults=[{"method": "GET", "path": "/v3/marketing/contacts/imports/", "status": 0, "delay": 3.0, "times": 1}],
    )
    app = app_factory([definition()], services=dict(max_contacts_per_request=5, **PENDING))
    report = run(app).body
    assert report["counts"]["sent"] == 30
    requests = sandbox_get(sandbox, "requests")["requests"]
    held = next(r for r in requests if r["method"] == "GET" and "/imports/" in r["path"])
    meanwhile = [r for r in requests if r["method"] == "PUT" and held["seq"] < r["seq"] < held["answered_seq"]]
    assert meanwhile, "no request was made while the poll was being answered"


def test_the_answer_to_the_last_early_poll_is_recorded_not_asked_again(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, blob_service: Any, state_container_name: str
) -> None:
    """An early poll still unanswered when the last request is accepted: finish() records its
    answer (a job that failed one contact) before confirm looks at what is still pending."""
    write(source_container, [[person(i) for i in range(1, 31)]])
    sandbox_config(
        sandbox,
        job_pending_polls=0,
        import_error_emails=["person2@example.com"],
        faults=[{"method": "GET", "path": "/v3/marketing/contacts/imports/", "status": 0, "delay": 1.0, "times": 1}],
    )
    app = app_factory([definition()], services=dict(max_contacts_per_request=5, **PENDING))
    report = run(app).body
    requests = sandbox_get(sandbox, "requests")["requests"]
    held = next(r for r in requests if r["method"] == "GET" and "/imports/" in r["path"])
    assert [r["path"] for r in requests].count(held["path"]) == 1  # its answer was kept, not asked for again
    assert report["counts"]["failed"] == 1
    rows = rejects_rows(blob_service, state_container_name, report["rejects_blob"])
    assert [(r["row"], r["reason"]) for r in rows] == [("2", "failed in SendGrid import")]
