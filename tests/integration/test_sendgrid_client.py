"""SendGridClient against the sandbox (and, for header values the sandbox never sends, a tiny
loopback server): rate-limit headers in both forms, pacing, the parsed 400, leaver search,
list removal with vanished contacts, id checks and the errors_url rule."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from helpers import API_KEY, FAST_RETRIES, LIST_ID, sandbox_config, sandbox_get

from shared.errors import ExportError
from shared.sendgrid.client import RetryPolicy, SendGridClient, SendGridRejected, id_batches

FIELDS = "/v3/marketing/field_definitions"


class Recorder:
    """A sleep that records each wait; `real` also sleeps (the sandbox's windows are real time)."""

    def __init__(self, real: bool = False) -> None:
        self.waits: list[float] = []
        self.real = real

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.real:
            time.sleep(seconds)


def client(url: str, sleep: Recorder, policy: RetryPolicy = FAST_RETRIES) -> SendGridClient:
    return SendGridClient(url, lambda refresh: API_KEY, policy=policy, sleep=sleep)


def log_of(sandbox: Any, path: str, method: str = "POST") -> list[dict[str, Any]]:
    return [r for r in sandbox_get(sandbox, "requests")["requests"] if r["path"] == path and r["method"] == method]


def seed(sandbox: Any, email: str, *, alternates: tuple[str, ...] = (), lists: tuple[str, ...] = (LIST_ID,)) -> str:
    """A contact in the sandbox's account, as if imported earlier; its id."""
    with sandbox.state.lock:
        contact_id = f"c-{len(sandbox.state.contacts) + 1:04d}-{abs(hash(email)) % 10**8}"
        sandbox.state.contacts[email] = {
            "id": contact_id,
            "email": email,
            "alternate_emails": list(alternates),
            "list_ids": set(lists),
            "custom_fields": {},
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
        }
    return contact_id


# -- rate limits ----------------------------------------------------------------------------
def test_a_429_with_seconds_until_reset_waits_those_seconds(sandbox: Any) -> None:
    sandbox_config(sandbox, rate_window=30.0, faults=[{"method": "GET", "path": FIELDS, "status": 429}])
    sleep = Recorder()
    api = client(sandbox.url, sleep)
    assert "loyalty_tier" in api.custom_fields()
    assert len(sleep.waits) == 1 and 30 <= sleep.waits[0] <= 30.25  # the recorded form: seconds
    assert api.retries == 1


def test_a_429_with_an_epoch_reset_waits_until_then(sandbox: Any) -> None:
    sandbox_config(sandbox, rate_window=30.0, reset_form="epoch", faults=[{"method": "GET", "path": FIELDS, "status": 429}])
    sleep = Recorder()
    client(sandbox.url, sleep).custom_fields()
    assert len(sleep.waits) == 1 and 28 <= sleep.waits[0] <= 31.25


def test_a_reset_past_the_cap_fails_instead_of_sleeping(sandbox: Any) -> None:
    sandbox_config(sandbox, rate_window=500.0, faults=[{"method": "GET", "path": FIELDS, "status": 429}])
    sleep = Recorder()
    with pytest.raises(ExportError) as failure:
        client(sandbox.url, sleep).custom_fields()
    assert failure.value.code == "sendgrid_unavailable" and sleep.waits == []


@pytest.mark.parametrize("form", ["relative", "epoch"])
def test_pacing_on_remaining_avoids_429s(sandbox: Any, form: str) -> None:
    sandbox_config(sandbox, rate_limit=3, rate_window=1.0, reset_form=form)
    sleep = Recorder(real=True)
    api = client(sandbox.url, sleep)
    for _ in range(7):
        api.custom_fields()
    statuses = [r["status"] for r in log_of(sandbox, FIELDS, "GET")]
    assert statuses == [200] * 7  # no 429: the client waited for the reset when Remaining was 0
    assert api.retries == 0 and len(sleep.waits) == 2 and api.paced_seconds == pytest.approx(sum(sleep.waits))


class Scripted(BaseHTTPRequestHandler):
    """Answers from the server's script: (status, headers) per request, the last one repeated."""

    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        status, headers = self.server.script[min(self.server.calls, len(self.server.script) - 1)]
        self.server.calls += 1
        body = b'{"custom_fields": []}' if status == 200 else b'{"errors": [{"message": "x"}]}'
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def scripted() -> Iterator[ThreadingHTTPServer]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    server.script, server.calls = [(200, {})], 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def url_of(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "garbage", "", "-5"])
def test_a_reset_that_is_not_a_number_falls_back_to_backoff(scripted: Any, value: str) -> None:
    scripted.script = [(429, {"X-RateLimit-Reset": value, "X-RateLimit-Remaining": "nan"}), (200, {})]
    sleep = Recorder()
    assert client(url_of(scripted), sleep).custom_fields() == {}
    assert len(sleep.waits) == 1 and 0 <= sleep.waits[0] <= FAST_RETRIES.max_delay


def test_remaining_zero_with_a_garbage_reset_does_not_pace(scripted: Any) -> None:
    scripted.script = [(200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "soon"})]
    sleep = Recorder()
    api = client(url_of(scripted), sleep)
    api.custom_fields()
    api.custom_fields()
    assert sleep.waits == []


# -- 400s -------------------------------------------------------------------------------------
def test_a_400_is_parsed_into_the_contacts_it_names(sandbox: Any) -> None:
    contacts = [{"email": f"p{i}@example.com"} for i in range(6)]
    contacts[1]["email"] = "not valid"
    contacts[4]["email"] = "also@bad"
    body = json.dumps({"list_ids": [LIST_ID], "contacts": contacts}).encode()
    with pytest.raises(SendGridRejected) as refused:
        client(sandbox.url, Recorder()).upsert_contacts(body)
    assert set(refused.value.contacts) == {1, 4}
    assert "not valid" in refused.value.contacts[1] and not refused.value.request_level
    assert len(refused.value.errors) == 2
    assert "@" not in str(refused.value) and "not valid" not in str(refused.value)


def test_a_400_about_the_request_is_request_level(sandbox: Any) -> None:
    body = b'{"list_ids": ["00000000-0000-4000-8000-000000000000"], "contacts": [{"email": "a@example.com"}]}'
    with pytest.raises(SendGridRejected) as refused:
        client(sandbox.url, Recorder()).upsert_contacts(body)
    assert refused.value.request_level and refused.value.contacts == {} and refused.value.request_fields == ["list_ids"]


# -- leaver search ----------------------------------------------------------------------------
LONG = "a" * 90 + "@example.com"  # 102 characters: over search/emails' 100


def test_search_takes_long_addresses_through_sgql_and_escapes_quotes(sandbox: Any) -> None:
    quoted = "o'b\\r" + "x" * 90 + "@example.com"
    ids = {email: seed(sandbox, email) for email in ("ana@example.com", LONG, quoted)}
    found = client(sandbox.url, Recorder()).members.contact_ids(["ana@example.com", LONG, quoted, "nobody@example.com"])
    assert found.found == ids and found.unsearchable == {}
    assert len(log_of(sandbox, "/v3/marketing/contacts/search/emails")) == 1  # no 400 for the long ones
    assert len(log_of(sandbox, "/v3/marketing/contacts/search")) == 2


@pytest.mark.parametrize(("named", "most"), [(True, 2), (False, 12)])
def test_an_invalid_address_does_not_fail_the_search_of_the_others(sandbox: Any, named: bool, most: int) -> None:
    sandbox_config(sandbox, search_errors_name_emails=named)
    emails = [f"p{i}@example.com" for i in range(40)]
    ids = {email: seed(sandbox, email) for email in emails[::3]}
    emails[7] = "broken@@example.com"
    found = client(sandbox.url, Recorder()).members.contact_ids(emails)
    assert found.found == ids and found.unsearchable == {}
    assert len(log_of(sandbox, "/v3/marketing/contacts/search/emails")) <= most


def test_search_does_not_take_a_contact_found_through_an_alternate_email(sandbox: Any) -> None:
    primary = seed(sandbox, "main@example.com", alternates=("old@example.com",))
    found = client(sandbox.url, Recorder()).members.contact_ids(["old@example.com", "main@example.com"])
    assert found.found == {"main@example.com": primary}


def test_a_contact_id_that_does_not_look_like_an_id_is_unsearchable(sandbox: Any) -> None:
    seed(sandbox, "ana@example.com")
    sandbox.state.contacts["ana@example.com"]["id"] = "../../lists"
    found = client(sandbox.url, Recorder()).members.contact_ids(["ana@example.com"])
    assert found.found == {} and list(found.unsearchable) == ["ana@example.com"]


# -- list removal ----------------------------------------------------------------------------
def test_a_vanished_contact_does_not_fail_the_removal_of_the_others(sandbox: Any) -> None:
    ids = [seed(sandbox, f"p{i}@example.com") for i in range(3)]
    requests.post(f"{sandbox.url}/_sandbox/delete", json={"emails": ["p1@example.com"]}, timeout=10)
    jobs = client(sandbox.url, Recorder()).members.remove_from_list(LIST_ID, ids)
    assert len(jobs) == 1
    assert sandbox_get(sandbox, "state")["lists"][LIST_ID] == 0
    deletes = log_of(sandbox, f"/v3/marketing/lists/{LIST_ID}/contacts", "DELETE")
    assert [d["status"] for d in deletes] == [404, 202]


def test_removing_only_vanished_contacts_is_no_error_but_a_missing_list_is(sandbox: Any) -> None:
    api = client(sandbox.url, Recorder())
    assert api.members.remove_from_list(LIST_ID, ["gone-1", "gone-2"]) == []
    contact = seed(sandbox, "ana@example.com")
    with pytest.raises(ExportError) as failure:
        api.members.remove_from_list("00000000-0000-4000-8000-000000000000", [contact])
    assert failure.value.code == "sendgrid_error"


def test_removal_batches_the_ids_under_the_query_limit(sandbox: Any) -> None:
    ids = [seed(sandbox, f"p{i}@example.com") for i in range(150)]
    jobs = client(sandbox.url, Recorder()).members.remove_from_list(LIST_ID, ids)
    assert len(jobs) == len(list(id_batches(ids))) > 1
    assert sandbox_get(sandbox, "state")["lists"][LIST_ID] == 0


# -- ids and links ----------------------------------------------------------------------------
@pytest.mark.parametrize("job_id", ["../../v3/marketing/lists", "a/b", "", "x" * 101, "id?x=1", "é"])
def test_a_job_id_that_does_not_look_like_an_id_never_goes_into_a_url(sandbox: Any, job_id: str) -> None:
    with pytest.raises(ExportError) as failure:
        client(sandbox.url, Recorder()).import_status(job_id)
    assert failure.value.code == "sendgrid_error"
    assert sandbox_get(sandbox, "requests")["requests"] == []


def test_import_status_is_returned_as_sendgrid_answers(sandbox: Any) -> None:
    api = client(sandbox.url, Recorder())
    job_id = api.upsert_contacts(b'{"list_ids": [], "contacts": [{"email": "a@example.com"}]}')
    assert api.import_status(job_id)["job_type"] == "upsert_contacts"


@pytest.mark.parametrize(
    "url", ["http://example.invalid/errors.csv", "ftp://example.com/e.csv", "file:///etc/passwd", "errors.csv"]
)
def test_errors_files_are_fetched_over_https_only(url: str) -> None:
    sleep = Recorder()
    assert client("https://api.sendgrid.com", sleep).download_errors(url) is None
    assert sleep.waits == []


class CutShort(Scripted):
    """An errors file whose body ends before its Content-Length (the connection closes)."""

    def do_GET(self) -> None:
        self.server.calls += 1
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"email,error\r\nperson1@example.com,bad")
        self.close_connection = True


def test_an_errors_file_cut_short_is_tried_again_and_then_not_read() -> None:
    # urllib3 raises its own error from the raw read (requests wraps none there): it used to end
    # the run as an internal error; the errors file never fails a run.
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), CutShort)
    server.calls = 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sleep = Recorder()
        assert client(url_of(server), sleep).download_errors(f"{url_of(server)}/errors.csv") is None
        assert server.calls == 3 and len(sleep.waits) == 2
    finally:
        server.shutdown()
        server.server_close()


def test_an_errors_file_that_keeps_failing_is_not_waited_for_after_the_last_attempt(scripted: Any) -> None:
    scripted.script = [(503, {})]
    sleep = Recorder()
    assert client(url_of(scripted), sleep).download_errors(f"{url_of(scripted)}/errors.csv") is None
    assert scripted.calls == 3 and len(sleep.waits) == 2
