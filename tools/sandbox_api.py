"""The SendGrid sandbox's answers, to the API and to the /_sandbox/ test helpers: each function
takes the account (held under its lock) and the request, and returns (status, JSON body, extra
headers); read_upsert alone runs before the lock (it decodes a PUT contacts body, which touches
no account state). Standard library only; see sendgrid_sandbox.py for what the sandbox follows
and where it guesses."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from tools.sandbox_state import (
    BATCH_IDS_MAX,
    CONTACT_KEYS,
    IDENTIFIERS,
    MAX_BODY_BYTES,
    MAX_CONTACTS,
    MAX_LENGTHS,
    RESERVED_FIELDS,
    SEARCH_EMAIL_MAX_CHARS,
    SEARCH_EMAILS_MAX,
    Fault,
    SandboxState,
    now_iso,
    public_contact,
)
from tools.sandbox_values import sandbox_email_ok

Answer = tuple[int, Any, dict[str, str]]
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# SGQL: only `email = '<string>'` is understood; a backslash escapes the delimiter and itself
# (https://www.twilio.com/docs/sendgrid/for-developers/sending-email/segmentation-query-language).
_SGQL_EMAIL = re.compile(r"^\s*email\s*=\s*'((?:[^'\\]|\\.)*)'\s*$")
# /_sandbox/config keys set as they come (see SandboxState for what each means).
CONFIG_KEYS = (
    "rate_limit",
    "rate_limits",
    "rate_window",
    "reset_form",
    "job_pending_polls",
    "pending_polls_after_counts",
    "record_bodies",
    "fail_jobs",
    "fail_reason",
    "search_errors_name_emails",
)


def errors(message: str, field_name: str | None = None) -> dict[str, Any]:
    # The contacts error schema types `field` as a string, so it is left out when there is none.
    error = {"message": message} if field_name is None else {"field": field_name, "message": message}
    return {"errors": [error]}


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def create_field(state: SandboxState, body: bytes) -> Answer:
    data = parse_json(body)
    if not isinstance(data, dict) or data.get("field_type") not in ("Text", "Number", "Date") or not data.get("name"):
        return 400, errors("name and field_type (Text, Number, Date) are required"), {}
    names = {f["name"].lower() for f in state.custom_fields.values()} | {n for _, n, _ in RESERVED_FIELDS}
    if data["name"].lower() in names:
        return 400, errors("field name already exists", "name"), {}
    field_id = state.add_field(data["name"], data["field_type"])
    return 200, state.custom_fields[field_id], {}


def create_list(state: SandboxState, body: bytes) -> Answer:
    data = parse_json(body)
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
        return 400, errors("name is required", "name"), {}
    list_id = state.add_list(data["name"])
    return 201, {**state.lists[list_id], "contact_count": 0}, {}


@dataclass(frozen=True)
class UpsertBody:
    """A PUT contacts body as read before the account's lock: its size, and its JSON (None when
    it is not JSON, or too big to be decoded at all)."""

    size: int
    data: Any


def read_upsert(body: bytes) -> UpsertBody:
    """Decode a PUT contacts body outside the lock (up to 6 MB of JSON: ~0.1 s that held every
    other request back). An oversized body is never decoded: upsert answers it 413."""
    return UpsertBody(len(body), None if len(body) > MAX_BODY_BYTES else parse_json(body))


def upsert(state: SandboxState, body: UpsertBody) -> Answer:
    """PUT /v3/marketing/contacts. A 400 names every refused contact; bad custom field values
    are accepted (202) and fail in the import job, as recorded."""
    # The docs give 6MB as a cap but not the answer past it; 413 is what HTTP servers send.
    if body.size > MAX_BODY_BYTES:
        return 413, errors("request body is larger than 6MB"), {}
    data = body.data
    if not isinstance(data, dict):
        return 400, errors("request body must be a JSON object"), {}
    unknown = set(data) - {"list_ids", "contacts"}
    if unknown:
        return 400, errors(f"unknown field {sorted(unknown)[0]}", sorted(unknown)[0]), {}
    list_ids = data.get("list_ids", [])
    if not isinstance(list_ids, list) or not all(isinstance(i, str) and _UUID.match(i) for i in list_ids):
        return 400, errors("list_ids must be an array of list ID strings", "list_ids"), {}
    missing = [i for i in list_ids if i not in state.lists]
    if missing:
        return 400, errors(f"invalid list id: {missing[0]}", "list_ids"), {}
    contacts = data.get("contacts")
    if not isinstance(contacts, list) or not contacts:
        return 400, errors("contacts is required and must not be empty", "contacts"), {}
    if len(contacts) > MAX_CONTACTS:
        return 400, errors(f"contacts must not exceed {MAX_CONTACTS} items", "contacts"), {}
    problems = [p for index, contact in enumerate(contacts) for p in contact_problems(state, contact, index)]
    if problems:
        return 400, {"errors": problems}, {}
    if state.record_bodies:
        state.bodies.append(data)
    job_id = str(uuid.uuid4())
    state.jobs[job_id] = {"contacts": contacts, "list_ids": list_ids, "polls": 0, "started_at": now_iso()}
    state.imports.put(job_id)
    return 202, {"job_id": job_id}, {}


def contact_problems(state: SandboxState, contact: Any, index: int) -> list[dict[str, Any]]:
    """Every error of one contact, each naming it as `contacts[i]...` (empty: acceptable)."""
    where = f"contacts[{index}]"
    if not isinstance(contact, dict):
        return [{"field": where, "message": "contact must be an object"}]
    found = [{"field": f"{where}.{key}", "message": f"unknown field {key}"} for key in contact if key not in CONTACT_KEYS]
    if not any(contact.get(k) for k in IDENTIFIERS):
        found.append({"field": where, "message": "contact must have an identifier: " + ", ".join(IDENTIFIERS)})
    for key, value in contact.items():
        if key in ("custom_fields", "alternate_emails") or key not in CONTACT_KEYS:
            continue
        if not isinstance(value, str):
            found.append({"field": f"{where}.{key}", "message": f"{key} must be a string"})
        elif key in MAX_LENGTHS and len(value) > MAX_LENGTHS[key]:
            found.append({"field": f"{where}.{key}", "message": f"{key} must be at most {MAX_LENGTHS[key]} characters"})
    email = contact.get("email")
    if isinstance(email, str) and email and (not sandbox_email_ok(email.lower()) or email.lower() in state.invalid_emails):
        # The shape SendGrid uses for a bad address (recorded): the value is quoted.
        found.append({"field": f"{where}.email", "message": f"email '{email}' is not valid"})
    alternates = contact.get("alternate_emails", [])
    if not isinstance(alternates, list) or len(alternates) > 5:
        found.append({"field": f"{where}.alternate_emails", "message": "at most 5 alternate emails"})
    custom = contact.get("custom_fields", {})
    if not isinstance(custom, dict):
        found.append({"field": f"{where}.custom_fields", "message": "custom_fields must be an object"})
    else:
        for field_id in custom:
            if field_id not in state.custom_fields:
                found.append({"field": f"{where}.custom_fields.{field_id}", "message": f"custom field {field_id} does not exist"})
    return found


def unlink(state: SandboxState, list_id: str, query: dict[str, list[str]]) -> Answer:
    """DELETE /v3/marketing/lists/{id}/contacts?contact_ids=a,b: removes the contacts from the
    list only (they stay in the account); 404 if the list or any one id does not exist."""
    if list_id not in state.lists:
        return 404, errors("list ID does not exist", "id"), {}
    ids = [i for i in query.get("contact_ids", [""])[0].split(",") if i]
    if not ids:
        return 400, errors("contact_ids is required", "contact_ids"), {}
    by_id = {c["id"]: c for c in state.contacts.values()}
    if any(i not in by_id for i in ids):
        return 404, errors("contact ID does not exist", "contact_ids"), {}
    for contact_id in ids:
        by_id[contact_id]["list_ids"].discard(list_id)
    job_id = str(uuid.uuid4())
    state.jobs[job_id] = {
        "contacts": [],
        "list_ids": [],
        "polls": 0,
        "status": "completed",
        "results": {},
        "job_type": "delete",
        "started_at": now_iso(),
    }
    return 202, {"job_id": job_id}, {}


def job_status(state: SandboxState, job_id: str) -> Answer:
    """GET /v3/marketing/contacts/imports/{id}: pending until processed and `job_pending_polls`
    polls have passed; then pending with its counts filled for `pending_polls_after_counts`
    more polls (recorded: pending after 33 s with created_count filled); then final."""
    job = state.jobs.get(job_id)
    if job is None:
        return 404, errors("job not found", "id"), {}
    job["polls"] += 1
    results = job.get("results", {"requested_count": len(job["contacts"])})
    if "status" not in job and "outcome" in job and job["polls"] > state.job_pending_polls:
        job["counted_polls"] = job.get("counted_polls", 0) + 1
        if job["counted_polls"] > state.pending_polls_after_counts:
            job.update(job.pop("outcome"))
            results = job["results"]
        else:
            results = {k: v for k, v in job["outcome"]["results"].items() if k != "errors_url"}
    answer = {
        "id": job_id,
        "status": job.get("status", "pending"),
        "job_type": job.get("job_type", "upsert_contacts"),
        "results": results,
        "started_at": job["started_at"],
    }
    if "finished_at" in job:
        answer["finished_at"] = job["finished_at"]
    return 200, answer, {}


def search_emails(state: SandboxState, body: bytes) -> Answer:
    """POST /v3/marketing/contacts/search/emails: 400 if any address is over 100 characters or
    invalid; matches alternate_emails too; 404 when none matches."""
    data = parse_json(body)
    emails = data.get("emails") if isinstance(data, dict) else None
    if not isinstance(emails, list) or not emails or len(emails) > SEARCH_EMAILS_MAX:
        return 400, errors(f"emails must be 1 to {SEARCH_EMAILS_MAX} addresses", "emails"), {}
    bad = [
        i
        for i, e in enumerate(emails)
        if not isinstance(e, str) or len(e) > SEARCH_EMAIL_MAX_CHARS or not sandbox_email_ok(e.lower())
    ]
    if bad:
        if state.search_errors_name_emails:
            return 400, {"errors": [{"field": f"emails[{i}]", "message": f"email '{emails[i]}' is not valid"} for i in bad]}, {}
        return 400, errors("one or more email addresses are invalid", "emails"), {}
    result: dict[str, Any] = {}
    found = False
    for email in emails:
        contact = state.by_address(email)
        if contact:
            found = True
            result[email.lower()] = {"contact": public_contact(contact)}
        else:
            result[email.lower()] = {"error": "contact not found"}
    return (200, {"result": result}, {}) if found else (404, errors("No contacts found"), {})


def search_sgql(state: SandboxState, body: bytes) -> Answer:
    """POST /v3/marketing/contacts/search with `email = '...'` (the only query understood)."""
    data = parse_json(body)
    query = data.get("query") if isinstance(data, dict) else None
    match = _SGQL_EMAIL.match(query) if isinstance(query, str) else None
    if not match:
        return 400, errors("the sandbox understands only email = '<address>'", "query"), {}
    email = re.sub(r"\\(.)", r"\1", match.group(1))
    contact = state.contacts.get(email)  # case-sensitive: emails are stored lower-case
    found = [public_contact(contact)] if contact else []
    return 200, {"result": found, "contact_count": len(found), "_metadata": {"self": "sandbox"}}, {}


def batch(state: SandboxState, body: bytes) -> Answer:
    """POST /v3/marketing/contacts/batch {"ids"}: the contacts that exist; 404 when none does."""
    data = parse_json(body)
    ids = data.get("ids") if isinstance(data, dict) else None
    if not isinstance(ids, list) or not ids or len(ids) > BATCH_IDS_MAX:
        return 400, errors(f"ids must be 1 to {BATCH_IDS_MAX} contact ids", "ids"), {}
    by_id = {c["id"]: c for c in state.contacts.values()}
    found = [public_contact(by_id[i]) for i in ids if i in by_id]
    return (200, {"result": found}, {}) if found else (404, errors("contacts not found"), {})


def sandbox_helper(state: SandboxState, path: str, data: Any) -> Answer:
    """The /_sandbox/ test helpers (no auth; `data` is the decoded body, {} when there is none):
    state, contacts, requests, delete (a contact vanishing), config (faults and CONFIG_KEYS)."""
    if path == "/_sandbox/state":
        pending = sum(1 for j in state.jobs.values() if "outcome" not in j and "status" not in j)
        return (
            200,
            {
                "contacts": len(state.contacts),
                "jobs": len(state.jobs),
                "pending_jobs": pending,
                "requests": len(state.requests),
                "lists": {k: state.list_count(k) for k in state.lists},
            },
            {},
        )
    if path == "/_sandbox/contacts":
        return 200, {"contacts": [public_contact(c) for c in state.contacts.values()]}, {}
    if path == "/_sandbox/requests":
        return 200, {"requests": state.requests}, {}
    if path == "/_sandbox/delete" and isinstance(data, dict):
        # A contact deleted in SendGrid by someone else (it vanishes with its id).
        for email in data.get("emails", []):
            state.contacts.pop(str(email).lower(), None)
        return 200, {"ok": True}, {}
    if path == "/_sandbox/config" and isinstance(data, dict):
        for key in CONFIG_KEYS:
            if key in data:
                setattr(state, key, data[key])
        if "invalid_emails" in data:
            state.invalid_emails = {e.lower() for e in data["invalid_emails"]}
        if "import_error_emails" in data:
            state.import_error_emails = {e.lower() for e in data["import_error_emails"]}
        if "errors_file_omits" in data:
            state.errors_file_omits = {e.lower() for e in data["errors_file_omits"]}
        if "api_keys" in data:
            state.api_keys = set(data["api_keys"])
        for fault in data.get("faults", []):
            state.faults.append(Fault(**fault))
        return 200, {"ok": True}, {}
    return 404, errors("unknown sandbox helper"), {}
