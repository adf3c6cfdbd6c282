"""Plays the Functions host for the queue worker: reads the app's run queue in Azurite, calls
`export_worker.main` with an `azure.functions` QueueMessage, deletes the message when the call
returns, makes it visible again when it raises, and moves it to `<queue>-poison` after
host.json's maxDequeueCount failed tries, as the Storage Queues extension does."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import azure.functions.queue as func_queue
import pytest
from azure.storage.queue import QueueClient
from helpers import ROOT

import export_worker
from shared.api import compose as services_module
from shared.services import App


class WorkerCrash(BaseException):  # noqa: N818 - a stand-in for the instance dying mid-invocation
    """Raised by a test's clock: nothing in the app catches it, as nothing survives a crash."""


def host_queue_settings() -> dict[str, Any]:
    return dict(json.loads((ROOT / "host.json").read_text())["extensions"]["queues"])


@dataclass
class Invocation:
    kind: str  # run | continue | confirm | event
    export: str | None
    dequeue_count: int
    outcome: str  # done | retried | poisoned


class QueueHost:
    def __init__(self, app: App, monkeypatch: pytest.MonkeyPatch, retry_delay: int = 0) -> None:
        settings = app.settings
        assert settings.state_connection_string and "QueueEndpoint" in settings.state_connection_string
        self.queue = QueueClient.from_connection_string(settings.state_connection_string, settings.run_queue)
        self.poison = QueueClient.from_connection_string(settings.state_connection_string, f"{settings.run_queue}-poison")
        self.max_dequeue = int(host_queue_settings()["maxDequeueCount"])
        self.retry_delay = retry_delay  # host.json's visibilityTimeout, shortened for tests
        self.invocations: list[Invocation] = []
        monkeypatch.setattr(services_module, "_app", app)  # what get_app() answers in export_worker

    def put(self, text: str) -> None:
        """A message as another writer (Event Grid) puts it: the text as it is."""
        try:
            self.queue.create_queue()
        except Exception:  # noqa: BLE001 - it exists
            pass
        self.queue.send_message(text)

    def waiting(self) -> int:
        try:
            return self.queue.get_queue_properties().approximate_message_count or 0
        except Exception:  # noqa: BLE001 - no queue yet: nothing was sent
            return 0

    def drain(self, timeout: float = 60.0) -> list[Invocation]:
        """Run messages until the queue is empty, delayed ones included (waiting for them)."""
        deadline = time.monotonic() + timeout
        start = len(self.invocations)
        while time.monotonic() < deadline:
            received = list(self.queue.receive_messages(max_messages=1, visibility_timeout=600))
            if not received:
                if not self.waiting():
                    return self.invocations[start:]
                time.sleep(0.2)
                continue
            self._invoke(received[0])
        raise TimeoutError(f"the run queue was not empty after {timeout}s: {self.invocations[start:]}")

    def _invoke(self, message: Any) -> None:
        body = str(message.content).encode()
        kind, export = describe(body)
        qm = func_queue.QueueMessage(
            id=message.id, body=body, dequeue_count=message.dequeue_count, pop_receipt=message.pop_receipt
        )
        try:
            export_worker.main(qm)
        except (Exception, WorkerCrash):
            outcome = self.failed(message)
        else:
            self.queue.delete_message(message)
            outcome = "done"
        self.invocations.append(Invocation(kind, export, message.dequeue_count, outcome))

    def failed(self, message: Any) -> str:
        """What the host does with a message whose invocation raised: to `<queue>-poison` after
        maxDequeueCount tries, else visible again after visibilityTimeout."""
        if message.dequeue_count >= self.max_dequeue:
            try:
                self.poison.create_queue()
            except Exception:  # noqa: BLE001 - it exists
                pass
            self.poison.send_message(message.content)
            self.queue.delete_message(message)
            return "poisoned"
        self.queue.update_message(message, visibility_timeout=self.retry_delay)
        return "retried"

    def poisoned(self) -> list[str]:
        try:
            return [str(m.content) for m in self.poison.peek_messages(max_messages=32)]
        except Exception:  # noqa: BLE001 - no poison queue: nothing poisoned
            return []


def describe(body: bytes) -> tuple[str, str | None]:
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return "event", None
    if isinstance(parsed, dict) and "kind" in parsed:
        return str(parsed["kind"]), str(parsed.get("export"))
    return "event", None
