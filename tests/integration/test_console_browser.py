"""The console in a real browser: Debian's Chromium, headless, driven by Playwright for Python
(`executable_path`, never a downloaded browser), against the dev server (tools/devserver.py, a
process of its own) on Azurite and the SendGrid sandbox.

One stack for the module: a small sample export (a segment for the exports, a second one for the
wizard), three definitions (a plain one, one whose display name is markup, an invalid one), a
sandbox with a list whose name is markup. Each test has a fresh browser context and saves a
screenshot into a tmp folder. A missing Chromium fails the tests (it never skips them)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.storage.blob import BlobServiceClient
from helpers import API_KEY, LIST_ID, OTHER_LIST_ID, ROOT, app_env, sandbox_config
from playwright.sync_api import Browser, Page, Playwright, Request, Route, expect, sync_playwright

from shared.api.cli import validate_file
from shared.definitions import parse_definition
from tools import sendgrid_sandbox
from tools.localstack import free_port, wait_for_port
from tools.sample_export import PROFILE_COLUMNS, SIGNUP_COLUMNS, csv_bytes, profile_rows, signup_rows, write_segments

CHROMIUM = Path("/usr/bin/chromium")  # Debian's `chromium` package
FOLDER = "CustomerInsights_console/SendGridExport"
SEGMENT = "HighValueCustomers"
SIGNUPS = "NewsletterSignups"
MARKUP_NAME = "<img src=x onerror=alert(document.domain)>"
MARKUP_REASON = "<img src=x onerror=alert(1)>"
MARKUP_LIST = "<i>Partners</i>"
FINAL = ("succeeded", "partial", "failed")
LIFECYCLE = ("queued", "running", "confirming", *FINAL)
RUN_TIMEOUT_MS = 60_000


@dataclass
class Stack:
    base: str  # http://127.0.0.1:<port>
    key: str
    sandbox: sendgrid_sandbox.SandboxServer
    shots: Path

    @property
    def console(self) -> str:
        return f"{self.base}/api/console"

    def api(self, method: str, path: str, body: Any = None) -> requests.Response:
        return requests.request(method, f"{self.base}/api/{path}", json=body, headers={"x-functions-key": self.key}, timeout=60)


def definitions() -> list[dict[str, Any]]:
    base = {
        "source_folder": FOLDER,
        "segment": SEGMENT,
        "privacy_consent": True,
        "mapping": {"email": "EMail", "first_name": "FirstName", "last_name": "LastName"},
        "custom_fields": {"loyalty_tier": "Tier"},
    }
    return [
        {**base, "name": "vip", "display_name": "VIP newsletter", "list_ids": [LIST_ID]},
        {**base, "name": "markup", "display_name": MARKUP_NAME, "list_ids": [OTHER_LIST_ID]},
        {**base, "name": "broken", "list_ids": [LIST_ID], "privacy_consent": False},
    ]


@pytest.fixture(scope="module")
def stack(azurite: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    source = service.create_container(f"console-{uuid.uuid4().hex[:12]}")
    profiles = csv_bytes(list(profile_rows(60, bad_every=9)))
    signups = csv_bytes(list(signup_rows(40, bad_every=10)))
    write_segments(source, FOLDER, [(SEGMENT, [profiles], PROFILE_COLUMNS), (SIGNUPS, [signups], SIGNUP_COLUMNS)])
    state = sendgrid_sandbox.SandboxState(api_keys={API_KEY})
    state.add_list("newsletter", LIST_ID)
    state.add_list(MARKUP_LIST, OTHER_LIST_ID)
    state.add_field("loyalty_tier", "Text")
    state.add_field("lifetime_value", "Number")
    sandbox = sendgrid_sandbox.start(state)
    logs = tmp_path_factory.mktemp("devserver")
    port, key = free_port(), f"console-{uuid.uuid4().hex}"
    env = {
        name: value
        for name, value in os.environ.items()
        if name
        not in ("KEY_VAULT_URL", "EXPORT_DEFINITIONS_FILE", "AzureWebJobsStorage", "APPLICATIONINSIGHTS_CONNECTION_STRING")
    }
    env.update(app_env(azurite, source, f"state-{uuid.uuid4().hex[:12]}", sandbox.url, definitions()))
    env.update({"CONFIRM_INTERVAL_SECONDS": "1", "SNAPSHOT_SETTLE_SECONDS": "0", "DEVSERVER_FUNCTION_KEY": key})
    with (logs / "stdout.txt").open("wb") as out, (logs / "stderr.txt").open("wb") as err:
        server = subprocess.Popen(
            [sys.executable, "-m", "tools.devserver", "--port", str(port), "--quiet"], cwd=ROOT, env=env, stdout=out, stderr=err
        )
    try:
        wait_for_port(port)
        yield Stack(f"http://127.0.0.1:{port}", key, sandbox, tmp_path_factory.mktemp("console-screenshots"))
    finally:
        server.terminate()
        server.wait(timeout=30)
        sandbox.shutdown()
        sandbox.server_close()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: the console's browser tests drive Debian's chromium package. "
            "Install it with `apt-get install chromium` (make setup does, as root); `playwright install` is not used.",
            pytrace=False,
        )
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
    yield launched
    launched.close()


@dataclass
class Watched:
    """A page, and what it did that a test may check: dialogs, errors, requests."""

    page: Page
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)  # run statuses the page read, in order


@pytest.fixture
def watched(browser: Browser, stack: Stack, request: pytest.FixtureRequest) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.base)
    page = context.new_page()
    page.set_default_timeout(20_000)
    seen = Watched(page)

    def dialog(d: Any) -> None:
        seen.dialogs.append(d.message)
        d.dismiss()

    def console(message: Any) -> None:
        if message.type in ("error", "warning"):
            seen.errors.append(message.text)

    def response(answer: Any) -> None:
        if re.search(r"/api/exports/[^/]+/runs/[^/?]+$", answer.url) and answer.status == 200:
            try:
                seen.statuses.append(str(answer.json().get("status")))
            except Exception:  # noqa: BLE001 - a body that is gone: not a run status
                pass

    page.on("dialog", dialog)
    page.on("console", console)
    page.on("pageerror", lambda error: seen.errors.append(f"page error: {error}"))
    page.on("request", lambda r: seen.requests.append(r.url))
    page.on("response", response)
    yield seen
    page.screenshot(path=stack.shots / f"{request.node.name}.png", full_page=True)
    context.close()


def open_console(seen: Watched, stack: Stack, route: str = "") -> Page:
    """The console with the key in the fragment, as an operator's bookmark would have it."""
    page = seen.page
    page.goto(f"{stack.console}#key={stack.key}{('&' + route) if route else ''}")
    expect(page.locator("#loading")).to_be_hidden()
    return page


def assert_nothing_ran(seen: Watched) -> None:
    assert seen.dialogs == [], f"a dialog opened: {seen.dialogs}"
    assert [e for e in seen.errors if "Content Security Policy" in e or "page error" in e] == [], seen.errors
    assert [u for u in seen.requests if u.endswith("/x")] == [], "an <img src=x> was loaded"


def test_the_list_shows_every_export(watched: Watched, stack: Stack) -> None:
    page = open_console(watched, stack)
    rows = page.locator("#exports-table tbody tr")
    expect(rows).to_have_count(3)
    vip = page.locator("tr[data-export='vip']")
    expect(vip.get_by_role("link", name="VIP newsletter")).to_be_visible()
    expect(vip.locator("td[data-label='Mode']")).to_have_text("upsert")
    expect(vip.locator("td[data-label='Lists']")).to_have_text("newsletter")  # by name, from GET /api/sendgrid/lists
    expect(vip.locator("td[data-label='Definition']")).to_have_text("✓ valid")
    broken = page.locator("tr[data-export='broken']")
    expect(broken.locator("td[data-label='Definition']")).to_contain_text(
        "invalid: export 'broken': 'privacy_consent' must be true"
    )
    # The key left the address bar for the tab's sessionStorage.
    assert page.evaluate("location.hash") == "#/"
    assert page.evaluate("sessionStorage.getItem('ci-sendgrid-export.function-key')") == stack.key
    page.screenshot(path=stack.shots / "list-laptop.png", full_page=True)
    # A phone's width: each export is a card, nothing scrolls sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("getComputedStyle(document.querySelector('#exports-table tbody tr')).display") == "block"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=stack.shots / "list-phone.png", full_page=True)
    assert_nothing_ran(watched)


def test_run_now_ends_succeeded_and_the_history_grows_by_one(watched: Watched, stack: Stack) -> None:
    page = open_console(watched, stack, "/exports/vip")
    expect(page.locator("#export-title")).to_have_text("VIP newsletter")
    before = len(stack.api("GET", "exports/vip/runs").json()["runs"])
    expect(page.locator("#history-table tbody tr")).to_have_count(before)
    page.get_by_role("button", name="Run now").click()
    expect(page.locator("#run-status")).to_have_attribute("data-status", "succeeded", timeout=RUN_TIMEOUT_MS)
    expect(page.locator("#history-table tbody tr")).to_have_count(before + 1)
    # The page followed the run through its states, in the lifecycle's order, to the end.
    order = [LIFECYCLE.index(status) for status in watched.statuses]
    assert order == sorted(order) and watched.statuses[-1] == "succeeded", watched.statuses
    run_id = stack.api("GET", "exports/vip/runs?limit=1").json()["runs"][0]["run_id"]
    report = stack.api("GET", f"exports/vip/runs/{run_id}").json()
    expect(page.locator("#report-body .report-head code")).to_have_text(run_id)
    counts = page.locator("#report-body table.counts")
    expect(counts.locator("tr", has_text="sent")).to_contain_text(f"{report['counts']['sent']:,}")
    for reason, count in report["rejects"].items():
        expect(page.locator("#report-body table.rejects tr", has_text=reason)).to_contain_text(str(count))
    expect(page.locator("#report-body .rejects-blob")).to_have_text(report["rejects_blob"])
    expect(page.locator("#history-chart-area svg rect.bar-sent")).to_have_count(before + 1)
    expect(page.locator(f"#history-table tbody tr[data-run='{run_id}']")).to_contain_text("succeeded")
    assert_nothing_ran(watched)


def test_dry_run_shows_the_plan(watched: Watched, stack: Stack) -> None:
    page = open_console(watched, stack, "/exports/vip")
    expect(page.locator("#export-title")).to_have_text("VIP newsletter")
    page.get_by_role("button", name="Dry run").click()
    plan = page.locator("#dry-run-plan")
    expect(plan).to_contain_text("to add or update")
    expected = stack.api("POST", "exports/vip/run", {"dry_run": True}).json()["plan"]
    expect(plan).to_have_text(
        f"{expected['upsert']:,} contact(s) to add or update, {expected['remove']:,} to unlink. Nothing was sent or stored."
    )
    expect(page.locator("#report-body .report-head")).to_contain_text("dry run")
    assert_nothing_ran(watched)


def test_the_wizard_makes_a_definition_that_validate_accepts(watched: Watched, stack: Stack, tmp_path: Path) -> None:
    page = open_console(watched, stack, "/new")
    page.get_by_label("Export folder in the source container").select_option(label=FOLDER)
    page.get_by_label("Segment", exact=True).select_option(label=f"{SIGNUPS} ({len(SIGNUP_COLUMNS)} columns)")
    page.get_by_role("button", name="Suggest a definition").click()
    expect(page.locator("#draft-form")).to_be_visible()
    expect(page.get_by_label("Name (the export's URL")).to_have_value("newslettersignups")
    email = page.get_by_label("email (required)")
    expect(email).to_have_value("EmailAddress")  # suggested next to the columns
    expect(page.locator("#column-list")).to_contain_text("EmailAddress string → email")
    # Change a pairing, pick a list by name, give consent, check.
    page.get_by_label("first_name").select_option("Surname")
    page.get_by_label("last_name").select_option("GivenName")
    page.get_by_label("newsletter").check()
    page.get_by_label("Privacy consent").check()
    page.get_by_role("button", name="Check and preview").click()
    expect(page.locator("#draft-state")).to_have_text("The draft is complete and valid.")
    expect(page.locator("#preview-body")).to_contain_text("No problem found.")
    expect(page.locator("#preview-body table.sample")).to_contain_text("***")  # masked
    expect(page.locator("#preview-plan")).to_contain_text("A run now would add or update")
    copy = page.get_by_role("button", name="Copy the definition")
    expect(copy).to_be_enabled()
    copy.click()
    expect(page.locator("#copy-status")).to_contain_text("Copied.")
    copied = json.loads(page.evaluate("navigator.clipboard.readText()"))
    assert copied == json.loads(page.locator("#definition-json").input_value())
    assert copied["mapping"]["first_name"] == "Surname" and copied["mapping"]["last_name"] == "GivenName"
    assert copied["list_ids"] == [LIST_ID] and copied["privacy_consent"] is True
    parsed = parse_definition(copied)
    assert (parsed.name, parsed.segment, parsed.mapping["email"]) == ("newslettersignups", SIGNUPS, "EmailAddress")
    exports_json = tmp_path / "exports.json"
    exports_json.write_text(json.dumps({"$schema": "./schema/exports.schema.json", "exports": [copied]}), encoding="utf-8")
    checked = validate_file(exports_json)
    assert checked["valid"] is True and checked["schema"]["errors"] == [], checked
    # Changing anything afterwards asks for another check before a copy.
    page.get_by_label("Display name").fill("Sign-ups")
    expect(copy).to_be_disabled()
    assert_nothing_ran(watched)


def test_markup_in_names_and_sendgrid_reasons_stays_text(watched: Watched, stack: Stack) -> None:
    sandbox_config(stack.sandbox, fail_jobs=1, fail_reason=MARKUP_REASON)  # the next import job fails with it
    # Run inline ({"wait": true}): the run itself confirms its import job and reads the job's errors
    # file, where SendGrid's reason is. (A queued run whose job ends while it is confirming is
    # finalised by a status read or a confirm message, which record the job's status only.)
    answer = stack.api("POST", "exports/markup/run", {"wait": True})
    assert answer.status_code == 200 and answer.json()["jobs"][0]["reason"] == MARKUP_REASON, answer.text
    run_id = answer.json()["run_id"]
    page = open_console(watched, stack)
    row = page.locator("tr[data-export='markup']")
    expect(row.get_by_role("link")).to_have_text(MARKUP_NAME)  # shown literally
    expect(row.locator("td[data-label='Lists']")).to_have_text(MARKUP_LIST)
    row.get_by_role("link").click()
    expect(page.locator("#export-title")).to_have_text(MARKUP_NAME)
    page.get_by_role("button", name=f"View the report of run {run_id}").click()
    reason = page.locator("#report-body table.jobs td", has_text=MARKUP_REASON)
    expect(reason).to_have_text(MARKUP_REASON)
    assert page.locator("#main img, #main i, #main b").count() == 0  # no element was made of the markup
    assert page.title() == f"{MARKUP_NAME} · ci-sendgrid-export console"
    assert_nothing_ran(watched)


def test_a_wrong_key_is_explained_and_a_right_one_typed_in_works(watched: Watched, stack: Stack) -> None:
    page = watched.page
    page.goto(f"{stack.console}#key=not-the-key")
    expect(page.locator("#message")).to_contain_text(
        "The function key was not accepted (HTTP 401 from the Functions host). Enter the key again."
    )
    expect(page.get_by_role("heading", name="Function key")).to_be_visible()
    key_box = page.get_by_role("textbox", name="Function key")
    expect(key_box).to_be_focused()  # the keyboard is where the key goes
    page.keyboard.type(stack.key)
    page.keyboard.press("Enter")
    expect(page.locator("#exports-table tbody tr")).to_have_count(3)
    # By keyboard alone: tab to the first export's link and open it.
    link = page.get_by_role("link", name="VIP newsletter")
    link.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#export-title")).to_have_text("VIP newsletter")
    expect(page.locator("#export-title")).to_be_focused()
    assert_nothing_ran(watched)


def test_refusals_are_explained_and_the_mirror_guard_asks_before_removing(watched: Watched, stack: Stack) -> None:
    """A 409 naming the running run, and a 422 removal_guard with its numbers and a confirmation
    that sends confirm_removals. The app's answers are played here (page.route), in the shapes
    the API documents: a real guard needs a shrunken segment and a mirror record."""
    page = open_console(watched, stack, "/exports/vip")
    expect(page.locator("#export-title")).to_have_text("VIP newsletter")
    last = stack.api("GET", "exports/vip/runs?limit=1").json()["runs"]
    run_id = last[0]["run_id"] if last else "20260101T020000Z-0a1b2c"
    guard = "this run would remove 7 of the 20 contacts this export manages on its list(s), more than max_removal_fraction (0.2)"
    sent: list[Any] = []

    def answer(route: Route, request: Request) -> None:
        body = request.post_data_json if request.post_data else None
        sent.append(body)
        if body is None:
            route.fulfill(status=409, json={"error": {"code": "run_in_progress", "message": "busy"}, "run_id": run_id})
        elif body == {"dry_run": True}:
            report = {"run_id": run_id, "status": "failed", "dry_run": True, "plan": {"upsert": 3, "remove": 7}, "counts": {}}
            route.fulfill(status=422, json={"error": {"code": "removal_guard", "message": guard}, "report": report})
        else:
            route.fulfill(status=202, json={"run_id": run_id, "status": "queued", "status_url": ""})

    page.route("**/api/exports/vip/run", answer)
    page.get_by_role("button", name="Run now").click()
    expect(page.locator("#run-panel")).to_contain_text(f"A run of this export is already queued or going on (run {run_id})")
    expect(page.get_by_role("button", name=f"Follow run {run_id}")).to_be_visible()
    page.get_by_role("button", name="Dry run").click()
    expect(page.locator("#guard-panel")).to_be_visible()
    expect(page.locator("#guard-message")).to_have_text(guard)
    expect(page.locator("#guard-remove")).to_have_text("7")
    confirm = page.get_by_role("button", name="Run with removals confirmed")
    expect(confirm).to_be_disabled()  # not until the operator says the contacts really left
    page.get_by_label("I checked the segment").check()
    confirm.click()
    expect(page.locator("#run-status")).to_have_attribute("data-status", re.compile("^(succeeded|partial|failed)$"))
    assert sent == [None, {"dry_run": True}, {"confirm_removals": True}]
    assert_nothing_ran(watched)
