"""Test helpers shared by the test modules: constants, definitions, app wiring, sandbox calls and
the sample segment. Fixtures live in conftest.py; test modules import from here, never from
conftest or from each other."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.api import routes
from shared.api.compose import build_services
from shared.errors import ExportError
from shared.run.exporter import run_export
from shared.sendgrid.client import RetryPolicy
from shared.sendgrid.keys import ApiKeyStore, ApiKeyStores
from shared.services import App
from shared.settings import load_settings
from tools import sendgrid_sandbox
from tools.sample_export import csv_bytes, write_export

ROOT = Path(__file__).resolve().parent.parent
# The official reference material (SendGrid's OpenAPI files, real CDM folders) beside the
# repository; most clones do not have it. CI_SENDGRID_REFERENCE_DIR points elsewhere (a path that
# does not exist hides it: the "official" extras are then not collected, see conftest.py).
REFERENCE = Path(os.environ.get("CI_SENDGRID_REFERENCE_DIR") or ROOT.parent / "shared" / "reference")
# The project's own fixtures (written here, invented data): what the tests check never needs REFERENCE.
FIXTURES = ROOT / "tests" / "fixtures"
LIST_ID = "0f9c3a4e-1b2d-4c5e-8f70-123456789abc"
OTHER_LIST_ID = "a1b2c3d4-e5f6-4789-8abc-def012345678"
API_KEY = "SG.test-key"
# Same logic as production, shorter waits: backoff from 10 ms, rate-limit waits still honoured.
FAST_RETRIES = RetryPolicy(base_delay=0.01, max_delay=0.05)


def reference_dir(*parts: str) -> Path:
    """A folder of the official reference material; only the "official" extras use it, and they
    skip where it is absent (the same checks run on `fixture_path` material everywhere)."""
    path = REFERENCE.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"official reference material not present ({path}); the project's fixtures cover it")
    return path


def fixture_path(*parts: str) -> Path:
    """A file or folder of tests/fixtures. Never skips: a missing fixture is a broken checkout."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"test fixture missing: {path}")
    return path


# A CDM folder a parametrised test reads, found when the test runs (not when it is collected), so
# an absent official sample skips only its own case.
CdmFolder = Callable[[], Path]


def project_cdm(name: str) -> CdmFolder:
    """A folder of tests/fixtures/cdm (see its README.md): always there, never skips."""
    return lambda: fixture_path("cdm", name)


def official_cdm(*parts: str) -> CdmFolder:
    """A folder of the official CDM samples (cdm-samples/ of the reference): skips where absent."""
    return lambda: reference_dir("cdm-samples", *parts)


def definition(**overrides: Any) -> dict[str, Any]:
    base = {
        "name": "vip",
        "display_name": "VIP newsletter",
        "source_folder": "CustomerInsights_test/SendGridExport",
        "segment": "HighValueCustomers",
        "list_ids": [LIST_ID],
        "privacy_consent": True,
        "mapping": {
            "email": "EMail",
            "first_name": "FirstName",
            "last_name": "LastName",
            "city": "City",
            "state_province_region": "State",
            "postal_code": "PostCode",
            "country": "Country",
        },
    }
    base.update(overrides)
    return base


def app_env(
    azurite: Any, source: ContainerClient, state_container: str, sandbox_url: str, definitions: list[dict[str, Any]]
) -> dict[str, str]:
    """The app settings of a test app on Azurite and the sandbox (a queue of its own: no test
    sees another's messages)."""
    return {
        "SOURCE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "SOURCE_CONTAINER": source.container_name,
        "STATE_CONTAINER": state_container,
        "SENDGRID_API_BASE_URL": sandbox_url,
        "SENDGRID_API_KEY": API_KEY,
        "EXPORT_DEFINITIONS": json.dumps(definitions),
        "RUN_QUEUE": f"runs-{uuid.uuid4().hex[:12]}",
    }


def make_app(
    azurite: Any,
    source: ContainerClient,
    state_container: str,
    sandbox_url: str,
    definitions: list[dict[str, Any]],
    *,
    api_keys: ApiKeyStore | ApiKeyStores | None = None,
    policy: RetryPolicy | None = FAST_RETRIES,
    **extra_env: str,
) -> App:
    env = {
        **app_env(azurite, source, state_container, sandbox_url, definitions),
        "CONFIRM_INTERVAL_SECONDS": "1",  # delayed messages in seconds, not minutes
        "SNAPSHOT_SETTLE_SECONDS": "0",
        **extra_env,
    }
    settings = load_settings(env)
    services = build_services(settings, api_keys, policy)
    # Poll import jobs every few milliseconds instead of seconds; the logic is the same.
    services.job_polling = dataclasses.replace(services.job_polling, first_interval=0.02, max_interval=0.1)
    return App(settings, services)


def sandbox_get(server: sendgrid_sandbox.SandboxServer, helper: str) -> Any:
    return requests.get(f"{server.url}/_sandbox/{helper}", timeout=30).json()


def sandbox_config(server: sendgrid_sandbox.SandboxServer, **config: Any) -> None:
    requests.post(f"{server.url}/_sandbox/config", json=config, timeout=30).raise_for_status()


def put_requests(server: sendgrid_sandbox.SandboxServer) -> list[dict[str, Any]]:
    return [
        r for r in sandbox_get(server, "requests")["requests"] if r["method"] == "PUT" and r["path"] == "/v3/marketing/contacts"
    ]


# -- the sample segment used by the end-to-end tests --------------------------------------------
FOLDER = "CustomerInsights_test/SendGridExport"
SEGMENT = "HighValueCustomers"
COLUMNS = ("CustomerId", "FirstName", "LastName", "EMail", "City", "State", "PostCode", "Country", "Tier", "Value")


def person(i: int, email: str | None = None, **changes: str) -> list[str]:
    values = {
        "CustomerId": f"C{i}",
        "FirstName": f"First{i}",
        "LastName": f"Last{i}",
        "EMail": email if email is not None else f"person{i}@example.com",
        "City": "Lisbon",
        "State": "Lisboa",
        "PostCode": "1100-148",
        "Country": "Portugal",
        "Tier": "Gold",
        "Value": str(i),
    }
    values.update(changes)
    return [values[c] for c in COLUMNS]


def write(container: ContainerClient, partitions: list[list[list[str]]], **kwargs: Any) -> None:
    write_export(container, FOLDER, SEGMENT, [csv_bytes(rows) for rows in partitions], COLUMNS, **kwargs)


def run(app: App, name: str = "vip", body: bytes = b"") -> routes.ApiResponse:
    """POST .../run inline ({"wait": true} added to a JSON body): the report comes back as 200."""
    return routes.handle(app, "POST", name, "run", inline_body(body))


def inline_body(body: bytes) -> bytes:
    """`body` with "wait": true, so the run answers its report (a body that is not a JSON object
    is left as it is: it is the test's point)."""
    try:
        options = json.loads(body) if body.strip() else {}
    except ValueError:
        return body
    if not isinstance(options, dict) or "wait" in options:
        return body
    return json.dumps({**options, "wait": True}).encode()


def contacts_by_email(sandbox: Any) -> dict[str, dict[str, Any]]:
    return {c["email"]: c for c in sandbox_get(sandbox, "contacts")["contacts"]}


def rejects_rows(blob_service: BlobServiceClient, state_container: str, blob: str) -> list[dict[str, str]]:
    data = blob_service.get_container_client(state_container).download_blob(blob).readall().decode()
    return list(csv.DictReader(io.StringIO(data)))


CUSTOM = {"loyalty_tier": "Tier", "lifetime_value": "Value"}


def tls_files(folder: Path) -> tuple[str, str, str]:
    """A local CA and a certificate for localhost/127.0.0.1 issued by it, written to `folder`:
    (certificate chain, private key, CA certificate) paths, for the HTTPS stand-ins."""
    import trustme  # noqa: PLC0415 - tests only

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_file, key_file, ca_file = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    return str(cert_file), str(key_file), str(ca_file)


# Every enabled export run inline, one after another; one failing stops none. The timer trigger
# queues one run per export (`handlers.enqueue_all`); tests that want every export run in this
# process, waiting for each, use this.
def run_all(app: App, *, trigger: str = "timer") -> list[dict[str, Any]]:
    """Run every definition whose `enabled` is not false; a summary line per export."""
    log = logging.getLogger("run_all")
    summaries: list[dict[str, Any]] = []
    for name, raw in app.settings.definitions.items():
        if raw.get("enabled", True) is False:
            log.info("export '%s': disabled, skipped", name)
            summaries.append({"export": name, "status": "skipped"})
            continue
        try:
            report = run_export(name, raw, app.services, trigger=trigger)
        except ExportError as exc:  # run_in_progress: another run holds this export
            log.info("export '%s': skipped, %s", name, exc.message)
            summaries.append({"export": name, "status": "skipped", "error": exc.code})
            continue
        except Exception as exc:  # a bug in one export's run must not stop the others
            log.error("export '%s': unexpected %s; going on with the other exports", name, type(exc).__name__)
            summaries.append({"export": name, "status": "failed", "error": "internal_error"})
            continue
        summaries.append(
            {
                "export": name,
                "status": report.status,
                "sent": report.counts.sent,
                "error": report.error.code if report.error else None,
            }
        )
    ok = sum(1 for s in summaries if s["status"] == "succeeded")
    log.info(
        "scheduled run: %d of %d export(s) succeeded: %s",
        ok,
        len(summaries),
        ", ".join(f"{s['export']}={s['status']}" for s in summaries),
    )
    return summaries
