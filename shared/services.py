"""What a run and the engine receive: the clients a run uses (`Services`) and the app (`App`:
settings and services). Types only: `shared.api.compose` builds them from settings, once per
process (warm Functions instances reuse them). A run's SendGrid client is made for its
definition's account (API key secret and region); the default account's client serves callers
that have no definition."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.contacts import packing
from shared.definitions import ExportDefinition, Region
from shared.sendgrid.client import SendGridClient
from shared.settings import Settings
from shared.source.blob import BlobSource
from shared.state.queue import RunQueue
from shared.state.store import StateStore


@dataclass(frozen=True)
class JobPolling:
    """How long a run waits for SendGrid to apply what it accepted. This invocation polls for at
    most `max_wait` seconds (a queued run: none, confirm messages poll); the run's import jobs are
    awaited for `awaited` seconds after its last request (JOB_WAIT_SECONDS), over every invocation
    (confirm messages, the status endpoint, the next run): until then the run is `confirming`,
    after it final. A round of polls is one request while SendGrid works (confirm.confirm), so
    the first wait is short: a run whose jobs end quickly ends within half a second of them."""

    max_wait: float = 300.0
    first_interval: float = 0.5
    max_interval: float = 30.0
    awaited: float = 6 * 3600.0


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
    max_contacts_per_request: int = packing.MAX_CONTACTS_PER_REQUEST
    max_body_bytes: int = packing.MAX_BODY_BYTES
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


class App:
    """Settings and services of this process (`compose.get_app` makes it on first use)."""

    def __init__(self, settings: Settings, services: Services) -> None:
        self.settings = settings
        self.services = services
