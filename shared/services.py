"""The clients a run uses (`Services`), built from settings once per process (warm Functions
instances reuse them). A run's SendGrid client is made for its definition's account (API key
secret and region); the default account's client serves callers that have no definition."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.storage.blob import BlobServiceClient

from shared import chunking
from shared.definitions import ExportDefinition, Region
from shared.keyvault import ApiKeyStore, ApiKeyStores
from shared.queue import RunQueue, run_queue
from shared.sendgrid import RetryPolicy, SendGridClient
from shared.settings import Settings, load_settings
from shared.source import DOWNLOAD_CHUNK_BYTES, BlobSource
from shared.state import StateStore


@dataclass(frozen=True)
class JobPolling:
    """How long a run waits for SendGrid to apply what it accepted. Jobs still pending after
    `max_wait` are checked again by the status endpoint and by the next run. A round of polls is
    one request while SendGrid works (confirm.confirm), so the first wait is short: a run whose
    jobs end quickly ends within half a second of them."""

    max_wait: float = 300.0
    first_interval: float = 0.5
    max_interval: float = 30.0


@dataclass(frozen=True)
class Account:
    """A SendGrid account as a definition names it: its key's secret (None: the default) and region."""

    secret: str | None = None
    region: Region = "global"


@dataclass
class Services:
    source: BlobSource
    state: StateStore
    sendgrid: Callable[[], SendGridClient]  # the default account's client, made on demand
    # A client for an account (built services have one; hand-made ones may use `sendgrid` only).
    sendgrid_for: Callable[[Account], SendGridClient] | None = None
    accounts: dict[str, Account] = field(default_factory=dict)  # export name -> its account
    workdir: str | None = None
    max_contacts_per_request: int = chunking.MAX_CONTACTS_PER_REQUEST
    max_body_bytes: int = chunking.MAX_BODY_BYTES
    # Seconds a run may go on sending before it checkpoints and stops (under functionTimeout).
    time_limit: float = 25 * 60
    job_polling: JobPolling = field(default_factory=JobPolling)
    lease_seconds: int = 60
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    queue: RunQueue | None = None  # the run queue (None: not configured; queued runs are refused)

    def client_for(self, definition: ExportDefinition) -> SendGridClient:
        """A new client for the definition's account (a refused definition never needs one)."""
        return self._client(Account(definition.sendgrid_api_key_secret, definition.sendgrid_region))

    def client_for_export(self, name: str) -> SendGridClient:
        """A new client for a configured export's account, by name (re-checking its import jobs)."""
        return self._client(self.accounts.get(name, Account()))

    def _client(self, account: Account) -> SendGridClient:
        if self.sendgrid_for is None or account == Account():
            return self.sendgrid()
        return self.sendgrid_for(account)


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
        job_polling=JobPolling(max_wait=settings.job_wait_seconds),
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
