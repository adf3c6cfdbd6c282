"""`make demo`: a real export end to end on local stand-ins, told in a screenful.

Starts Azurite (blob + queue) and the SendGrid sandbox, writes a Customer Insights-shaped export
of two segments (one with some bad rows) and runs the definition in exports.example.json the way
Azure would: POST through the HTTP function's own entry point (export_http.main) answers 202
with a status URL; the queue worker (export_worker.main, fed here from Azurite's queue as the
Functions host would) runs the export and confirms its import jobs; GET of the status URL
answers the run's report. It prints what it set up and the run's summary, saves the full report
and the rejects CSV under .local/demo/, previews the second segment (not configured yet) with
the app's suggestions, checks the contacts arrived in the sandbox, and stops what it started.

`python -m tools.demo --json` (or `make demo ARGS=--json`) prints everything as one JSON
document instead. The exit code is 0 when the demo worked, 1 when it did not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import azure.functions as func
import azure.functions.queue as func_queue
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from shared import telemetry
from shared.api import cli
from shared.api.compose import get_app
from tools import sendgrid_sandbox
from tools.localstack import start_azurite
from tools.sample_export import PROFILE_COLUMNS, SIGNUP_COLUMNS, csv_bytes, profile_rows, signup_rows, write_segments

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = "exports.example.json"  # the definition the demo runs: the example a user copies to exports.json
OUTPUT = ROOT / ".local" / "demo"  # .gitignore'd: the full report and the rejects CSV of the last demo
PROFILES = 20_000
PARTITIONS = 3
BAD_EVERY = 97
SIGNUPS = 2_000
SIGNUPS_BAD_EVERY = 50
SIGNUPS_SEGMENT = "NewsletterSignups"
CONTAINER = "customer-insights"
API_KEY = "SG.demo-local-key"


def example_definition() -> dict[str, Any]:
    """The first definition of exports.example.json: the demo writes the export it names."""
    document = json.loads((ROOT / EXAMPLE).read_text(encoding="utf-8"))
    return cast(dict[str, Any], document["exports"][0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print everything as one JSON document instead of a summary")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="where the report and rejects CSV are saved (.local/demo)")
    args = parser.parse_args(argv)
    definition = example_definition()
    with tempfile.TemporaryDirectory(prefix="sg-demo-") as tmp:
        azurite = start_azurite(Path(tmp) / "azurite")
        sandbox = sendgrid_sandbox.start(sandbox_state(definition))
        try:
            return demo(azurite, sandbox, definition, args.json, args.output)
        finally:
            sandbox.shutdown()
            azurite.stop()


def sandbox_state(definition: dict[str, Any]) -> sendgrid_sandbox.SandboxState:
    """The sandbox account of the demo (and `make serve`): the definition's list, another list,
    and the custom fields the example maps."""
    state = sendgrid_sandbox.SandboxState(api_keys={API_KEY}, record_bodies=False)
    state.add_list(str(definition.get("display_name") or definition["name"]), definition["list_ids"][0])
    state.add_list("Newsletter", "9d4c1b2a-3e5f-4a6b-8c7d-0e1f2a3b4c5d")
    state.add_field("loyalty_tier", "Text")
    state.add_field("lifetime_value", "Number")
    return state


def write_sample(service: BlobServiceClient, definition: dict[str, Any]) -> int:
    """The sample export in CONTAINER: the definition's segment (PROFILES profiles, some bad) and a
    second segment nobody exports yet; returns the first segment's number of partitions."""
    container = service.create_container(CONTAINER)
    rows = list(profile_rows(PROFILES, bad_every=BAD_EVERY))
    size = -(-len(rows) // PARTITIONS)
    parts = [csv_bytes(rows[i : i + size]) for i in range(0, len(rows), size)]
    signups = [csv_bytes(list(signup_rows(SIGNUPS, bad_every=SIGNUPS_BAD_EVERY)))]
    segments = [(definition["segment"], parts, PROFILE_COLUMNS), (SIGNUPS_SEGMENT, signups, SIGNUP_COLUMNS)]
    write_segments(container, definition["source_folder"], segments)
    return len(parts)


def use_local_settings(azurite: Any, sandbox: sendgrid_sandbox.SandboxServer) -> None:
    """The app settings of the stand-ins, in this process's environment (before get_app())."""
    os.environ.update(
        {
            "SOURCE_STORAGE_CONNECTION_STRING": azurite.connection_string,
            "SOURCE_CONTAINER": CONTAINER,
            "SENDGRID_API_BASE_URL": sandbox.url,
            "SENDGRID_API_KEY": API_KEY,  # the local secret: no vault in the demo
            "EXPORT_DEFINITIONS_FILE": EXAMPLE,  # read as a deployed app reads exports.json
            "RUN_QUEUE": "export-runs",
            "CONFIRM_INTERVAL_SECONDS": "1",  # the demo does not wait a minute for its jobs
        }
    )
    for unset in ("KEY_VAULT_URL", "EXPORT_DEFINITIONS"):  # the file is what the demo shows
        os.environ.pop(unset, None)


def demo(azurite: Any, sandbox: sendgrid_sandbox.SandboxServer, definition: dict[str, Any], as_json: bool, output: Path) -> int:
    name, folder, segment = definition["name"], definition["source_folder"], definition["segment"]
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    partitions = write_sample(service, definition)
    use_local_settings(azurite, sandbox)
    import export_http  # noqa: PLC0415 - after the settings are in the environment

    app = get_app()
    listing = json.loads(export_http.main(func.HttpRequest("GET", "/api/exports", body=b"")).get_body())
    started = time.perf_counter()
    request = func.HttpRequest(
        "POST", f"http://localhost:7071/api/exports/{name}/run", body=b"", route_params={"name": name, "action": "run"}
    )
    response = export_http.main(request)
    queued = json.loads(response.get_body())
    worked = drain(azurite.connection_string, "export-runs")
    route = {"name": name, "action": "runs", "id": queued.get("run_id")}
    status = export_http.main(func.HttpRequest("GET", str(queued.get("status_url")), body=b"", route_params=route))
    report = json.loads(status.get_body())
    elapsed = time.perf_counter() - started
    arrived = len(sandbox_contacts(sandbox))
    saved = save_outputs(service, app.settings.state_container, report, output)
    preview = preview_of(app, folder)

    counts = report.get("counts", {})
    checks = {
        "POST answered 202": response.status_code == 202,
        "the run succeeded": report.get("status") == "succeeded",
        "every contact sent is in the sandbox": arrived == counts.get("sent") and arrived > 0,
    }
    ok = all(checks.values())
    if as_json:
        document = {
            "ok": ok,
            "checks": checks,
            "definitions_from": listing.get("definitions_from"),
            "queued": queued,
            "worker": worked,
            "report": report,
            "sandbox_contacts": arrived,
            "export_run_event": telemetry.last_event(),
            "saved": {k: str(v) for k, v in saved.items()},
            "preview": preview,
        }
        print(json.dumps(document, indent=2))
        return 0 if ok else 1

    bad = sum(1 for i in range(1, PROFILES + 1) if i % BAD_EVERY == 0)
    print("make demo: a Customer Insights segment exported to a SendGrid list, end to end, on local stand-ins")
    print()
    print("Set up")
    print(f"  Azurite         blob and queue storage on 127.0.0.1:{azurite.port} (in a temporary folder)")
    print(f"  SendGrid        the sandbox at {sandbox.url}: 2 lists, custom fields loyalty_tier and lifetime_value")
    print(f"  sample export   {CONTAINER}/{folder}, a model.json with 2 segments:")
    print(f"                    {segment}: {PROFILES:,} profiles in {partitions} partitions, {bad:,} of them bad or repeated")
    print(f"                    {SIGNUPS_SEGMENT}: {SIGNUPS:,} sign-ups, no export defined for it yet")
    print(f"  definition      '{name}' from {listing.get('definitions_from')} (EXPORT_DEFINITIONS_FILE)")
    print()
    print(f"Run: POST /api/exports/{name}/run answered {response.status_code}; the queue worker ran {', '.join(worked)}")
    print(*cli.report_lines(report, rejects_note=False), sep="\n")
    print(f"  {arrived:,} contacts are now on the list in the sandbox ({elapsed:.1f} s from the POST)")
    print()
    print(f"Full report   {shown(saved.get('report'))}   (all of it here: make demo ARGS=--json)")
    if saved.get("rejects"):
        print(f"Rejects CSV   {shown(saved.get('rejects'))}   (partition, row, reason of every row not sent)")
    print()
    print(*preview_lines(preview, folder), sep="\n")
    print()
    failed = [check for check, passed in checks.items() if not passed]
    print("demo: OK" if ok else f"demo: FAILED ({'; '.join(failed)} did not hold)")
    return 0 if ok else 1


def shown(path: Path | None) -> str:
    if path is None:
        return "(not saved)"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def save_outputs(service: BlobServiceClient, state_container: str, report: dict[str, Any], output: Path) -> dict[str, Path]:
    """The run's report and its rejects CSV, copied out of Azurite (which the demo deletes) to
    <output>/<run_id>/ (.local/demo/ by default). The CSV holds the sample's synthetic profiles, as a real one holds real ones."""
    run_id = str(report.get("run_id") or "unknown")
    folder = output / run_id
    folder.mkdir(parents=True, exist_ok=True)
    saved = {"report": folder / "report.json"}
    saved["report"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    blob = report.get("rejects_blob")
    if isinstance(blob, str):
        data = service.get_container_client(state_container).download_blob(blob).readall()
        saved["rejects"] = folder / "rejects.csv"
        saved["rejects"].write_bytes(data)
    return saved


def preview_of(app: Any, folder: str) -> dict[str, Any]:
    """POST /api/preview of the segment no definition names yet: its answer, or why there is none."""
    body = json.dumps({"source_folder": folder, "segment": SIGNUPS_SEGMENT, "sample_size": 2}).encode()
    response = cli.setup_call(app, "POST", "preview", body=body)
    return {"status": response.status, "answer": response.body}


def preview_lines(preview: dict[str, Any], folder: str) -> list[str]:
    rows = int(preview.get("answer", {}).get("rows_read") or 0)
    head = f"Preview of {SIGNUPS_SEGMENT}, not configured yet: its first {rows:,} rows (POST /api/preview; nothing is sent)"
    command = f"  the same from a shell: python -m shared preview --folder {folder} --segment {SIGNUPS_SEGMENT}"
    answer = preview.get("answer") or {}
    if int(preview.get("status") or 500) >= 400:
        return [head, f"  the preview failed: {cli.clean(answer.get('error'))}"]
    lines = cli.render_preview(answer)
    return [head, *("  " + line for line in lines[1:] if line), command]


def drain(connection_string: str, queue_name: str, timeout: float = 120.0) -> list[str]:
    """Play the Functions host: hand each message (delayed ones too) to export_worker.main and
    delete it when the call returns; the kinds of work done, in order."""
    import export_worker  # noqa: PLC0415 - after the settings are in the environment

    queue = QueueClient.from_connection_string(connection_string, queue_name)
    done: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        received = list(queue.receive_messages(max_messages=1, visibility_timeout=600))
        if not received:
            if not queue.get_queue_properties().approximate_message_count:
                return done
            time.sleep(0.2)
            continue
        message = received[0]
        body = str(message.content).encode()
        export_worker.main(
            func_queue.QueueMessage(
                id=message.id, body=body, dequeue_count=message.dequeue_count, pop_receipt=message.pop_receipt
            )
        )
        queue.delete_message(message)
        done.append(str(json.loads(body).get("kind")))
    raise TimeoutError(f"the run queue was not empty after {timeout:.0f}s")


def sandbox_contacts(sandbox: sendgrid_sandbox.SandboxServer) -> list[dict[str, Any]]:
    import requests  # noqa: PLC0415

    return cast(list[dict[str, Any]], requests.get(sandbox.url + "/_sandbox/contacts", timeout=30).json()["contacts"])


if __name__ == "__main__":
    sys.exit(main())
