"""A real run through the queue worker, invoked as the Python worker invokes it (with a
`context`): every log record written on a thread the run started (sender, poller, confirm,
record upload, lease renewal) carries the invocation id, as the host reads it, from the
context's thread-local storage.

`HostContext` stands in for the host's interface (azure.functions.Context: `invocation_id` and
`thread_local_storage`, a threading.local; docs/reference.md, "The Python worker")."""

from __future__ import annotations

import logging
import threading
from typing import Any

import azure.functions.queue as func_queue
import pytest
from azure.storage.blob import ContainerClient
from helpers import definition, person, sandbox_config, write
from queue_harness import QueueHost

import export_worker
from shared.api import routes
from tools.sendgrid_sandbox import Fault

APP_THREADS = {"sender", "poller", "confirm", "record-upload", "run-lease"}


class HostContext:
    def __init__(self, invocation_id: str) -> None:
        self.invocation_id = invocation_id
        self.thread_local_storage = threading.local()


class InvocationIds(logging.Handler):
    """Each record's thread, and the invocation id the host would give it (read on that thread)."""

    def __init__(self, context: HostContext) -> None:
        super().__init__(logging.DEBUG)
        self.context = context
        self.seen: list[tuple[str, str | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.threadName or "", getattr(self.context.thread_local_storage, "invocation_id", None)))


@pytest.mark.slow  # the lease is renewed every 5 s: the run lasts longer
def test_log_lines_from_the_threads_of_a_real_run_carry_the_invocation_id(
    app_factory: Any, source_container: ContainerClient, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(source_container, [[person(i) for i in range(1, 31)]])
    sandbox_config(sandbox, job_pending_polls=2)  # earlier jobs still pending: the poller asks
    # Three requests of 2 s each: the run outlives the lease's first renewal (15 s lease, every 5 s).
    sandbox.state.faults.append(Fault(method="PUT", path="/v3/marketing/contacts", status=0, times=3, delay=2.0))
    app = app_factory([definition()], services={"max_contacts_per_request": 10, "lease_seconds": 15})
    assert routes.handle(app, "POST", "vip", "run", b"").status == 202
    host = QueueHost(app, monkeypatch)
    (message,) = host.queue.receive_messages(max_messages=1, visibility_timeout=600)

    context = HostContext("0b5c6c2e-invocation")
    handler = InvocationIds(context)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)  # urllib3 notes every request at DEBUG, on the thread that sends it
    try:
        export_worker.main(
            func_queue.QueueMessage(id=message.id, body=str(message.content).encode(), dequeue_count=1),
            context,  # type: ignore[arg-type]  # the host's interface, as the worker passes it
        )
    finally:
        root.removeHandler(handler)
        root.setLevel(level)

    main = threading.current_thread().name
    by_thread = {name.rsplit("_", 1)[0] for name, _ in handler.seen if name != main}
    assert by_thread >= APP_THREADS, by_thread
    missing = sorted({name for name, seen in handler.seen if name != main and seen != context.invocation_id})
    assert missing == [], missing
