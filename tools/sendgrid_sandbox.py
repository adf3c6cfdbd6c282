"""A local SendGrid Marketing Campaigns sandbox: a real HTTP server that behaves like the API.

Point SENDGRID_API_BASE_URL at it to try a definition without touching a real account.
Behaviour follows SendGrid's OpenAPI description (twilio/sendgrid-oai, tsg_mc_*_v3.json) and
the documented facts in the README: same paths and shapes, Bearer auth (401/403), the
30,000-contact / 6,000,000-byte caps of PUT /v3/marketing/contacts, field max lengths,
custom field ids, one bad email failing the whole request with 400, 429 with
X-RateLimit-* headers (Reset in epoch seconds), and asynchronous import jobs.
Where the docs are silent the sandbox picks an answer and says so in a comment.

Test helpers live under /_sandbox/ (no auth): state, recorded requests, faults, config.
Standard library only; never imported by the app.

    python tools/sendgrid_sandbox.py --port 3001 --api-key SG.local --list <uuid> --field tier:Text
"""

from __future__ import annotations

import argparse
import json
import math
import queue
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_CONTACTS = 30_000
MAX_BODY_BYTES = 6_000_000
SEARCH_EMAILS_MAX = 100
# ContactRequest maxLength values from the OpenAPI description.
MAX_LENGTHS = {
    "address_line_1": 100, "address_line_2": 100, "city": 60, "country": 50, "email": 254,
    "external_id": 254, "anonymous_id": 254, "first_name": 50, "last_name": 50,
    "state_province_region": 50,
}
CONTACT_KEYS = set(MAX_LENGTHS) | {"alternate_emails", "phone_number_id", "postal_code", "custom_fields"}
IDENTIFIERS = ("email", "phone_number_id", "external_id", "anonymous_id")
RESERVED_FIELDS = [
    ("_rf0_T", "first_name", "Text"), ("_rf1_T", "last_name", "Text"), ("_rf2_T", "email", "Text"),
    ("_rf3_T", "alternate_emails", "Text"), ("_rf4_T", "address_line_1", "Text"),
    ("_rf5_T", "address_line_2", "Text"), ("_rf6_T", "city", "Text"),
    ("_rf7_T", "state_province_region", "Text"), ("_rf8_T", "postal_code", "Text"),
    ("_rf9_T", "country", "Text"), ("_rf10_T", "phone_number", "Text"),
]
# The sandbox's own address check (deliberately not the exporter's code): one "@", a dotted
# domain with an alphabetic TLD, no spaces or consecutive dots.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
_DATE = re.compile(r"^(0[1-9]|1[0-2])/(0[1-9]|[12]\d|3[01])/\d{4}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def sandbox_email_ok(email: str) -> bool:
    return bool(_EMAIL.match(email)) and ".." not in email and not email.startswith(".")


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
class SandboxState:
    api_keys: set[str] = field(default_factory=lambda: {"SG.sandbox-key"})
    read_only_keys: set[str] = field(default_factory=set)  # valid but without Marketing scopes
    custom_fields: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> definition
    lists: dict[str, dict[str, Any]] = field(default_factory=dict)
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # email -> contact
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    bodies: list[Any] = field(default_factory=list)  # parsed PUT contacts bodies, in order
    record_bodies: bool = True
    faults: list[Fault] = field(default_factory=list)
    invalid_emails: set[str] = field(default_factory=set)  # SendGrid refuses these (400)
    # Accepted (202) but the import then fails for these: the job ends "errored" with errors_url.
    import_error_emails: set[str] = field(default_factory=set)
    fail_jobs: int = 0  # the next N jobs end "failed" as a whole
    public_url: str = ""  # base of errors_url links, set by the server
    rate_limit: int = 600  # requests per window
    rate_window: float = 60.0
    window_start: float = 0.0
    window_count: int = 0
    job_pending_polls: int = 1  # a job answers "pending" this many times before it completes
    next_field: int = 1
    lock: threading.RLock = field(default_factory=threading.RLock)
    imports: queue.Queue = field(default_factory=queue.Queue)  # accepted jobs, processed in the background

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


def _errors(message: str, field_name: str | None = None) -> dict[str, Any]:
    # The contacts error schema types `field` as a string, so it is left out when there is none.
    error = {"message": message} if field_name is None else {"field": field_name, "message": message}
    return {"errors": [error]}


class SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SandboxServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet; requests are recorded
        pass

    # -- plumbing ------------------------------------------------------------------------------
    def _reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        body = self._read_body()
        if path.startswith("/_sandbox/errors/"):
            self._errors_file(path)
            return
        if path.startswith("/_sandbox/"):
            self._admin(path, body)
            return
        with state.lock:
            fault = next((f for f in state.faults if f.method == self.command and path.startswith(f.path)), None)
            if fault:
                fault.times -= 1
                if fault.times <= 0:
                    state.faults.remove(fault)
            record = {"method": self.command, "path": path, "query": url.query, "bytes": len(body), "at": time.time()}
            state.requests.append(record)
        if fault and fault.delay:
            time.sleep(fault.delay)
        if fault and fault.drop:
            record["status"] = "dropped"
            self.close_connection = True
            return
        status, payload, extra = self._handle(path, query, body, fault)
        headers = {**self._rate_headers(status), **extra}
        record["status"] = status
        if status == 429:
            record["reset"] = int(headers["X-RateLimit-Reset"])
        self._reply(status, payload, headers)

    def _rate_headers(self, status: int) -> dict[str, str]:
        state = self.server.state
        remaining = max(state.rate_limit - state.window_count, 0)
        reset = int(math.ceil(state.window_start + state.rate_window))
        return {"X-RateLimit-Limit": str(state.rate_limit), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(reset)}

    def _take_token(self) -> bool:
        state = self.server.state
        now = time.time()
        if now >= state.window_start + state.rate_window:
            state.window_start, state.window_count = now, 0
        if state.window_count >= state.rate_limit:
            return False
        state.window_count += 1
        return True

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _dispatch

    # -- the API ------------------------------------------------------------------------------
    def _handle(self, path: str, query: dict[str, list[str]], body: bytes, fault: Fault | None):
        state = self.server.state
        with state.lock:
            auth = self.headers.get("Authorization", "")
            key = auth[7:] if auth.startswith("Bearer ") else ""
            if key not in state.api_keys and key not in state.read_only_keys:
                return 401, _errors("authorization required"), {}
            if not self._take_token():
                # The documented 429 body, `field` null included.
                return 429, {"errors": [{"field": None, "message": "too many requests"}]}, {}
            if fault and fault.status:
                return fault.status, fault.body or _errors("sandbox fault injected"), {}
            if key in state.read_only_keys and self.command != "GET":
                return 403, _errors("access forbidden"), {}
            route = (self.command, path)
            if route == ("GET", "/v3/marketing/field_definitions"):
                return 200, {
                    "custom_fields": list(state.custom_fields.values()),
                    "reserved_fields": [{"id": i, "name": n, "field_type": t} for i, n, t in RESERVED_FIELDS],
                }, {}
            if route == ("POST", "/v3/marketing/field_definitions"):
                return self._create_field(body)
            if route == ("GET", "/v3/marketing/lists"):
                lists = [{**v, "contact_count": state.list_count(k)} for k, v in state.lists.items()]
                return 200, {"result": lists, "_metadata": {"count": len(lists)}}, {}
            if route == ("POST", "/v3/marketing/lists"):
                return self._create_list(body)
            if self.command == "GET" and path.startswith("/v3/marketing/lists/"):
                list_id = path.rsplit("/", 1)[-1]
                if list_id not in state.lists:
                    return 404, _errors("list ID does not exist", "id"), {}
                return 200, {**state.lists[list_id], "contact_count": state.list_count(list_id)}, {}
            if route == ("PUT", "/v3/marketing/contacts"):
                return self._upsert(body)
            if self.command == "DELETE" and re.fullmatch(r"/v3/marketing/lists/[^/]+/contacts", path):
                return self._unlink(path.split("/")[4], query)
            if self.command == "GET" and path.startswith("/v3/marketing/contacts/imports/"):
                return self._job(path.rsplit("/", 1)[-1])
            if route == ("GET", "/v3/marketing/contacts/count"):
                return 200, {"contact_count": len(state.contacts)}, {}
            if route == ("POST", "/v3/marketing/contacts/search/emails"):
                return self._search_emails(body)
            return 404, _errors("not found"), {}

    def _json(self, body: bytes) -> Any:
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None

    def _create_field(self, body: bytes):
        data = self._json(body)
        if not isinstance(data, dict) or data.get("field_type") not in ("Text", "Number", "Date") or not data.get("name"):
            return 400, _errors("name and field_type (Text, Number, Date) are required"), {}
        state = self.server.state
        names = {f["name"].lower() for f in state.custom_fields.values()} | {n for _, n, _ in RESERVED_FIELDS}
        if data["name"].lower() in names:
            return 400, _errors("field name already exists", "name"), {}
        field_id = state.add_field(data["name"], data["field_type"])
        return 200, state.custom_fields[field_id], {}

    def _create_list(self, body: bytes):
        data = self._json(body)
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
            return 400, _errors("name is required", "name"), {}
        list_id = self.server.state.add_list(data["name"])
        return 201, {**self.server.state.lists[list_id], "contact_count": 0}, {}

    def _upsert(self, body: bytes):
        state = self.server.state
        # The docs give 6MB as a cap but not the answer past it; 413 is what HTTP servers send.
        if len(body) > MAX_BODY_BYTES:
            return 413, _errors("request body is larger than 6MB"), {}
        data = self._json(body)
        if not isinstance(data, dict):
            return 400, _errors("request body must be a JSON object"), {}
        unknown = set(data) - {"list_ids", "contacts"}
        if unknown:
            return 400, _errors(f"unknown field {sorted(unknown)[0]}", sorted(unknown)[0]), {}
        list_ids = data.get("list_ids", [])
        if not isinstance(list_ids, list) or not all(isinstance(i, str) and _UUID.match(i) for i in list_ids):
            return 400, _errors("list_ids must be an array of list ID strings", "list_ids"), {}
        missing = [i for i in list_ids if i not in state.lists]
        if missing:
            return 400, _errors(f"invalid list id: {missing[0]}", "list_ids"), {}
        contacts = data.get("contacts")
        if not isinstance(contacts, list) or not contacts:
            return 400, _errors("contacts is required and must not be empty", "contacts"), {}
        if len(contacts) > MAX_CONTACTS:
            return 400, _errors(f"contacts must not exceed {MAX_CONTACTS} items", "contacts"), {}
        for index, contact in enumerate(contacts):
            problem = self._contact_problem(contact, index)
            if problem:
                return 400, {"errors": [problem]}, {}
        if state.record_bodies:
            state.bodies.append(data)
        job_id = str(uuid.uuid4())
        state.jobs[job_id] = {"contacts": contacts, "list_ids": list_ids, "polls": 0,
                              "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        state.imports.put(job_id)
        return 202, {"job_id": job_id}, {}

    def _contact_problem(self, contact: Any, index: int) -> dict[str, Any] | None:
        where = f"contacts[{index}]"
        if not isinstance(contact, dict):
            return {"field": where, "message": "contact must be an object"}
        for key in contact:
            if key not in CONTACT_KEYS:
                return {"field": f"{where}.{key}", "message": f"unknown field {key}"}
        if not any(contact.get(k) for k in IDENTIFIERS):
            return {"field": where, "message": "contact must have an identifier: " + ", ".join(IDENTIFIERS)}
        for key, value in contact.items():
            if key in ("custom_fields", "alternate_emails"):
                continue
            if not isinstance(value, str):
                return {"field": f"{where}.{key}", "message": f"{key} must be a string"}
            if key in MAX_LENGTHS and len(value) > MAX_LENGTHS[key]:
                return {"field": f"{where}.{key}", "message": f"{key} must be at most {MAX_LENGTHS[key]} characters"}
        email = contact.get("email")
        if email is not None and (not sandbox_email_ok(email.lower()) or email.lower() in self.server.state.invalid_emails):
            # The shape SendGrid uses for a bad address (reference notes): the value is quoted.
            return {"field": f"{where}.email", "message": f"email '{email}' is not valid"}
        alternates = contact.get("alternate_emails", [])
        if not isinstance(alternates, list) or len(alternates) > 5:
            return {"field": f"{where}.alternate_emails", "message": "at most 5 alternate emails"}
        custom = contact.get("custom_fields", {})
        if not isinstance(custom, dict):
            return {"field": f"{where}.custom_fields", "message": "custom_fields must be an object"}
        for field_id, value in custom.items():
            definition = self.server.state.custom_fields.get(field_id)
            if definition is None:
                return {"field": f"{where}.custom_fields.{field_id}", "message": f"custom field {field_id} does not exist"}
            kind = definition["field_type"]
            ok = (
                (kind == "Number" and isinstance(value, (int, float)) and not isinstance(value, bool))
                or (kind == "Date" and isinstance(value, str) and bool(_DATE.match(value)))
                or (kind == "Text" and isinstance(value, str))
            )
            if not ok:
                return {"field": f"{where}.custom_fields.{field_id}", "message": f"value is not a valid {kind}"}
        return None

    def _unlink(self, list_id: str, query: dict[str, list[str]]):
        """DELETE /v3/marketing/lists/{id}/contacts?contact_ids=a,b: removes the contacts from
        the list only (they stay in the account); 404 if the list or any id does not exist."""
        state = self.server.state
        if list_id not in state.lists:
            return 404, _errors("list ID does not exist", "id"), {}
        ids = [i for i in query.get("contact_ids", [""])[0].split(",") if i]
        if not ids:
            return 400, _errors("contact_ids is required", "contact_ids"), {}
        by_id = {c["id"]: c for c in state.contacts.values()}
        if any(i not in by_id for i in ids):
            return 404, _errors("contact ID does not exist", "contact_ids"), {}
        for contact_id in ids:
            by_id[contact_id]["list_ids"].discard(list_id)
        job_id = str(uuid.uuid4())
        state.jobs[job_id] = {"contacts": [], "list_ids": [], "polls": 0, "status": "completed", "results": {},
                              "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        return 202, {"job_id": job_id}, {}

    def _job(self, job_id: str):
        state = self.server.state
        job = state.jobs.get(job_id)
        if job is None:
            return 404, _errors("job not found", "id"), {}
        job["polls"] += 1
        if "status" not in job and "outcome" in job and job["polls"] > state.job_pending_polls:
            job.update(job.pop("outcome"))
        result = {"id": job_id, "status": job.get("status", "pending"), "job_type": "upsert",
                  "results": job.get("results", {"requested_count": len(job["contacts"])}),
                  "started_at": job["started_at"]}
        if "finished_at" in job:
            result["finished_at"] = job["finished_at"]
        return 200, result, {}

    def _search_emails(self, body: bytes):
        data = self._json(body)
        emails = data.get("emails") if isinstance(data, dict) else None
        if not isinstance(emails, list) or not emails or len(emails) > SEARCH_EMAILS_MAX:
            return 400, _errors(f"emails must be 1 to {SEARCH_EMAILS_MAX} addresses", "emails"), {}
        result, found = {}, False
        for email in emails:
            contact = self.server.state.contacts.get(str(email).lower())
            if contact:
                found = True
                result[email] = {"contact": _public_contact(contact)}
            else:
                result[email] = {"error": "contact not found"}
        return (200, {"result": result}, {}) if found else (404, _errors("No contacts found"), {})

    def _errors_file(self, path: str) -> None:
        state = self.server.state
        state.requests.append({"method": self.command, "path": path, "bytes": 0, "at": time.time(),
                               "authorization": "Authorization" in self.headers})
        if "Authorization" in self.headers:
            # Pre-signed storage links refuse a second form of auth; a key must never go there.
            self._reply(400, {"error": "only one auth mechanism allowed"})
            return
        job = state.jobs.get(path.rsplit("/", 1)[-1].removesuffix(".csv"))
        if not job or "errors_csv" not in job:
            self._reply(404, {"error": "not found"})
            return
        data = job["errors_csv"].encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # -- test helpers -----------------------------------------------------------------------
    def _admin(self, path: str, body: bytes) -> None:
        state = self.server.state
        data = self._json(body) if body else {}
        if path == "/_sandbox/contacts":
            state.imports.join()  # settle what is queued, as time would
        with state.lock:
            if path == "/_sandbox/state":
                pending = sum(1 for j in state.jobs.values() if "outcome" not in j and "status" not in j)
                self._reply(200, {"contacts": len(state.contacts), "jobs": len(state.jobs), "pending_jobs": pending,
                                  "requests": len(state.requests),
                                  "lists": {k: state.list_count(k) for k in state.lists}})
            elif path == "/_sandbox/contacts":
                self._reply(200, {"contacts": [_public_contact(c) for c in state.contacts.values()]})
            elif path == "/_sandbox/requests":
                self._reply(200, {"requests": state.requests})
            elif path == "/_sandbox/config" and isinstance(data, dict):
                for key in ("rate_limit", "rate_window", "job_pending_polls", "record_bodies", "fail_jobs"):
                    if key in data:
                        setattr(state, key, data[key])
                if "invalid_emails" in data:
                    state.invalid_emails = {e.lower() for e in data["invalid_emails"]}
                if "import_error_emails" in data:
                    state.import_error_emails = {e.lower() for e in data["import_error_emails"]}
                if "api_keys" in data:
                    state.api_keys = set(data["api_keys"])
                for fault in data.get("faults", []):
                    state.faults.append(Fault(**fault))
                self._reply(200, {"ok": True})
            else:
                self._reply(404, _errors("unknown sandbox helper"))


def process_job(state: SandboxState, job: dict[str, Any], job_id: str) -> None:
    """Apply an accepted import, as SendGrid does on its side after the 202. The outcome becomes
    visible to status polls after `job_pending_polls` of them."""
    created = updated = 0
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if state.fail_jobs > 0:
        state.fail_jobs -= 1
        job["outcome"] = {"status": "failed", "finished_at": now, "results": {
            "requested_count": len(job["contacts"]), "created_count": 0, "updated_count": 0, "deleted_count": 0,
            "errored_count": len(job["contacts"])}}
        return
    errored = [c for c in job["contacts"] if c["email"].lower() in state.import_error_emails]
    for contact in job["contacts"]:
        if contact in errored:
            continue
        email = contact["email"].lower()  # SendGrid lower-cases emails
        existing = state.contacts.get(email)
        if existing is None:
            existing = state.contacts[email] = {"id": str(uuid.uuid4()), "list_ids": set(), "custom_fields": {},
                                                "created_at": now}
            created += 1
        else:
            updated += 1
        for key, value in contact.items():
            if key == "custom_fields":
                existing["custom_fields"].update(value)
            else:
                existing[key] = value
        existing["email"] = email
        existing["updated_at"] = now
        existing["list_ids"].update(job["list_ids"])
    results = {"requested_count": len(job["contacts"]), "created_count": created,
               "updated_count": updated, "deleted_count": 0, "errored_count": len(errored)}
    if errored:
        # The real errors_url is a pre-signed download link; its layout is not documented.
        # This one is a CSV with a header, one line per contact that failed.
        job["errors_csv"] = "email,error\r\n" + "".join(
            f"{c['email']},the contact could not be imported\r\n" for c in errored)
        results["errors_url"] = f"{state.public_url}/_sandbox/errors/{job_id}.csv?signature=sandbox"
    job["outcome"] = {"status": "errored" if errored else "completed", "results": results, "finished_at": now}


def _public_contact(contact: dict[str, Any]) -> dict[str, Any]:
    return {**contact, "list_ids": sorted(contact["list_ids"]), "segment_ids": []}


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: SandboxState | None = None) -> None:
        super().__init__(address, SandboxHandler)
        self.state = state or SandboxState()
        self.state.public_url = self.url
        threading.Thread(target=self._process_imports, name="sandbox-imports", daemon=True).start()

    def _process_imports(self) -> None:
        """SendGrid's side of an import: jobs are applied after the 202, while callers go on."""
        while True:
            job_id = self.state.imports.get()
            try:
                with self.state.lock:
                    process_job(self.state, self.state.jobs[job_id], job_id)
            finally:
                self.state.imports.task_done()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def start(state: SandboxState | None = None, port: int = 0) -> SandboxServer:
    """Start a sandbox on 127.0.0.1 in a background thread; `server.shutdown()` stops it."""
    server = SandboxServer(("127.0.0.1", port), state)
    threading.Thread(target=server.serve_forever, name="sendgrid-sandbox", daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=3001)
    parser.add_argument("--api-key", default="SG.sandbox-key")
    parser.add_argument("--list", action="append", default=[], help="a list id to create (UUID)")
    parser.add_argument("--field", action="append", default=[], help="a custom field, name:Text|Number|Date")
    parser.add_argument("--job-pending-polls", type=int, default=1, help="polls a job answers 'pending' before it ends")
    parser.add_argument("--no-record-bodies", action="store_true", help="keep no copy of request bodies (long runs)")
    args = parser.parse_args()
    state = SandboxState(api_keys={args.api_key}, job_pending_polls=args.job_pending_polls,
                         record_bodies=not args.no_record_bodies)
    for list_id in args.list:
        state.add_list(f"list {list_id[:8]}", list_id)
    for spec in args.field:
        name, _, kind = spec.partition(":")
        state.add_field(name, kind or "Text")
    server = SandboxServer(("127.0.0.1", args.port), state)
    print(f"SendGrid sandbox listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
