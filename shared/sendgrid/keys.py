"""The only module that reads Key Vault: the SendGrid API keys, each cached per process.

One vault may hold several keys, one per SendGrid account (a definition names its secret):
`ApiKeyStores` keeps one `ApiKeyStore` per secret name, so each key is read once, re-read after
a 401 on its own account only, and a missing or bad key fails only the exports that use it.

A key is never logged, returned by the API or written to a report. Without KEY_VAULT_URL the
SENDGRID_API_KEY setting is the one key of every export (local development only, settings.py).
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared.errors import ExportError

if TYPE_CHECKING:
    from azure.keyvault.secrets import SecretClient

log = logging.getLogger(__name__)


class ApiKeyStore:
    """Callable as `store(refresh)`: the key, read once and kept; refresh=True reads it again
    (used after a 401, so a rotated key is picked up by a warm instance without a restart)."""

    def __init__(
        self,
        vault_url: str | None,
        secret_name: str,
        local_key: str | None = None,
        *,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        if not vault_url and not local_key:
            raise ValueError("a vault URL or a local key is required")
        self._vault_url = vault_url
        self._secret_name = secret_name
        self._local_key = local_key
        # Extra SecretClient keyword arguments; only tests against a local stand-in need any.
        self._client_options = client_options or {}
        self._client: SecretClient | None = None
        self._cached: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show the key
        return f"ApiKeyStore(vault={self._vault_url!r}, secret={self._secret_name!r})"

    def __call__(self, refresh: bool = False) -> str:
        if not self._vault_url:
            assert self._local_key is not None
            return self._local_key
        with self._lock:
            if self._cached is None or refresh:
                self._cached = self._read()
            return self._cached

    def _read(self) -> str:
        try:
            if self._client is None:
                assert self._vault_url, "no vault: a local key is used instead"
                # Imported on the first read: without KEY_VAULT_URL (a local key) a process never
                # needs azure-keyvault-secrets or azure-identity (~50 ms of CPU to import, -X importtime).
                from azure.identity import DefaultAzureCredential  # noqa: PLC0415 - lazy: cold start
                from azure.keyvault.secrets import SecretClient  # noqa: PLC0415 - lazy: cold start

                self._client = SecretClient(self._vault_url, DefaultAzureCredential(), **self._client_options)
            value = self._client.get_secret(self._secret_name).value
        except ResourceNotFoundError:
            raise ExportError(
                "keyvault_unavailable",
                f"secret '{self._secret_name}' is not in the vault; set it with "
                f"'az keyvault secret set --name {self._secret_name} ...'",
            ) from None
        except AzureError as exc:
            # Azure messages can be long and name internals; type and status say enough.
            status = getattr(exc, "status_code", None) or ""
            raise ExportError("keyvault_unavailable", f"Key Vault read failed: {type(exc).__name__} {status}".strip()) from None
        if not value:
            raise ExportError("keyvault_unavailable", f"secret '{self._secret_name}' is empty")
        log.info("SendGrid API key read from Key Vault (secret '%s')", self._secret_name)
        return value


class ApiKeyStores:
    """One `ApiKeyStore` per secret name, made on first use and kept (warm instances reuse them).
    `default`: the store of SENDGRID_API_KEY_SECRET_NAME, used by definitions naming no secret
    (tests may pass a ready one)."""

    def __init__(
        self,
        vault_url: str | None,
        default_secret: str,
        local_key: str | None = None,
        *,
        default: ApiKeyStore | None = None,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self._vault_url = vault_url
        self._local_key = local_key
        self._client_options = client_options
        self.default_secret = default_secret
        self._stores: dict[str, ApiKeyStore] = {}
        if default is not None:
            self._stores[default_secret] = default
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ApiKeyStores(vault={self._vault_url!r}, secrets={sorted(self._stores)!r})"

    def for_secret(self, secret: str | None) -> ApiKeyStore:
        name = secret or self.default_secret
        with self._lock:
            store = self._stores.get(name)
            if store is None:
                store = ApiKeyStore(self._vault_url, name, self._local_key, client_options=self._client_options)
                self._stores[name] = store
            return store
