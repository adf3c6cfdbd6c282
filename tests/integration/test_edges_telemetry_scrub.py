"""Telemetry carries no URL query and no email address, in exceptions too: a real mirror run whose
failed import's errors file (a pre-signed link) cannot be downloaded and whose unlink request is
cut off once, sent through the real Azure Monitor exporter to the ingestion stand-in.

The errors file's link points at a port nothing listens on, so the download fails the way a
broken network does: requests' exception names the link, query included. The unlink's DELETE
(`?contact_ids=...`) is dropped by the sandbox once and then goes through.

As in test_telemetry.py, the run happens in a child interpreter that calls the real HTTP trigger
(the distro is configured once per process and instruments `requests` globally).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from typing import Any

import pytest
from azure.storage.blob import ContainerClient
from helpers import ROOT, app_env, definition, person, run, write

from shared import telemetry
from tools import ingestion_standin
from tools.sendgrid_sandbox import Fault

CHILD = r"""
import json
import azure.functions as func
import export_http
request = func.HttpRequest(method="POST", url="/api/exports/vip/run", body=b'{"wait": true}',
                           route_params={"name": "vip", "action": "run"})
response = export_http.main(request)
print(json.dumps({"status": response.status_code, "body": json.loads(response.get_body())}), flush=True)
"""
EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(\.[\w-]+)+")
QUERY = re.compile(r"\?[\w.%-]+=")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def standin() -> Any:
    server = ingestion_standin.start()
    yield server
    server.stop()


def test_a_failing_errors_file_download_and_a_failing_unlink_leave_no_query_or_email_in_telemetry(
    app_factory: Any, azurite: Any, source_container: ContainerClient, state_container_name: str, sandbox: Any, standin: Any
) -> None:
    mirror = definition(sync_mode="mirror")
    write(source_container, [[person(i) for i in range(1, 11)]])
    first = run(app_factory([mirror]))  # the record: ten contacts, no telemetry yet
    assert first.status == 200 and first.body["counts"]["sent"] == 10

    # The next snapshot: person10 left (unlinked in mirror mode), person11 is new and fails in
    # SendGrid's import, whose errors file cannot be fetched.
    write(source_container, [[person(i) for i in range(1, 10)] + [person(11)]])
    sandbox.state.import_error_emails = {"person11@example.com"}
    sandbox.state.public_url = f"http://127.0.0.1:{closed_port()}"
    sandbox.state.faults.append(Fault(method="DELETE", path="/v3/marketing/lists/", drop=True, times=1))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS", "OTEL_", "KEY_VAULT"))}
    env.update(
        {
            **app_env(azurite, source_container, state_container_name, sandbox.url, [mirror]),
            "JOB_WAIT_SECONDS": "30",
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "APPLICATIONINSIGHTS_CONNECTION_STRING": standin.connection_string,
            "PYTHONPATH": str(ROOT),
        }
    )
    done = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    report = answer["body"]
    assert answer["status"] == 200 and report["counts"]["removed"] == 1, report
    assert any(job.get("status") == "errored" for job in report["jobs"]), report["jobs"]

    # Both failures reached the exporter as exceptions on their request spans...
    messages = [e["message"] for item in standin.state.of_type("ExceptionData") for e in item["exceptions"]]
    assert any("/_sandbox/errors/" in m for m in messages), messages
    assert any("Connection aborted" in m for m in messages), messages
    dependencies = [d.get("data", "") for d in standin.state.of_type("RemoteDependencyData")]
    assert any("/_sandbox/errors/" in d for d in dependencies) and any("/contacts" in d for d in dependencies)
    assert standin.state.events(telemetry.EVENT_NAME)
    # ...and nothing sent anywhere holds a query string or an email address.
    with standin.state.lock:
        text = "\n".join(standin.state.bodies)
    assert "signature=" not in text and "contact_ids=" not in text
    assert QUERY.search(text) is None, QUERY.search(text)
    assert EMAIL.search(text) is None, EMAIL.search(text)
