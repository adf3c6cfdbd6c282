"""Fixtures: real stand-ins, started here. Azurite once per session; a SendGrid sandbox per test
(cheap, and each test gets a clean account); containers named per test. Helpers and constants
are in helpers.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from helpers import API_KEY, LIST_ID, OTHER_LIST_ID, REFERENCE, make_app, tls_files

from shared.services import App
from tools import keyvault_standin, sendgrid_sandbox
from tools.localstack import start_azurite


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without the official reference material beside the repository (most clones), the cases
    that check against it ("official" in their id) are not collected at all: a fresh clone runs
    the whole suite with no skips, on the project's own fixtures."""
    if REFERENCE.exists():
        return
    official = [item for item in items if "official" in item.nodeid]
    if official:
        config.hook.pytest_deselected(items=official)
        items[:] = [item for item in items if "official" not in item.nodeid]


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


@pytest.fixture
def app_factory(azurite: Any, source_container: ContainerClient, state_container_name: str, sandbox: Any) -> Callable[..., App]:
    """make(definitions, services={...}, **env) -> App wired to this test's Azurite containers and
    sandbox; `services` overrides fields of the built Services (smaller caps, shorter limits)."""

    def make(definitions: list[dict[str, Any]], services: dict[str, Any] | None = None, **kwargs: Any) -> App:
        app = make_app(azurite, source_container, state_container_name, sandbox.url, definitions, **kwargs)
        if services:
            app.services = replace(app.services, **services)
        return app

    return make


@pytest.fixture
def vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[keyvault_standin.KeyVaultStandIn, str]]:
    """The Key Vault stand-in over HTTPS, and the managed identity environment the Functions host
    sets (DefaultAzureCredential reads it): (stand-in, CA file to trust)."""
    cert_file, key_file, ca_file = tls_files(tmp_path)
    standin = keyvault_standin.start(cert_file, key_file)
    for name, value in standin.identity_env.items():
        monkeypatch.setenv(name, value)
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    yield standin, ca_file
    standin.stop()
