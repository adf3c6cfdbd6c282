"""The operator CLI (`python -m shared`) against Azurite and the SendGrid sandbox: each command's
table or summary, its --json, its exit code (0 success, 1 failure, 2 refusal), --help in full
sentences, a run's progress on a terminal (counts only), and values from outside reaching the
terminal escaped."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import ContainerClient
from helpers import FAST_RETRIES, FOLDER, LIST_ID, SEGMENT, app_env, definition, person, sandbox_config, write

from shared.api import cli, routes
from shared.api.compose import build_services, reset_app
from shared.services import App
from shared.settings import load_settings

HOSTILE = "\x1b]0;owned\x07\x1b[2J\x1b[31mRED\u202eevil\r\n"


class Terminal(io.StringIO):
    """Captured output that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def call(app: App | None, *argv: str, out: io.StringIO | None = None) -> tuple[int, str, str]:
    stdout, stderr = out or io.StringIO(), io.StringIO()
    code = cli.main(list(argv), app=app, out=stdout, err=stderr)
    return code, stdout.getvalue(), stderr.getvalue()


def mapping() -> dict[str, str]:
    return {"email": "EMail", "first_name": "FirstName", "last_name": "LastName"}


@pytest.fixture
def app(app_factory: Callable[..., App], source_container: ContainerClient) -> App:
    write(source_container, [[person(1), person(2), person(3, email="not-an-email")]])
    return app_factory([definition(mapping=mapping(), display_name="VIP " + HOSTILE)])


# -- --help ------------------------------------------------------------------------------------


def words(text: str) -> str:
    return " ".join(text.split())


def help_of(*argv: str) -> str:
    out = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        cli.main([*argv, "--help"], out=out)
    assert exited.value.code == 0
    return words(out.getvalue())


def test_help_is_in_full_sentences(capsys: pytest.CaptureFixture[str]) -> None:
    help_of()
    top = words(capsys.readouterr().out)
    doc = cli.__doc__ or ""
    for paragraph in doc.split("\n\n"):
        assert words(paragraph) in top  # the whole description, not its first line
    assert "2 refusal: bad input, an invalid definition, bad settings, or a 4xx answer" in top
    for name, (short, full) in cli.COMMANDS.items():
        assert short.endswith(".") and words(short) in top, name
        help_of(name)
        text = words(capsys.readouterr().out)
        assert full.rstrip().endswith("."), name
        for paragraph in full.split("\n\n"):
            assert words(paragraph) in text, name
        assert "--json" in text and "exit codes" in text


# -- validate ----------------------------------------------------------------------------------


def test_validate_lists_the_exports_and_where_they_came_from(app_factory: Callable[..., App]) -> None:
    app = app_factory([definition(display_name="VIP " + HOSTILE), definition(name="broken", privacy_consent=False)])
    code, out, _ = call(app, "validate")
    assert code == 2  # an invalid definition: a refusal
    assert "2 exports from EXPORT_DEFINITIONS; settings valid" in out
    assert re.search(r"broken\s+.*no\s+never\s+consent_required: export 'broken'", out)
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out and "\\x1b]0;owned" in out
    code, out, _ = call(app, "validate", "--json")
    answer = json.loads(out)
    assert code == 2 and answer["definitions_from"] == "EXPORT_DEFINITIONS" and len(answer["exports"]) == 2
    valid_only = app_factory([definition()])
    assert call(valid_only, "validate")[0] == 0


def file_app(azurite: Any, source: ContainerClient, state: str, sandbox_url: str, root: Path) -> App:
    env = app_env(azurite, source, state, sandbox_url, [])
    del env["EXPORT_DEFINITIONS"]
    settings = load_settings(env, app_root=root)
    return App(settings, build_services(settings, None, FAST_RETRIES))


def test_the_listing_says_which_source_it_read(
    azurite: Any, source_container: ContainerClient, state_container_name: str, sandbox: Any, tmp_path: Path
) -> None:
    (tmp_path / "exports.json").write_text(json.dumps({"$schema": "./schema/exports.schema.json", "exports": [definition()]}))
    app = file_app(azurite, source_container, state_container_name, sandbox.url, tmp_path)
    listing = routes.handle(app, "GET", None, None)
    assert listing.status == 200 and listing.body["definitions_from"] == "exports.json" and "note" not in listing.body
    code, out, _ = call(app, "validate")
    assert code == 0 and "1 export from exports.json" in out
    # Neither the setting nor the file: the app starts, has no exports, and says so.
    (tmp_path / "exports.json").unlink()
    empty = file_app(azurite, source_container, state_container_name, sandbox.url, tmp_path)
    listing = routes.handle(empty, "GET", None, None)
    assert listing.body["exports"] == [] and listing.body["definitions_from"] is None and "exports.json" in listing.body["note"]
    code, out, _ = call(empty, "validate")
    assert code == 0 and out.startswith("no export definitions")


def test_bad_settings_are_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SOURCE_CONTAINER", "SOURCE_STORAGE_CONNECTION_STRING", "SOURCE_STORAGE_ACCOUNT_URL"):
        monkeypatch.delenv(name, raising=False)
    reset_app()
    try:
        code, out, err = call(None, "validate")
    finally:
        reset_app()
    assert code == 2 and out == "" and err.startswith("settings: ") and "SOURCE_STORAGE" in err


# -- run, status, history ------------------------------------------------------------------------


def test_run_prints_its_summary(app: App) -> None:
    code, out, err = call(app, "run", "vip", "--dry-run")
    assert code == 0 and err == ""
    assert re.search(r"vip: run \S+ succeeded \(dry run\), http", out)
    assert re.search(r"rows read\s+3\b", out) and re.search(r"to send\s+2\s+new and changed", out)
    assert re.search(r"rejected\s+1\s+invalid email 1", out)
    code, out, _ = call(app, "run", "vip")
    assert code == 0
    assert re.search(r"sent\s+2\s+in 1 request, 0 retries", out) and re.search(r"import jobs\s+1\s+1 completed", out)
    assert "rejects CSV: rejects/vip/" in out
    assert "person1@example.com" not in out and "not-an-email" not in out  # counts and reasons only
    code, out, _ = call(app, "run", "vip", "--json")
    report = json.loads(out)
    assert code == 0 and report["status"] == "succeeded" and report["counts"]["unchanged"] == 2  # delta: nothing new
    code, out, _ = call(app, "run", "vip", "--queue")
    assert code == 0 and "queued for the worker" in out and "python -m shared status vip" in out


def test_run_exit_codes_say_refusal_and_failure(
    app_factory: Callable[..., App], source_container: ContainerClient, sandbox: Any
) -> None:
    write(source_container, [[person(1), person(2)]])
    app = app_factory([definition(), definition(name="no-consent", privacy_consent=False)])
    code, out, err = call(app, "run", "nobody")
    assert code == 2 and out == "" and "error not_found: no export named 'nobody'" in err
    code, _, err = call(app, "run", "no-consent")
    assert code == 2 and "consent_required" in err
    code, _, err = call(app, "run", "Bad\x1bName")
    assert code == 2 and "\x1b" not in err
    # SendGrid failing after every retry: 502, a failure; the summary still says what happened.
    sandbox_config(
        sandbox, faults=[{"method": "PUT", "path": "/v3/marketing/contacts", "status": 503, "times": 6}]
    )  # 6 attempts in all
    code, out, err = call(app, "run", "vip")
    assert code == 1 and "error sendgrid_unavailable" in out and err == "" and re.search(r"vip: run \S+ failed", out)
    assert call(app, "status", "vip")[0] == 1  # the latest run failed
    # An import job SendGrid fails: the run is partial, a failure.
    sandbox_config(sandbox, fail_jobs=1)
    code, out, _ = call(app, "run", "vip", "--full-refresh")
    assert code == 1 and re.search(r"vip: run \S+ partial", out) and re.search(r"failed in SendGrid\s+2", out)


def test_a_run_in_a_terminal_shows_its_progress(app: App) -> None:
    terminal = Terminal()
    code, out, _ = call(app, "run", "vip", out=terminal)
    assert code == 0
    frames = [frame for frame in out.split("\r\x1b[K") if frame]
    progress, summary = frames[:-1], frames[-1]
    assert progress and all(frame.startswith(tuple("|/-\\")) and " vip: " in frame for frame in progress)
    assert "1 request sent (2 contacts)" in progress[-1]  # the last counts, drawn before the summary
    assert summary.startswith("vip: run ") and "person1@example.com" not in out
    # Not a terminal, or --json: no progress line.
    assert "\r" not in call(app, "run", "vip", "--dry-run")[1]


def test_progress_counts_requests_and_import_jobs(app: App) -> None:
    """Progress reads the run's log and SendGrid's answers: accepted jobs, then their end."""
    progress = cli.Progress(io.StringIO(), "vip")
    logger = logging.getLogger("shared")
    logger.addHandler(progress)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        answer = routes.handle(cli.observed(app, progress), "POST", "vip", "run", b'{"wait": true}')
    finally:
        logger.removeHandler(progress)
        logger.setLevel(level)
    assert answer.status == 200 and (progress.requests, progress.sent) == (1, 2)
    assert len(progress.jobs) == 1 and progress.jobs == progress.ended
    progress.jobs.add("another")
    assert "1 import job pending" in progress.line()


def test_status_and_history(app: App) -> None:
    assert call(app, "status", "vip")[0] == 2  # never ran: 404
    first = json.loads(call(app, "run", "vip", "--json")[1])["run_id"]
    second = json.loads(call(app, "run", "vip", "--json", "--full-refresh")[1])["run_id"]
    code, out, _ = call(app, "status", "vip")
    assert code == 0 and f"vip: run {second} succeeded" in out
    # Newest first; two runs of the same second sort by their ids' random part.
    newest_first = [r["run_id"] for r in json.loads(call(app, "history", "vip", "--json")[1])["runs"]]
    assert sorted(newest_first) == sorted([first, second])
    code, out, _ = call(app, "history", "vip")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["RUN", "TRIGGER", "STATUS", "SECONDS", "READ", "SENT", "REJECTED", "ERROR"]
    assert [line.split()[0] for line in lines[1:]] == newest_first
    assert all(re.search(r"http\s+succeeded\s+[\d.]+\s+3\s+2\s+1$", line) for line in lines[1:])
    code, out, _ = call(app, "history", "vip", "--limit", "1")
    assert code == 0 and f"python -m shared history vip --before {newest_first[0]}" in out
    code, out, _ = call(app, "history", "vip", "--before", newest_first[0], "--json")
    assert code == 0 and [r["run_id"] for r in json.loads(out)["runs"]] == newest_first[1:]
    code, _, err = call(app, "history", "vip", "--limit", "0")
    assert code == 2 and "'limit' must be a whole number" in err


# -- sources, lists, fields, preview (the set-up endpoints) --------------------------------------


def test_sources_lists_the_exports_in_the_container(app: App) -> None:
    code, out, _ = call(app, "sources")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["FOLDER", "SNAPSHOT", "SEGMENT"]
    assert re.search(rf"{re.escape(FOLDER)}\s+\S+\s\S+\s+{SEGMENT}\s+10\s+1\s+\d", out)  # 10 columns, 1 partition
    code, out, _ = call(app, "sources", "--json")
    answer = json.loads(out)
    assert code == 0 and answer["sources"][0]["folder"] == FOLDER and answer["continuation"] is None
    code, _, err = call(app, "sources", "--continuation", "not a token!")
    assert code == 2 and "continuation" in err


def test_lists_and_fields_of_the_sendgrid_account(app: App, sandbox: Any) -> None:
    sandbox.state.add_list("Promo " + HOSTILE)
    code, out, _ = call(app, "lists")
    assert code == 0 and out.splitlines()[0].split() == ["ID", "NAME", "CONTACTS"]
    assert re.search(rf"{LIST_ID}\s+newsletter\s+0", out)
    assert "\x1b" not in out and "\u202e" not in out and "Promo \\x1b]0;owned\\x07" in out
    assert json.loads(call(app, "lists", "--json")[1])["lists"]
    assert call(app, "lists", "--export", "vip")[0] == 0
    code, _, err = call(app, "lists", "--export", "nobody")
    assert code == 2 and "no export named 'nobody'" in err
    code, out, _ = call(app, "fields")
    assert code == 0 and "Reserved fields (mapping)" in out and "Custom fields (custom_fields)" in out
    assert re.search(r"first_name\s+Text\s+50", out) and re.search(r"e\d+_T\s+loyalty_tier\s+Text", out)
    assert {f["name"] for f in json.loads(call(app, "fields", "--json")[1])["custom"]} >= {"loyalty_tier", "lifetime_value"}


def test_preview_of_a_segment_not_configured_yet(app: App) -> None:
    code, out, _ = call(app, "preview", "--folder", FOLDER, "--segment", SEGMENT, "--list", "newsletter")
    assert code == 2  # not valid yet (no consent): a draft is a refusal until it is
    assert out.startswith(f"Preview of {SEGMENT} in {FOLDER}: 3 rows read; the definition is not valid yet")
    assert re.search(r"mapping\.email\s+EMail\s+column 'EMail'", out) and "privacy_consent" in out
    assert "Sample contacts (masked)" in out and "person1@example.com" not in out and "***" in out
    assert "Rows that would be rejected: invalid email 1" in out
    code, _, err = call(app, "preview", "--folder", FOLDER)
    assert code == 2 and "--folder and --segment" in err


def test_preview_of_a_definitions_file(app: App, tmp_path: Path) -> None:
    path = tmp_path / "exports.json"
    path.write_text(json.dumps({"$schema": "./schema/exports.schema.json", "exports": [definition(mapping=mapping())]}))
    code, out, _ = call(app, "preview", str(path), "--show-values")
    assert code == 0 and "the definition is valid" in out and "A run would send 2 contacts and unlink 0." in out
    assert "person1@example.com" in out  # --show-values
    code, out, _ = call(app, "preview", str(path), "--json", "--sample-size", "1")
    answer = json.loads(out)
    assert code == 0 and answer["valid"] is True and len(answer["sample"]) == 1 and answer["plan"] == {"upsert": 2, "remove": 0}
    path.write_text(json.dumps([definition(), definition(name="promo")]))
    code, _, err = call(app, "preview", str(path))
    assert code == 2 and "holds 2 exports: choose one with --export NAME" in err
    assert call(app, "preview", str(path), "--export", "promo")[0] == 0
    code, _, err = call(app, "preview", str(path), "--export", "nobody")
    assert code == 2 and "no export named 'nobody'" in err
