"""HTTP routes to calls, errors to JSON. Independent of the Functions host, so it is testable.

Routes (the function's route is exports/{name?}/{action?}):
  GET  /api/exports                 the definitions, each with its last run status
  GET  /api/exports/{name}          one definition with its last run status
  POST /api/exports/{name}/run      run now; body (optional) {"dry_run", "full_refresh",
                                    "confirm_removals"}: booleans
  GET  /api/exports/{name}/status   the latest run report
Errors: {"error": {"code", "message"}} with 400/404/405/422/502 (see errors.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.definitions import parse_definition
from shared.errors import ExportError
from shared.exporter import RunOptions, recheck_jobs, run_export
from shared.services import App

RUN_OPTIONS = {"dry_run", "full_refresh", "confirm_removals"}


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: dict[str, Any]

    def json(self) -> str:
        return json.dumps(self.body, indent=2)


def error_response(error: ExportError, **extra: Any) -> ApiResponse:
    return ApiResponse(error.http_status, {"error": error.to_dict(), **extra})


def _summary(app: App, name: str, raw: dict[str, Any]) -> dict[str, Any]:
    try:
        entry: dict[str, Any] = {"valid": True, **parse_definition(raw).to_public_dict()}
    except ExportError as exc:
        # Show what can be shown of an invalid definition, with the reason it cannot run.
        entry = {"name": name, "valid": False, "problem": exc.to_dict()}
    latest = app.services.state.latest_report(name)
    entry["last_run"] = (
        None
        if latest is None
        else {k: latest.get(k) for k in ("run_id", "status", "started_at", "finished_at", "dry_run", "counts")}
    )
    return entry


def parse_run_options(body: bytes) -> dict[str, bool]:
    if not body or not body.strip():
        return {}
    try:
        options = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ExportError("bad_request", "the request body must be a JSON object, e.g. {\"dry_run\": true}") from None
    if not isinstance(options, dict):
        raise ExportError("bad_request", "the request body must be a JSON object")
    unknown = sorted(set(options) - RUN_OPTIONS)
    if unknown:
        raise ExportError("bad_request", f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(RUN_OPTIONS))}")
    for key, value in options.items():
        if not isinstance(value, bool):
            raise ExportError("bad_request", f"'{key}' must be true or false")
    return options


def handle(app: App, method: str, name: str | None, action: str | None, body: bytes = b"") -> ApiResponse:
    method = method.upper()
    try:
        if not name:
            if method != "GET":
                raise ExportError("method_not_allowed", "use GET /api/exports")
            exports = [_summary(app, n, raw) for n, raw in app.settings.definitions.items()]
            return ApiResponse(200, {"exports": exports})
        raw = app.settings.definitions.get(name)
        if raw is None:
            raise ExportError("not_found", f"no export named '{name}'")
        if not action:
            if method != "GET":
                raise ExportError("method_not_allowed", f"use GET /api/exports/{name}")
            return ApiResponse(200, _summary(app, name, raw))
        if action == "status":
            if method != "GET":
                raise ExportError("method_not_allowed", f"use GET /api/exports/{name}/status")
            latest = recheck_jobs(name, app.services)  # pending import jobs are checked again
            if latest is None:
                raise ExportError("not_found", f"export '{name}' has not run yet")
            return ApiResponse(200, latest)
        if action == "run":
            if method != "POST":
                raise ExportError("method_not_allowed", f"use POST /api/exports/{name}/run")
            options = parse_run_options(body)
            report = run_export(name, raw, app.services, trigger="http", options=RunOptions(**options))
            result = report.to_dict()
            if report.error is not None:
                return error_response(report.error, report=result)
            return ApiResponse(200, result)
        raise ExportError("not_found", f"unknown action '{action}'; use 'run' or 'status'")
    except ExportError as exc:
        return error_response(exc)
