"""Run-queue messages are checked like HTTP input: a message naming a run id that is not one, an
unknown trigger or option, numbers out of bounds, deep nesting or an oversized body is dropped
by the real worker (export_worker.main, as the host calls it) with a log line naming the reason,
never the body, writes nothing to the state container, and is not retried into the poison queue.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import azure.functions.queue as func_queue
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient
from helpers import definition, person, put_requests, write
from queue_harness import QueueHost

import export_worker
from shared.engine import messages

RUN_ID = "20260101T020000Z-0a1b2c"
HANDLERS_LOGGER = "shared.engine.handlers"


def work(**changes: Any) -> str:
    body: dict[str, Any] = {"kind": "run", "export": "vip", "run_id": RUN_ID, "trigger": "http"}
    body.update(changes)
    return json.dumps(body)


def deep(depth: int) -> str:
    return '{"kind": "run", "export": "vip", "run_id": "' + RUN_ID + '", "options": ' + "[" * depth + "]" * depth + "}"


# (what is wrong, the message text as stored in the queue, a part of it no log line may show)
BAD = [
    ("run id climbing out of its export", work(run_id="../other/latest"), "../other"),
    (
        "run id climbing out, confirm",
        work(kind="confirm", run_id="../../checkpoints/other", since=1.0, interval=60),
        "checkpoints",
    ),
    ("run id of another shape", work(run_id="latest"), None),
    ("run id with a line break", work(run_id=RUN_ID + "\nforged log line"), "forged"),
    ("export name with markup", work(export="<b>vip</b>"), "<b>"),
    ("unknown trigger", work(trigger="cron\nforged"), "forged"),
    ("trigger not a string", work(trigger=["http"]), None),
    ("option the HTTP API does not queue", work(options={"wait": True}), None),
    ("unknown option", work(options={"delete_everything": True}), "delete_everything"),
    ("option not a boolean", work(options={"full_refresh": "yes"}), None),
    ("infinite since", work(kind="confirm", since=float("inf"), interval=60), None),
    ("since too large for JSON floats", work(kind="confirm", since=1e400, interval=60).replace("Infinity", "1e400"), None),
    ("interval not a number", work(kind="confirm", since=1.0, interval=float("nan")), None),
    ("negative interval", work(kind="confirm", since=1.0, interval=-5), None),
    ("interval past the queue's longest delay", work(kind="confirm", since=1.0, interval=10**9), None),
    ("tries not whole", work(tries=1.5), None),
    ("tries huge", work(tries=10**30), None),
    ("tries infinite", work(tries=float("inf")), None),
    ("a key given twice", work()[:-1] + ', "run_id": "../other/latest"}', "../other"),
    ("a key no unit of work has", work(path="runs/other/latest.json"), "runs/other"),
    ("deep nesting", deep(20_000), None),
    ("deep nesting, Base64-encoded", base64.b64encode(deep(20_000).encode()).decode(), None),
    ("deep nesting in an event list", "[" * 20_000 + "]" * 20_000, None),
    (
        "an event subject with a line break",
        json.dumps({"eventType": messages.BLOB_CREATED, "subject": "/blobServices/default/containers/c/blobs/a\nb/model.json"}),
        None,
    ),
]


def deliver(host: QueueHost, text: str) -> None:
    """One message through the trigger as the host hands it over, deleted once the call returns
    (QueueHost.drain does the same, but labels each message by parsing it, which deep nesting
    breaks)."""
    host.put(text)
    (message,) = host.queue.receive_messages(max_messages=1, visibility_timeout=600)
    body = str(message.content).encode()
    export_worker.main(func_queue.QueueMessage(id=message.id, body=body, dequeue_count=message.dequeue_count))
    host.queue.delete_message(message)


def state_blobs(blob_service: BlobServiceClient, name: str) -> list[str]:
    try:
        return [blob.name for blob in blob_service.get_container_client(name).list_blobs()]
    except ResourceNotFoundError:
        return []


@pytest.mark.parametrize(("what", "text", "secret"), BAD, ids=[case[0] for case in BAD])
def test_a_bad_message_is_dropped_with_its_reason_and_writes_nothing(
    app_factory: Any,
    source_container: ContainerClient,
    sandbox: Any,
    blob_service: BlobServiceClient,
    state_container_name: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    what: str,
    text: str,
    secret: str | None,
) -> None:
    write(source_container, [[person(i) for i in range(1, 4)]])
    app = app_factory([definition(), definition(name="other")])
    host = QueueHost(app, monkeypatch)
    before = state_blobs(blob_service, state_container_name)
    with caplog.at_level(logging.DEBUG):
        deliver(host, text)  # raises if the worker does: the host would retry, then poison it
    assert host.waiting() == 0, what  # and nothing was queued in its name
    dropped = [r.getMessage() for r in caplog.records if r.name == HANDLERS_LOGGER and "message dropped" in r.getMessage()]
    assert len(dropped) == 1, (what, caplog.text[-2000:])
    assert dropped[0].split("message dropped: ", 1)[1].strip(), what  # a reason is named
    if secret is not None:
        assert secret not in caplog.text, what
    assert state_blobs(blob_service, state_container_name) == before, what
    assert put_requests(sandbox) == []


def test_an_oversized_body_is_dropped_before_it_is_parsed(
    app_factory: Any,
    blob_service: BlobServiceClient,
    state_container_name: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A Storage queue holds at most 64 KiB a message, so this one is handed to the trigger
    # directly, the way the host hands over any message.
    app = app_factory([definition()])
    QueueHost(app, monkeypatch)  # get_app() answers this app
    body = work(padding="x" * 64 * 1024).encode()  # the cap: 64 KiB, the most a queue message holds
    with caplog.at_level(logging.INFO):
        export_worker.main(func_queue.QueueMessage(id="1", body=body, dequeue_count=1))
    assert any("message dropped" in r.getMessage() and "bytes" in r.getMessage() for r in caplog.records)
    assert "xxxxxxxx" not in caplog.text
    assert state_blobs(blob_service, state_container_name) == []
