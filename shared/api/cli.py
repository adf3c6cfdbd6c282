"""The operator CLI: the app's API from a shell, on the same code as the functions and with the
same app settings, read from the environment (local.settings.sample.json names them).

Each command prints readable tables and a short summary; with --json it prints the API's answer
as JSON instead. Only `validate FILE` and `schema` work without the app settings. A run in a
terminal shows its progress (rows read, requests sent, import jobs pending: counts only) and
ends with its summary.

Exit codes: 0 success; 1 failure (a run that failed or was partial, a service that failed);
2 refusal (bad input, an invalid definition, bad settings, an answer in the 4xx range).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import requests

from shared.api import routes
from shared.api.compose import get_app
from shared.definitions import SCHEMA_PATH, definitions_file_schema, parse_definition, schema_text
from shared.errors import ExportError
from shared.sendgrid.client import SendGridClient
from shared.services import Account, App
from shared.settings import APP_ROOT, SettingsError, parse_definitions_document, read_definitions_file

OK, FAILURE, REFUSAL = 0, 1, 2
MAX_CELL = 60  # characters of one table cell; longer values end in "..."
FINAL_JOB_STATUSES = ("completed", "errored", "failed")
TICK_SECONDS = 0.2

# -- text a terminal shows as it is --------------------------------------------------------------


def clean(value: object) -> str:
    """`value` as text that cannot drive a terminal: control characters (escape sequences, line
    breaks, bidi overrides and other invisible formatting) are written out as escapes."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _width(text: str) -> int:
    """Columns `text` takes in a terminal: wide East Asian characters take two, combining marks none."""
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _fit(text: str, limit: int = MAX_CELL) -> str:
    if _width(text) <= limit:
        return text
    kept, used = [], 0
    for ch in text:
        used += _width(ch)
        if used > limit - 3:
            break
        kept.append(ch)
    return "".join(kept) + "..."


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def cell(value: object, limit: int = MAX_CELL) -> str:
    """One value as a table shows it: numbers with thousands separators, booleans as yes/no,
    nothing as '-', text cleaned and cut to MAX_CELL columns."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return _fit(clean(value), limit)


def table(headers: Sequence[str] | None, rows: Sequence[Sequence[object]], indent: str = "", limit: int = MAX_CELL) -> list[str]:
    """Plain-text columns, aligned: numbers to the right, the rest to the left; a cell is cut at
    `limit` columns."""
    texts = [[cell(value, limit) for value in row] for row in rows]
    columns = max([len(headers or ())] + [len(row) for row in rows])
    titles = [str(h).upper() for h in headers] if headers else []
    numeric = [
        any(_is_number(row[i]) for row in rows if i < len(row))
        and all(_is_number(row[i]) or row[i] is None for row in rows if i < len(row))
        for i in range(columns)
    ]
    widths = [max([_width(t[i]) for t in [titles, *texts] if i < len(t)] or [0]) for i in range(columns)]
    lines = []
    for row in [titles, *texts] if titles else texts:
        parts = []
        for i, text in enumerate(row):
            pad = " " * (widths[i] - _width(text))
            parts.append(pad + text if numeric[i] else text + pad)
        lines.append((indent + "  ".join(parts)).rstrip())
    return lines


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n:,} " + (noun if n == 1 else plural or noun + "s")


# -- summaries of the API's answers --------------------------------------------------------------


def _seconds(report: Mapping[str, Any]) -> float | None:
    try:
        started = datetime.fromisoformat(str(report["started_at"]).replace("Z", "+00:00"))
        finished = datetime.fromisoformat(str(report["finished_at"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        timings = report.get("timings")
        return round(sum(v for v in timings.values() if _is_number(v)), 1) if isinstance(timings, dict) and timings else None
    return round((finished - started).total_seconds(), 1)


def _when(timestamp: object) -> str:
    """An ISO 8601 time to the minute, as people read it: 2026-12-01 18:22."""
    return str(timestamp or "")[:16].replace("T", " ")


def _reasons(rejects: object, most: int = 4) -> str:
    if not isinstance(rejects, dict) or not rejects:
        return ""
    ranked = sorted(((n, clean(reason)) for reason, n in rejects.items() if isinstance(n, int)), key=lambda x: (-x[0], x[1]))
    shown = ", ".join(f"{reason} {n:,}" for n, reason in ranked[:most])
    return shown + (f", and {len(ranked) - most} more reasons" if len(ranked) > most else "")


def report_lines(report: Mapping[str, Any], *, rejects_note: bool = True) -> list[str]:
    """A run report in a dozen lines: what ran, the counts with the reasons for rejects, the
    requests and import jobs, and anything that needs attention (`rejects_note`: where the
    rejects CSV is)."""
    counts = report.get("counts") if isinstance(report.get("counts"), dict) else {}
    assert isinstance(counts, dict)
    requests_made = report.get("requests") if isinstance(report.get("requests"), dict) else {}
    assert isinstance(requests_made, dict)
    seconds = _seconds(report)
    head = f"{clean(report.get('export', '?'))}: run {clean(report.get('run_id', '?'))} {clean(report.get('status', '?'))}"
    head += " (dry run)" if report.get("dry_run") else ""
    head += f", {clean(report.get('trigger', '?'))}" + (f", {seconds:,} s" if seconds is not None else "")
    jobs = [job for job in report.get("jobs") or [] if isinstance(job, dict)]
    by_status = Counter(str(job.get("status")) for job in jobs)
    rows: list[list[object]] = [
        ["rows read", counts.get("read", 0), ""],
        ["valid", counts.get("valid", 0), ""],
        ["rejected", counts.get("rejected", 0), _reasons(report.get("rejects"))],
        ["duplicates", counts.get("duplicates", 0), "same email again: the first valid row was kept"],
    ]
    if counts.get("unchanged"):
        rows.append(["unchanged", counts["unchanged"], "delivered before as they are: not sent again"])
    if report.get("dry_run"):
        plan = report.get("plan") if isinstance(report.get("plan"), dict) else {}
        assert isinstance(plan, dict)
        rows.append(["to send", plan.get("upsert", 0), "new and changed contacts (nothing was sent)"])
        if report.get("sync_mode") == "mirror":
            rows.append(["to unlink", plan.get("remove", 0), "left the segment"])
    else:
        upserts, retries = requests_made.get("upserts", 0), requests_made.get("retries", 0)
        rows.append(["sent", counts.get("sent", 0), f"in {_count(upserts, 'request')}, {_count(retries, 'retry', 'retries')}"])
        detail = ", ".join(f"{n:,} {clean(status)}" for status, n in sorted(by_status.items()))
        rows.append(["import jobs", len(jobs), detail])
        if counts.get("failed") or any(job.get("status") in ("errored", "failed") for job in jobs):
            rows.append(["failed in SendGrid", counts.get("failed", 0), "accepted, not applied: sent again next run"])
        if report.get("sync_mode") == "mirror":
            rows.append(["unlinked", counts.get("removed", 0), "left the segment"])
    lines = [head, *table(None, rows, indent="  ")]
    if report.get("rejects_blob") and rejects_note:
        lines.append(f"  rejects CSV: {clean(report['rejects_blob'])} in the state container (it may hold profile data)")
    awaiting = report.get("awaiting")
    if isinstance(awaiting, dict) and awaiting.get("jobs"):
        lines.append(f"  awaiting {_count(int(awaiting['jobs']), 'import job')} until {clean(awaiting.get('until'))}")
    if report.get("held_back"):
        lines.append(f"  removals held back: {clean(report['held_back'])}")
    if report.get("resumable"):
        lines.append("  stopped at its time limit; it goes on from its checkpoint")
    error = report.get("error")
    if isinstance(error, dict):
        lines.append(f"  error {clean(error.get('code'))}: {clean(error.get('message'))}")
    return lines


def _error_line(body: Mapping[str, Any]) -> str:
    error = body.get("error")
    if isinstance(error, dict):
        return f"error {clean(error.get('code'))}: {clean(error.get('message'))}"
    return "error: the answer holds no error"


def _exit_for(response: routes.ApiResponse) -> int:
    return FAILURE if response.status >= 500 else REFUSAL if response.status >= 400 else OK


def _report_exit(report: Mapping[str, Any]) -> int:
    return FAILURE if report.get("status") in ("failed", "partial") else OK


# -- the set-up endpoints (GET /api/sources, /api/sendgrid/*, POST /api/preview) ---------------


def setup_call(
    app: App, method: str, route: str, query: Mapping[str, str] | None = None, body: bytes = b""
) -> routes.ApiResponse:
    """One request to a set-up endpoint, `route` as under /api/ ("sources", "sendgrid/lists"),
    through the routing export_setup uses."""
    area, _, item = route.partition("/")
    return routes.handle_setup(app, method, area, item or None, body, dict(query or {}))


# -- progress of a run in this process -----------------------------------------------------------

_READ = re.compile(r"read (\d+) rows, (\d+) valid")
_ACCEPTED = re.compile(r"request (\d+) accepted; (\d+) contacts sent")


class Progress(logging.Handler):
    """What a run in this process has done so far, drawn on one terminal line: rows read (from the
    run's log), requests sent and import jobs pending (from SendGrid's answers to this process).
    Counts only: no value of a profile is ever read here."""

    def __init__(self, out: TextIO, name: str) -> None:
        super().__init__(logging.INFO)
        self.out, self.name = out, name
        self.rows = self.valid = self.requests = self.sent = 0
        self.jobs: set[str] = set()
        self.ended: set[str] = set()
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self.stopped = threading.Event()

    # The run's log: counts only (the regular expressions take digits).
    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a record that does not format is not progress
            return
        with self._lock:
            if found := _READ.search(message):
                self.rows, self.valid = int(found[1]), int(found[2])
            elif found := _ACCEPTED.search(message):
                self.requests, self.sent = int(found[1]), int(found[2])

    # SendGrid's answers: a job id when contacts are accepted, a job's status when it is asked.
    def on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        request = response.request
        path = urlsplit(request.url or "").path
        try:
            if request.method == "PUT" and path.endswith("/marketing/contacts") and response.status_code == 202:
                job = response.json().get("job_id")
                if job:
                    with self._lock:
                        self.jobs.add(str(job))
            elif request.method == "GET" and "/marketing/contacts/imports/" in path and response.status_code == 200:
                if response.json().get("status") in FINAL_JOB_STATUSES:
                    with self._lock:
                        self.ended.add(path.rsplit("/", 1)[-1])
        except (ValueError, AttributeError):  # not the JSON expected: not counted
            return

    def line(self) -> str:
        with self._lock:
            parts = [f"{self.rows:,} rows read"] if self.rows else [] if self.requests else ["reading"]
            if self.requests:
                parts.append(f"{_count(self.requests, 'request')} sent ({self.sent:,} contacts)")
            pending = len(self.jobs - self.ended)
            if pending:
                parts.append(f"{_count(pending, 'import job')} pending")
        spinner = "|/-\\"[int((time.monotonic() - self.started) / TICK_SECONDS) % 4]
        return f"{spinner} {clean(self.name)}: {', '.join(parts)}, {time.monotonic() - self.started:.1f} s"

    def draw(self) -> None:
        self.out.write("\r\x1b[K" + self.line())
        self.out.flush()

    def run(self) -> None:
        """The ticker thread: redraw until `stopped` is set."""
        while not self.stopped.wait(TICK_SECONDS):
            self.draw()

    def finish(self) -> None:
        """After the ticker stopped: the last counts, then the line cleared for the summary."""
        self.draw()
        self.out.write("\r\x1b[K")
        self.out.flush()


def observed(app: App, progress: Progress) -> App:
    """The app with SendGrid clients whose answers `progress` sees (their status and job ids)."""
    services = app.services

    def hooked(client: SendGridClient) -> SendGridClient:
        session = getattr(client, "_session", None)
        if isinstance(session, requests.Session):
            session.hooks["response"].append(progress.on_response)
        return client

    default, for_account = services.sendgrid, services.sendgrid_for

    def sendgrid_for(account: Account) -> SendGridClient:
        assert for_account is not None
        return hooked(for_account(account))

    replaced = dataclasses.replace(
        services, sendgrid=lambda: hooked(default()), sendgrid_for=sendgrid_for if for_account is not None else None
    )
    return App(app.settings, replaced)


@contextmanager
def showing_progress(app: App, name: str, out: TextIO) -> Iterator[App]:
    """While the block runs, its run's progress on `out` (a terminal), redrawn a few times a
    second; yields the app to run it with."""
    progress = Progress(out, name)
    logger = logging.getLogger("shared")
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(progress)
    ticker = threading.Thread(target=progress.run, name="cli-progress", daemon=True)
    ticker.start()
    try:
        yield observed(app, progress)
    finally:
        progress.stopped.set()
        ticker.join()
        progress.finish()
        logger.removeHandler(progress)
        logger.setLevel(level)


# -- the commands --------------------------------------------------------------------------------


@dataclasses.dataclass
class Io:
    out: TextIO
    err: TextIO
    as_json: bool

    def print(self, *lines: str) -> None:
        for line in lines:
            self.out.write(line + "\n")

    def error(self, line: str) -> None:
        self.err.write(line + "\n")

    def json(self, body: Any) -> None:
        self.out.write(json.dumps(body, indent=2) + "\n")  # ASCII only: control characters are escaped


def _answer(io: Io, response: routes.ApiResponse, render: Callable[[dict[str, Any]], list[str]]) -> int:
    """The common case: JSON, or the rendering of a 2xx answer, or the error line."""
    if io.as_json:
        io.json(response.body)
    elif response.status < 400:
        io.print(*render(response.body))
    else:
        io.error(_error_line(response.body))
    return _exit_for(response)


def cmd_validate_app(app: App, io: Io) -> int:
    response = routes.handle(app, "GET", None, None)
    exports = [e for e in response.body.get("exports", []) if isinstance(e, dict)]
    invalid = [e for e in exports if not e.get("valid")]
    if io.as_json:
        io.json(response.body)
    elif response.status >= 400:
        io.error(_error_line(response.body))
    else:
        source = response.body.get("definitions_from")
        if source is None:
            io.print("no export definitions: set EXPORT_DEFINITIONS, or deploy exports.json beside host.json")
            return OK
        io.print(f"{_count(len(exports), 'export')} from {clean(source)}; settings valid", "")
        rows: list[list[object]] = []
        for entry in exports:
            last = entry.get("last_run") if isinstance(entry.get("last_run"), dict) else None
            last_text = f"{last.get('status')} {_when(last.get('started_at'))}" if last else "never"
            problem = entry.get("problem") if isinstance(entry.get("problem"), dict) else None
            rows.append(
                [
                    entry.get("name"),
                    entry.get("display_name", ""),
                    entry.get("enabled", ""),
                    entry.get("valid"),
                    last_text,
                    f"{problem.get('code')}: {problem.get('message')}" if problem else entry.get("last_run_problem", ""),
                ]
            )
        io.print(*table(["name", "display name", "enabled", "valid", "last run", "problem"], rows, limit=110))
    if response.status >= 400:
        return _exit_for(response)
    return REFUSAL if invalid else OK


def _json_path(parts: Sequence[object]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(the file)"


def _schema_message(error: Any) -> str:
    """jsonschema's message, but a pattern's regular expression is not shown: it helps nobody."""
    if error.validator == "pattern":
        return f"{error.instance!r:.80} is not in the form this field takes"
    return str(error.message)


def schema_problems(document: Any) -> list[str] | None:
    """What the JSON Schema says about a parsed definitions file: one line per error, naming where
    (exports[0].list_ids[1]); None when jsonschema is not installed (requirements-dev.txt)."""
    try:
        import jsonschema  # noqa: PLC0415 - a development tool, not a runtime package
    except ImportError:
        return None
    validator = jsonschema.Draft7Validator(definitions_file_schema())
    if isinstance(document, dict) and isinstance(document.get("exports"), list) or isinstance(document, list):
        # Each definition on its own, so an error names its field (the whole file's oneOf would
        # only say "not valid under any of the given schemas").
        items = document["exports"] if isinstance(document, dict) else document
        prefix: list[object] = ["exports"] if isinstance(document, dict) else []
        one = jsonschema.Draft7Validator({"$ref": "#/definitions/definition", "definitions": validator.schema["definitions"]})
        found = [
            f"{_json_path([*prefix, index, *error.absolute_path])}: {_schema_message(error)}"
            for index, item in enumerate(items)
            for error in sorted(one.iter_errors(item), key=lambda e: list(map(str, e.absolute_path)))
        ]
        if found or validator.is_valid(document):
            return found
    return [f"{_json_path(list(error.absolute_path))}: {_schema_message(error)}" for error in validator.iter_errors(document)]


def validate_file(path: Path) -> dict[str, Any]:
    """A definitions file checked as the app reads it (the parser) and against the JSON Schema:
    {"file", "valid", "problem" (the file as a whole), "exports": [{"name", "valid", "problem"}],
    "schema": {"checked", "errors"}}. Needs no app setting."""
    result: dict[str, Any] = {"file": str(path), "valid": False, "problem": None, "exports": []}
    result["schema"] = {"checked": False, "errors": []}
    label = path.name
    try:
        text = read_definitions_file(path, label)
        definitions = parse_definitions_document(text, label)
    except SettingsError as exc:
        result["problem"] = str(exc)
        try:  # what the schema says too, when the file is JSON at all
            document = json.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError, RecursionError):
            return result
    else:
        document = json.loads(text)
        for name, raw in definitions.items():
            try:
                parse_definition(raw)
            except ExportError as exc:
                result["exports"].append({"name": name, "valid": False, "problem": exc.to_dict()})
            else:
                result["exports"].append({"name": name, "valid": True, "problem": None})
    errors = schema_problems(document)
    result["schema"] = {"checked": errors is not None, "errors": errors or []}
    result["valid"] = result["problem"] is None and all(e["valid"] for e in result["exports"]) and not errors
    return result


def cmd_validate_file(path: Path, io: Io) -> int:
    result = validate_file(path)
    if io.as_json:
        io.json(result)
        return OK if result["valid"] else REFUSAL
    exports = result["exports"]
    verdict = "valid" if result["valid"] else "NOT valid"
    io.print(f"{clean(path)}: {verdict}" + (f", {_count(len(exports), 'export')}" if result["problem"] is None else ""))
    if result["problem"]:
        io.print(f"  {clean(result['problem'])}")
    if exports:
        rows = [[e["name"], e["valid"], (e["problem"] or {}).get("message", "")] for e in exports]
        io.print("", *table(["name", "valid", "problem"], rows, indent="  ", limit=110))
    schema = result["schema"]
    if not schema["checked"]:
        io.print("", "  schema not checked: jsonschema is not installed (pip install -r requirements-dev.txt)")
    elif schema["errors"]:
        io.print("", f"  schema ({SCHEMA_PATH}): {_count(len(schema['errors']), 'error')}")
        io.print(*(f"    {_fit(clean(line), 160)}" for line in schema["errors"]))
    else:
        io.print("", f"  schema ({SCHEMA_PATH}): valid")
    return OK if result["valid"] else REFUSAL


def cmd_run(app: App, args: argparse.Namespace, io: Io) -> int:
    options: dict[str, bool] = {}
    if args.dry_run:
        options["dry_run"] = True
    elif not args.queue:
        options["wait"] = True
    if args.full_refresh:
        options["full_refresh"] = True
    if args.confirm_removals:
        options["confirm_removals"] = True
    body = json.dumps(options).encode() if options else b""
    if io.out.isatty() and not args.queue and not io.as_json:
        with showing_progress(app, args.name, io.out) as watched:
            response = routes.handle(watched, "POST", args.name, "run", body)
    else:
        response = routes.handle(app, "POST", args.name, "run", body)
    if io.as_json:
        io.json(response.body)
    elif response.status == 202:
        io.print(
            f"{clean(args.name)}: run {clean(response.body.get('run_id'))} queued for the worker",
            f"  follow it: python -m shared status {clean(args.name)}",
        )
    elif response.status == 200:
        io.print(*report_lines(response.body))
    else:
        report = response.body.get("report")
        counts = report.get("counts") if isinstance(report, dict) else None
        if isinstance(report, dict) and isinstance(counts, dict) and counts.get("read"):
            io.print(*report_lines(report))  # what it did before it failed; its last line is the error
        else:  # refused before it read anything: the error says it all
            io.error(_error_line(response.body))
    if response.status == 200:
        return _report_exit(response.body)
    return _exit_for(response)


def cmd_status(app: App, name: str, io: Io) -> int:
    response = routes.handle(app, "GET", name, "status")
    code = _answer(io, response, report_lines)
    return _report_exit(response.body) if code == OK else code


def cmd_history(app: App, args: argparse.Namespace, io: Io) -> int:
    query = {"limit": str(args.limit)} | ({"before": args.before} if args.before else {})
    response = routes.handle(app, "GET", args.name, "runs", query=query)

    def render(body: dict[str, Any]) -> list[str]:
        runs = [r for r in body.get("runs", []) if isinstance(r, dict)]
        if not runs:
            return [f"{clean(args.name)} has no runs" + (" before that one" if args.before else " yet")]
        rows: list[list[object]] = []
        for run in runs:
            counts = run.get("counts") if isinstance(run.get("counts"), dict) else {}
            assert isinstance(counts, dict)
            error = run.get("error") if isinstance(run.get("error"), dict) else None
            rows.append(
                [
                    run.get("run_id"),
                    run.get("trigger"),
                    run.get("status") or run.get("problem"),
                    _seconds(run),
                    counts.get("read"),
                    counts.get("sent"),
                    counts.get("rejected"),
                    error.get("code") if error else "",
                ]
            )
        lines = table(["run", "trigger", "status", "seconds", "read", "sent", "rejected", "error"], rows)
        if body.get("next_before"):
            lines += ["", f"older runs: python -m shared history {args.name} --before {clean(body['next_before'])}"]
        return lines

    return _answer(io, response, render)


def render_sources(body: dict[str, Any]) -> list[str]:
    rows: list[list[object]] = []
    for source in body.get("sources", []):
        if not isinstance(source, dict):
            continue
        entities = [e for e in source.get("entities") or [] if isinstance(e, dict)]
        first = [source.get("folder"), _when(source.get("snapshot_time"))]
        if not entities:
            rows.append([*first, "", None, None, None, source.get("problem") or "no entities"])
        for i, entity in enumerate(entities):
            columns = entity.get("columns") if isinstance(entity.get("columns"), list) else []
            assert isinstance(columns, list)
            rows.append(
                [
                    *(first if i == 0 else ["", ""]),
                    entity.get("name"),
                    len(columns),
                    entity.get("partitions"),
                    entity.get("bytes"),
                    (source.get("problem") or "") if i == 0 else "",
                ]
            )
    if not rows:
        return ["no Customer Insights exports found in SOURCE_CONTAINER"]
    lines = table(["folder", "snapshot", "segment", "columns", "partitions", "bytes", "problem"], rows)
    if body.get("continuation"):
        lines += ["", f"more: python -m shared sources --continuation {clean(body['continuation'])}"]
    return lines


def render_lists(body: dict[str, Any]) -> list[str]:
    lists = [item for item in body.get("lists", []) if isinstance(item, dict)]
    if not lists:
        return ["the SendGrid account has no contact lists"]
    return table(["id", "name", "contacts"], [[i.get("id"), i.get("name"), i.get("contact_count")] for i in lists])


def render_fields(body: dict[str, Any]) -> list[str]:
    reserved = [f for f in body.get("reserved", []) if isinstance(f, dict)]
    custom = [f for f in body.get("custom", []) if isinstance(f, dict)]
    lines = [
        "Reserved fields (mapping)",
        *table(["name", "type", "max length"], [[f.get("name"), f.get("type"), f.get("max_length")] for f in reserved], "  "),
    ]
    lines += ["", "Custom fields (custom_fields)"]
    if custom:
        lines += table(["id", "name", "type"], [[f.get("id"), f.get("name"), f.get("type")] for f in custom], "  ")
    else:
        lines.append("  none")
    return lines


def _flat(contact: dict[str, Any]) -> dict[str, Any]:
    """A sample contact with its nested objects (custom_fields) as columns of their own."""
    flat: dict[str, Any] = {}
    for key, value in contact.items():
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def render_preview(body: dict[str, Any]) -> list[str]:
    """A preview: verdict, suggestions, problems, a masked sample, rejects and the plan."""
    definition = body.get("definition") if isinstance(body.get("definition"), dict) else {}
    assert isinstance(definition, dict)
    where = f"{clean(definition.get('segment', '?'))} in {clean(definition.get('source_folder', '?'))}"
    verdict = "the definition is valid" if body.get("valid") else "the definition is not valid yet"
    lines = [f"Preview of {where}: {_count(int(body.get('rows_read') or 0), 'row')} read; {verdict}"]
    suggestions = [s for s in body.get("suggestions", []) if isinstance(s, dict)]
    if suggestions:
        lines += [
            "",
            "Suggestions",
            *table(["field", "value", "why"], [[s.get("field"), s.get("value"), s.get("why")] for s in suggestions], "  ", 80),
        ]
    problems = [p for p in body.get("problems", []) if isinstance(p, dict)]
    if problems:
        headers = ["field", "problem", "did you mean"]
        rows = [[p.get("field"), p.get("message"), p.get("did_you_mean") or ""] for p in problems]
        if not any(p.get("did_you_mean") for p in problems):
            headers, rows = headers[:2], [row[:2] for row in rows]
        lines += ["", "Problems", *table(headers, rows, "  ", limit=110)]
    sample = [_flat(c) for c in body.get("sample", []) if isinstance(c, dict)]
    if sample:
        keys = list(dict.fromkeys(k for contact in sample for k in contact))
        lines += ["", "Sample contacts (masked)", *table(keys, [[c.get(k) for k in keys] for c in sample], "  ")]
    rejects = _reasons(body.get("rejects"))
    if rejects:
        lines += ["", f"Rows that would be rejected: {rejects}"]
    plan = body.get("plan")
    if isinstance(plan, dict):
        lines += [f"A run would send {plan.get('upsert', 0):,} contacts and unlink {plan.get('remove', 0):,}."]
    return lines


def _draft(args: argparse.Namespace) -> dict[str, Any]:
    """The definition to preview: one of FILE's (by --export when it holds several), or a draft
    of --folder and --segment (and --list) that the preview completes with suggestions."""
    if args.file is None:
        if not (args.folder and args.segment):
            raise ExportError("bad_request", "preview takes a FILE, or --folder and --segment")
        draft: dict[str, Any] = {"source_folder": args.folder, "segment": args.segment}
        if args.list:
            draft["lists"] = list(args.list)  # names or ids: the preview resolves them
        return draft
    path = Path(args.file)
    try:
        document = json.loads(read_definitions_file(path, path.name))
    except ValueError as exc:
        raise ExportError("bad_request", f"{path.name} is not valid JSON ({exc})") from None
    except SettingsError as exc:
        raise ExportError("bad_request", str(exc)) from None
    if isinstance(document, dict) and "exports" not in document:
        return document  # one definition
    try:
        definitions = parse_definitions_document(json.dumps(document), path.name)
    except SettingsError as exc:
        raise ExportError("bad_request", str(exc)) from None
    if args.export:
        if args.export not in definitions:
            raise ExportError("bad_request", f"{path.name} has no export named {args.export[:63]!r}")
        return definitions[args.export]
    if len(definitions) != 1:
        raise ExportError("bad_request", f"{path.name} holds {len(definitions)} exports: choose one with --export NAME")
    return next(iter(definitions.values()))


def cmd_preview(app: App, args: argparse.Namespace, io: Io) -> int:
    body: dict[str, Any] = {**_draft(args), "show_values": args.show_values}
    if args.sample_size is not None:
        body["sample_size"] = args.sample_size
    if args.rows is not None:
        body["rows"] = args.rows
    response = setup_call(app, "POST", "preview", body=json.dumps(body).encode())
    code = _answer(io, response, render_preview)
    return code if code != OK or response.body.get("valid") else REFUSAL


def cmd_schema(args: argparse.Namespace, io: Io) -> int:
    path = APP_ROOT / SCHEMA_PATH
    text = schema_text()
    if args.write:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        io.print(f"wrote {SCHEMA_PATH}")
        return OK
    if args.check:
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            io.error(f"{SCHEMA_PATH} differs from shared/definitions.py: run python -m shared schema --write")
            return FAILURE
        io.print(f"{SCHEMA_PATH} is up to date")
        return OK
    io.out.write(text)
    return OK


# -- the parser ----------------------------------------------------------------------------------

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (one sentence for the list of commands, the full description)
    "validate": (
        "Check the app settings and every export definition, or a definitions file.",
        "Without FILE: load the app settings from the environment, as the app does, and list every "
        "export definition with whether it is valid, its problem, and its last run. The exit code is "
        "2 when a definition is invalid or a setting is bad.\n\n"
        "With FILE: check a definitions file (exports.json) the way the app reads it, and against the "
        f"JSON Schema in {SCHEMA_PATH}, without any app setting. Use it before you deploy.",
    ),
    "run": (
        "Run one export now, in this process, and print its summary.",
        "Run the export NAME here and now (it is the same run the queue worker does), waiting at most "
        "two minutes for SendGrid's import jobs. In a terminal the run shows its progress: rows read, "
        "requests sent and import jobs pending. --dry-run reads, validates and compares but sends "
        "nothing and stores nothing; --queue puts the run on the run queue for the worker instead. "
        "The exit code is 1 when the run failed or was partial, 2 when it was refused.",
    ),
    "status": (
        "Print the latest run of an export.",
        "Print the summary of the export's latest run report. Import jobs of a run that is still "
        "confirming are asked about again. The exit code is 1 when that run failed or was partial.",
    ),
    "history": (
        "List the runs of an export, newest first.",
        "List the export's runs, newest first, one line each: trigger, status, seconds, rows read, "
        "contacts sent, rows rejected and the error code. --before RUN_ID pages back.",
    ),
    "sources": (
        "List the Customer Insights exports in the source container.",
        "List the Customer Insights exports (CDM folders) in SOURCE_CONTAINER: each folder, its "
        "snapshot time, and its segments with their columns, partitions and size. Use the folder as "
        "a definition's source_folder and the segment as its segment.",
    ),
    "lists": (
        "List the SendGrid contact lists.",
        "List the contact lists of the SendGrid account (the default one, or --export NAME's): their "
        "ids, names and contact counts. Put the ids in a definition's list_ids.",
    ),
    "fields": (
        "List the SendGrid fields a definition can map.",
        "List the SendGrid reserved fields (for mapping) with their types and maximum lengths, and "
        "the account's custom fields (for custom_fields), of the default account or --export NAME's.",
    ),
    "preview": (
        "Preview a definition on its segment, with suggestions, before it runs.",
        "Read the start of the segment a definition names and show what a run would do: suggestions "
        "for the fields it leaves out, its problems (with a likely fix), a sample of the contacts "
        "(masked unless --show-values), the reasons rows would be rejected, and the plan. Give a "
        "definitions file (and --export NAME when it holds several), or --folder and --segment for "
        "a segment you have not configured yet. Nothing is sent. The exit code is 2 while the "
        "definition is not valid.",
    ),
    "schema": (
        f"Print the JSON Schema of a definitions file, or write it to {SCHEMA_PATH}.",
        "Print the JSON Schema of a definitions file, generated from shared/definitions.py (each "
        f"field's type, default and description). --write updates {SCHEMA_PATH}; --check fails (exit "
        "code 1) when that file differs from what shared/definitions.py says.",
    ),
}

EPILOG = """exit codes:
  0  success
  1  failure: a run failed or was partial, or a service failed
  2  refusal: bad input, an invalid definition, bad settings, or a 4xx answer

Run `python -m shared COMMAND --help` for what a command does."""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m shared",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the API's answer as JSON instead of tables")
    common.add_argument("--verbose", action="store_true", help="also print the app's log (INFO) on stderr")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")

    def add(name: str) -> argparse.ArgumentParser:
        short, full = COMMANDS[name]
        return commands.add_parser(
            name,
            help=short,
            description=full,
            epilog=EPILOG.split("\n\n", maxsplit=1)[0],
            parents=[common],
            formatter_class=_Formatter,
        )

    add("validate").add_argument("file", nargs="?", metavar="FILE", help="a definitions file to check (no app settings needed)")
    run = add("run")
    run.add_argument("name", metavar="NAME", help="the export's name")
    how = run.add_mutually_exclusive_group()
    how.add_argument("--dry-run", action="store_true", help="read, validate and compare; send and store nothing")
    how.add_argument("--queue", action="store_true", help="queue the run for the worker instead of running it here")
    run.add_argument("--full-refresh", action="store_true", help="send every valid contact, not only new and changed ones")
    run.add_argument("--confirm-removals", action="store_true", help="pass the mirror mode guard against unlinking many")
    add("status").add_argument("name", metavar="NAME", help="the export's name")
    history = add("history")
    history.add_argument("name", metavar="NAME", help="the export's name")
    history.add_argument("--limit", type=int, default=routes.DEFAULT_HISTORY, help="runs to list, 1-200 (default 20)")
    history.add_argument("--before", metavar="RUN_ID", help="list the runs before this one")
    sources = add("sources")
    sources.add_argument("--limit", type=int, help="folders to list")
    sources.add_argument("--continuation", metavar="TOKEN", help="the next page, from the last answer")
    for name in ("lists", "fields"):
        add(name).add_argument("--export", metavar="NAME", help="the SendGrid account of this export (default: the app's)")
    preview = add("preview")
    preview.add_argument("file", nargs="?", metavar="FILE", help="a definitions file, or a file of one definition")
    preview.add_argument("--export", metavar="NAME", help="the definition to preview, when FILE holds several")
    preview.add_argument("--folder", help="a source folder (a draft: with --segment, instead of FILE)")
    preview.add_argument("--segment", help="a segment in --folder")
    preview.add_argument("--list", action="append", metavar="NAME", help="a SendGrid list for the draft, by name or id")
    preview.add_argument("--show-values", action="store_true", help="show the sample's values unmasked")
    preview.add_argument("--sample-size", type=int, metavar="N", help="contacts in the sample")
    preview.add_argument("--rows", type=int, metavar="N", help="rows of the segment to read")
    schema = add("schema")
    what = schema.add_mutually_exclusive_group()
    what.add_argument("--write", action="store_true", help=f"write {SCHEMA_PATH}")
    what.add_argument("--check", action="store_true", help=f"fail when {SCHEMA_PATH} is not what would be written")
    return top


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions wrapped to the terminal, paragraphs kept."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap  # noqa: PLC0415

        return "\n\n".join(
            p if "\n" in p else textwrap.fill(p, width, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False)
            for p in text.split("\n\n")
        )


def _configure_logging(verbose: bool, err: TextIO) -> None:
    """The app's log on stderr: warnings only, unless --verbose (a run's INFO lines would break
    its progress line and the tables)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(err)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        # The handler's level, not only the root's: records of a logger set to INFO for the
        # progress line (showing_progress) still reach this handler, and must stop here.
        handler.setLevel(logging.INFO if verbose else logging.WARNING)
        root.addHandler(handler)
        root.setLevel(logging.INFO if verbose else logging.WARNING)


def main(argv: list[str] | None = None, *, app: App | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one command; its exit code. `app` (tests) stands for the app the settings would make."""
    args = parser().parse_args(argv)
    io = Io(out or sys.stdout, err or sys.stderr, args.json)
    _configure_logging(args.verbose, io.err)
    try:
        if args.command == "schema":
            return cmd_schema(args, io)
        if args.command == "validate" and args.file:
            return cmd_validate_file(Path(args.file), io)
        try:
            the_app = app or get_app()
        except SettingsError as exc:
            io.error(f"settings: {clean(exc)}")
            return REFUSAL
        if args.command == "validate":
            return cmd_validate_app(the_app, io)
        if args.command == "run":
            return cmd_run(the_app, args, io)
        if args.command == "status":
            return cmd_status(the_app, args.name, io)
        if args.command == "history":
            return cmd_history(the_app, args, io)
        if args.command == "sources":
            query = {k: str(v) for k, v in (("limit", args.limit), ("continuation", args.continuation)) if v is not None}
            return _answer(io, setup_call(the_app, "GET", "sources", query), render_sources)
        if args.command in ("lists", "fields"):
            query = {"export": args.export} if args.export else {}
            render = render_lists if args.command == "lists" else render_fields
            return _answer(io, setup_call(the_app, "GET", f"sendgrid/{args.command}", query), render)
        return cmd_preview(the_app, args, io)
    except ExportError as exc:  # bad input found here, before any request
        io.error(f"error {exc.code}: {clean(exc.message)}")
        return REFUSAL if exc.http_status < 500 else FAILURE
