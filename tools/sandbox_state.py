"""The SendGrid sandbox's account: lists, fields, contacts, jobs, rate-limit windows, faults,
and SendGrid's side of an import (process_job). Standard library only; see sendgrid_sandbox.py
for what the sandbox follows and where it guesses."""

from __future__ import annotations

import itertools
import math
import queue
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from tools.sandbox_lock import FairLock
from tools.sandbox_values import contact_id, custom_value_problem, iso_date

MAX_CONTACTS = 30_000
MAX_BODY_BYTES = 6_000_000
SEARCH_EMAILS_MAX = 100
SEARCH_EMAIL_MAX_CHARS = 100  # OpenAPI: search/emails emails.items.maxLength
BATCH_IDS_MAX = 100  # OpenAPI: contacts/batch ids.maxItems
# ContactRequest maxLength values from the OpenAPI description.
MAX_LENGTHS = {
    "address_line_1": 100,
    "address_line_2": 100,
    "city": 60,
    "country": 50,
    "email": 254,
    "external_id": 254,
    "anonymous_id": 254,
    "first_name": 50,
    "last_name": 50,
    "state_province_region": 50,
}
CONTACT_KEYS = set(MAX_LENGTHS) | {"alternate_emails", "phone_number_id", "postal_code", "custom_fields"}
IDENTIFIERS = ("email", "phone_number_id", "external_id", "anonymous_id")
RESERVED_FIELDS = [
    ("_rf0_T", "first_name", "Text"),
    ("_rf1_T", "last_name", "Text"),
    ("_rf2_T", "email", "Text"),
    ("_rf3_T", "alternate_emails", "Text"),
    ("_rf4_T", "address_line_1", "Text"),
    ("_rf5_T", "address_line_2", "Text"),
    ("_rf6_T", "city", "Text"),
    ("_rf7_T", "state_province_region", "Text"),
    ("_rf8_T", "postal_code", "Text"),
    ("_rf9_T", "country", "Text"),
    ("_rf10_T", "phone_number", "Text"),
]
# Recorded limits (grouparoo export-record.js): 200 for PUT contacts and contacts search, 600
# for lists and field_definitions. Endpoints not recorded get DEFAULT_RATE_LIMIT (a guess).
RATE_LIMITS = {
    "PUT /v3/marketing/contacts": 200,
    "POST /v3/marketing/contacts/search": 200,
    "POST /v3/marketing/contacts/search/emails": 200,
}
DEFAULT_RATE_LIMIT = 600
_ENDPOINT_IDS = re.compile(r"/(lists|imports)/[^/]+")


def endpoint_of(method: str, path: str) -> str:
    """The rate-limit window a request counts against: method and path template."""
    return f"{method} {_ENDPOINT_IDS.sub(lambda m: f'/{m.group(1)}/{{id}}', path)}"


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class Fault:
    """Answer the next `times` matching requests with `status` (or drop the connection), after
    `delay` seconds. Status 0 answers normally: a slow response and nothing else. Matching is by
    method and path prefix."""

    method: str
    path: str
    status: int = 503
    times: int = 1
    drop: bool = False
    delay: float = 0.0
    body: dict[str, Any] | None = None  # the answer's JSON; a generic error when None


@dataclass
class Window:
    start: float = 0.0
    count: int = 0


@dataclass
class SandboxState:
    api_keys: set[str] = field(default_factory=lambda: {"SG.sandbox-key"})
    read_only_keys: set[str] = field(default_factory=set)  # valid but without Marketing scopes
    custom_fields: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> definition
    lists: dict[str, dict[str, Any]] = field(default_factory=dict)
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # email -> contact
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    # One count for arrivals and answers: a request's "seq" (when it came) and "answered_seq"
    # (when its answer went) say which requests overlapped, without reading clocks.
    events: itertools.count[int] = field(default_factory=itertools.count)
    bodies: list[Any] = field(default_factory=list)  # parsed PUT contacts bodies, in order
    record_bodies: bool = True
    faults: list[Fault] = field(default_factory=list)
    invalid_emails: set[str] = field(default_factory=set)  # SendGrid refuses these (400)
    # Accepted (202) but the import then fails for these: the job ends "errored" with errors_url.
    import_error_emails: set[str] = field(default_factory=set)
    # Of those, the ones the errors file leaves out (still counted in errored_count): an errors
    # file that does not account for every contact the job did not apply.
    errors_file_omits: set[str] = field(default_factory=set)
    fail_jobs: int = 0  # the next N jobs end "failed" as a whole
    fail_reason: str = "you have hit your contact limit"  # written to a failed job's errors file
    public_url: str = ""  # base of errors_url links, set by the server
    rate_limit: int | None = None  # when set, every endpoint's limit (tests); else rate_limits
    rate_limits: dict[str, int] = field(default_factory=lambda: dict(RATE_LIMITS))
    rate_window: float = 60.0
    reset_form: str = "relative"  # X-RateLimit-Reset: "relative" seconds (recorded) or "epoch" (doc page)
    windows: dict[str, Window] = field(default_factory=dict)
    job_pending_polls: int = 1  # a job answers "pending" this many times before it is processed
    pending_polls_after_counts: int = 0  # then "pending" with its counts filled this many times more
    search_errors_name_emails: bool = False  # does a search/emails 400 name the bad addresses? unknown
    next_field: int = 1
    # Handed over in arrival order: a poll waiting while an import holds it gets it before
    # the import's next slice (sandbox_lock.py).
    lock: FairLock = field(default_factory=FairLock)
    imports: queue.Queue[str] = field(default_factory=queue.Queue)  # accepted jobs' ids, processed in the background

    def add_list(self, name: str, list_id: str | None = None) -> str:
        list_id = list_id or str(uuid.uuid4())
        self.lists[list_id] = {"id": list_id, "name": name}
        return list_id

    def add_field(self, name: str, field_type: str) -> str:
        suffix = {"Text": "T", "Number": "N", "Date": "D"}[field_type]
        field_id = f"e{self.next_field}_{suffix}"
        self.next_field += 1
        self.custom_fields[field_id] = {"id": field_id, "name": name, "field_type": field_type}
        return field_id

    def list_count(self, list_id: str) -> int:
        return sum(1 for c in self.contacts.values() if list_id in c["list_ids"])

    def by_address(self, email: str) -> dict[str, Any] | None:
        """The contact whose primary or alternate email is `email` (as search/emails matches)."""
        email = email.lower()
        return self.contacts.get(email) or next(
            (c for c in self.contacts.values() if email in (a.lower() for a in c.get("alternate_emails", []))), None
        )

    # -- rate limits -------------------------------------------------------------------------
    def limit_of(self, endpoint: str) -> int:
        return self.rate_limit if self.rate_limit is not None else self.rate_limits.get(endpoint, DEFAULT_RATE_LIMIT)

    def window(self, endpoint: str, now: float) -> Window:
        window = self.windows.setdefault(endpoint, Window(now, 0))
        if now >= window.start + self.rate_window:
            window.start, window.count = now, 0
        return window

    def take_token(self, endpoint: str) -> bool:
        window = self.window(endpoint, time.time())
        if window.count >= self.limit_of(endpoint):
            return False
        window.count += 1
        return True

    def rate_headers(self, endpoint: str) -> tuple[dict[str, str], float]:
        """The X-RateLimit-* headers for `endpoint`, and its window's end as an epoch."""
        now = time.time()
        window = self.window(endpoint, now)
        end = window.start + self.rate_window
        reset = math.ceil(end) if self.reset_form == "epoch" else max(1, math.ceil(end - now))
        limit = self.limit_of(endpoint)
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(limit - window.count, 0)),
            "X-RateLimit-Reset": str(reset),
        }, end


def public_contact(contact: dict[str, Any]) -> dict[str, Any]:
    return {**contact, "list_ids": sorted(contact["list_ids"]), "segment_ids": []}


def _contact_failure(state: SandboxState, contact: dict[str, Any]) -> str | None:
    if contact.get("email", "").lower() in state.import_error_emails:
        return "the contact could not be imported"
    for field_id, value in (contact.get("custom_fields") or {}).items():
        definition = state.custom_fields.get(field_id)
        problem = custom_value_problem(definition["field_type"], value) if definition else None
        if problem:
            return f"{field_id}: {problem}"
    return None


def _apply(existing: dict[str, Any], contact: dict[str, Any], state: SandboxState) -> None:
    """An omitted field keeps its value; "" clears it (spec and grouparoo's recording)."""
    for key, value in contact.items():
        if key == "custom_fields":
            for field_id, custom in value.items():
                if custom == "":
                    existing["custom_fields"].pop(field_id, None)
                elif state.custom_fields[field_id]["field_type"] == "Date":
                    existing["custom_fields"][field_id] = iso_date(custom)
                else:
                    existing["custom_fields"][field_id] = custom
        elif value == "":
            existing.pop(key, None)
        else:
            existing[key] = value


# Contacts an import applies per hold of the account's lock: between slices the sandbox answers
# other requests (a status poll, the next PUT), as SendGrid answers while it imports; holding the
# lock for a whole job made a poll wait ~0.2 s behind a 20,000-contact import. The lock goes to
# a request that waited during a slice before the next slice (FairLock, sandbox_lock.py).
IMPORT_SLICE = 1_000


def process_job(state: SandboxState, job: dict[str, Any], job_id: str) -> None:
    """Apply an accepted import, as SendGrid does on its side after the 202, a slice at a time
    under the account's lock (a request between two slices sees part of it applied). The outcome
    becomes visible to status polls after `job_pending_polls` of them."""
    created = updated = 0
    now = now_iso()
    with state.lock:
        failing = state.fail_jobs > 0
        if failing:
            state.fail_jobs -= 1
    if failing:
        # The status answer has no field for a reason (OpenAPI ContactImport; no recording):
        # the docs point at the errors_url file, so the reason is there, on every line.
        errors_csv = "email,error\r\n" + "".join(f"{c.get('email', '')},{state.fail_reason}\r\n" for c in job["contacts"])
        with state.lock:
            job["errors_csv"] = errors_csv
            job["outcome"] = {
                "status": "failed",
                "finished_at": now,
                "results": {
                    "requested_count": len(job["contacts"]),
                    "created_count": 0,
                    "updated_count": 0,
                    "deleted_count": 0,
                    "errored_count": len(job["contacts"]),
                    "errors_url": f"{state.public_url}/_sandbox/errors/{job_id}.csv?signature=sandbox",
                },
            }
        return
    errored: list[tuple[dict[str, Any], str]] = []
    contacts = job["contacts"]
    for start in range(0, len(contacts), IMPORT_SLICE):
        with state.lock:
            for contact in contacts[start : start + IMPORT_SLICE]:
                failure = _contact_failure(state, contact)
                if failure:
                    errored.append((contact, failure))
                    continue
                email = contact["email"].lower()  # SendGrid lower-cases emails
                existing = state.contacts.get(email)
                if existing is None:
                    existing = state.contacts[email] = {
                        "id": contact_id(),
                        "list_ids": set(),
                        "custom_fields": {},
                        "created_at": now,
                    }
                    created += 1
                else:
                    updated += 1
                _apply(existing, contact, state)
                existing["email"] = email
                existing["updated_at"] = now
                existing["list_ids"].update(job["list_ids"])
    results: dict[str, Any] = {
        "requested_count": len(contacts),
        "created_count": created,
        "updated_count": updated,
        "deleted_count": 0,
        "errored_count": len(errored),
    }
    with state.lock:
        if errored:
            # The real errors_url is a pre-signed download link; its layout is NOT documented or
            # recorded. This one is a CSV with a header, one line per contact that failed.
            named = [(c, why) for c, why in errored if c["email"].lower() not in state.errors_file_omits]
            job["errors_csv"] = "email,error\r\n" + "".join(f"{c['email']},{why.replace(',', ' ')}\r\n" for c, why in named)
            results["errors_url"] = f"{state.public_url}/_sandbox/errors/{job_id}.csv?signature=sandbox"
        job["outcome"] = {"status": "errored" if errored else "completed", "results": results, "finished_at": now}
