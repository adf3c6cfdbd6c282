"""One truth for a run across time: nothing is final until SendGrid says so, for that contact;
when unsure, a contact stays "not applied" (sent again, or unlinked if it left), never forgotten.
Through real runs on Azurite and the SendGrid sandbox, each bug first (these tests failed before
the fixes): an errored job whose errors file names fewer contacts than failed, an interrupted or
killed run's contacts forgotten after a new snapshot, an old record hiding a list change, a
contact that left and came back keeping values the export had set. Then what keeps the fixes
safe: a journal left behind or that cannot be written, entries off the lists in the guard, and a
record in the format the previous release wrote, still read as it meant."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobLeaseClient, BlobServiceClient, ContainerClient
from helpers import (
    API_KEY,
    LIST_ID,
    OTHER_LIST_ID,
    ROOT,
    app_env,
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
from tools.sendgrid_sandbox import Fault

MIRROR = {"sync_mode": "mirror"}
PENDING = dict(job_polling=JobPolling(max_wait=0.05, first_interval=0.01))
JOURNAL = "journal/vip.tsv"


def email(i: int) -> str:
    return f"person{i}@example.com"


def emails(numbers: Any) -> set[str]:
    return {email(i) for i in numbers}


def record_lines(app: App) -> list[str]:
    return app.services.state._container.download_blob("delivered/vip.tsv").readall().decode().splitlines()


def record_of(app: App) -> dict[str, list[str]]:
    """The record by email: [hash, extra] (extra "" when the line has none)."""
    return {line.split("\t")[0]: ([*line.split("\t")[1:], ""])[:2] for line in record_lines(app)}


def on_list(sandbox: Any, list_id: str = LIST_ID) -> set[str]:
    return {c["email"] for c in sandbox_get(sandbox, "contacts")["contacts"] if list_id in c["list_ids"]}


def sent_emails(sandbox: Any, since: int = 0) -> list[str]:
    return [c["email"] for body in sandbox.state.bodies[since:] for c in body["contacts"]]


def put_directly(sandbox: Any, body: dict[str, Any]) -> None:
    """A write someone else makes in the same SendGrid account."""
    answer = requests.put(
        f"{sandbox.url}/v3/marketing/contacts", json=body, timeout=10, headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert answer.status_code == 202
    sandbox_get(sandbox, "contacts")  # let the import finish


def interrupted_run(app: App, time_limit: float) -> dict[str, Any]:
    """A run stopped by its time limit (checkpointed, resumable), on a clock that moves one
    "second" per reading."""
    ticks = iter(range(10_000))
    app.services = replace(app.services, max_contacts_per_request=10, time_limit=time_limit, clock=lambda: next(ticks))
    report = run(app).body
    app.services = replace(app.services, time_limit=10_000)
    return report


def blob_exists(app: App, name: str) -> bool:
    try:
        app.services.state._container.get_blob_client(name).get_blob_properties()
    except ResourceNotFoundError:
        return False
    return True


# -- 2. a contact SendGrid did not apply is not recorded as applied -----------------------------
def test_an_errored_job_whose_errors_file_names_fewer_than_failed_applies_none_of_its_contacts(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, blob_service: BlobServiceClient, state_container_name: str
) -> None:
    write(source_container, [[person(i) for i in range(1, 11)]])
    # Two contacts fail in the import; the errors file names only person 3.
    sandbox_config(sandbox, import_error_emails=[email(3), email(7)], errors_file_omits=[email(7)])
    app = app_factory([definition()])
    first = run(app).body
    (job,) = first["jobs"]
    assert job["status"] == "errored" and job["results"]["errored_count"] == 2
    assert email(7) not in contacts_by_email(sandbox)  # SendGrid did not apply it
    # Which contact the file left out is not known: none of the job's contacts counts as applied.
    # Those it does not name may have been applied: UNSURE (sent again; what they set is known).
    assert sorted(record_lines(app)) == sorted(f"{email(i)}\tunsure" for i in range(1, 11) if i != 3)
    rows = rejects_rows(blob_service, state_container_name, first["rejects_blob"])
    assert sorted(int(r["row"]) for r in rows if r["reason"] == "failed in SendGrid import") == list(range(1, 11))
    sandbox_config(sandbox, import_error_emails=[], errors_file_omits=[])
    before = len(sandbox.state.bodies)
    second = run(app).body
    assert second["error"] is None and email(7) in sent_emails(sandbox, before)  # sent again
    assert email(7) in on_list(sandbox) and len(record_lines(app)) == 10


def test_a_late_errored_job_whose_errors_file_names_fewer_than_failed_settles_as_not_applied(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 11)]])
    sandbox_config(sandbox, job_pending_polls=1000, import_error_emails=[email(3), email(7)], errors_file_omits=[email(7)])
    app = app_factory([definition()], services=PENDING)
    first = run(app).body
    assert first["jobs"][0]["status"] == "pending" and len(record_lines(app)) == 10  # pending, by its job
    sandbox_config(sandbox, job_pending_polls=0)
    before = len(sandbox.state.bodies)
    second = run(app).body  # settles the first run's job, then plans
    assert second["settled"] == {"applied": 0, "not_applied": 10, "pending": 0}
    assert email(7) in sent_emails(sandbox, before)


# -- 5. what an interrupted run sent is never forgotten ------------------------------------------
@pytest.mark.parametrize("start", ["first delivery", "delta"])
def test_contacts_an_interrupted_run_sent_are_unlinked_when_a_new_snapshot_drops_them(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, start: str
) -> None:
    app = app_factory([definition(**MIRROR)])
    stays = range(1, 11)
    if start == "delta":
        write(source_container, [[person(i) for i in stays]])
        assert run(app).body["status"] == "succeeded"
    write(source_container, [[person(i) for i in range(1, 41)]])
    stopped = interrupted_run(app, 2.5)
    assert stopped["resumable"] is True and 0 < stopped["counts"]["sent"] < 40
    sent = set(sent_emails(sandbox))
    assert sent - emails(stays), "the interrupted run should have sent some contacts that leave next"
    # Customer Insights exports again before the retry: persons 11-40 left the segment.
    write(source_container, [[person(i) for i in stays]])
    after = run(app, body=b'{"confirm_removals": true}').body
    assert after["error"] is None and after["resumed_from"] is None
    assert on_list(sandbox) == emails(stays)  # what the interrupted run put on the list is taken off
    assert not blob_exists(app, JOURNAL) and not blob_exists(app, "checkpoints/vip.json")


def test_a_run_killed_after_its_journal_but_before_its_checkpoint_forgets_nothing(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    app = app_factory([definition(**MIRROR)])
    write(source_container, [[person(i) for i in range(1, 11)]])
    run(app)
    write(source_container, [[person(i, City="Porto") for i in range(1, 31)]])
    stopped = interrupted_run(app, 2.5)
    assert stopped["resumable"] is True
    sent = set(sent_emails(sandbox))
    # As if the worker died after writing the journal and before any checkpoint: which requests
    # SendGrid accepted is not known.
    app.services.state.clear_checkpoint("vip")
    write(source_container, [[person(i, City="Porto") for i in range(1, 6)] + [person(i) for i in range(6, 11)]])
    before = len(sandbox.state.bodies)
    after = run(app, body=b'{"confirm_removals": true}').body
    assert after["error"] is None
    assert on_list(sandbox) == emails(range(1, 11))  # the new contacts it may have sent are unlinked
    # Persons 6-10 may hold the Porto version now: unsure, they are sent again as they are.
    assert emails(range(6, 11)) & sent <= set(sent_emails(sandbox, before))
    assert all(contacts_by_email(sandbox)[email(i)]["city"] == "Lisbon" for i in range(6, 11))


@pytest.mark.slow
def test_a_worker_killed_mid_run_forgets_nothing_when_a_new_snapshot_comes(
    azurite: Any, source_container: ContainerClient, state_container_name: str, sandbox: Any, app_factory: Any
) -> None:
    """A real kill (SIGKILL) wherever it lands: before, during or after a request, its journal
    lines or its checkpoint."""
    write(source_container, [[person(i) for i in range(1, 101)]])
    sandbox.state.faults.append(Fault(method="PUT", path="/v3/marketing/contacts", status=0, times=10_000, delay=0.25))
    env = {
        **os.environ,
        **app_env(azurite, source_container, state_container_name, sandbox.url, [definition(**MIRROR)]),
        "SENDGRID_MAX_CONTACTS_PER_REQUEST": "10",
        "RUN_LEASE_SECONDS": "15",
    }
    env.pop("KEY_VAULT_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "shared", "run", "vip"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(1 for r in put_requests(sandbox) if r.get("status") == 202) < 3:
        time.sleep(0.05)
    time.sleep(0.1)  # somewhere inside the next request's round
    process.send_signal(signal.SIGKILL)
    process.wait()
    sandbox.state.faults.clear()
    assert 3 <= len(sandbox.state.bodies) < 10, "the kill should land halfway"
    sandbox_get(sandbox, "contacts")  # SendGrid applies what it accepted
    assert on_list(sandbox) - emails(range(1, 11)), "the killed run should have put leavers on the list"
    # Customer Insights exports again before the retry: persons 11-100 left.
    write(source_container, [[person(i) for i in range(1, 11)]])
    app = app_factory([definition(**MIRROR)])
    deadline = time.monotonic() + 30
    while (answer := run(app, body=b'{"confirm_removals": true}')).status == 409 and time.monotonic() < deadline:
        time.sleep(1)  # the killed run's lease ends by itself
    assert answer.status == 200 and answer.body["error"] is None, answer.body
    # Accepted requests are pending on their jobs in the record now (their contacts leave once
    # the jobs settled); the rest the journal holds was perhaps sent: unlinked now.
    if answer.body["settled"]["pending"]:
        assert run(app, body=b'{"confirm_removals": true}').body["settled"]["pending"] == 0
    assert on_list(sandbox) == emails(range(1, 11))


def test_a_journal_left_by_a_run_that_stored_its_record_changes_nothing(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    app = app_factory([definition(**MIRROR)])
    write(source_container, [[person(i) for i in range(1, 31)]])
    interrupted_run(app, 2.5)
    container = app.services.state._container
    journal = container.download_blob(JOURNAL).readall()
    checkpoint = container.download_blob("checkpoints/vip.json").readall()
    finished = run(app).body  # resumes, stores the record, removes the journal
    assert finished["status"] == "succeeded" and finished["resumed_from"] is not None
    assert not blob_exists(app, JOURNAL)
    record_before = record_lines(app)
    # As if the worker died after storing the record, before removing its journal (and so
    # before clearing its checkpoint, which goes after the journal).
    blob = container.get_blob_client(JOURNAL)
    blob.create_append_blob()
    blob.append_block(journal)
    container.upload_blob("checkpoints/vip.json", checkpoint)
    write(source_container, [[person(i) for i in range(1, 31)]])  # the same contacts, a new snapshot
    before = len(sandbox.state.bodies)
    again = run(app).body
    assert again["error"] is None and again["counts"]["sent"] == 0 and len(sandbox.state.bodies) == before
    assert record_lines(app) == record_before and not blob_exists(app, JOURNAL)


def test_a_journal_that_cannot_be_written_stops_the_run_before_it_sends(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    app = app_factory([definition(**MIRROR)])
    write(source_container, [[person(i) for i in range(1, 41)]])
    stopped = interrupted_run(app, 2.5)
    sent = stopped["counts"]["sent"]
    lease = BlobLeaseClient(app.services.state._container.get_blob_client(JOURNAL))
    lease.acquire(lease_duration=-1)  # the journal cannot be appended to
    try:
        puts = len(put_requests(sandbox))
        answer = run(app).body
        failed = answer.get("report", answer)
        assert failed["error"] is not None and failed["error"]["code"] == "storage_unavailable"
        assert len(put_requests(sandbox)) == puts  # nothing sent that the journal does not hold
        assert failed["counts"]["sent"] == sent
    finally:
        lease.release()
    finished = run(app).body
    assert finished["status"] == "succeeded" and finished["counts"]["sent"] == 40
    assert Counter(sent_emails(sandbox)) == Counter(emails(range(1, 41)))


# -- 13. what a contact may hold is remembered, so an emptied field is cleared ------------------
def test_a_resend_that_failed_whole_after_an_interrupted_run_still_clears_an_emptied_field(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    """The record holds the contacts pending on the jobs that applied them (first names set); an
    interrupted run sends them changed in a job that fails whole; the next snapshot empties the
    first names. They were set by the export: they are cleared."""
    app = app_factory([definition()], services=PENDING)
    write(source_container, [[person(i) for i in range(1, 21)]])
    sandbox_config(sandbox, job_pending_polls=1000)
    assert all(job["status"] == "pending" for job in run(app).body["jobs"])
    sandbox.state.imports.join()  # SendGrid applied them; the record says pending
    write(source_container, [[person(i, FirstName="Zoë") for i in range(1, 21)]])
    sandbox_config(sandbox, fail_jobs=1)
    stopped = interrupted_run(app, 1.5)
    assert stopped["resumable"] is True and stopped["counts"]["sent"] > 0
    sandbox.state.imports.join()
    assert all(contacts_by_email(sandbox)[email(i)]["first_name"] == f"First{i}" for i in range(1, 21))
    # Customer Insights exports again before the retry: the first names are emptied.
    write(source_container, [[person(i, FirstName="") for i in range(1, 21)]])
    sandbox_config(sandbox, job_pending_polls=0)
    after = run(app).body
    assert after["error"] is None and after["resumed_from"] is None
    sandbox.state.imports.join()
    held = contacts_by_email(sandbox)
    assert [email(i) for i in range(1, 21) if "first_name" in held[email(i)]] == []


def test_contacts_an_errored_job_may_have_applied_have_an_emptied_field_cleared(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    """An errored job whose errors file names fewer contacts than failed: none of its contacts
    counts as applied, but SendGrid applied those it does not name. Their last names, emptied
    next, are cleared; the one the file names (never applied) is sent without clearing them."""
    app = app_factory([definition()])
    write(source_container, [[person(i) for i in range(1, 6)]])
    run(app)
    write(source_container, [[person(i) for i in range(1, 11)]])  # 6-10 are new
    sandbox_config(sandbox, import_error_emails=[email(6), email(7)], errors_file_omits=[email(7)])
    (job,) = run(app).body["jobs"]
    assert job["status"] == "errored"
    sandbox_config(sandbox, import_error_emails=[], errors_file_omits=[])
    put_directly(sandbox, {"list_ids": [OTHER_LIST_ID], "contacts": [{"email": email(6), "last_name": "Theirs"}]})
    write(source_container, [[person(i, LastName="" if i > 5 else f"Last{i}") for i in range(1, 11)]])
    assert run(app).body["error"] is None
    sandbox.state.imports.join()
    held = contacts_by_email(sandbox)
    assert [email(i) for i in range(7, 11) if "last_name" in held[email(i)]] == []
    assert held[email(6)]["last_name"] == "Theirs"  # never set by the export: left as it is


# -- 6. an old record does not hide a list change ----------------------------------------------
def test_a_record_without_list_metadata_counts_as_a_list_change(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 11)]])
    app = app_factory([definition(**MIRROR)])
    assert run(app).body["status"] == "succeeded"
    # The record as an earlier release stored it: no list_ids (and no fields) metadata.
    app.services.state._container.get_blob_client("delivered/vip.tsv").set_blob_metadata({})
    # Another team keeps person 1 on its list; the export moves to that list; person 1 leaves.
    put_directly(sandbox, {"list_ids": [OTHER_LIST_ID], "contacts": [{"email": email(1)}]})
    write(source_container, [[person(i) for i in range(2, 11)]])
    moved = app_factory([definition(**MIRROR, list_ids=[OTHER_LIST_ID])])
    before = len(sandbox.state.bodies)
    refused = run(moved)
    assert refused.status == 422 and refused.body["error"]["code"] == "removal_guard"
    assert "does not say which list" in refused.body["error"]["message"]
    assert email(1) in on_list(sandbox, OTHER_LIST_ID) and len(sandbox.state.bodies) == before
    # Confirmed: unlinked from the definition's lists only (the record's are not known).
    confirmed = run(moved, body=b'{"confirm_removals": true}').body
    assert confirmed["counts"]["removed"] == 1
    lists = set(contacts_by_email(sandbox)[email(1)]["list_ids"])
    assert lists == {LIST_ID}


# -- 12. a contact that leaves and comes back -----------------------------------------------------
def test_a_contact_that_left_and_came_back_has_values_the_export_set_cleared(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    app = app_factory([definition(**MIRROR, custom_fields={"loyalty_tier": "Tier"})])
    write(source_container, [[person(i) for i in range(1, 11)]])
    run(app)
    write(source_container, [[person(i) for i in range(1, 11) if i != 3]])
    left = run(app).body
    assert left["counts"]["removed"] == 1 and email(3) not in on_list(sandbox)
    # Person 3 comes back without a city or a tier, both values this export had set.
    write(source_container, [[person(3, City="", Tier="") if i == 3 else person(i) for i in range(1, 11)]])
    before = len(sandbox.state.bodies)
    back = run(app).body
    assert back["status"] == "succeeded" and sent_emails(sandbox, before) == [email(3)]
    tier = next(f["id"] for f in sandbox.state.custom_fields.values() if f["name"] == "loyalty_tier")
    sent = sandbox.state.bodies[-1]["contacts"][0]
    assert sent["city"] == "" and sent["custom_fields"] == {tier: ""}
    stored = contacts_by_email(sandbox)[email(3)]
    assert LIST_ID in stored["list_ids"] and not stored.get("city") and tier not in stored["custom_fields"]


def test_contacts_off_the_lists_are_not_managed_and_never_leave_again(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    app = app_factory([definition(**MIRROR)])
    write(source_container, [[person(i) for i in range(1, 11)]])
    run(app)
    write(source_container, [[person(i) for i in range(1, 6)]])
    assert run(app, body=b'{"confirm_removals": true}').body["counts"]["removed"] == 5
    assert len(record_lines(app)) == 10  # the five unlinked stay known, off the lists
    # The same contacts again: nothing to send, no one to unlink, and the shortcut still holds.
    write(source_container, [[person(i) for i in range(1, 6)]])
    again = run(app).body
    assert again["plan"] == {"upsert": 0, "remove": 0} and again["counts"]["unchanged"] == 5
    assert run(app).body["unchanged_snapshot"] is True
    # Two of the five managed leave: 40%, over max_removal_fraction, whatever the off-list entries.
    write(source_container, [[person(i) for i in range(1, 4)]])
    refused = run(app)
    assert refused.status == 422 and "remove 2 of the 5 contacts" in refused.body["error"]["message"]


def test_upsert_mode_keeps_no_off_list_entries(app_factory: Any, source_container: ContainerClient, sandbox: Any) -> None:
    app = app_factory([definition()])
    write(source_container, [[person(i) for i in range(1, 11)]])
    run(app)
    write(source_container, [[person(i) for i in range(1, 6)]])
    assert run(app).body["counts"]["removed"] == 0
    assert all(len(entry[0]) == 16 for entry in record_of(app).values())  # every entry a real hash


# -- the record format is a stored contract ------------------------------------------------------
# What the previous release stored (fields loyalty_tier as e1_T): persons 1 and 5 settled with every
# field set, 2 and 4 settled with no postcode / no tier, 3 pending (an update, with the entry to
# go back to), 6 pending (new). Its job is one this sandbox never saw: SendGrid does not know it.
PREVIOUS_RELEASE_RECORD = (
    b"person1@example.com\t4e56ceb6199c9641\n"
    b"person2@example.com\teee4439ae94bdaef\tpc;\n"
    b"person3@example.com\t39d769e594e024fc\t;f58d3a90-e0a3-4f46-8817-3f8b6d27d117;8dd24a10263d9596;\n"
    b"person4@example.com\tee7f4afa1cb09b29\t+e1_T;\n"
    b"person5@example.com\t534285c87298767d\n"
    b"person6@example.com\t8ccf0326e713fe85\tfn;f58d3a90-e0a3-4f46-8817-3f8b6d27d117\n"
)
PREVIOUS_RELEASE_METADATA = {"list_ids": LIST_ID, "fields": "fn,ln,ci,st,pc,co,+e1_T"}


def test_a_record_the_previous_release_wrote_is_read_as_it_meant(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    app = app_factory([definition(**MIRROR, custom_fields={"loyalty_tier": "Tier"})])
    first = [person(1), person(2, PostCode=""), person(3), person(4, Tier=""), person(5)]
    write(source_container, [first])
    run(app)  # SendGrid holds these five
    blob = app.services.state._container.get_blob_client("delivered/vip.tsv")
    blob.upload_blob(PREVIOUS_RELEASE_RECORD, overwrite=True, metadata=PREVIOUS_RELEASE_METADATA)
    # Person 2 loses a city (set before: cleared) and still has no postcode (never set: left out);
    # person 3 is as it was delivered; person 5 leaves; person 6 is as it was sent.
    write(
        source_container,
        [[person(1), person(2, PostCode="", City=""), person(3), person(4, Tier=""), person(6, FirstName="")]],
    )
    before = len(sandbox.state.bodies)
    report = run(app).body
    assert report["error"] is None, report["error"]
    assert report["settled"] == {"applied": 0, "not_applied": 2, "pending": 0}  # the job SendGrid does not know
    # 3 and 6 may hold what that job sent, or not: both are sent again.
    assert sorted(sent_emails(sandbox, before)) == [email(2), email(3), email(6)]
    sent = {c["email"]: c for c in sandbox.state.bodies[-1]["contacts"]}
    assert sent[email(2)]["city"] == "" and "postal_code" not in sent[email(2)]
    assert report["counts"]["removed"] == 1 and email(5) not in on_list(sandbox)
    entries = record_of(app)
    assert set(entries) == emails(range(1, 7)) and entries[email(1)] == ["4e56ceb6199c9641", ""]
