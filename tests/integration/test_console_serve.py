"""`make serve`: the dev server with its own stand-ins (`python -m tools.devserver --local`), as a
person starts it: the sample export and definitions of `make demo`, the app's routes with their
auth levels, the console, and the queue worker carrying a run to its end. Stopped with SIGTERM,
it stops what it started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from helpers import ROOT

from tools.localstack import free_port, wait_for_port

RUN_SECONDS = 90


@dataclass
class Served:
    base: str
    key: str
    process: subprocess.Popen[bytes]
    output: Path

    def get(self, path: str, key: str | None = None, host: str | None = None) -> requests.Response:
        headers = {"x-functions-key": key} if key else {}
        if host:
            headers["Host"] = host
        return requests.get(f"{self.base}{path}", headers=headers, timeout=60)

    def printed(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    port, key = free_port(), f"local-{uuid.uuid4().hex}"
    output = tmp_path_factory.mktemp("serve") / "output.txt"
    env = {name: value for name, value in os.environ.items() if name not in ("EXPORT_DEFINITIONS", "KEY_VAULT_URL")}
    env["DEVSERVER_FUNCTION_KEY"] = key
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "tools.devserver", "--local", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    served = Served(f"http://127.0.0.1:{port}", key, process, output)
    try:
        wait_for_port(port, timeout=60)
        yield served
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


def test_it_prints_the_key_and_the_console_address(served: Served) -> None:
    printed = served.printed()
    assert f"function key   {served.key}" in printed
    assert f"console        {served.base}/api/console#key={served.key}" in printed
    assert "queue worker   export_worker on export-runs (batchSize 2, visibilityTimeout 30s, maxDequeueCount 5" in printed
    assert "sample export  customer-insights/CustomerInsights_demo/SendGridExport" in printed


def test_function_level_routes_need_the_key_and_anonymous_ones_do_not(served: Served) -> None:
    for wrong in (None, "wrong"):
        refused = served.get("/api/exports", wrong)
        assert refused.status_code == 401 and refused.content == b""
    assert served.get("/api/sources", None).status_code == 401
    listing = served.get("/api/exports", served.key)
    assert listing.status_code == 200 and [e["name"] for e in listing.json()["exports"]] == ["vip"]
    assert listing.headers["Cache-Control"] == "no-store"
    assert listing.json()["definitions_from"] == "exports.example.json"
    assert served.get(f"/api/exports?code={served.key}").status_code == 200  # the key as ?code=
    lists = served.get("/api/sendgrid/lists", served.key)
    assert lists.status_code == 200 and lists.headers["Cache-Control"] == "no-store"
    assert served.get("/api/health").json() == {"status": "ok"}
    page = served.get("/api/console")
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'; script-src 'self'")
    assert served.get("/api/console/console.js").headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert served.get("/api/nothing", served.key).status_code == 404
    assert (
        requests.delete(f"{served.base}/api/exports/vip", headers={"x-functions-key": served.key}, timeout=30).status_code == 404
    )
    other_host = served.get("/api/console", host=f"rebound.example:{served.base.rsplit(':', 1)[1]}")
    assert other_host.status_code == 400


def test_a_run_started_over_http_is_carried_to_its_end_by_the_worker(served: Served) -> None:
    headers = {"x-functions-key": served.key}
    started = requests.post(f"{served.base}/api/exports/vip/run", headers=headers, timeout=60)
    assert started.status_code == 202, started.text
    assert started.headers["Location"].startswith(f"{served.base}/api/exports/vip/runs/")
    deadline = time.monotonic() + RUN_SECONDS
    # The history reads reports as stored (no status read re-checks the jobs): the worker ends it.
    while True:
        runs = served.get("/api/exports/vip/runs?limit=1", served.key).json()["runs"]
        if runs and runs[0]["status"] in ("succeeded", "partial", "failed"):
            break
        assert time.monotonic() < deadline, f"the run did not end: {runs}"
        time.sleep(0.2)
    report = served.get(f"/api/exports/vip/runs/{started.json()['run_id']}", served.key).json()
    assert report["status"] == "succeeded" and report["counts"]["sent"] > 0
    assert report["finalised_by"] in (None, "confirm message")


def test_sigterm_stops_the_server_and_its_stand_ins(served: Served) -> None:
    printed = served.printed()
    azurite_port = int(printed.split("Azurite        blob 127.0.0.1:")[1].split(",")[0])
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=30) == 0
    for port in (azurite_port, int(served.base.rsplit(":", 1)[1])):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on {port}"
    # The key is printed for the person who started it (its line, the console's address), and
    # never logged: the request that sent it as ?code= was logged by its path only.
    assert served.printed().count(served.key) == 2
