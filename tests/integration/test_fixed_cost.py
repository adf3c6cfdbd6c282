"""What every run pays whatever its size (issue 14): the SDKs a process loads, the metadata reads.

- Azure Identity, the queue SDK and the Key Vault SDK are loaded only where they are used: an
  account URL rather than a connection string, a message to queue, KEY_VAULT_URL.
- A first delivery (no succeeded run to compare the snapshot with) reads the segment's
  model.json once.
- The newest run reports (every run looks for the last finished one) are found by listing the
  newest months of the history, not all of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from helpers import ROOT, app_env, definition, person, run, write

from shared.api import compose
from shared.source.blob import BlobSource
from shared.state.store import StateStore

# Loaded only when used (see the module docstring).
ON_DEMAND = ("azure.identity", "azure.storage.queue", "azure.keyvault", "msal")

CHILD = r"""
import json, sys
import azure.functions as func
import export_http, export_timer, export_worker
request = func.HttpRequest(method="POST", url="/api/exports/vip/run", body=b'{"wait": true}',
                           route_params={"name": "vip", "action": "run"})
response = export_http.main(request)
listing = export_http.main(func.HttpRequest(method="GET", url="/api/exports", body=b"", route_params={}))
loaded = sorted({m for m in sys.modules for p in json.loads(sys.argv[1]) if m == p or m.startswith(p + ".")})
print(json.dumps({"status": response.status_code, "report": json.loads(response.get_body()),
                  "listing": listing.status_code, "loaded": loaded}))
"""


def test_a_run_on_connection_strings_and_a_local_key_loads_no_identity_queue_or_key_vault_sdk(
    azurite: Any, source_container: ContainerClient, state_container_name: str, sandbox: Any
) -> None:
    write(source_container, [[person(i) for i in range(1, 4)]])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS", "KEY_VAULT"))}
    env.update({**app_env(azurite, source_container, state_container_name, sandbox.url, [definition()]), "PYTHONPATH": str(ROOT)})
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(ON_DEMAND)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == 200 and result["report"]["counts"]["sent"] == 3 and result["listing"] == 200
    assert result["loaded"] == []


def test_an_account_url_is_reached_with_the_apps_identity() -> None:
    client = compose.blob_service(None, "https://ciexports.blob.core.windows.net")
    assert type(client.credential).__name__ == "DefaultAzureCredential"
    assert client.url.startswith("https://ciexports.blob.core.windows.net")


def test_a_first_delivery_reads_the_segment_metadata_once_and_an_unchanged_run_once(
    app_factory: Any, azurite: Any, source_container: ContainerClient
) -> None:
    write(source_container, [[person(i) for i in range(1, 4)]])
    urls: list[str] = []
    counted = ContainerClient.from_connection_string(
        azurite.connection_string,
        source_container.container_name,
        raw_request_hook=lambda request: urls.append(request.http_request.url),
    )
    app = app_factory([definition()], services=dict(source=BlobSource(counted)))

    first = run(app)
    assert first.status == 200 and first.body["counts"]["sent"] == 3
    assert sum("/model.json" in url for url in urls) == 1  # no run before it: nothing to compare with

    urls.clear()
    again = run(app)
    assert again.status == 200 and again.body["unchanged_snapshot"] is True
    assert sum("/model.json" in url for url in urls) == 1


def _months_ago(months: int, day: int, n: int) -> str:
    """A run id `months` before this month, on `day`, the n-th of that day (report.new_run_id's form)."""
    now = datetime.now(UTC)
    year, month = divmod(now.year * 12 + now.month - 1 - months, 12)
    return f"{year:04d}{month + 1:02d}{day:02d}T02{n // 60:02d}{n % 60:02d}Z-{n:06x}"


@pytest.mark.slow
def test_the_newest_reports_are_found_without_listing_the_whole_history(
    azurite: Any, blob_service: BlobServiceClient, state_container_name: str
) -> None:
    container = blob_service.create_container(state_container_name)
    # Three years of runs, some months empty, and this month's runs.
    run_ids = sorted(
        {
            _months_ago(months, day, n)
            for months in (40, 30, 25, 14, 13, 12, 11, 3, 1, 0)
            for day, n in ((1, 0), (9, 1), (9, 2), (28, 3))
        }
        | {_months_ago(0, 1, n) for n in range(4, 12)}
    )
    for run_id in run_ids:
        container.upload_blob(f"runs/vip/{run_id}.json", json.dumps({"run_id": run_id}).encode())
    container.upload_blob("runs/vip/latest.json", b"{}")
    container.upload_blob("runs/vipx/20200101T000000Z-000000.json", b"{}")  # another export's
    listed: list[int] = []

    def count_names(response: Any) -> None:
        if "comp=list" in response.http_request.url:
            listed.append(response.http_response.text().count("<Blob>"))

    counted = ContainerClient.from_connection_string(
        azurite.connection_string, state_container_name, raw_response_hook=count_names
    )
    store = StateStore(counted)
    newest = sorted(run_ids, reverse=True)
    for limit in (1, 10, 11, 12, 20, 35, 200):
        for before in (None, newest[0], newest[5], newest[11], newest[12], newest[30], newest[-1], "20000101T000000Z-0"):
            below = [run_id for run_id in newest if before is None or run_id < before]
            found, more = store.list_reports("vip", limit, before)
            assert [run_id for run_id, _ in found] == below[:limit], (limit, before)
            assert all(report == {"run_id": run_id} for run_id, report in found)
            assert more == (len(below) > limit), (limit, before)

    listed.clear()
    found, more = store.list_reports("vip", 10)  # what every run asks (run/unchanged.py)
    assert len(found) == 10 and more
    assert sum(listed) <= 13  # this month's 12 and the oldest, not all 48
