"""Delta, mirror, the removal guard and the dry-run plan, over a sequence of snapshots."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.storage.blob import ContainerClient
from helpers import (
    API_KEY,
    LIST_ID,
    OTHER_LIST_ID,
    contacts_by_email,
    definition,
    person,
    run,
    sandbox_config,
    sandbox_get,
    write,
)

from shared.delta import diff, extsort, lines
from shared.services import App

MIRROR = {"sync_mode": "mirror"}


def writes(sandbox: Any) -> list[dict[str, Any]]:
    """Every request that changes something in SendGrid."""
    return [
        r
        for r in sandbox_get(sandbox, "requests")["requests"]
        if r["method"] in ("PUT", "DELETE") or (r["method"] == "POST" and "search" not in r["path"])
    ]


def on_list(sandbox: Any) -> set[str]:
    return {c["email"] for c in sandbox_get(sandbox, "contacts")["contacts"] if LIST_ID in c["list_ids"]}


def emails(numbers: Any) -> set[str]:
    return {f"person{i}@example.com" for i in numbers}


def someone_elses_contacts(sandbox: Any) -> None:
    """Contacts another tool put on the same list: an exporter in mirror mode never touches them."""
    body = {"list_ids": [LIST_ID], "contacts": [{"email": "manual1@example.org"}, {"email": "manual2@example.org"}]}
    answer = requests.put(
        f"{sandbox.url}/v3/marketing/contacts", json=body, timeout=10, headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert answer.status_code == 202
    sandbox_get(sandbox, "contacts")  # let the import finish


def record_lines(app: App) -> list[str]:
    data = app.services.state._container.download_blob("delivered/vip.tsv").readall()
    return data.decode().splitlines()


def on_the_lists(lines: list[str]) -> list[str]:
    """Record lines of contacts on the lists: not those mirror mode unlinked (hash `off`)."""
    return [line for line in lines if line.split("\t")[1] != "off"]


def test_a_sequence_of_snapshots_in_mirror_mode(app_factory: Any, source_container: ContainerClient, sandbox: Any) -> None:
    someone_elses_contacts(sandbox)
    app = app_factory([definition(**MIRROR)])

    # 1. The first run delivers everyone.
    write(source_container, [[person(i) for i in range(1, 31)]])
    first = run(app).body
    assert first["status"] == "succeeded" and first["plan"] == {"upsert": 30, "remove": 0}
    assert first["counts"]["sent"] == 30
    assert on_list(sandbox) == emails(range(1, 31)) | {"manual1@example.org", "manual2@example.org"}
    assert len(record_lines(app)) == 30

    # 2. Some leave (1-5), some change (6-10), some join (31-35): only those are written.
    before, bodies_before = len(writes(sandbox)), len(sandbox.state.bodies)
    rows = [person(i, City="Porto") if i <= 10 else person(i) for i in range(6, 36)]
    write(source_container, [rows[:12], rows[12:]])
    second = run(app).body
    assert second["status"] == "succeeded", second
    assert second["plan"] == {"upsert": 10, "remove": 5}
    assert second["counts"]["sent"] == 10 and second["counts"]["removed"] == 5 and second["counts"]["unchanged"] == 20
    sent = [c["email"] for body in sandbox.state.bodies[bodies_before:] for c in body["contacts"]]
    assert sorted(sent) == sorted(emails(range(6, 11)) | emails(range(31, 36)))
    assert on_list(sandbox) == emails(range(6, 36)) | {"manual1@example.org", "manual2@example.org"}
    contacts = {c["email"]: c for c in sandbox_get(sandbox, "contacts")["contacts"]}
    assert emails(range(1, 6)) <= set(contacts)  # unlinked from the list, not deleted
    assert contacts["person6@example.com"]["city"] == "Porto"
    assert len(writes(sandbox)) - before == 2  # one upsert, one unlink
    assert len(record_lines(app)) == 35 and len(on_the_lists(record_lines(app))) == 30  # the unlinked stay known

    # 3. The same snapshot again: nothing to write at all.
    before = len(writes(sandbox))
    third = run(app).body
    assert third["status"] == "succeeded" and third["plan"] == {"upsert": 0, "remove": 0}
    assert third["counts"]["unchanged"] == 30 and third["requests"]["upserts"] == 0
    assert len(writes(sandbox)) == before

    # 4. A dry run's plan is exact and writes nothing, to SendGrid or to the state.
    def current(i: int) -> list[str]:
        return person(i, City="Porto") if i <= 10 else person(i)

    rows = [person(i, LastName="New") if i in (12, 13) else current(i) for i in range(7, 36)]  # 6 leaves
    write(source_container, [rows])
    record_before = record_lines(app)
    latest_before = app.services.state.latest_report("vip")
    dry = run(app, body=b'{"dry_run": true}').body
    assert dry["plan"] == {"upsert": 2, "remove": 1} and dry["counts"]["unchanged"] == 27
    assert len(writes(sandbox)) == before
    assert record_lines(app) == record_before and app.services.state.latest_report("vip") == latest_before
    real = run(app).body
    assert (real["counts"]["sent"], real["counts"]["removed"]) == (2, 1)

    # 5. A segment that shrank by 90% is refused, and nothing is removed or sent...
    write(source_container, [[current(i) for i in range(7, 10)]])
    before = len(writes(sandbox))
    refused = run(app)
    assert refused.status == 422 and refused.body["error"]["code"] == "removal_guard"
    assert "remove 26 of the 29" in refused.body["error"]["message"]
    assert len(writes(sandbox)) == before and len(on_list(sandbox)) == 31
    # ...unless the removals are confirmed.
    confirmed = run(app, body=b'{"confirm_removals": true}').body
    assert confirmed["status"] == "succeeded" and confirmed["counts"]["removed"] == 26
    assert on_list(sandbox) == emails(range(7, 10)) | {"manual1@example.org", "manual2@example.org"}
    assert len(on_the_lists(record_lines(app))) == 3


def test_upsert_mode_never_removes_and_full_refresh_resends_all(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    app = app_factory([definition()])
    write(source_container, [[person(i) for i in range(1, 11)]])
    run(app)
    write(source_container, [[person(i) for i in range(1, 4)]])
    second = run(app).body
    assert second["plan"] == {"upsert": 0, "remove": 0} and second["counts"]["removed"] == 0
    assert on_list(sandbox) == emails(range(1, 11))
    refresh = run(app, body=b'{"full_refresh": true}').body
    assert refresh["counts"]["sent"] == 3 and refresh["full_refresh"] is True


def test_the_record_takes_only_what_sendgrid_applied(app_factory: Any, source_container: ContainerClient, sandbox: Any) -> None:
    app = app_factory([definition()])
    write(source_container, [[person(i) for i in range(1, 11)]])
    sandbox_config(sandbox, import_error_emails=["person3@example.com"])
    first = run(app).body
    assert first["counts"]["failed"] == 1
    assert len(record_lines(app)) == 9
    sandbox_config(sandbox, import_error_emails=[])
    second = run(app).body  # the failed delivery is retried, nothing else
    assert second["plan"]["upsert"] == 1 and sandbox.state.bodies[-1]["contacts"][0]["email"] == "person3@example.com"
    assert second["status"] == "succeeded" and len(record_lines(app)) == 10


def test_late_imports_settle_and_are_not_sent_again_meanwhile(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    from shared.run.exporter import JobPolling  # noqa: PLC0415

    app = app_factory([definition(**MIRROR)], services=dict(job_polling=JobPolling(max_wait=0.05, first_interval=0.01)))
    write(source_container, [[person(i) for i in range(1, 6)]])
    sandbox_config(sandbox, job_pending_polls=1000)  # SendGrid takes minutes (recorded: still pending after 33 s)
    first = run(app).body
    assert first["jobs"][0]["status"] == "pending"
    # Accepted, not yet applied: in the record with the job's id, so it is not sent again.
    assert all(line.endswith(";" + first["jobs"][0]["job_id"]) for line in record_lines(app))
    still = run(app).body
    assert still["plan"] == {"upsert": 0, "remove": 0} and still["settled"]["pending"] == 5
    assert len(sandbox.state.bodies) == 1
    # The import finishes; person 5 has left meanwhile: the next run settles, then unlinks the leaver.
    sandbox_config(sandbox, job_pending_polls=0)
    sandbox_get(sandbox, "contacts")
    write(source_container, [[person(i) for i in range(1, 5)]])
    later = run(app).body
    assert later["settled"] == {"applied": 5, "not_applied": 0, "pending": 0}
    assert later["plan"] == {"upsert": 0, "remove": 1} and later["counts"]["removed"] == 1
    assert later["status"] == "succeeded" and on_list(sandbox) == emails(range(1, 5))
    assert sorted(line.split("\t")[0] for line in on_the_lists(record_lines(app))) == sorted(emails(range(1, 5)))
    assert all(line.count("\t") == 1 for line in record_lines(app))  # settled entries carry no mark


def test_a_late_import_that_fails_is_sent_again(app_factory: Any, source_container: ContainerClient, sandbox: Any) -> None:
    from shared.run.exporter import JobPolling  # noqa: PLC0415

    app = app_factory([definition()], services=dict(job_polling=JobPolling(max_wait=0.05, first_interval=0.01)))
    write(source_container, [[person(i) for i in range(1, 6)]])
    sandbox_config(sandbox, job_pending_polls=1000, import_error_emails=["person2@example.com"])
    run(app)
    sandbox_config(sandbox, job_pending_polls=0)
    second = run(app).body
    assert second["settled"] == {"applied": 4, "not_applied": 1, "pending": 0}
    assert second["plan"]["upsert"] == 1 and sandbox.state.bodies[-1]["contacts"][0]["email"] == "person2@example.com"


def test_a_row_rejected_for_another_value_is_not_removed_in_mirror_mode(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    app = app_factory([definition(**MIRROR, custom_fields={"lifetime_value": "Value"})])
    write(source_container, [[person(i) for i in range(1, 11)]])
    run(app)
    write(source_container, [[person(i, Value="oops") if i == 4 else person(i) for i in range(1, 11)]])
    report = run(app).body
    assert report["plan"] == {"upsert": 0, "remove": 0} and report["counts"]["rejected"] == 1
    assert "person4@example.com" in on_list(sandbox)


def test_a_snapshot_that_did_not_read_cleanly_removes_no_one(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    app = app_factory([definition(**MIRROR)])
    write(source_container, [[person(i) for i in range(1, 21)]])
    run(app)
    # Two leave, and one row is ragged: it may be a contact still in the segment, so no one goes.
    ragged = person(5)[:4]
    write(source_container, [[ragged if i == 5 else person(i) for i in range(1, 19)]])
    report = run(app).body
    assert report["plan"]["remove"] >= 2 and report["counts"]["removed"] == 0 and report["removal_jobs"] == []
    assert report["status"] == "partial" and "held back" in report["held_back"]
    assert emails(range(1, 21)) <= on_list(sandbox)
    # The next clean snapshot removes the two leavers (and only them).
    write(source_container, [[person(i) for i in range(1, 19)]])
    clean = run(app).body
    assert clean["status"] == "succeeded" and clean["counts"]["removed"] == 2 and clean["held_back"] is None
    assert on_list(sandbox) == emails(range(1, 19))


def test_after_a_list_change_leavers_leave_only_the_lists_this_export_put_them_on(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 11)]])
    run(app_factory([definition(**MIRROR)]))
    # Someone else puts persons 1-3 on the other list; then they leave the segment and the
    # export moves to the other list.
    body = {"list_ids": [OTHER_LIST_ID], "contacts": [{"email": f"person{i}@example.com"} for i in (1, 2, 3)]}
    assert (
        requests.put(
            f"{sandbox.url}/v3/marketing/contacts", json=body, timeout=10, headers={"Authorization": f"Bearer {API_KEY}"}
        ).status_code
        == 202
    )
    sandbox_get(sandbox, "contacts")
    write(source_container, [[person(i) for i in range(4, 11)]])
    moved = app_factory([definition(**MIRROR, list_ids=[OTHER_LIST_ID])])
    refused = run(moved)
    assert refused.status == 422 and refused.body["error"]["code"] == "removal_guard"
    assert "list_ids changed" in refused.body["error"]["message"]
    confirmed = run(moved, body=b'{"confirm_removals": true}').body
    assert confirmed["counts"]["removed"] == 3
    lists = {c["email"]: set(c["list_ids"]) for c in sandbox_get(sandbox, "contacts")["contacts"]}
    assert all(lists[f"person{i}@example.com"] == {OTHER_LIST_ID} for i in (1, 2, 3))  # off the old list only
    assert all(lists[f"person{i}@example.com"] == {LIST_ID, OTHER_LIST_ID} for i in range(4, 11))


def test_removals_search_at_most_100_emails_and_keep_urls_short(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    app = app_factory([definition(**MIRROR)])
    write(source_container, [[person(i) for i in range(1, 251)]])
    run(app)
    write(source_container, [[person(i) for i in range(1, 11)]])
    report = run(app, body=b'{"confirm_removals": true}').body
    assert report["counts"]["removed"] == 240 and on_list(sandbox) == emails(range(1, 11))
    log = sandbox_get(sandbox, "requests")["requests"]
    searches = [r for r in log if r["path"].endswith("/search/emails")]
    assert len(searches) == 3 and all(r["status"] == 200 for r in searches)
    deletes = [r for r in log if r["method"] == "DELETE"]
    assert len(deletes) >= 6 and all(r["status"] == 202 for r in deletes)
    assert all(len(r["query"]) < 2_000 for r in deletes)


# -- the pure parts --------------------------------------------------------------------------
def test_external_sort_merges_runs_from_disk(tmp_path: Path) -> None:
    lines = [f"user{(i * 7919) % 1000}@x.io\t{i}\n".encode() for i in range(1000)]
    assert list(extsort.external_sort(lines, tmp_path, lines_per_run=64)) == sorted(lines)
    assert list(tmp_path.iterdir()) == []  # the runs are cleaned up


def test_sorting_lines_sorts_by_email() -> None:
    lines = [b"a@x.io.uk\t2\n", b"a@x.io\t1\n", b"a@x.iob\t3\n"]
    assert [line.split(b"\t")[0] for line in sorted(lines)] == sorted(line.split(b"\t")[0] for line in lines)


def test_diff_and_next_record(tmp_path: Path) -> None:
    keys = [
        lines.encode_key(email, digest, position, "p", position + 1)
        for position, (email, digest) in enumerate([("a@x.io", "h1"), ("b@x.io", "h2"), ("d@x.io", "h4")])
    ]
    record = [b"b@x.io\th2\n", b"c@x.io\th3\n", b"d@x.io\told\n"]

    def decided(full_refresh: bool = False) -> list[tuple[bytes, str]]:
        with open(tmp_path / "d", "wb") as out, open(tmp_path / "l", "wb") as leavers:
            diff.decide(
                keys,
                record,
                tmp_path,
                out,
                leavers,
                valid=3,
                has_record=True,
                mirror=False,
                keep=lambda email: False,
                full_refresh=full_refresh,
            )
        return [(d.email, d.action) for d in map(lines.parse_decision, (tmp_path / "d").read_bytes().splitlines(True))]

    assert decided() == [(b"a@x.io", "send"), (b"b@x.io", "same"), (b"c@x.io", "leave"), (b"d@x.io", "send")]
    assert decided(full_refresh=True)[1] == (b"b@x.io", "send")
    rows = [
        lines.encode_decision(*row)
        for row in [
            (b"a@x.io", b"h1", b"", "send", 0),
            (b"b@x.io", b"h2", b"h2", "same", -1),
            (b"c@x.io", b"", b"h3", "leave", -1),
            (b"d@x.io", b"h4", b"old", "send", 1),
        ]
    ]
    # a not applied (dropped: never delivered), d not applied (keeps its old hash), c removed
    # (known still, off the lists).
    assert list(diff.next_record(rows, lambda pos, email: False, lambda email: True)) == [
        b"b@x.io\th2\n",
        b"c@x.io\toff\n",
        b"d@x.io\told\n",
    ]
    assert list(diff.next_record(rows, lambda pos, email: True, lambda email: False)) == [
        b"a@x.io\th1\n",
        b"b@x.io\th2\n",
        b"c@x.io\th3\n",
        b"d@x.io\th4\n",
    ]


def test_an_unsorted_record_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError), open(tmp_path / "d", "wb") as out, open(tmp_path / "l", "wb") as leavers:
        diff.decide(
            [],
            [b"b@x.io\th\n", b"a@x.io\th\n"],
            tmp_path,
            out,
            leavers,
            valid=0,
            has_record=True,
            mirror=False,
            keep=lambda email: False,
        )


def test_hash_covers_fields_and_lists() -> None:
    contact = json.dumps({"email": "a@x.io"}).encode()
    assert diff.contact_hash(contact, ["l1"]) == diff.contact_hash(contact, ["l1"])
    assert diff.contact_hash(contact, ["l1"]) != diff.contact_hash(contact, ["l2"])
    assert diff.contact_hash(contact, ["l1"]) != diff.contact_hash(contact.replace(b"a@", b"b@"), ["l1"])


def test_the_hash_is_the_one_every_record_was_written_with() -> None:
    # blake2b-8 of the contact's bytes, RS, its sorted list ids: records of earlier releases hold
    # these, so any other value would resend every contact once.
    contact = b'{"email":"a@example.com","first_name":"Ana"}'
    assert diff.contact_hash(contact, ["l2", "l1"]) == hashlib.blake2b(contact + b"\x1el1,l2", digest_size=8).hexdigest()
    assert diff.contact_hash(contact, ["l1"]) == "a1889f4d46968cec"


def test_the_same_snapshot_again_costs_no_sendgrid_request(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 11)]])
    app = app_factory([definition()])
    first = run(app).body
    assert first["status"] == "succeeded" and first["unchanged_snapshot"] is False
    calls = len(sandbox_get(sandbox, "requests")["requests"])
    again = run(app).body
    assert again["status"] == "succeeded" and again["unchanged_snapshot"] is True
    assert again["counts"]["unchanged"] == 10 and again["counts"]["sent"] == 0
    assert len(sandbox_get(sandbox, "requests")["requests"]) == calls  # not one request, not even a list check
    # A changed definition, or full_refresh, does the work.
    changed = run(app_factory([definition(mapping={"email": "EMail", "first_name": "FirstName"})])).body
    assert changed["unchanged_snapshot"] is False and changed["counts"]["sent"] == 10
    assert run(app, body=b'{"full_refresh": true}').body["unchanged_snapshot"] is False


def test_a_confirm_settles_the_record_between_runs(app_factory: Any, source_container: ContainerClient, sandbox: Any) -> None:
    from shared.run.exporter import JobPolling, confirm_run  # noqa: PLC0415

    app = app_factory([definition()], services=dict(job_polling=JobPolling(max_wait=0)))
    write(source_container, [[person(i) for i in range(1, 6)]])
    sandbox_config(sandbox, job_pending_polls=1000)
    first = run(app).body
    assert first["jobs"][0]["status"] == "pending" and all(";" in line for line in record_lines(app))
    sandbox_config(sandbox, job_pending_polls=0)
    assert first["status"] == "confirming"  # nothing is final until SendGrid says so
    latest = confirm_run("vip", first["run_id"], app.services)
    assert latest is not None and latest["jobs"][0]["status"] == "completed" and latest["status"] == "succeeded"
    assert len(record_lines(app)) == 5 and not any(";" in line for line in record_lines(app))


def test_an_emptied_value_is_cleared_and_a_value_only_others_set_is_untouched(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    app = app_factory([definition(custom_fields={"loyalty_tier": "Tier"})])
    write(source_container, [[person(i, PostCode="") if i == 3 else person(i) for i in range(1, 6)]])
    run(app)
    # Someone else keeps a postcode for person 3 in SendGrid; the export never set one.
    body = {"list_ids": [], "contacts": [{"email": "person3@example.com", "postal_code": "9999-001"}]}
    assert (
        requests.put(
            f"{sandbox.url}/v3/marketing/contacts", json=body, timeout=10, headers={"Authorization": f"Bearer {API_KEY}"}
        ).status_code
        == 202
    )
    sandbox_get(sandbox, "contacts")
    # In Customer Insights, person 2's first name and person 4's tier are emptied; person 3 moves.
    write(
        source_container,
        [[person(2, FirstName=""), person(3, PostCode="", City="Porto"), person(4, Tier="")] + [person(i) for i in (1, 5)]],
    )
    report = run(app).body
    assert report["status"] == "succeeded" and report["counts"]["sent"] == 3
    sent = {c["email"]: c for c in sandbox.state.bodies[-1]["contacts"]}
    tier = next(f["id"] for f in sandbox.state.custom_fields.values() if f["name"] == "loyalty_tier")
    assert sent["person2@example.com"]["first_name"] == ""
    assert sent["person4@example.com"]["custom_fields"] == {tier: ""}
    assert "postal_code" not in sent["person3@example.com"]  # never set by this export: left out
    stored = contacts_by_email(sandbox)
    assert not stored["person2@example.com"].get("first_name")
    assert stored["person3@example.com"]["postal_code"] == "9999-001" and stored["person3@example.com"]["city"] == "Porto"
    # The same snapshot again sends nothing: the cleared fields are now ones the export does not set.
    write(
        source_container,
        [[person(2, FirstName=""), person(3, PostCode="", City="Porto"), person(4, Tier="")] + [person(i) for i in (1, 5)]],
    )
    assert run(app).body["counts"]["sent"] == 0


def test_a_leaver_search_cannot_take_or_a_vanished_contact_fails_no_removal(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    long_email = "a" * 64 + "@" + "b" * 30 + ".example.com"  # 107 characters: over search/emails' 100
    punycode = "user7@example.xn--p1ai"
    app = app_factory([definition(**MIRROR)])
    write(source_container, [[person(i) for i in range(1, 7)] + [person(7, email=punycode), person(8, email=long_email)]])
    first = run(app).body
    assert first["counts"]["sent"] == 8 and punycode in on_list(sandbox)  # an IDN top-level domain is delivered
    requests.post(f"{sandbox.url}/_sandbox/delete", json={"emails": ["person6@example.com"]}, timeout=10)
    write(source_container, [[person(i) for i in range(1, 5)] + [person(7, email=punycode)]])
    report = run(app, body=b'{"confirm_removals": true}').body  # 3 of 8 leave: over the guard's 20%
    assert report["error"] is None and report["counts"]["removed"] == 3
    assert on_list(sandbox) == emails(range(1, 5)) | {punycode}
