"""The only module that speaks HTTP to SendGrid: one session, timeouts, retries, rate limits,
and the calls the run makes. Contact search and list removal are in members.py (`client.members`),
rate-limit headers in pacing.py, the parsed 400 in answers.py.

Facts used (official OpenAPI description in twilio/sendgrid-oai, and docs/reference.md):
- Auth: `Authorization: Bearer <key>`; 401 bad or revoked key, 403 missing scopes.
- Rate limits: X-RateLimit-Limit / -Remaining / -Reset, Reset in seconds on the marketing
  endpoints (recorded) or an epoch (doc page): see pacing.py. 429
  {"errors":[{"field":null,"message":"too many requests"}]}.
- PUT /v3/marketing/contacts answers 202 {"job_id"}; a 400 refuses the whole request and names
  every refused contact (`contacts[12].email`): SendGridRejected parses it.
- GET /v3/marketing/contacts/imports/{id}: status pending | completed | errored | failed.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import urllib3

from shared.errors import ExportError
from shared.sendgrid.answers import (
    MAX_QUERY_CHARS,
    SEARCH_EMAILS_MAX,
    ContactSearch,
    SendGridRejected,
    checked_id,
    id_batches,
    looks_like_id,
)
from shared.sendgrid.fields import FIELD_TYPES, CustomField
from shared.sendgrid.members import ListMembers
from shared.sendgrid.pacing import JITTER, Pacer, reset_wait

__all__ = [
    "MAX_QUERY_CHARS",
    "SEARCH_EMAILS_MAX",
    "ContactSearch",
    "RetryPolicy",
    "SendGridClient",
    "SendGridRejected",
    "checked_id",
    "id_batches",
]

log = logging.getLogger(__name__)

CONTACTS_PATH = "/v3/marketing/contacts"
FIELD_DEFINITIONS_PATH = "/v3/marketing/field_definitions"
LISTS_PATH = "/v3/marketing/lists"
IMPORTS_PATH = "/v3/marketing/contacts/imports"
USER_AGENT = "ci-sendgrid-export/0.1"
# GET /v3/marketing/lists gives at most 1,000 lists a page ("page_size": default 100, maximum
# 1000) and the next page's URL in `_metadata.next`, absent on the last (tsg_mc_lists_v3.json).
LISTS_PAGE_SIZE = 1000
LISTS_MAX_PAGES = 10
MAX_PAGE_TOKEN_CHARS = 1024


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # tries per request, the first included
    base_delay: float = 1.0  # seconds; doubles each retry, with full jitter
    max_delay: float = 30.0
    max_rate_limit_wait: float = 120.0  # cap on a rate-limit wait; a 429 asking longer fails the request
    pace_reserve: int = 0  # wait for the reset when an answer's X-RateLimit-Remaining is at or below this
    connect_timeout: float = 10.0
    read_timeout: float = 120.0


ApiKeyProvider = Callable[[bool], str]  # (refresh) -> key; refresh=True bypasses any cache


def _error_fields(response: requests.Response) -> str:
    """The `field` names of SendGrid's error list: safe to log, unlike its messages."""
    try:
        errors = response.json().get("errors") or []
        fields = sorted({str(e.get("field")) for e in errors if isinstance(e, dict) and e.get("field")})
    except (ValueError, AttributeError):
        fields = []
    return f" (fields: {', '.join(fields)[:200]})" if fields else ""


def _fetchable(url: str) -> bool:
    """An errors_url may be fetched over https, or plain http to a loopback host (a local sandbox)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return False
    if parts.scheme == "https" and host:
        return True
    if parts.scheme != "http":
        return False
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def next_page_token(metadata: Any, path: str = LISTS_PATH) -> str | None:
    """The `page_token` of a paged answer's `_metadata.next` URL, when it is a next page of `path`
    (only the token is used: the URL's host is never called); None on the last page."""
    link = metadata.get("next") if isinstance(metadata, dict) else None
    if not isinstance(link, str) or not link:
        return None
    try:
        parts = urlsplit(link)
        tokens = parse_qs(parts.query).get("page_token") or []
    except ValueError:
        return None
    if parts.path.rstrip("/") != path or len(tokens) != 1:
        return None
    token = tokens[0]
    return token if 0 < len(token) <= MAX_PAGE_TOKEN_CHARS and token.isprintable() else None


class SendGridClient:
    def __init__(
        self,
        base_url: str,
        api_key: ApiKeyProvider,
        *,
        policy: RetryPolicy = RetryPolicy(),
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._policy = policy
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        self._sleep = sleep
        self._clock = clock
        self._pacer = Pacer(clock, policy.max_rate_limit_wait, policy.pace_reserve)
        # Counted under a lock: a run's sender and poller threads share the client.
        self._counting = threading.Lock()
        self.retries = 0  # retried attempts over this client's life, for the run report
        self.waited_seconds = 0.0  # retry and pacing waits together
        self.paced_seconds = 0.0  # waits before a request because the window was spent
        self.members = ListMembers(self)  # contact search and unlinking (members.py)

    def close(self) -> None:
        self._session.close()

    # -- the transport ---------------------------------------------------------------------
    def _send(self, method: str, path: str, key: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
        if "data" in kwargs:
            headers["Content-Type"] = "application/json"
        return self._session.request(
            method,
            self.base_url + path,
            headers=headers,
            timeout=(self._policy.connect_timeout, self._policy.read_timeout),
            **kwargs,
        )

    def _backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self._policy.max_delay, self._policy.base_delay * 2**attempt))

    def _wait(self, seconds: float) -> None:
        with self._counting:
            self.retries += 1
            self.waited_seconds += seconds
        self._sleep(seconds)

    def _pace(self, endpoint: str) -> None:
        delay = self._pacer.delay(endpoint)
        if delay > 0:
            log.info("SendGrid rate-limit window spent; waiting %.1fs for its reset before the next request", delay)
            with self._counting:
                self.paced_seconds += delay
                self.waited_seconds += delay
            self._sleep(delay)

    def request(
        self, method: str, path: str, *, expected: tuple[int, ...], endpoint: str | None = None, **kwargs: Any
    ) -> requests.Response:
        """Send with retries: 429 waits until X-RateLimit-Reset; 5xx and connection errors back
        off exponentially with jitter; one 401 re-reads the key (it may have been rotated).
        `endpoint` names the rate-limit window (the path template; default: the path)."""
        endpoint = f"{method} {endpoint or path}"
        key = self._api_key(False)
        refreshed = False
        last_problem = ""
        for attempt in range(self._policy.attempts):
            self._pace(endpoint)
            try:
                response = self._send(method, path, key, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last_problem = type(exc).__name__
                if attempt + 1 < self._policy.attempts:
                    self._wait(self._backoff(attempt))
                continue
            status = response.status_code
            if status != 429:
                self._pacer.observe(endpoint, response.headers)
            if status in expected or status in (400, 404):  # the caller decides what these mean
                return response
            if status == 401 and not refreshed:
                refreshed = True
                key = self._api_key(True)
                log.warning("SendGrid answered 401; retrying once with the key read again from its store")
                continue
            if status in (401, 403):
                raise ExportError(
                    "sendgrid_auth_failed",
                    f"SendGrid refused the API key ({status}"
                    f"{': missing scopes' if status == 403 else ': invalid or revoked key'})."
                    " Check the key in Key Vault and its Marketing scopes.",
                )
            if status == 429:
                reset = reset_wait(response.headers.get("X-RateLimit-Reset"), self._clock())
                if reset is not None and reset > self._policy.max_rate_limit_wait:
                    raise ExportError(
                        "sendgrid_unavailable", f"SendGrid rate limit resets in {reset:.0f}s, past the wait allowed"
                    )
                wait = self._backoff(attempt) if reset is None else reset + random.uniform(0, JITTER)
                last_problem = "429 too many requests"
                if attempt + 1 < self._policy.attempts:
                    log.info("SendGrid rate limit reached; waiting %.1fs for X-RateLimit-Reset", wait)
                    self._wait(wait)
                continue
            if status >= 500:
                last_problem = f"{status}"
                if attempt + 1 < self._policy.attempts:
                    self._wait(self._backoff(attempt))
                continue
            raise ExportError(
                "sendgrid_error", f"SendGrid answered {status} to {method} {endpoint.split(' ', 1)[1]}{_error_fields(response)}"
            )
        raise ExportError(
            "sendgrid_unavailable",
            f"SendGrid still failing after {self._policy.attempts} attempts at {endpoint} ({last_problem})",
        )

    def post_json(self, path: str, body: Any, *, expected: tuple[int, ...]) -> requests.Response:
        return self.request("POST", path, expected=expected, data=json.dumps(body))

    # -- the calls -------------------------------------------------------------------------
    def custom_fields(self) -> dict[str, CustomField]:
        response = self.request("GET", FIELD_DEFINITIONS_PATH, expected=(200,))
        if response.status_code != 200:
            raise ExportError("sendgrid_error", f"GET {FIELD_DEFINITIONS_PATH} answered {response.status_code}")
        fields = {}
        for entry in response.json().get("custom_fields") or []:
            if entry.get("field_type") in FIELD_TYPES:
                fields[entry["name"]] = CustomField(entry["name"], entry["id"], entry["field_type"])
        return fields

    def list_exists(self, list_id: str) -> bool:
        path = f"{LISTS_PATH}/{checked_id(list_id, 'list id')}"
        response = self.request("GET", path, expected=(200,), endpoint=f"{LISTS_PATH}/{{id}}")
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise ExportError("sendgrid_error", f"GET {LISTS_PATH}/<id> answered {response.status_code}")

    def marketing_lists(self, max_pages: int = LISTS_MAX_PAGES) -> tuple[list[dict[str, Any]], bool]:
        """The account's contact lists, `{id, name, contact_count}` each, LISTS_PAGE_SIZE a page,
        following `_metadata.next` for at most `max_pages` pages; and whether lists were left over.
        An entry of another shape is left out."""
        found: list[dict[str, Any]] = []
        token: str | None = None
        seen: set[str] = set()
        for _ in range(max_pages):
            params: dict[str, Any] = {"page_size": LISTS_PAGE_SIZE, **({"page_token": token} if token else {})}
            response = self.request("GET", LISTS_PATH, expected=(200,), params=params)
            if response.status_code != 200:
                raise ExportError("sendgrid_error", f"GET {LISTS_PATH} answered {response.status_code}")
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if not isinstance(answer, dict) or not isinstance(answer.get("result", []), list):
                raise ExportError("sendgrid_error", f"GET {LISTS_PATH} answered something other than a page of lists")
            for entry in answer.get("result") or []:
                if not isinstance(entry, dict) or not looks_like_id(entry.get("id")) or not isinstance(entry.get("name"), str):
                    continue
                count = entry.get("contact_count")
                count = count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else None
                found.append({"id": entry["id"], "name": entry["name"], "contact_count": count})
            token = next_page_token(answer.get("_metadata"))
            if token is None or token in seen:  # the last page (or a page token given twice)
                return found, False
            seen.add(token)
        return found, True

    def upsert_contacts(self, body: bytes) -> str:
        """PUT a prepared body; the job id of the accepted import. Raises SendGridRejected on 400
        (its `contacts` says which contacts of the body SendGrid named)."""
        response = self.request("PUT", CONTACTS_PATH, expected=(202,), data=body)
        if response.status_code == 400:
            try:
                errors = response.json().get("errors") or []
            except (ValueError, AttributeError):
                errors = []
            raise SendGridRejected([e for e in errors if isinstance(e, dict)] or [{"message": "bad request"}])
        if response.status_code != 202:
            raise ExportError("sendgrid_error", f"PUT {CONTACTS_PATH} answered {response.status_code}")
        return str(response.json()["job_id"])

    def import_status(self, job_id: str) -> dict[str, Any]:
        """SendGrid's answer about an import job, as it is (status, results, job_type...)."""
        path = f"{IMPORTS_PATH}/{checked_id(job_id, 'job id')}"
        response = self.request("GET", path, expected=(200,), endpoint=f"{IMPORTS_PATH}/{{id}}")
        if response.status_code == 404:
            # A job SendGrid does not know (another account, or forgotten): nothing of it is known
            # to be applied, which is what a failed job says; its contacts are sent again.
            log.warning("SendGrid does not know import job %s; taken as failed", job_id)
            return {"status": "failed", "results": {}}
        if response.status_code != 200:
            raise ExportError("sendgrid_error", f"GET {IMPORTS_PATH}/<id> answered {response.status_code}")
        answer = response.json()
        if not isinstance(answer, dict):
            raise ExportError("sendgrid_error", f"GET {IMPORTS_PATH}/<id> answered something other than an object")
        return answer

    def download_errors(self, url: str, max_bytes: int = 64 * 1024 * 1024, attempts: int = 3) -> str | None:
        """The file behind a job's errors_url, or None. It is a pre-signed link: no Authorization
        header goes there (the key must not leave for another host), and only over https
        (plain http to a loopback host only, for the local sandbox)."""
        if not _fetchable(url):
            log.warning("a job's errors_url is not an https link; not read")
            return None
        for attempt in range(attempts):
            try:
                with self._session.get(
                    url,
                    stream=True,
                    timeout=(self._policy.connect_timeout, self._policy.read_timeout),
                    headers={"Accept": "text/csv, */*"},
                ) as response:
                    if not _fetchable(response.url):  # redirected off https
                        log.warning("a job's errors_url redirected to a link that is not https; not read")
                        return None
                    if response.status_code == 200:
                        data = response.raw.read(max_bytes + 1, decode_content=True)
                        if len(data) > max_bytes:
                            log.warning("a job's errors file is over %d bytes; not read", max_bytes)
                            return None
                        return data.decode("utf-8-sig", errors="replace")
                    if response.status_code < 500:
                        log.warning("a job's errors file answered %d; not read", response.status_code)
                        return None
            except (requests.RequestException, urllib3.exceptions.HTTPError):
                pass  # raw.read() raises urllib3's own errors (a body cut short): requests wraps none there
            if attempt + 1 < attempts:
                self._wait(self._backoff(attempt))
        log.warning("a job's errors file could not be downloaded")
        return None
