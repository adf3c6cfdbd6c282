"""The console's function and files, without a browser: what it serves, with which headers, and
what the page's files may not contain (inline script or style, another origin, HTML insertion).
The browser tests are tests/integration/test_console_browser.py."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import azure.functions as func
import pytest

import export_console
from shared.api import routes
from shared.errors import ExportError

ROOT = Path(__file__).resolve().parents[2]
CONSOLE = ROOT / "console"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def get(asset: str | None = None, url: str = "http://localhost:7071/api/console", method: str = "GET") -> func.HttpResponse:
    params = {"asset": asset} if asset is not None else {}
    return export_console.main(func.HttpRequest(method, url, body=b"", route_params=params))


def assert_strict_headers(response: func.HttpResponse) -> None:
    headers = response.headers
    assert headers["Content-Security-Policy"] == CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize(
    ("asset", "mimetype", "marker"),
    [
        (None, "text/html", "<!doctype html>"),
        ("console.js", "text/javascript", "'use strict'"),
        ("console.css", "text/css", ":root"),
    ],
)
def test_the_page_and_its_two_files_are_served_with_strict_headers(asset: str | None, mimetype: str, marker: str) -> None:
    response = get(asset, f"http://localhost:7071/api/console{'/' + asset if asset else ''}")
    assert response.status_code == 200
    assert response.mimetype == mimetype and response.charset == "utf-8"
    assert marker in response.get_body().decode()
    assert_strict_headers(response)


@pytest.mark.parametrize("asset", ["index.html", "../host.json", "..%2Fhost.json", "console.JS", "exports.json", "function.json"])
def test_nothing_else_is_served(asset: str) -> None:
    response = get(asset)
    assert response.status_code == 404
    assert_strict_headers(response)


def test_a_trailing_slash_redirects_to_the_page_so_its_relative_files_resolve() -> None:
    response = get(None, "http://localhost:7071/api/console/")
    assert response.status_code == 308 and response.headers["Location"] == "/api/console"


def test_only_get_is_answered() -> None:
    assert get(None, method="POST").status_code == 405


def test_the_console_function_is_anonymous_and_the_api_is_not() -> None:
    """The page holds no data, so it needs no key; every function that answers data needs one."""
    levels = {}
    for path in ROOT.glob("*/function.json"):
        for binding in json.loads(path.read_text())["bindings"]:
            if binding["type"] == "httpTrigger":
                levels[path.parent.name] = (binding["authLevel"], binding.get("route"), binding.get("methods"))
    assert levels["export_console"] == ("anonymous", "console/{asset?}", ["get"])
    anonymous = sorted(name for name, (level, _, _) in levels.items() if level == "anonymous")
    assert anonymous == ["export_console", "export_health"]


def test_funcignore_ships_the_console() -> None:
    patterns = [
        line.strip().rstrip("/")
        for line in (ROOT / ".funcignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for shipped in ("console", "console/index.html", "console/console.js", "console/console.css", "export_console"):
        parts = shipped.split("/")
        ignored = [p for p in patterns if any(fnmatch.fnmatch("/".join(parts[: i + 1]), p) for i in range(len(parts)))]
        assert ignored == [], f".funcignore would leave {shipped} out of the deployment ({ignored})"
    assert export_console.CONSOLE_DIR == ROOT / "console"


def test_the_page_has_no_inline_script_or_style_and_no_other_origin() -> None:
    html = (CONSOLE / "index.html").read_text()
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts == ['<script src="console/console.js" defer>']
    assert re.search(r"<script\b[^>]*>\s*[^<\s]", html) is None, "inline script"
    assert "<style" not in html and re.search(r"\sstyle\s*=", html) is None, "inline style"
    assert re.search(r"\son[a-z]+\s*=", html) is None, "inline event handler"
    assert re.findall(r"<link\b[^>]*>", html) == [
        '<link rel="icon" href="data:,">',
        '<link rel="stylesheet" href="console/console.css">',
    ]
    for name in ("index.html", "console.js", "console.css"):
        text = (CONSOLE / name).read_text()
        origins = set(re.findall(r"https?://[^\s'\"<>)]+", text)) - {"http://www.w3.org/2000/svg"}
        assert origins == set(), f"{name} names another origin: {origins}"


def test_the_script_never_inserts_html() -> None:
    """Every API value goes in as text: no innerHTML and friends, no eval, no inline style."""
    script = (CONSOLE / "console.js").read_text()
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("//"))
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "setAttribute('style",
    ):
        assert sink not in code, f"console.js uses {sink}"
    assert "textContent" in code or "createTextNode" in code
    assert "sessionStorage" in code and "localStorage" not in code  # the key lives as long as the tab
    assert "'x-functions-key'" in code


def test_api_answers_are_never_cached() -> None:
    assert routes.error_response(ExportError("not_found", "x")).headers == {"Cache-Control": "no-store"}
    answer = routes.ApiResponse(202, {}, {"Location": "/api/exports/vip/runs/1"})
    assert answer.headers == {"Location": "/api/exports/vip/runs/1", "Cache-Control": "no-store"}
