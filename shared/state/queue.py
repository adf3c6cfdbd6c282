"""The run queue: the only module that speaks to Azure Storage Queues.

Messages are JSON text sent as it is (no Base64): host.json declares
`extensions.queues.messageEncoding: "none"`, so the queue trigger hands the worker the text as it
was stored, whoever wrote it (this app, or Event Grid; see shared/engine/messages.py for how
both encodings are read). A delay is the message's initial invisibility (`visibility_timeout` of
Put Message, at most 7 days; azure-storage-queue `QueueClient.send_message`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceExistsError

from shared.errors import ExportError

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

log = logging.getLogger(__name__)

MAX_DELAY_SECONDS = 7 * 24 * 3600  # Put Message: visibilitytimeout is at most 7 days
WHAT = "the run queue"


class RunQueue:
    """Sends work to the run queue (`RUN_QUEUE`); made once per process. Its client is made by
    `connect` on the first send: a process that never queues (a run, a GET) never loads the
    queue SDK."""

    def __init__(self, name: str, connect: Callable[[], QueueClient]) -> None:
        self._name = name
        self._connect = connect
        self._made: QueueClient | None = None
        self._ready = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def _client(self) -> QueueClient:
        if self._made is None:  # two threads racing here make two equal clients: harmless
            self._made = self._connect()
        return self._made

    @property
    def poison_name(self) -> str:
        return f"{self.name}-poison"  # where the host moves a message after maxDequeueCount failures

    def ensure(self) -> None:
        """Create the queue when it is missing (infra creates it in Azure; Azurite starts empty)."""
        if self._ready:
            return
        try:
            self._client.create_queue()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise ExportError("storage_unavailable", f"{WHAT} could not be reached ({type(exc).__name__})") from None
        self._ready = True

    def send(self, message: dict[str, Any], delay: float = 0) -> None:
        """Put one message, visible after `delay` seconds (rounded up to whole seconds)."""
        self.ensure()
        seconds = min(MAX_DELAY_SECONDS, max(0, int(-(-delay // 1))))
        try:
            self._client.send_message(json.dumps(message, separators=(",", ":")), visibility_timeout=seconds or None)
        except AzureError as exc:
            raise ExportError("storage_unavailable", f"{WHAT} could not be written ({type(exc).__name__})") from None
        log.info(
            "queued '%s' for export '%s'%s",
            message.get("kind"),
            message.get("export"),
            f", visible in {seconds}s" if seconds else "",
        )


def run_queue(name: str, connection_string: str | None, account_url: str | None) -> RunQueue:
    """The queue client: by identity on the host account's queue endpoint in Azure, by connection
    string locally (Azurite's, with its QueueEndpoint). No encode policy: text goes as it is."""
    if not account_url and not connection_string:
        raise ExportError("internal_error", "no run queue: set AzureWebJobsStorage__queueServiceUri")

    def connect() -> QueueClient:
        # Imported here, on the first send: azure-storage-queue (and azure-identity) cost ~75 ms of
        # CPU to import (-X importtime), which a process that never queues should not pay.
        from azure.storage.queue import QueueClient  # noqa: PLC0415 - lazy: cold start

        if account_url:
            from azure.identity import DefaultAzureCredential  # noqa: PLC0415 - lazy: cold start

            return QueueClient(account_url, name, credential=DefaultAzureCredential())
        assert connection_string is not None
        return QueueClient.from_connection_string(connection_string, name)

    return RunQueue(name, connect)
