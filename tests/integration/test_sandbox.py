"""The SendGrid sandbox over HTTP: it answers the way recorded exchanges with the real API do
(rate-limit headers, 400s naming every contact, late job failures, pending jobs, cleared
values, searches, removals)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from json.decoder import JSONDecoder
from types import FrameType
from typing import Any, cast

import pytest
import requests
from helpers import API_KEY, LIST_ID, sandbox_config, sandbox_get

from tools.sandbox_lock import FairLock
from tools.sandbox_state import IMPORT_SLICE, SandboxState, process_job
from tools.sendgrid_sandbox import SandboxServer

CONTACTS = "/v3/marketing/contacts"


def call(sandbox: Any, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(method, sandbox.url + path, timeout=30, json=body, headers={"Authorization": f"Bearer {API_KEY}"})


def field_id(sandbox: SandboxServer, name: str) -> str:
    return next(f["id"] for f in sandbox.state.custom_fields.values() if f["name"] == name)


def put(sandbox: Any, *contacts: dict[str, Any]) -> requests.Response:
    return call(sandbox, "PUT", CONTACTS, {"list_ids": [LIST_ID], "contacts": list(contacts)})


def settled_job(sandbox: Any, job_id: str) -> dict[str, Any]:
    sandbox.state.imports.join()
    for _ in range(20):
        job = cast(dict[str, Any], call(sandbox, "GET", f"{CONTACTS}/imports/{job_id}").json())
        if job["status"] != "pending":
            return job
    raise AssertionError("job still pending")


def stored(sandbox: Any, email: str) -> dict[str, Any]:
    return next(c for c in sandbox_get(sandbox, "contacts")["contacts"] if c["email"] == email)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Let other threads get to `condition` (a guard against hanging, not a measurement)."""
    deadline = time.monotonic() + 30
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.001)


# -- rate limits ----------------------------------------------------------------------------
def test_reset_is_seconds_until_the_window_resets_by_default(sandbox: Any) -> None:
    answer = call(sandbox, "GET", "/v3/marketing/field_definitions")
    assert 1 <= int(answer.headers["X-RateLimit-Reset"]) <= 60
    sandbox_config(sandbox, reset_form="epoch")
    epoch = int(call(sandbox, "GET", "/v3/marketing/field_definitions").headers["X-RateLimit-Reset"])
    assert time.time() < epoch <= time.time() + 61


def test_limits_are_per_endpoint_as_recorded(sandbox: Any) -> None:
    assert put(sandbox, {"email": "a@example.com"}).headers["X-RateLimit-Limit"] == "200"
    assert call(sandbox, "GET", "/v3/marketing/field_definitions").headers["X-RateLimit-Limit"] == "600"
    assert call(sandbox, "GET", f"/v3/marketing/lists/{LIST_ID}").headers["X-RateLimit-Limit"] == "600"
    search = call(sandbox, "POST", f"{CONTACTS}/search", {"query": "email = 'a@example.com'"})
    assert search.headers["X-RateLimit-Limit"] == "200"


def test_a_small_window_for_tests_is_spent_per_endpoint(sandbox: Any) -> None:
    sandbox_config(sandbox, rate_limit=2, rate_window=30.0)
    answers = [call(sandbox, "GET", "/v3/marketing/field_definitions") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["1", "0", "0"]
    assert call(sandbox, "GET", f"/v3/marketing/lists/{LIST_ID}").status_code == 200  # another window
    limited = [r for r in sandbox_get(sandbox, "requests")["requests"] if r["status"] == 429]
    assert limited[0]["reset"] > time.time() + 25  # the log keeps when it resets, as an epoch


# -- upserts ----------------------------------------------------------------------------------
def test_a_400_names_every_refused_contact(sandbox: Any) -> None:
    answer = put(
        sandbox,
        {"email": "bad one@example.com"},
        {"email": "ok@example.com"},
        {"email": "000"},
        {"email": "ok2@example.com", "first_name": "x" * 51},
    )
    assert answer.status_code == 400
    assert [e["field"] for e in answer.json()["errors"]] == ["contacts[0].email", "contacts[2].email", "contacts[3].first_name"]
    assert answer.json()["errors"][1]["message"] == "email '000' is not valid"
    assert sandbox.state.jobs == {}


def test_bad_custom_values_are_accepted_and_fail_in_the_job(sandbox: Any) -> None:
    number, date = field_id(sandbox, "lifetime_value"), field_id(sandbox, "member_since")
    answer = put(
        sandbox,
        {"email": "a@example.com", "custom_fields": {number: "AAAAA"}},
        {"email": "b@example.com", "custom_fields": {date: "03/05/2024"}},
        {"email": "c@example.com", "custom_fields": {number: 12, date: "2024-03-05T00:00:00Z"}},
    )
    assert answer.status_code == 202
    job = settled_job(sandbox, answer.json()["job_id"])
    assert job["status"] == "errored" and job["results"]["errored_count"] == 2
    errors_file = requests.get(job["results"]["errors_url"], timeout=10).text
    assert "a@example.com" in errors_file and "b@example.com" in errors_file and "c@example.com" not in errors_file
    assert [c["email"] for c in sandbox_get(sandbox, "contacts")["contacts"]] == ["c@example.com"]


def test_a_failed_job_says_why_in_its_errors_file(sandbox: Any) -> None:
    sandbox_config(sandbox, fail_jobs=1)
    job = settled_job(sandbox, put(sandbox, {"email": "a@example.com"}).json()["job_id"])
    assert job["status"] == "failed" and job["job_type"] == "upsert_contacts"
    assert "you have hit your contact limit" in requests.get(job["results"]["errors_url"], timeout=10).text


def test_jobs_stay_pending_for_a_while_with_their_counts_filled(sandbox: Any) -> None:
    sandbox_config(sandbox, job_pending_polls=0, pending_polls_after_counts=2)
    job_id = put(sandbox, {"email": "a@example.com"}).json()["job_id"]
    sandbox.state.imports.join()
    polls = [call(sandbox, "GET", f"{CONTACTS}/imports/{job_id}").json() for _ in range(3)]
    assert [p["status"] for p in polls] == ["pending", "pending", "completed"]
    assert polls[0]["results"]["created_count"] == 1 and "finished_at" not in polls[0]
    assert polls[0]["job_type"] == "upsert_contacts"


def test_an_empty_string_clears_and_an_omitted_field_keeps_its_value(sandbox: Any) -> None:
    tier, date = field_id(sandbox, "loyalty_tier"), field_id(sandbox, "member_since")
    put(
        sandbox,
        {
            "email": "a@example.com",
            "first_name": "Ana",
            "city": "Lisbon",
            "custom_fields": {tier: "Gold", date: "2021-02-11T23:03:03.000Z"},
        },
    )
    sandbox.state.imports.join()
    first = stored(sandbox, "a@example.com")
    assert first["custom_fields"][date] == "2021-02-11T23:03:03Z"  # read back as recorded
    put(sandbox, {"email": "a@example.com", "first_name": "", "custom_fields": {tier: ""}})
    sandbox.state.imports.join()
    second = stored(sandbox, "a@example.com")
    assert not second.get("first_name") and second["city"] == "Lisbon"
    assert tier not in second["custom_fields"] and second["custom_fields"][date] == "2021-02-11T23:03:03Z"


def test_a_punycode_top_level_domain_is_a_valid_address(sandbox: Any) -> None:
    assert put(sandbox, {"email": "user@example.xn--p1ai"}).status_code == 202


# -- searches and removals --------------------------------------------------------------------
def test_search_emails_refuses_long_and_invalid_addresses(sandbox: Any) -> None:
    long = "a" * 89 + "@example.com"  # 101 characters
    for emails in ([long, "b@example.com"], ["not an address", "b@example.com"]):
        answer = call(sandbox, "POST", f"{CONTACTS}/search/emails", {"emails": emails})
        assert answer.status_code == 400 and "contacts" not in json.dumps(answer.json())
    sandbox_config(sandbox, search_errors_name_emails=True)
    named = call(sandbox, "POST", f"{CONTACTS}/search/emails", {"emails": ["b@example.com", long]}).json()
    assert [e["field"] for e in named["errors"]] == ["emails[1]"]


def test_search_emails_matches_alternate_emails(sandbox: Any) -> None:
    put(sandbox, {"email": "main@example.com", "alternate_emails": ["old@example.com"]})
    sandbox.state.imports.join()
    found = call(sandbox, "POST", f"{CONTACTS}/search/emails", {"emails": ["old@example.com", "none@example.com"]})
    assert found.status_code == 200
    assert found.json()["result"]["old@example.com"]["contact"]["email"] == "main@example.com"
    assert found.json()["result"]["none@example.com"] == {"error": "contact not found"}


def test_sgql_search_by_email_with_escaped_quotes(sandbox: Any) -> None:
    put(sandbox, {"email": "o'brien@example.com"})
    sandbox.state.imports.join()
    found = call(sandbox, "POST", f"{CONTACTS}/search", {"query": "email = 'o\\'brien@example.com'"}).json()
    assert found["contact_count"] == 1 and found["result"][0]["email"] == "o'brien@example.com"
    assert call(sandbox, "POST", f"{CONTACTS}/search", {"query": "email = 'x' OR 1=1"}).status_code == 400


def test_delete_answers_404_when_any_id_is_unknown_and_batch_says_which_exist(sandbox: Any) -> None:
    put(sandbox, {"email": "a@example.com"}, {"email": "b@example.com"})
    sandbox.state.imports.join()
    ids = [stored(sandbox, e)["id"] for e in ("a@example.com", "b@example.com")]
    path = f"/v3/marketing/lists/{LIST_ID}/contacts"
    assert (
        requests.delete(
            sandbox.url + path,
            params={"contact_ids": ",".join([*ids, "gone"])},
            timeout=10,
            headers={"Authorization": f"Bearer {API_KEY}"},
        ).status_code
        == 404
    )
    assert sandbox_get(sandbox, "state")["lists"][LIST_ID] == 2  # nothing unlinked
    batch = call(sandbox, "POST", f"{CONTACTS}/batch", {"ids": [*ids, "gone"]}).json()
    assert sorted(c["id"] for c in batch["result"]) == sorted(ids)
    assert call(sandbox, "POST", f"{CONTACTS}/batch", {"ids": ["gone"]}).status_code == 404


@pytest.mark.parametrize("value", ["2024-03-05", "2024-03-05T10:00:00+02:00"])
def test_date_fields_take_iso_8601(sandbox: Any, value: str) -> None:
    date = field_id(sandbox, "member_since")
    job = settled_job(sandbox, put(sandbox, {"email": "a@example.com", "custom_fields": {date: value}}).json()["job_id"])
    assert job["status"] == "completed"
    assert stored(sandbox, "a@example.com")["custom_fields"][date] in ("2024-03-05T00:00:00Z", "2024-03-05T08:00:00Z")


def test_an_import_lets_other_requests_in_between_its_slices() -> None:
    """SendGrid answers polls and PUTs while it imports: the sandbox applies a job a slice at a
    time, and a request taking the account's lock between two slices sees part of it applied,
    the job still pending (not a poll held for the whole import)."""
    state = SandboxState()
    count = 2 * IMPORT_SLICE + IMPORT_SLICE // 2
    job: dict[str, Any] = {"contacts": [{"email": f"p{i}@example.com"} for i in range(count)], "list_ids": [], "polls": 0}
    seen: list[tuple[int, bool]] = []  # what a request would find, each time the import takes the lock

    class Watching:
        def __init__(self) -> None:
            self.inner = threading.RLock()

        def __enter__(self) -> Watching:
            self.inner.acquire()
            seen.append((len(state.contacts), "outcome" in job))
            return self

        def __exit__(self, *exc: object) -> None:
            self.inner.release()

    state.lock = Watching()  # type: ignore[assignment]
    process_job(state, job, "job-1")
    assert seen == [(0, False), (0, False), (IMPORT_SLICE, False), (2 * IMPORT_SLICE, False), (count, False)]
    assert job["outcome"]["status"] == "completed" and job["outcome"]["results"]["created_count"] == count


def test_a_request_waiting_during_an_import_slice_gets_the_lock_before_the_next_slice() -> None:
    """Python's own locks let the import take the lock back for its next slice before a woken
    request ran: a status poll waited for whole imports (1.1-2.1 s in a bench timeline). The
    account's lock hands over in arrival order: a request that starts waiting during a slice
    gets the lock right after that slice, and the import's next slice waits for it."""
    state = SandboxState()
    lock = state.lock
    count = 2 * IMPORT_SLICE + IMPORT_SLICE // 2
    job: dict[str, Any] = {"contacts": [{"email": f"p{i}@example.com"} for i in range(count)], "list_ids": [], "polls": 0}
    order: list[tuple[str, int, bool]] = []  # who held the lock, in turn, and what it found

    def request() -> None:
        with lock:
            order.append(("request", len(state.contacts), "outcome" in job))

    waiter = threading.Thread(target=request)

    class Importing:
        """The import's hold of the lock: during its first slice, a request comes and waits."""

        def __enter__(self) -> Importing:
            lock.acquire()
            order.append(("import", len(state.contacts), "outcome" in job))
            if len(order) == 2:  # the first slice (the first hold only checks fail_jobs)
                waiter.start()
                wait_until(lambda: lock.waiting == 1, "the request waits for the lock")
            return self

        def __exit__(self, *exc: object) -> None:
            lock.release()

    state.lock = Importing()  # type: ignore[assignment]
    process_job(state, job, "job-1")
    waiter.join(timeout=30)
    assert order == [
        ("import", 0, False),
        ("import", 0, False),
        ("request", IMPORT_SLICE, False),
        ("import", IMPORT_SLICE, False),
        ("import", 2 * IMPORT_SLICE, False),
        ("import", count, False),
    ]
    assert job["outcome"]["results"]["created_count"] == count


def test_the_account_lock_is_re_entrant_and_hands_over_only_when_fully_released() -> None:
    lock = FairLock()
    got: list[str] = []

    def other() -> None:
        with lock:
            got.append("other")

    waiter = threading.Thread(target=other)
    with lock:
        with lock:
            waiter.start()
            wait_until(lambda: lock.waiting == 1, "the other thread waits")
        got.append("still mine")  # one release of two: the lock stays with this thread
        assert lock.waiting == 1
    waiter.join(timeout=30)
    assert got == ["still mine", "other"]
    with pytest.raises(RuntimeError):
        lock.release()  # not held


def test_a_status_poll_is_answered_while_a_put_body_is_decoded(sandbox: Any) -> None:
    """A PUT's body (up to 6 MB of JSON) is decoded before the account's lock is taken: the
    PUT is held at the start of its decode until a status poll made then has been answered
    (decoded under the lock, the poll could not get in and timed out)."""
    job_id = put(sandbox, {"email": "a@example.com"}).json()["job_id"]
    marker = "decode-me@example.com"
    polled: list[Any] = []

    def at_decode(frame: FrameType, event: str, arg: Any) -> None:
        if (
            event == "call"
            and frame.f_code is JSONDecoder.decode.__code__
            and not polled
            and marker in str(frame.f_locals.get("s", ""))
        ):
            try:  # this thread is the PUT's: it decodes only once the poll has its answer
                polled.append(
                    requests.get(
                        f"{sandbox.url}{CONTACTS}/imports/{job_id}", timeout=10, headers={"Authorization": f"Bearer {API_KEY}"}
                    ).status_code
                )
            except requests.RequestException as error:
                polled.append(type(error).__name__)

    threading.setprofile(at_decode)  # the sandbox's threads for requests from here on
    try:
        answer = put(sandbox, {"email": marker})
    finally:
        threading.setprofile(None)
    assert polled == [200] and answer.status_code == 202
    log = {r["method"]: r for r in sandbox_get(sandbox, "requests")["requests"][-2:]}
    assert log["PUT"]["seq"] < log["GET"]["seq"] < log["GET"]["answered_seq"] < log["PUT"]["answered_seq"]


def test_contacts_an_import_creates_get_distinct_version_4_uuids_as_sendgrid_ids_are(sandbox: Any) -> None:
    assert put(sandbox, *({"email": f"p{i}@example.com"} for i in range(300))).status_code == 202
    ids = [c["id"] for c in sandbox_get(sandbox, "contacts")["contacts"]]
    assert len(set(ids)) == 300
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids)
