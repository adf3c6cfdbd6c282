"""`make demo`: a real export end to end on local stand-ins.

Starts Azurite (blob + queue) and the SendGrid sandbox, writes a Customer Insights-shaped export
with some bad rows, and shows the async flow: POST through the HTTP function's own entry point
(export_http.main) answers 202 with a status URL; the queue worker (export_worker.main, fed here
from Azurite's queue as the Functions host would) runs the export and confirms its import jobs;
GET of the status URL answers the run's report. Checks the contacts arrived in the sandbox and
stops what it started.
"""

from __future__ import annotations

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
from tools import sendgrid_sandbox
from tools.localstack import start_azurite
from tools.sample_export import PROFILE_COLUMNS, csv_bytes, profile_rows, write_export

LIST_ID = "5c7a2b8e-8d0f-4b39-9a5e-0d6f3c1e2a47"
PROFILES = 20_000
PARTITIONS = 3


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="sg-demo-") as tmp:
        azurite = start_azurite(Path(tmp) / "azurite")
        state = sendgrid_sandbox.SandboxState(api_keys={"SG.demo-local-key"}, record_bodies=False)
        state.add_list("VIP newsletter", LIST_ID)
        state.add_field("loyalty_tier", "Text")
        state.add_field("lifetime_value", "Number")
        sandbox = sendgrid_sandbox.start(state)
        try:
            service = BlobServiceClient.from_connection_string(azurite.connection_string)
            container = service.create_container("customer-insights")
            rows = list(profile_rows(PROFILES, bad_every=97))
            size = -(-len(rows) // PARTITIONS)
            parts = [csv_bytes(rows[i : i + size]) for i in range(0, len(rows), size)]
            folder = "CustomerInsights_demo/SendGridExport"
            write_export(container, folder, "HighValueCustomers", parts, PROFILE_COLUMNS)
            print(f"wrote {len(rows)} profiles in {len(parts)} headerless partitions to Azurite ({folder})")

            definition = {
                "name": "vip",
                "display_name": "VIP newsletter",
                "source_folder": folder,
                "segment": "HighValueCustomers",
                "list_ids": [LIST_ID],
                "privacy_consent": True,
                "mapping": {
                    "email": "EMail",
                    "first_name": "FirstName",
                    "last_name": "LastName",
                    "country": "Country",
                    "state_province_region": "State",
                    "city": "City",
                    "postal_code": "PostCode",
                },
                "custom_fields": {"loyalty_tier": "Tier", "lifetime_value": "LifetimeValue"},
            }
            os.environ.update(
                {
                    "SOURCE_STORAGE_CONNECTION_STRING": azurite.connection_string,
                    "SOURCE_CONTAINER": "customer-insights",
                    "SENDGRID_API_BASE_URL": sandbox.url,
                    "SENDGRID_API_KEY": "SG.demo-local-key",  # the local secret: no vault in the demo
                    "EXPORT_DEFINITIONS": json.dumps([definition]),
                    "RUN_QUEUE": "export-runs",
                    "CONFIRM_INTERVAL_SECONDS": "1",  # the demo does not wait a minute for its jobs
                }
            )
            os.environ.pop("KEY_VAULT_URL", None)
            import export_http  # noqa: PLC0415 - after the settings are in the environment

            request = func.HttpRequest(
                "POST", "http://localhost:7071/api/exports/vip/run", body=b"", route_params={"name": "vip", "action": "run"}
            )
            started = time.perf_counter()
            response = export_http.main(request)
            queued = json.loads(response.get_body())
            print(f"POST /api/exports/vip/run -> HTTP {response.status_code}, Location: {response.headers.get('Location')}")
            print(json.dumps(queued, indent=2))
            worked = drain(azurite.connection_string, "export-runs")
            print(f"\nthe queue worker ran {len(worked)} message(s): {', '.join(worked)}")
            elapsed = time.perf_counter() - started
            status = export_http.main(
                func.HttpRequest(
                    "GET", queued["status_url"], body=b"", route_params={"name": "vip", "action": "runs", "id": queued["run_id"]}
                )
            )
            report = json.loads(status.get_body())
            print(f"\nGET {queued['status_url']} -> HTTP {status.status_code}")
            print(json.dumps(report, indent=2))
            arrived = len(sendgrid_sandbox_contacts(sandbox))
            counts = report.get("counts", {})
            print(
                f"\n{counts.get('read', 0)} rows in {elapsed:.2f}s ({counts.get('read', 0) / elapsed:,.0f} rows/s); "
                f"{arrived} contacts now in the sandbox list"
            )
            # What Application Insights would get for this run (no connection string set here: nothing is sent).
            print("\nthe ExportRun event of this run (README: Operations):")
            print(json.dumps(telemetry.last_event(), indent=2))
            ok = response.status_code == 202 and report.get("status") == "succeeded" and arrived == counts.get("sent")
            print("demo: OK" if ok else "demo: FAILED")
            return 0 if ok else 1
        finally:
            sandbox.shutdown()
            azurite.stop()


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


def sendgrid_sandbox_contacts(sandbox: sendgrid_sandbox.SandboxServer) -> list[dict[str, Any]]:
    import requests  # noqa: PLC0415

    return cast(list[dict[str, Any]], requests.get(sandbox.url + "/_sandbox/contacts", timeout=30).json()["contacts"])


if __name__ == "__main__":
    sys.exit(main())
