"""Builds the clients from settings, once per process (warm Functions instances reuse them)."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

from azure.identity import DefaultAzureCredential
from azure.storage.blob import BlobServiceClient

from shared.exporter import JobPolling, Services
from shared.keyvault import ApiKeyStore
from shared.sendgrid import RetryPolicy, SendGridClient
from shared.settings import Settings, load_settings
from shared.source import DOWNLOAD_CHUNK_BYTES, BlobSource
from shared.state import StateStore


def blob_service(settings: Settings) -> BlobServiceClient:
    # Small download pieces keep memory flat however large a partition is.
    options = {"max_single_get_size": DOWNLOAD_CHUNK_BYTES, "max_chunk_get_size": DOWNLOAD_CHUNK_BYTES}
    if settings.source_connection_string:
        return BlobServiceClient.from_connection_string(settings.source_connection_string, **options)
    assert settings.source_account_url
    return BlobServiceClient(settings.source_account_url, credential=DefaultAzureCredential(), **options)


def build_services(
    settings: Settings, api_keys: ApiKeyStore | None = None, policy: RetryPolicy | None = None
) -> Services:
    service = blob_service(settings)
    keys = api_keys or ApiKeyStore(settings.key_vault_url, settings.api_key_secret_name, settings.local_api_key)
    return Services(
        source=BlobSource(service.get_container_client(settings.source_container)),
        state=StateStore(service.get_container_client(settings.state_container)),
        sendgrid=lambda: SendGridClient(settings.sendgrid_base_url, keys, policy=policy or RetryPolicy()),
        time_limit=settings.run_time_limit_seconds,
        job_polling=JobPolling(max_wait=settings.job_wait_seconds),
        lease_seconds=settings.run_lease_seconds,
        max_contacts_per_request=settings.max_contacts_per_request,
    )


class App:
    """Settings and services of this process, made on first use."""

    def __init__(self, settings: Settings, services: Services) -> None:
        self.settings = settings
        self.services = services


_app: App | None = None
_lock = threading.Lock()


def get_app(env: Mapping[str, str] | None = None) -> App:
    """The process-wide app. Raises SettingsError (naming the setting) when settings are bad."""
    global _app
    with _lock:
        if _app is None:
            settings = load_settings(os.environ if env is None else env)
            _app = App(settings, build_services(settings))
        return _app


def reset_app() -> None:
    """Forget the process-wide app (tests change settings between cases)."""
    global _app
    with _lock:
        _app = None
