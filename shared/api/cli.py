"""The operator CLI: the app's API from a shell, on the same code as the functions and with the
same app settings, read from the environment (local.settings.sample.json names them).

Each command prints readable tables and a short summary; with --json it prints the API's answer
as JSON instead. Only `validate FILE` and `schema` work without the app settings. A run in a
terminal shows its progress (rows read, requests sent, import jobs pending: counts only) and
ends with its summary.

Exit codes: 0 success; 1 failure (a run that failed or was partial, a service that failed);
2 refusal (bad input, an invalid definition, bad settings, an answer in the 4xx range).
"""
# This module: the commands (each an API call, its output and exit code), the parser with its
# help texts, and main. The rest is in terminal.py (safe text, tables), views.py (the answers as
# tables and summaries), progress.py (a run's progress line) and definitions_file.py.

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from shared.api import routes
from shared.api.compose import get_app
from shared.api.definitions_file import validate_file
from shared.api.progress import Progress, observed, showing_progress
from shared.api.terminal import clean, count, fit, table
from shared.api.views import (
    error_line,
    history_lines,
    render_fields,
    render_lists,
    render_preview,
    render_sources,
    report_lines,
    when,
)
from shared.definitions import SCHEMA_PATH, schema_text
from shared.errors import ExportError
from shared.services import App
from shared.settings import APP_ROOT, SettingsError, parse_definitions_document, read_definitions_file

# What tools/demo.py and the tests use from here, some of it defined in the modules above.
__all__ = [
    "COMMANDS",
    "Progress",
    "clean",
    "main",
    "observed",
    "parser",
    "render_preview",
    "report_lines",
    "setup_call",
    "validate_file",
]

OK, FAILURE, REFUSAL = 0, 1, 2


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
        io.error(error_line(response.body))
    return _exit_for(response)


def cmd_validate_app(app: App, io: Io) -> int:
    response = routes.handle(app, "GET", None, None)
    exports = [e for e in response.body.get("exports", []) if isinstance(e, dict)]
    invalid = [e for e in exports if not e.get("valid")]
    if io.as_json:
        io.json(response.body)
    elif response.status >= 400:
        io.error(error_line(response.body))
    else:
        source = response.body.get("definitions_from")
        if source is None:
            io.print("no export definitions: set EXPORT_DEFINITIONS, or deploy exports.json beside host.json")
            return OK
        io.print(f"{count(len(exports), 'export')} from {clean(source)}; settings valid", "")
        rows: list[list[object]] = []
        for entry in exports:
            last = entry.get("last_run") if isinstance(entry.get("last_run"), dict) else None
            last_text = f"{last.get('status')} {when(last.get('started_at'))}" if last else "never"
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


def cmd_validate_file(path: Path, io: Io) -> int:
    result = validate_file(path)
    if io.as_json:
        io.json(result)
        return OK if result["valid"] else REFUSAL
    exports = result["exports"]
    verdict = "valid" if result["valid"] else "NOT valid"
    io.print(f"{clean(path)}: {verdict}" + (f", {count(len(exports), 'export')}" if result["problem"] is None else ""))
    if result["problem"]:
        io.print(f"  {clean(result['problem'])}")
    if exports:
        rows = [[e["name"], e["valid"], (e["problem"] or {}).get("message", "")] for e in exports]
        io.print("", *table(["name", "valid", "problem"], rows, indent="  ", limit=110))
    schema = result["schema"]
    if not schema["checked"]:
        io.print("", "  schema not checked: jsonschema is not installed (pip install -r requirements-dev.txt)")
    elif schema["errors"]:
        io.print("", f"  schema ({SCHEMA_PATH}): {count(len(schema['errors']), 'error')}")
        io.print(*(f"    {fit(clean(line), 160)}" for line in schema["errors"]))
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
            io.error(error_line(response.body))
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
    return _answer(io, response, lambda body: history_lines(body, args.name, args.before))


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
