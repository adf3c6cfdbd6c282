"""The clients a run uses (`Services`), built from settings once per process (warm Functions
instances reuse them)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.identity import DefaultAzureCredential
from azure.storage.blob import BlobServiceClient

from shared import chunking
from shared.keyvault import ApiKeyStore
from shared.sendgrid import RetryPolicy, SendGridClient
from shared.settings import Settings, load_settings
from shared.source import DOWNLOAD_CHUNK_BYTES, BlobSource
from shared.state import StateStore


@dataclass(frozen=True)
class JobPolling:
    """How long a run waits for SendGrid to apply what it accepted. Jobs still pending after
    `max_wait` are checked again by the status endpoint and by the next run."""

    max_wait: float = 300.0
    first_interval: float = 1.0
    max_interval: float = 30.0


@dataclass
class Services:
    source: BlobSource
    state: StateStore
    sendgrid: Callable[[], SendGridClient]  # made on demand: a refused definition needs none
    workdir: str | None = None
    max_contacts_per_request: int = chunking.MAX_CONTACTS_PER_REQUEST
    max_body_bytes: int = chunking.MAX_BODY_BYTES
    # Seconds a run may go on sending before it checkpoints and stops (under functionTimeout).
    time_limit: float = 25 * 60
    job_polling: JobPolling = field(default_factory=JobPolling)
    lease_seconds: int = 60
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def blob_service(connection_string: str | None, account_url: str | None) -> BlobServiceClient:
    # Small download pieces keep memory flat however large a partition is.
    options: dict[str, Any] = {"max_single_get_size": DOWNLOAD_CHUNK_BYTES, "max_chunk_get_size": DOWNLOAD_CHUNK_BYTES}
    if connection_string:
        return BlobServiceClient.from_connection_string(connection_string, **options)
    assert account_url
    return BlobServiceClient(account_url, credential=DefaultAzureCredential(), **options)


def build_services(
    settings: Settings, api_keys: ApiKeyStore | None = None, policy: RetryPolicy | None = None
) -> Services:
    source = blob_service(settings.source_connection_string, settings.source_account_url)
    # State lives in an account the app owns (the source's when no other is set, for local use).
    state = blob_service(settings.state_connection_string, settings.state_account_url)
    keys = api_keys or ApiKeyStore(settings.key_vault_url, settings.api_key_secret_name, settings.local_api_key)
    return Services(
        source=BlobSource(source.get_container_client(settings.source_container)),
        state=StateStore(state.get_container_client(settings.state_container)),
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
