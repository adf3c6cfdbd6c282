"""The composition root: builds the services and the app from settings, once per process (warm
Functions instances reuse them). Only the top (the routes, the CLI, the triggers) calls it; no
stage of a run or of the engine imports it."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from azure.storage.blob import BlobServiceClient

from shared.sendgrid.client import RetryPolicy, SendGridClient
from shared.sendgrid.keys import ApiKeyStore, ApiKeyStores
from shared.services import Account, App, JobPolling, Services
from shared.settings import Settings, load_settings
from shared.source.blob import DOWNLOAD_CHUNK_BYTES, BlobSource
from shared.state.queue import RunQueue, run_queue
from shared.state.store import StateStore


def blob_service(connection_string: str | None, account_url: str | None) -> BlobServiceClient:
    # Small download pieces keep memory flat however large a partition is.
    # Uploads likewise: above 4 MiB a blob (the delivered record) goes up in blocks, not read whole.
    options: dict[str, Any] = {
        "max_single_get_size": DOWNLOAD_CHUNK_BYTES,
        "max_chunk_get_size": DOWNLOAD_CHUNK_BYTES,
        "max_single_put_size": DOWNLOAD_CHUNK_BYTES,
        "max_block_size": DOWNLOAD_CHUNK_BYTES,
    }
    if connection_string:
        return BlobServiceClient.from_connection_string(connection_string, **options)
    assert account_url
    # Imported only here: azure-identity costs ~40 ms of CPU to import (-X importtime), for nothing where a
    # connection string is used (local use, tests, the bench).
    from azure.identity import DefaultAzureCredential  # noqa: PLC0415 - lazy: cold start

    return BlobServiceClient(account_url, credential=DefaultAzureCredential(), **options)


def account_of(raw: Mapping[str, Any]) -> Account:
    """The account a raw definition names; anything malformed is the default account here (the
    definition itself is refused when it runs, and re-checking jobs of the default is harmless)."""
    secret, region = raw.get("sendgrid_api_key_secret"), raw.get("sendgrid_region", "global")
    return Account(secret if isinstance(secret, str) else None, "eu" if region == "eu" else "global")


def build_services(
    settings: Settings, api_keys: ApiKeyStore | ApiKeyStores | None = None, policy: RetryPolicy | None = None
) -> Services:
    source = blob_service(settings.source_connection_string, settings.source_account_url)
    # State lives in an account the app owns (the source's when no other is set, for local use).
    state = blob_service(settings.state_connection_string, settings.state_account_url)
    # One key store per secret; an `api_keys` store (tests) stands for the default secret's.
    if isinstance(api_keys, ApiKeyStores):
        keys = api_keys
    else:
        keys = ApiKeyStores(settings.key_vault_url, settings.api_key_secret_name, settings.local_api_key, default=api_keys)
    roots = {"global": settings.sendgrid_base_url, "eu": settings.sendgrid_eu_base_url}

    def client(account: Account) -> SendGridClient:
        return SendGridClient(roots[account.region], keys.for_secret(account.secret), policy=policy or RetryPolicy())

    return Services(
        source=BlobSource(source.get_container_client(settings.source_container)),
        state=StateStore(state.get_container_client(settings.state_container)),
        sendgrid=lambda: client(Account()),
        sendgrid_for=client,
        accounts={name: account_of(raw) for name, raw in settings.definitions.items() if isinstance(raw, dict)},
        time_limit=settings.run_time_limit_seconds,
        job_polling=JobPolling(max_wait=settings.job_wait_seconds, awaited=settings.job_wait_seconds),
        lease_seconds=settings.run_lease_seconds,
        max_contacts_per_request=settings.max_contacts_per_request,
        queue=_queue(settings),
    )


def _queue(settings: Settings) -> RunQueue | None:
    """The run queue: the host account's queue endpoint by identity, or (local use) the state
    account's connection string, which for Azurite names its QueueEndpoint too."""
    if not settings.queue_service_url and not settings.state_connection_string:
        return None
    return run_queue(settings.run_queue, settings.state_connection_string, settings.queue_service_url)


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
