"""A local SendGrid Marketing Campaigns sandbox: a real HTTP server that behaves like the API.

Point SENDGRID_API_BASE_URL at it to try a definition without touching a real account. By
default it answers the way recorded exchanges with api.sendgrid.com do (grouparoo
plugins/@grouparoo/sendgrid/__tests__/fixtures/export/export-record.js; NangoHQ
integration-templates integrations/sendgrid/tests/upsert-contacts.test.json), and otherwise
SendGrid's OpenAPI description (twilio/sendgrid-oai, tsg_mc_*_v3.json):
- Bearer auth (401/403); the 30,000-contact / 6,000,000-byte caps of PUT contacts; field max
  lengths; custom field ids.
- Rate limits per endpoint (method + path template): 200 a window for PUT contacts and the
  contact searches, 600 for the rest (recorded for lists and field_definitions; a guess for
  the others); 60-second windows. X-RateLimit-Reset is the seconds until the window resets
  (recorded), or an epoch with config `reset_form: "epoch"` (the general doc page's form).
- A 400 to PUT contacts names EVERY refused contact (`contacts[i].email`, "email '<x>' is not
  valid"); bad custom field values (Number not a number, Date not ISO 8601) are accepted with
  202 and fail in the import job (errored, errored_count, errors file), as recorded.
- Import jobs: `job_type: "upsert_contacts"`; pending for `job_pending_polls` polls, then
  pending with counts filled for `pending_polls_after_counts` more polls, then final.
  Applied in the background a slice at a time, so polls and the next PUT are answered while a
  job imports (a request between slices may see part of a job applied): the account's lock is
  handed over in arrival order, so a request waiting during a slice gets in before the next one.
  A PUT's body is decoded before the account's lock is taken; its checks are made under it.
- An omitted field keeps its value; `""` clears it (the sandbox also clears Number and Date
  fields on "": what SendGrid does there is unknown). Date fields are read back as
  `YYYY-MM-DDTHH:MM:SSZ`.
- search/emails: 400 when any address is over 100 characters or invalid; matches
  alternate_emails too; 404 when none matches. Whether the 400 names the bad addresses is
  unknown: by default it does not (config `search_errors_name_emails` makes it name them).
- POST contacts/search understands only SGQL `email = '...'`; POST contacts/batch {"ids"};
  DELETE lists/{id}/contacts answers 404 when the list or any one id does not exist.
Unknown, and the sandbox's own choice: the layout of the file behind errors_url (here a CSV
`email,error`), where a failed job's reason shows (here: in that file; the status answer has no
field for it), and any limit on concurrent imports (none here).

Test helpers live under /_sandbox/ (no auth): state, contacts, requests (each with "seq" when
it came and "answered_seq" when its answer went, from one count: which requests overlapped),
config (faults and the knobs in CONFIG_KEYS), delete (a contact vanishing), errors/<job>.csv.
This module is the HTTP server and routing; the account and the import processing are in
sandbox_state.py, its lock in sandbox_lock.py, the answers (API and helpers) in sandbox_api.py.
Standard library only; never imported by the app.

    python tools/sendgrid_sandbox.py --port 3001 --api-key SG.local --list <uuid> --field tier:Text
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

if not __package__:  # run as a script (bench/run.py): make the `tools` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools import sandbox_api  # noqa: E402
from tools.sandbox_api import CONFIG_KEYS, Answer, UpsertBody, errors  # noqa: E402
from tools.sandbox_state import (  # noqa: E402
    RESERVED_FIELDS,
    Fault,
    SandboxState,
    endpoint_of,
    process_job,
)
from tools.sandbox_values import sandbox_email_ok  # noqa: E402
from tools.serving import serve_in_background

__all__ = ["CONFIG_KEYS", "Fault", "SandboxServer", "SandboxState", "process_job", "sandbox_email_ok", "start"]
UPSERT = ("PUT", "/v3/marketing/contacts")


class SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm on, the body waited for the
    # client's delayed ACK of the headers, ~40 ms on every answer of a kept-alive connection
    # (measured: 44 ms a status poll, 4 ms without). SendGrid's API shows no such stall.
    disable_nagle_algorithm = True
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
            record = {
                "method": self.command,
                "path": path,
                "query": url.query,
                "bytes": len(body),
                "at": time.time(),
                "seq": next(state.events),
            }
            state.requests.append(record)
        if fault and fault.delay:
            time.sleep(fault.delay)
        if fault and fault.drop:
            record["status"] = "dropped"
            self.close_connection = True
            return
        endpoint = endpoint_of(self.command, path)
        # Decoded before the lock: up to 6 MB of JSON that touches no account state.
        upsert_body = sandbox_api.read_upsert(body) if (self.command, path) == UPSERT else None
        with state.lock:
            status, payload, extra = self._handle(endpoint, path, query, body, fault, upsert_body)
            rate_headers, window_end = state.rate_headers(endpoint)
        record["status"] = status
        record["answered_seq"] = next(state.events)
        if status == 429:
            record["reset"] = window_end  # when the window resets (an epoch), whatever the header form
            record["reset_header"] = rate_headers["X-RateLimit-Reset"]
        self._reply(status, payload, {**rate_headers, **extra})

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _dispatch

    # -- the API ------------------------------------------------------------------------------
    def _handle(
        self,
        endpoint: str,
        path: str,
        query: dict[str, list[str]],
        body: bytes,
        fault: Fault | None,
        upsert_body: UpsertBody | None,
    ) -> Answer:
        state = self.server.state
        auth = self.headers.get("Authorization", "")
        key = auth[7:] if auth.startswith("Bearer ") else ""
        if key not in state.api_keys and key not in state.read_only_keys:
            return 401, errors("authorization required"), {}
        if not state.take_token(endpoint):
            # The documented 429 body, `field` null included.
            return 429, {"errors": [{"field": None, "message": "too many requests"}]}, {}
        if fault and fault.status:
            return fault.status, fault.body or errors("sandbox fault injected"), {}
        if key in state.read_only_keys and self.command != "GET":
            return 403, errors("access forbidden"), {}
        route = (self.command, path)
        if route == ("GET", "/v3/marketing/field_definitions"):
            return (
                200,
                {
                    "custom_fields": list(state.custom_fields.values()),
                    "reserved_fields": [{"id": i, "name": n, "field_type": t} for i, n, t in RESERVED_FIELDS],
                },
                {},
            )
        if route == ("POST", "/v3/marketing/field_definitions"):
            return sandbox_api.create_field(state, body)
        if route == ("GET", "/v3/marketing/lists"):
            lists = [{**v, "contact_count": state.list_count(k)} for k, v in state.lists.items()]
            return 200, {"result": lists, "_metadata": {"count": len(lists)}}, {}
        if route == ("POST", "/v3/marketing/lists"):
            return sandbox_api.create_list(state, body)
        if self.command == "GET" and path.startswith("/v3/marketing/lists/"):
            list_id = path.rsplit("/", 1)[-1]
            if list_id not in state.lists:
                return 404, errors("list ID does not exist", "id"), {}
            return 200, {**state.lists[list_id], "contact_count": state.list_count(list_id)}, {}
        if route == UPSERT and upsert_body is not None:
            return sandbox_api.upsert(state, upsert_body)
        if self.command == "DELETE" and re.fullmatch(r"/v3/marketing/lists/[^/]+/contacts", path):
            return sandbox_api.unlink(state, path.split("/")[4], query)
        if self.command == "GET" and path.startswith("/v3/marketing/contacts/imports/"):
            return sandbox_api.job_status(state, path.rsplit("/", 1)[-1])
        if route == ("GET", "/v3/marketing/contacts/count"):
            return 200, {"contact_count": len(state.contacts)}, {}
        if route == ("POST", "/v3/marketing/contacts/search/emails"):
            return sandbox_api.search_emails(state, body)
        if route == ("POST", "/v3/marketing/contacts/search"):
            return sandbox_api.search_sgql(state, body)
        if route == ("POST", "/v3/marketing/contacts/batch"):
            return sandbox_api.batch(state, body)
        return 404, errors("not found"), {}

    def _errors_file(self, path: str) -> None:
        state = self.server.state
        state.requests.append(
            {
                "method": self.command,
                "path": path,
                "bytes": 0,
                "at": time.time(),
                "authorization": "Authorization" in self.headers,
            }
        )
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
        data = sandbox_api.parse_json(body) if body else {}
        if path == "/_sandbox/contacts":
            state.imports.join()  # settle what is queued, as time would
        with state.lock:
            self._reply(*sandbox_api.sandbox_helper(state, path, data))


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
                    job = self.state.jobs[job_id]
                process_job(self.state, job, job_id)  # takes the lock a slice at a time
            finally:
                self.state.imports.task_done()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


def start(state: SandboxState | None = None, port: int = 0) -> SandboxServer:
    """Start a sandbox on 127.0.0.1 in a background thread; `server.shutdown()` stops it."""
    server = SandboxServer(("127.0.0.1", port), state)
    serve_in_background(server, "sendgrid-sandbox")
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=3001)
    parser.add_argument("--api-key", default="SG.sandbox-key")
    parser.add_argument("--list", action="append", default=[], help="a list id to create (UUID)")
    parser.add_argument("--field", action="append", default=[], help="a custom field, name:Text|Number|Date")
    parser.add_argument("--job-pending-polls", type=int, default=1, help="polls a job answers 'pending' before it ends")
    parser.add_argument("--no-record-bodies", action="store_true", help="keep no copy of request bodies (long runs)")
    parser.add_argument("--epoch-reset", action="store_true", help="X-RateLimit-Reset as an epoch (the doc page's form)")
    args = parser.parse_args()
    state = SandboxState(
        api_keys={args.api_key},
        job_pending_polls=args.job_pending_polls,
        record_bodies=not args.no_record_bodies,
        reset_form="epoch" if args.epoch_reset else "relative",
    )
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
