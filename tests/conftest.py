"""Test setup: real stand-ins, started here. Azurite once per session; a SendGrid sandbox per
test (cheap, and each test gets a clean account); containers named per test."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.storage.blob import BlobServiceClient, ContainerClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.exporter import JobPolling, Services  # noqa: E402
from shared.keyvault import ApiKeyStore  # noqa: E402
from shared.sendgrid import RetryPolicy  # noqa: E402
from shared.services import App, build_services  # noqa: E402
from shared.settings import load_settings  # noqa: E402
from tools import sendgrid_sandbox  # noqa: E402
from tools.localstack import start_azurite  # noqa: E402

REFERENCE = ROOT.parent / "shared" / "reference"
LIST_ID = "0f9c3a4e-1b2d-4c5e-8f70-123456789abc"
OTHER_LIST_ID = "a1b2c3d4-e5f6-4789-8abc-def012345678"
API_KEY = "SG.test-key"
# Same logic as production, shorter waits: backoff from 10 ms, rate-limit waits still honoured.
FAST_RETRIES = RetryPolicy(base_delay=0.01, max_delay=0.05)


def reference_dir(*parts: str) -> Path:
    """A folder of ../shared/reference; tests that need it skip where it is absent."""
    path = REFERENCE.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference material not present ({path}); the project runs without it")
    return path


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    instance = start_azurite(tmp_path_factory.mktemp("azurite"))
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def blob_service(azurite: Any) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(azurite.connection_string)


@pytest.fixture
def source_container(blob_service: BlobServiceClient) -> ContainerClient:
    return blob_service.create_container(f"src-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def state_container_name() -> str:
    return f"state-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sandbox() -> Iterator[sendgrid_sandbox.SandboxServer]:
    state = sendgrid_sandbox.SandboxState(api_keys={API_KEY})
    state.add_list("newsletter", LIST_ID)
    state.add_list("other", OTHER_LIST_ID)
    state.add_field("loyalty_tier", "Text")
    state.add_field("lifetime_value", "Number")
    state.add_field("member_since", "Date")
    server = sendgrid_sandbox.start(state)
    yield server
    server.shutdown()
    server.server_close()


def definition(**overrides: Any) -> dict[str, Any]:
    base = {
        "name": "vip",
        "display_name": "VIP newsletter",
        "source_folder": "CustomerInsights_test/SendGridExport",
        "segment": "HighValueCustomers",
        "list_ids": [LIST_ID],
        "privacy_consent": True,
        "mapping": {"email": "EMail", "first_name": "FirstName", "last_name": "LastName", "city": "City",
                    "state_province_region": "State", "postal_code": "PostCode", "country": "Country"},
    }
    base.update(overrides)
    return base


def make_app(
    azurite: Any,
    source: ContainerClient,
    state_container: str,
    sandbox_url: str,
    definitions: list[dict[str, Any]],
    *,
    api_keys: ApiKeyStore | None = None,
    policy: RetryPolicy | None = FAST_RETRIES,
    **extra_env: str,
) -> App:
    env = {
        "SOURCE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "SOURCE_CONTAINER": source.container_name,
        "STATE_CONTAINER": state_container,
        "SENDGRID_API_BASE_URL": sandbox_url,
        "SENDGRID_API_KEY": API_KEY,
        "EXPORT_DEFINITIONS": json.dumps(definitions),
        **extra_env,
    }
    settings = load_settings(env)
    services = build_services(settings, api_keys, policy)
    # Poll import jobs every few milliseconds instead of seconds; the logic is the same.
    services.job_polling = JobPolling(max_wait=services.job_polling.max_wait, first_interval=0.02, max_interval=0.1)
    return App(settings, services)


@pytest.fixture
def app_factory(azurite: Any, source_container: ContainerClient, state_container_name: str, sandbox: Any):
    """make(definitions, **env) -> App wired to this test's Azurite containers and sandbox."""

    def make(definitions: list[dict[str, Any]], **kwargs: Any) -> App:
        return make_app(azurite, source_container, state_container_name, sandbox.url, definitions, **kwargs)

    return make


def sandbox_get(server: sendgrid_sandbox.SandboxServer, helper: str) -> Any:
    return requests.get(f"{server.url}/_sandbox/{helper}", timeout=30).json()


def sandbox_config(server: sendgrid_sandbox.SandboxServer, **config: Any) -> None:
    requests.post(f"{server.url}/_sandbox/config", json=config, timeout=30).raise_for_status()


def put_requests(server: sendgrid_sandbox.SandboxServer) -> list[dict[str, Any]]:
    return [r for r in sandbox_get(server, "requests")["requests"]
            if r["method"] == "PUT" and r["path"] == "/v3/marketing/contacts"]


def fast_services(services: Services, **changes: Any) -> Services:
    """The same services with other caps (small chunks make multi-request runs cheap)."""
    from dataclasses import replace  # noqa: PLC0415

    return replace(services, **changes)
