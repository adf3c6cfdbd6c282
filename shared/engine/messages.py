"""What a run-queue message says: one unit of work for one export (`run`, `continue`,
`confirm`), or an Event Grid event about a new Customer Insights export. Parsing only; the
engine (shared/engine/handlers.py) decides what to do.

Encoding. host.json sets `messageEncoding: "none"`, so the worker gets the stored text as it is.
This app writes plain JSON. Event Grid writes its events Base64-encoded today (shown by inspecting
the messages it delivers: MicrosoftDocs/azure-docs issue #102923, 2022), although it used to
write plain text (MicrosoftDocs/azure-docs issue #69702, 2021; Azure/azure-webjobs-sdk #2667).
So a body is read as JSON, and failing that as Base64 of JSON.

Event shapes (Event Grid "Storage queue as an event handler"; Blob Storage event schema): one
event per message, in the Event Grid schema (`eventType`, `subject`, `data`) or CloudEvents 1.0
(`type`, `subject`, `data`); a list of events is accepted too. A `Microsoft.Storage.BlobCreated`
subject is `/blobServices/default/containers/<container>/blobs/<path>`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from shared.definitions import is_export_name

KINDS = ("run", "continue", "confirm")
BLOB_CREATED = "Microsoft.Storage.BlobCreated"
METADATA_NAMES = ("model.json",)
METADATA_SUFFIX = ".manifest.cdm.json"
_SUBJECT_PREFIX = "/blobServices/default/containers/"


class BadMessage(ValueError):
    """A message this app cannot act on (it is logged and dropped: retrying cannot help)."""


@dataclass(frozen=True)
class Work:
    """One unit of work for one export."""

    kind: str  # run | continue | confirm
    export: str
    run_id: str
    trigger: str = "http"
    options: dict[str, bool] = field(default_factory=dict)
    since: float = 0.0  # confirm: when the run's confirmation began (epoch seconds)
    interval: float = 0.0  # confirm: the delay this message was sent with
    tries: int = 0  # run: times it found the export busy and was put back

    def to_message(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": self.kind, "export": self.export, "run_id": self.run_id, "trigger": self.trigger}
        if self.options:
            body["options"] = dict(self.options)
        if self.kind == "confirm":
            body["since"], body["interval"] = self.since, self.interval
        if self.tries:
            body["tries"] = self.tries
        return body


@dataclass(frozen=True)
class BlobCreated:
    """A metadata blob written in a container: `folder` is where it lies ("" for the root)."""

    container: str
    folder: str
    blob: str


def decode(body: bytes) -> Any:
    """The JSON a message holds, plain or Base64-encoded."""
    text = body.decode("utf-8", errors="strict") if body else ""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return json.loads(base64.b64decode(text.strip(), validate=True).decode("utf-8"))
    except (binascii.Error, ValueError):
        raise BadMessage("the message is neither JSON nor Base64-encoded JSON") from None


def parse(body: bytes) -> list[Work | BlobCreated]:
    """The work items a message names (several only for a list of events)."""
    try:
        decoded = decode(body)
    except UnicodeDecodeError:
        raise BadMessage("the message is not UTF-8 text") from None
    items = decoded if isinstance(decoded, list) else [decoded]
    if not items or not all(isinstance(item, dict) for item in items):
        raise BadMessage("the message is not a JSON object")
    found: list[Work | BlobCreated] = []
    for item in items:
        if "kind" in item:
            found.append(_work(item))
        elif "eventType" in item or "specversion" in item:
            event = _blob_created(item)
            if event is not None:
                found.append(event)
        else:
            raise BadMessage("the message is neither a unit of work nor an Event Grid event")
    return found


def _work(item: dict[str, Any]) -> Work:
    kind, export, run_id = item.get("kind"), item.get("export"), item.get("run_id")
    if kind not in KINDS:
        raise BadMessage("unknown kind of work")
    if not isinstance(export, str) or not is_export_name(export) or not isinstance(run_id, str) or not run_id:
        raise BadMessage("a unit of work names an export and a run id")
    options = item.get("options") or {}
    if not isinstance(options, dict) or not all(isinstance(v, bool) for v in options.values()):
        raise BadMessage("options must be booleans")
    numbers = [item.get(key, 0) for key in ("since", "interval", "tries")]
    if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers):
        raise BadMessage("since, interval and tries are numbers")
    trigger = item.get("trigger") if isinstance(item.get("trigger"), str) else "http"
    return Work(kind, export, run_id, str(trigger)[:20], options, float(numbers[0]), float(numbers[1]), int(numbers[2]))


def _blob_created(event: dict[str, Any]) -> BlobCreated | None:
    """The metadata blob a BlobCreated event names; None for any other event or blob (ignored)."""
    if (event.get("eventType") or event.get("type")) != BLOB_CREATED:
        return None
    subject = event.get("subject")
    if not isinstance(subject, str) or not subject.startswith(_SUBJECT_PREFIX) or "/blobs/" not in subject:
        return None
    container, _, path = subject[len(_SUBJECT_PREFIX) :].partition("/blobs/")
    name = path.rsplit("/", 1)[-1]
    if not container or not (name in METADATA_NAMES or name.endswith(METADATA_SUFFIX)):
        return None
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    return BlobCreated(container, folder, path)
