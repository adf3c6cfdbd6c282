"""The only module that speaks HTTP to SendGrid: one session, timeouts, retries, rate limits.

Facts used (official OpenAPI description in twilio/sendgrid-oai, and the reference notes):
- Auth: `Authorization: Bearer <key>`; 401 bad or revoked key, 403 missing scopes.
- Rate limits: responses carry X-RateLimit-Limit / -Remaining / -Reset (Reset in epoch seconds);
  429 {"errors":[{"field":null,"message":"too many requests"}]}.
- PUT /v3/marketing/contacts answers 202 {"job_id"}; 400 {"errors":[{message, field}]} fails
  the whole request (one bad contact is enough).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from shared.errors import ExportError
from shared.mapping import FIELD_TYPES, CustomField

log = logging.getLogger(__name__)

CONTACTS_PATH = "/v3/marketing/contacts"
FIELD_DEFINITIONS_PATH = "/v3/marketing/field_definitions"
LISTS_PATH = "/v3/marketing/lists"
IMPORTS_PATH = "/v3/marketing/contacts/imports"
SEARCH_EMAILS_PATH = "/v3/marketing/contacts/search/emails"
SEARCH_EMAILS_MAX = 100  # emails per search request (SendGrid docs)
# DELETE .../lists/{id}/contacts takes ids in the query string; keep the URL well under the
# 2,048 characters many proxies allow.
MAX_QUERY_CHARS = 1_800
USER_AGENT = "ci-sendgrid-export/0.1"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # tries per request, the first included
    base_delay: float = 1.0  # seconds; doubles each retry, with full jitter
    max_delay: float = 30.0
    max_rate_limit_wait: float = 120.0  # a longer X-RateLimit-Reset wait fails the request
    connect_timeout: float = 10.0
    read_timeout: float = 120.0


class SendGridRejected(Exception):
    """A 400: SendGrid refused the request body. `errors` is SendGrid's list, which may quote
    profile values (an email), so it goes to the rejects CSV only, never to a log."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"SendGrid rejected the request ({len(errors)} error(s))")
        self.errors = errors


ApiKeyProvider = Callable[[bool], str]  # (refresh) -> key; refresh=True bypasses any cache


def _error_fields(response: requests.Response) -> str:
    """The `field` names of SendGrid's error list: safe to log, unlike its messages."""
    try:
        errors = response.json().get("errors") or []
        fields = sorted({str(e.get("field")) for e in errors if isinstance(e, dict) and e.get("field")})
    except (ValueError, AttributeError):
        fields = []
    return f" (fields: {', '.join(fields)[:200]})" if fields else ""


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
        self.retries = 0  # retried attempts over this client's life, for the run report
        self.waited_seconds = 0.0

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

    def _rate_limit_wait(self, response: requests.Response, attempt: int) -> float:
        reset = response.headers.get("X-RateLimit-Reset")
        try:
            # Reset is an epoch second; add a little jitter so parallel callers do not collide.
            wait = float(reset) - self._clock() + random.uniform(0, 0.25)
        except (TypeError, ValueError):
            wait = self._backoff(attempt)
        return max(wait, 0.05)

    def _wait(self, seconds: float) -> None:
        self.retries += 1
        self.waited_seconds += seconds
        self._sleep(seconds)

    def request(self, method: str, path: str, *, expected: tuple[int, ...], **kwargs: Any) -> requests.Response:
        """Send with retries: 429 waits until X-RateLimit-Reset; 5xx and connection errors back
        off exponentially with jitter; one 401 re-reads the key (it may have been rotated)."""
        key = self._api_key(False)
        refreshed = False
        last_problem = ""
        for attempt in range(self._policy.attempts):
            try:
                response = self._send(method, path, key, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                last_problem = type(exc).__name__
                if attempt + 1 < self._policy.attempts:
                    self._wait(self._backoff(attempt))
                continue
            status = response.status_code
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
                wait = self._rate_limit_wait(response, attempt)
                if wait > self._policy.max_rate_limit_wait:
                    raise ExportError("sendgrid_unavailable", f"SendGrid rate limit resets in {wait:.0f}s, past the wait allowed")
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
            raise ExportError("sendgrid_error", f"SendGrid answered {status} to {method} {path}{_error_fields(response)}")
        raise ExportError(
            "sendgrid_unavailable",
            f"SendGrid still failing after {self._policy.attempts} attempts at {method} {path} ({last_problem})",
        )

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
        response = self.request("GET", f"{LISTS_PATH}/{list_id}", expected=(200,))
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise ExportError("sendgrid_error", f"GET {LISTS_PATH}/<id> answered {response.status_code}")

    def upsert_contacts(self, body: bytes) -> str:
        """PUT a prepared body; the job id of the accepted import. Raises SendGridRejected on 400."""
        response = self.request("PUT", CONTACTS_PATH, expected=(202,), data=body)
        if response.status_code == 400:
            try:
                errors = response.json().get("errors") or []
            except ValueError:
                errors = []
            raise SendGridRejected([e for e in errors if isinstance(e, dict)] or [{"message": "bad request"}])
        if response.status_code != 202:
            raise ExportError("sendgrid_error", f"PUT {CONTACTS_PATH} answered {response.status_code}")
        return str(response.json()["job_id"])

    def download_errors(self, url: str, max_bytes: int = 64 * 1024 * 1024) -> str | None:
        """The file behind a job's errors_url, or None. It is a pre-signed link: no Authorization
        header goes there (the key must not leave for another host)."""
        for attempt in range(3):
            try:
                with self._session.get(url, stream=True, timeout=(self._policy.connect_timeout, self._policy.read_timeout),
                                       headers={"Accept": "text/csv, */*"}) as response:
                    if response.status_code == 200:
                        data = response.raw.read(max_bytes + 1, decode_content=True)
                        if len(data) > max_bytes:
                            log.warning("a job's errors file is over %d bytes; not read", max_bytes)
                            return None
                        return data.decode("utf-8-sig", errors="replace")
                    if response.status_code < 500:
                        log.warning("a job's errors file answered %d; not read", response.status_code)
                        return None
            except (requests.ConnectionError, requests.Timeout):
                pass
            self._wait(self._backoff(attempt))
        log.warning("a job's errors file could not be downloaded")
        return None

    def contact_ids(self, emails: list[str]) -> dict[str, str]:
        """email -> contact id for those of (at most 100) emails that exist in SendGrid."""
        if len(emails) > SEARCH_EMAILS_MAX:
            raise ValueError(f"at most {SEARCH_EMAILS_MAX} emails per search")
        response = self.request("POST", SEARCH_EMAILS_PATH, expected=(200,), data=json.dumps({"emails": emails}))
        if response.status_code == 404:  # none of them exists
            return {}
        if response.status_code != 200:
            raise ExportError("sendgrid_error", f"POST {SEARCH_EMAILS_PATH} answered {response.status_code}")
        found = {}
        for email, entry in (response.json().get("result") or {}).items():
            contact = entry.get("contact") if isinstance(entry, dict) else None
            if contact and contact.get("id"):
                found[email.lower()] = str(contact["id"])
        return found

    def remove_from_list(self, list_id: str, contact_ids: list[str]) -> str:
        """Unlink contacts from a list (the contacts themselves stay); the job id."""
        path = f"{LISTS_PATH}/{list_id}/contacts"
        response = self.request("DELETE", path, expected=(202,), params={"contact_ids": ",".join(contact_ids)})
        if response.status_code != 202:
            raise ExportError("sendgrid_error", f"DELETE {LISTS_PATH}/<id>/contacts answered {response.status_code}")
        return str(response.json().get("job_id", ""))

    def import_status(self, job_id: str) -> dict[str, Any]:
        response = self.request("GET", f"{IMPORTS_PATH}/{job_id}", expected=(200,))
        if response.status_code != 200:
            raise ExportError("sendgrid_error", f"GET {IMPORTS_PATH}/<id> answered {response.status_code}")
        return response.json()
