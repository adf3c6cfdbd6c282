"""HTTP routes to calls, errors to JSON. Independent of the Functions host, so it is testable.

Routes (the function's route is exports/{name?}/{action?}/{id?}):
  GET  /api/exports                 the definitions, each with its last run status, and where they
                                    were read from ("definitions_from")
  GET  /api/exports/{name}          one definition with its last run status
  POST /api/exports/{name}/run      queue a run: 202 {"run_id", "status": "queued", "status_url"}
                                    and a Location header (shared/engine/handlers.py); options "dry_run",
                                    "full_refresh", "confirm_removals", "wait" in a JSON body
                                    (booleans) or the query string (true|false). "dry_run" and
                                    "wait" run inline and answer 200 with the report (subject to
                                    the 230 s HTTP limit: for small exports and local use).
                                    409 run_in_progress, naming the run, while one is queued or running
  GET  /api/exports/{name}/status   the latest run report
  GET  /api/exports/{name}/runs     run history, newest first: ?limit=N (default 20, max 200)
                                    and ?before=<run_id> for the next page
  GET  /api/exports/{name}/runs/{run_id}  that run's report (queued -> running -> final)
Setting up an export (export_setup's route is {area}/{item?}; `handle_setup`, shared/setup/):
  GET  /api/sources                 the Customer Insights exports in SOURCE_CONTAINER: ?limit=N
                                    (default 20, max 100) and ?continuation=<token> for the next page
  GET  /api/sendgrid/lists|fields   the SendGrid account's lists / fields (?export=<name>: its account)
  POST /api/preview                 a draft definition completed, checked and tried; writes nothing
Errors: {"error": {"code", "message"}} with 400/404/405/409/422/502 (see errors.py).

Nothing in a request is ignored: a query parameter other than the run options (and `code`, the
function key the host checks) is a 400, as are duplicate keys, huge numbers or deep nesting in
a body. A careless `?dry_run=true` must never turn into a real send.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.api import compose
from shared.definitions import is_export_name, parse_definition
from shared.engine import handlers, liveness
from shared.errors import ExportError
from shared.report import CONFIRMING, is_run_id
from shared.run import lifecycle
from shared.services import App
from shared.settings import SettingsError
from shared.setup import accounts, inputs, preview, sources

RUN_OPTIONS = {"dry_run", "full_refresh", "confirm_removals", "wait"}
# The function key (?code=...) is checked by the Functions host before the request gets here.
HOST_PARAMETERS = {"code"}
MAX_BODY_BYTES = 64 * 1024  # a run's options are a few dozen bytes
_EMPTY: Mapping[str, str] = {}
DEFAULT_HISTORY = 20
MAX_HISTORY = 200
HISTORY_FIELDS = ("run_id", "trigger", "status", "started_at", "finished_at", "counts", "error")


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Answers carry run reports and account data: no browser or proxy keeps a copy.
        self.headers.setdefault("Cache-Control", "no-store")

    def json(self) -> str:
        return json.dumps(self.body, indent=2)


def answer(call: Callable[[App], ApiResponse]) -> ApiResponse:
    """What an HTTP trigger answers: `call` with this process's app, or, when the app settings are
    bad, a 500 naming the setting (logged, so the host shows it)."""
    try:
        app = compose.get_app()
    except SettingsError as exc:
        logging.getLogger(__name__).error("settings: %s", exc)
        return error_response(ExportError("internal_error", f"app settings are invalid: {exc}"))
    return call(app)


def error_response(error: ExportError, **extra: Any) -> ApiResponse:
    return ApiResponse(error.http_status, {"error": error.to_dict(), **extra})


def _summary(app: App, name: str, raw: dict[str, Any]) -> dict[str, Any]:
    try:
        entry: dict[str, Any] = {"valid": True, **parse_definition(raw).to_public_dict()}
        # Which Key Vault secret holds this export's SendGrid key (its name only, never the key).
        entry["sendgrid_api_key_secret"] = entry["sendgrid_api_key_secret"] or app.settings.api_key_secret_name
    except ExportError as exc:
        # Show what can be shown of an invalid definition, with the reason it cannot run.
        entry = {"name": name, "valid": False, "problem": exc.to_dict()}
    try:
        latest = app.services.state.latest_report(name)
        if latest is not None and not isinstance(latest, dict):
            raise ValueError("not a JSON object")
    except (ValueError, ExportError) as exc:
        # One export's unreadable report must not take the whole listing down: it has no report.
        problem = exc.message if isinstance(exc, ExportError) else "it is not a valid run report"
        entry["last_run"] = None
        entry["last_run_problem"] = f"runs/{name}/latest.json could not be read: {problem}"
        return entry
    entry["last_run"] = (
        None
        if latest is None
        else {k: latest.get(k) for k in ("run_id", "status", "started_at", "finished_at", "dry_run", "counts")}
    )
    return entry


def _listing(app: App) -> dict[str, Any]:
    """GET /api/exports: every definition, and where they were read from (`definitions_from`: the
    EXPORT_DEFINITIONS setting, the definitions file's path such as "exports.json", or null)."""
    exports = [_summary(app, n, raw) for n, raw in app.settings.definitions.items()]
    listing: dict[str, Any] = {"exports": exports, "definitions_from": app.settings.definitions_from}
    if app.settings.definitions_from is None:
        listing["note"] = "no export definitions: set EXPORT_DEFINITIONS or deploy exports.json beside host.json"
    return listing


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ExportError("bad_request", "the request body names the same option twice")
    return dict(pairs)


def _query_options(query: Mapping[str, str]) -> dict[str, bool]:
    unknown = sorted(set(query) - RUN_OPTIONS - HOST_PARAMETERS)
    if unknown:
        raise ExportError(
            "bad_request",
            f"unknown query parameter(s) {', '.join(p[:40] for p in unknown)}; allowed: {', '.join(sorted(RUN_OPTIONS))}",
        )
    options = {}
    for key in RUN_OPTIONS & set(query):
        if query[key] not in ("true", "false"):
            raise ExportError("bad_request", f"query parameter '{key}' must be true or false")
        options[key] = query[key] == "true"
    return options


def _history(app: App, name: str, query: Mapping[str, str]) -> ApiResponse:
    unknown = sorted(set(query) - {"limit", "before"} - HOST_PARAMETERS)
    if unknown:
        raise ExportError(
            "bad_request", f"unknown query parameter(s) {', '.join(p[:40] for p in unknown)}; allowed: before, limit"
        )
    limit_text = query.get("limit", str(DEFAULT_HISTORY))
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_HISTORY:
        raise ExportError("bad_request", f"'limit' must be a whole number from 1 to {MAX_HISTORY}")
    before = query.get("before")
    if before is not None and not is_run_id(before):  # never echoed
        raise ExportError("bad_request", "'before' must be a run id such as 20260101T020000Z-0a1b2c")
    # A `before` later than now lists from now: the listing walks back month by month from it (from
    # year 9999: thousands of List Blobs calls for one page). "Now" has the day's allowance the
    # listing makes for instances whose clocks are ahead, so their run ids still page correctly.
    ceiling = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y%m%dT%H%M%SZ-000000")
    found, more = app.services.state.list_reports(name, int(limit_text), min(before, ceiling) if before else None)
    runs: list[dict[str, Any]] = []
    for run_id, report in found:
        if report is None:
            runs.append({"run_id": run_id, "problem": "the stored report is not readable"})
        else:
            runs.append({key: report.get(key) for key in HISTORY_FIELDS})
    return ApiResponse(200, {"export": name, "runs": runs, "next_before": found[-1][0] if more and found else None})


def _refuse_query(query: Mapping[str, str]) -> None:
    unknown = sorted(set(query) - HOST_PARAMETERS)
    if unknown:
        raise ExportError("bad_request", f"this route takes no query parameter ({', '.join(p[:40] for p in unknown)})")


def parse_run_options(body: bytes, query: Mapping[str, str] = _EMPTY) -> dict[str, bool]:
    """Run options from the body and the query string; the same option given twice differently
    (in either place) is a 400, never a guess."""
    options = _query_options(query)
    if not body or not body.strip():
        return options
    if len(body) > MAX_BODY_BYTES:
        raise ExportError("bad_request", f"the request body is over {MAX_BODY_BYTES} bytes")
    try:
        parsed = json.loads(body, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError):  # bad JSON or UTF-8, a 5,000-digit number, deep nesting
        raise ExportError("bad_request", 'the request body must be a JSON object, e.g. {"dry_run": true}') from None
    if not isinstance(parsed, dict):
        raise ExportError("bad_request", "the request body must be a JSON object")
    parsed = _check_body_options(parsed)
    for key in set(parsed) & set(options):
        if parsed[key] != options[key]:
            raise ExportError("bad_request", f"'{key}' is given differently in the body and the query string")
    return {**options, **parsed}


def _check_body_options(options: dict[str, Any]) -> dict[str, bool]:
    unknown = sorted(set(options) - RUN_OPTIONS)
    if unknown:
        raise ExportError(
            "bad_request", f"unknown option(s) {', '.join(k[:40] for k in unknown)}; allowed: {', '.join(sorted(RUN_OPTIONS))}"
        )
    for key, value in options.items():
        if not isinstance(value, bool):
            raise ExportError("bad_request", f"'{key}' must be true or false")
    return options


def _run(app: App, name: str, raw: dict[str, Any], body: bytes, query: Mapping[str, str]) -> ApiResponse:
    options = parse_run_options(body, query)
    wait = options.pop("wait", False)
    if options.get("dry_run") or wait:
        report = handlers.run_inline(app, name, raw, options, trigger="http")
        result = report.to_dict()
        if report.error is not None:
            return error_response(report.error, report=result)
        return ApiResponse(200, result)
    try:
        queued = handlers.submit(app, name, raw, options, trigger="http")
    except liveness.Busy as busy:
        return error_response(busy, run_id=busy.run_id)
    url = f"/api/exports/{name}/runs/{queued.run_id}"
    return ApiResponse(202, {"run_id": queued.run_id, "status": "queued", "status_url": url}, {"Location": url})


def _one_run(app: App, name: str, run_id: str) -> ApiResponse:
    if not is_run_id(run_id):  # never echoed
        raise ExportError("bad_request", "a run id looks like 20260101T020000Z-0a1b2c")
    report = liveness.report_of(app.services.state, name, run_id)
    if report is not None and report.get("status") == CONFIRMING:  # its pending import jobs are checked again
        report = lifecycle.recheck_run(app.services, name, run_id, by="status endpoint")
    if report is None:
        raise ExportError("not_found", f"export '{name}' has no run {run_id}")
    return ApiResponse(200, liveness.settle_if_stale(app, report))


def handle(
    app: App,
    method: str,
    name: str | None,
    action: str | None,
    body: bytes = b"",
    query: Mapping[str, str] = _EMPTY,
    run_id: str | None = None,
) -> ApiResponse:
    """One request: `query` is the query string (the trigger passes req.params); `run_id` the
    route's third part (runs/{run_id})."""
    method = method.upper()
    try:
        if run_id and action != "runs":
            raise ExportError("not_found", "only 'runs' takes a run id: /api/exports/{name}/runs/{run_id}")
        if not name:
            if method != "GET":
                raise ExportError("method_not_allowed", "use GET /api/exports")
            _refuse_query(query)
            return ApiResponse(200, _listing(app))
        if not is_export_name(name):  # never echoed: it may hold line breaks or markup
            raise ExportError("bad_request", "export names are 1-63 characters of a-z, 0-9, '_' or '-'")
        raw = app.settings.definitions.get(name)
        if raw is None:
            raise ExportError("not_found", f"no export named '{name}'")
        if not action:
            if method != "GET":
                raise ExportError("method_not_allowed", f"use GET /api/exports/{name}")
            _refuse_query(query)
            return ApiResponse(200, _summary(app, name, raw))
        if action == "status":
            if method != "GET":
                raise ExportError("method_not_allowed", f"use GET /api/exports/{name}/status")
            _refuse_query(query)
            latest = lifecycle.recheck(name, app.services, by="status endpoint")  # pending import jobs are checked again
            if latest is None:
                raise ExportError("not_found", f"export '{name}' has not run yet")
            return ApiResponse(200, liveness.settle_if_stale(app, latest))
        if action == "run":
            if method != "POST":
                raise ExportError("method_not_allowed", f"use POST /api/exports/{name}/run")
            return _run(app, name, raw, body, query)
        if action == "runs":
            if method != "GET":
                raise ExportError("method_not_allowed", f"use GET /api/exports/{name}/runs")
            if run_id:
                _refuse_query(query)
                return _one_run(app, name, run_id)
            return _history(app, name, query)
        raise ExportError("not_found", f"unknown action '{action}'; use 'run', 'status' or 'runs'")
    except ExportError as exc:
        return error_response(exc)


SETUP_PATHS = "GET /api/sources, GET /api/sendgrid/lists, GET /api/sendgrid/fields or POST /api/preview"


def handle_setup(
    app: App, method: str, area: str | None, item: str | None, body: bytes = b"", query: Mapping[str, str] = _EMPTY
) -> ApiResponse:
    """One set-up request (export_setup): `area` and `item` are the route's two parts, matched
    without regard to case as the host's routing does; `query` the query string."""
    method = method.upper()
    path = ((area or "").lower(), (item or "").lower() or None)
    try:
        if path not in {("sources", None), ("sendgrid", "lists"), ("sendgrid", "fields"), ("preview", None)}:
            raise ExportError("not_found", f"unknown path; use {SETUP_PATHS}")  # never echoed
        wanted = "POST" if path[0] == "preview" else "GET"
        if method != wanted:
            raise ExportError("method_not_allowed", f"use {wanted} /api/{'/'.join(p for p in path if p)}")
        if path[0] == "sources":
            return ApiResponse(200, sources.sources_answer(app, query))
        if path[0] == "preview":
            return ApiResponse(200, preview.preview_answer(app, body, query))
        client = accounts.export_client(app, inputs.export_query(query))
        answer = accounts.lists_answer if path[1] == "lists" else accounts.fields_answer
        return ApiResponse(200, accounts.reading(client, answer))
    except ExportError as exc:
        return error_response(exc)
