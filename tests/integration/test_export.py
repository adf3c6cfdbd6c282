"""End to end on the real stand-ins: Azurite holds the export, the sandbox plays SendGrid."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from helpers import (
    API_KEY,
    CUSTOM,
    OTHER_LIST_ID,
    SEGMENT,
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
from shared.source.blob import BlobSource, Segment, SourceRow


def test_a_run_delivers_every_valid_profile_once_and_accounts_for_every_row(
    app_factory: Any,
    source_container: ContainerClient,
    sandbox: Any,
    blob_service: BlobServiceClient,
    state_container_name: str,
) -> None:
    good = [person(i) for i in range(1, 41)]
    bad = [
        person(41, email="not-an-email"),
        person(42, email=""),
        person(43, email="PERSON1@Example.com "),  # duplicate of row 1 after normalising
        person(44, email="person44@example.com")[:5],  # ragged: too few columns
        person(45, email="person45@example.com", City="Lis\x00bon"),
        person(46, email="person46@example.com", Value="lots"),  # not a number for a Number field
        person(47, email="not-an-email"),  # invalid again: rejected, not a duplicate
    ]
    write(source_container, [good[:25], [], good[25:] + bad])
    app = app_factory([definition(custom_fields=CUSTOM)])

    response = run(app)

    assert response.status == 200, response.body
    report = response.body
    assert report["status"] == "succeeded" and report["error"] is None
    assert report["counts"] == {
        "read": 47,
        "valid": 40,
        "rejected": 6,
        "duplicates": 1,
        "sent": 40,
        "failed": 0,
        "unchanged": 0,
        "removed": 0,
    }
    assert report["rejects"] == {
        "NUL byte": 1,
        "invalid email": 2,
        "lifetime_value is not a number": 1,
        "missing email": 1,
        "wrong number of columns": 1,
    }
    assert len(report["source"]["partitions"]) == 3
    assert sum(job["contacts"] for job in report["jobs"]) == 40 and report["requests"]["upserts"] == 1

    delivered = contacts_by_email(sandbox)
    assert set(delivered) == {f"person{i}@example.com" for i in range(1, 41)}
    first = delivered["person1@example.com"]
    assert (first["first_name"], first["last_name"], first["city"], first["country"]) == ("First1", "Last1", "Lisbon", "Portugal")
    fields = {f["name"]: f["id"] for f in sandbox.state.custom_fields.values()}
    assert first["custom_fields"] == {fields["loyalty_tier"]: "Gold", fields["lifetime_value"]: 1}
    assert all(c["list_ids"] == [definition()["list_ids"][0]] for c in delivered.values())

    lines = rejects_rows(blob_service, state_container_name, report["rejects_blob"])
    assert [(r["partition"], r["row"], r["reason"]) for r in lines] == [
        (f"{SEGMENT}_3", "16", "invalid email"),
        (f"{SEGMENT}_3", "17", "missing email"),
        (f"{SEGMENT}_3", "18", "duplicate email"),
        (f"{SEGMENT}_3", "19", "wrong number of columns"),
        (f"{SEGMENT}_3", "20", "NUL byte"),
        (f"{SEGMENT}_3", "21", "lifetime_value is not a number"),
        (f"{SEGMENT}_3", "22", "invalid email"),
    ]

    status = routes.handle(app, "GET", "vip", "status")
    assert status.status == 200 and status.body["run_id"] == report["run_id"]
    listing = routes.handle(app, "GET", None, None)
    assert listing.body["exports"][0]["last_run"]["status"] == "succeeded"


def test_chunks_follow_both_caps_with_the_fewest_requests(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 101)], [person(i) for i in range(101, 124)]])
    app = app_factory(
        [definition(list_ids=[definition()["list_ids"][0], OTHER_LIST_ID])], services=dict(max_contacts_per_request=25)
    )
    report = run(app).body
    assert report["counts"]["sent"] == 123
    assert [job["contacts"] for job in report["jobs"]] == [25, 25, 25, 25, 23]
    assert len(put_requests(sandbox)) == 5

    # Now the byte cap binds: every body at most 2,000 bytes, and no more bodies than needed.
    sandbox.state.bodies.clear()
    app.services = replace(app.services, max_contacts_per_request=30_000, max_body_bytes=2_000)
    report = run(app, body=b'{"full_refresh": true}').body
    sizes = [r["bytes"] for r in put_requests(sandbox)[5:]]
    assert max(sizes) <= 2_000 and sum(sizes) > 2_000 * (len(sizes) - 1) * 0.85
    assert report["counts"]["sent"] == 123 and len(contacts_by_email(sandbox)) == 123
    assert all(set(c["list_ids"]) == {definition()["list_ids"][0], OTHER_LIST_ID} for c in contacts_by_email(sandbox).values())


def test_contacts_sendgrid_refuses_are_isolated_and_the_rest_delivered(
    app_factory: Any,
    source_container: ContainerClient,
    sandbox: Any,
    blob_service: BlobServiceClient,
    state_container_name: str,
) -> None:
    write(source_container, [[person(i) for i in range(1, 65)]])
    sandbox_config(sandbox, invalid_emails=["person7@example.com", "person50@example.com"])
    report = run(app_factory([definition()])).body
    assert report["status"] == "succeeded"
    assert report["counts"] == {
        "read": 64,
        "valid": 62,
        "rejected": 2,
        "duplicates": 0,
        "sent": 62,
        "failed": 0,
        "unchanged": 0,
        "removed": 0,
    }
    assert report["rejects"] == {"rejected by SendGrid": 2}
    assert set(contacts_by_email(sandbox)) == {f"person{i}@example.com" for i in range(1, 65)} - {
        "person7@example.com",
        "person50@example.com",
    }
    # SendGrid's 400 names both refused contacts: the rest go again in one request, no halving.
    assert report["requests"]["upserts"] == 2 and len(put_requests(sandbox)) == 2
    lines = rejects_rows(blob_service, state_container_name, report["rejects_blob"])
    lines.sort(key=lambda r: int(r["row"]))
    assert [(r["row"], r["reason"]) for r in lines] == [("7", "rejected by SendGrid"), ("50", "rejected by SendGrid")]
    assert "person7@example.com" in lines[0]["detail"]  # SendGrid's message, kept for the operator
    assert "person7@example.com" not in json.dumps(report)  # but never in the report


def test_dry_run_reads_and_counts_but_sends_nothing(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, blob_service: BlobServiceClient, state_container_name: str
) -> None:
    write(source_container, [[person(i) for i in range(1, 11)] + [person(11, email="bad")]])
    report = run(app_factory([definition()]), body=b'{"dry_run": true}').body
    assert report["dry_run"] is True and report["status"] == "succeeded"
    assert report["counts"] == {
        "read": 11,
        "valid": 10,
        "rejected": 1,
        "duplicates": 0,
        "sent": 0,
        "failed": 0,
        "unchanged": 0,
        "removed": 0,
    }
    assert report["plan"] == {"upsert": 10, "remove": 0}
    assert put_requests(sandbox) == [] and contacts_by_email(sandbox) == {}
    assert not blob_service.get_container_client(state_container_name).exists()  # nothing stored at all


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"privacy_consent": False}, "consent_required"),
        ({"mapping": {"email": "Mail"}}, "unknown_column"),
        ({"custom_fields": {"shoe_size": "Tier"}}, "unknown_custom_field"),
        ({"list_ids": ["11111111-2222-4333-8444-555555555555"]}, "unknown_list"),
        ({"max_profiles": 5}, "too_many_profiles"),
        ({"segment": "NoSuchSegment"}, "source_not_found"),
        ({"source_folder": "elsewhere"}, "source_not_found"),
    ],
)
def test_invalid_definitions_are_422_and_send_nothing(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, change: dict[str, Any], code: str
) -> None:
    write(source_container, [[person(i) for i in range(1, 11)]])
    response = run(app_factory([definition(**change)]))
    assert response.status == 422
    assert response.body["error"]["code"] == code
    assert response.body["report"]["status"] == "failed"
    assert put_requests(sandbox) == []
    stored = routes.handle(app_factory([definition(**change)]), "GET", "vip", "status").body
    assert stored["error"]["code"] == code  # the refusal is on record too


def test_sendgrid_that_stays_down_is_a_502_and_a_failed_report(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 11)]])
    sandbox_config(sandbox, faults=[{"method": "PUT", "path": "/v3/marketing/contacts", "status": 503, "times": 50}])
    response = run(app_factory([definition()]))
    assert response.status == 502 and response.body["error"]["code"] == "sendgrid_unavailable"
    assert response.body["report"]["status"] == "failed"
    assert len(put_requests(sandbox)) == 6  # the policy's attempts, then it gives up


def test_a_refused_api_key_is_a_clear_502(app_factory: Any, source_container: ContainerClient, sandbox: Any) -> None:
    write(source_container, [[person(1)]])
    sandbox_config(sandbox, api_keys=["SG.some-other-key"])
    response = run(app_factory([definition()]))
    assert response.status == 502 and response.body["error"]["code"] == "sendgrid_auth_failed"
    assert "invalid or revoked" in response.body["error"]["message"]
    assert API_KEY not in json.dumps(response.body)


def test_transient_faults_are_retried_and_each_profile_arrives_once(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 31)]])
    sandbox_config(
        sandbox,
        faults=[
            {"method": "PUT", "path": "/v3/marketing/contacts", "status": 500, "times": 2},
            {"method": "PUT", "path": "/v3/marketing/contacts", "drop": True, "times": 1},
            {"method": "GET", "path": "/v3/marketing/lists/", "status": 502, "times": 1},
        ],
    )
    app = app_factory([definition()], services=dict(max_contacts_per_request=10))
    report = run(app).body
    assert report["status"] == "succeeded" and report["counts"]["sent"] == 30
    assert report["requests"]["retries"] == 4
    accepted_bodies = sandbox.state.bodies
    emails = [c["email"] for body in accepted_bodies for c in body["contacts"]]
    assert sorted(emails) == sorted(f"person{i}@example.com" for i in range(1, 31))  # exactly once each


def test_rate_limits_are_waited_out_by_the_reset_header(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 31)]])
    sandbox_config(sandbox, rate_limit=2, rate_window=1.0)
    app = app_factory([definition()], services=dict(max_contacts_per_request=10))
    report = run(app).body
    assert report["status"] == "succeeded" and report["counts"]["sent"] == 30
    log = sandbox_get(sandbox, "requests")["requests"]
    limited = [r for r in log if r["status"] == 429]
    # The client paces on X-RateLimit-Remaining, so a 429 is rare (the client tests cover them).
    assert report["requests"]["retries"] == len(limited)
    # Each 429 is followed by a wait until the X-RateLimit-Reset it carried, not a burst of retries.
    for hit in limited:
        following = next(r for r in log if r["at"] > hit["at"])
        assert following["at"] >= hit["reset"] - 0.01
    assert len(limited) <= len(log) - len(limited)


def test_no_profile_value_or_key_reaches_the_logs(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [person(i, FirstName=f"Zelda{i}", LastName=f"Quux{i}") for i in range(1, 21)]
    rows.append(person(21, email="broken-address", FirstName="Zelda21"))
    write(source_container, [rows])
    sandbox_config(
        sandbox,
        rate_window=1.0,
        invalid_emails=["person3@example.com"],
        import_error_emails=["person5@example.com"],
        faults=[
            {"method": "PUT", "path": "/v3/marketing/contacts", "status": 503, "times": 1},
            {"method": "PUT", "path": "/v3/marketing/contacts", "drop": True, "times": 1},
            {"method": "GET", "path": "/v3/marketing/lists/", "status": 429, "times": 1},
        ],
    )
    caplog.set_level(logging.DEBUG)
    report = run(app_factory([definition(custom_fields=CUSTOM)])).body
    assert report["counts"]["sent"] == 19 and report["counts"]["failed"] == 1 and report["requests"]["retries"] == 3
    text = "\n".join(r.getMessage() for r in caplog.records) + json.dumps(report)
    assert "export 'vip'" in text  # the logs were captured
    for secret in [API_KEY, "@example.com", "Zelda", "Quux", "broken-address"]:
        assert secret not in text, secret


def test_the_timer_runs_every_enabled_export_and_one_failure_stops_none(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 6)]])
    app = app_factory(
        [
            definition(name="broken", mapping={"email": "NoSuchColumn"}),
            definition(name="off", enabled=False),
            definition(name="good"),
        ]
    )
    summaries = run_all(app)
    assert [(s["export"], s["status"]) for s in summaries] == [("broken", "failed"), ("off", "skipped"), ("good", "succeeded")]
    assert summaries[0]["error"] == "unknown_column"
    assert len(contacts_by_email(sandbox)) == 5
    assert routes.handle(app, "GET", "good", "status").body["trigger"] == "timer"


def test_a_request_level_refusal_is_an_error_not_a_hunt_for_bad_contacts(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 41)]])
    # As if the list were deleted between the check at the start and the upsert.
    refusal = {"errors": [{"field": "list_ids", "message": "invalid list id"}]}
    sandbox_config(
        sandbox, faults=[{"method": "PUT", "path": "/v3/marketing/contacts", "status": 400, "body": refusal, "times": 10}]
    )
    response = run(app_factory([definition()]))
    assert response.status == 502 and response.body["error"]["code"] == "sendgrid_error"
    assert "list_ids" in response.body["error"]["message"]
    assert len(put_requests(sandbox)) == 1  # no halving for a problem no contact causes


def test_a_first_run_sends_while_reading_only_when_nothing_can_stop_it(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 41)]])
    # No record yet and the partition sizes prove max_profiles cannot be passed: one pass.
    first = run(app_factory([definition()])).body
    assert first["streamed"] is True and "send" not in first["timings"]
    assert first["counts"]["sent"] == 40
    # A record now exists: what to send depends on all of the segment, so read first, then send.
    write(source_container, [[person(i, City="Porto") for i in range(1, 41)]])
    second = run(app_factory([definition()])).body
    assert second["streamed"] is False and "send" in second["timings"] and second["counts"]["sent"] == 40


class CountingSource(BlobSource):
    """The real source, counting how often the segment's rows are read."""

    reads = 0

    def rows(self, segment: Segment) -> Iterator[SourceRow]:
        CountingSource.reads += 1
        return super().rows(segment)


@pytest.mark.parametrize(("limit", "sent"), [(40, 40), (39, 0)])
def test_max_profiles_holds_with_one_read_of_the_segment(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, limit: int, sent: int
) -> None:
    # Sizes cannot prove 40 rows under the limit: contacts wait in the spill until the end of
    # the read proves it (then they are sent), or the 41st valid profile refuses the run.
    write(source_container, [[person(i) for i in range(1, 41)]])
    app = app_factory([definition(max_profiles=limit)])
    app.services.source = CountingSource(source_container)
    CountingSource.reads = 0
    response = run(app)
    report = response.body.get("report", response.body)
    assert CountingSource.reads == 1 and report["streamed"] is False
    assert report["counts"]["sent"] == sent and len(put_requests(sandbox)) == (1 if sent else 0)
    if not sent:
        assert response.status == 422 and response.body["error"]["code"] == "too_many_profiles"


def test_sending_starts_while_reading_once_the_bytes_left_prove_the_limit(
    app_factory: Any, source_container: ContainerClient, sandbox: Any
) -> None:
    # 60 rows, then two partitions of 5 (about 75 bytes a row, 16 the least a valid row can take):
    # at the start the bytes could hold over 300 rows, more than the limit of 150; once the first
    # partition is read, 60 + what the last 10 rows' bytes can hold (under 50) is not.
    write(
        source_container,
        [[person(i) for i in range(1, 61)], [person(i) for i in range(61, 66)], [person(i) for i in range(66, 71)]],
    )
    app = app_factory([definition(max_profiles=150)], services=dict(max_contacts_per_request=10))
    app.services.source = CountingSource(source_container)
    CountingSource.reads = 0
    report = run(app).body
    assert report["status"] == "succeeded" and report["streamed"] is True and CountingSource.reads == 1
    assert report["counts"]["sent"] == 70 and len(contacts_by_email(sandbox)) == 70
    assert [job["contacts"] for job in report["jobs"]] == [10] * 7
