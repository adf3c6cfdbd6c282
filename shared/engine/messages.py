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

Checks. A message is input like an HTTP request (anyone who may write to the queue wrote it), and
is checked as strictly: a body of at most MAX_MESSAGE_BYTES; a unit of work has only the keys
`Work.to_message` writes, each once; an export name (definitions.is_export_name), a run id of
the form report.new_run_id makes (`is_run_id`: a run id names blobs, so `../other/latest` must
never get that far), a known kind and trigger, only the run options a queued run may carry, and
bounded numbers (NaN and infinities are out). Whatever goes wrong while reading a message is that
message's fault (bad JSON or UTF-8, deep nesting, anything else): it raises BadMessage naming the
reason, never quoting the message, and the engine drops it, as retrying cannot help.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field, fields
from typing import Any

from shared.definitions import is_export_name
from shared.report import is_run_id

KINDS = ("run", "continue", "confirm")
# Who asked for a run: the HTTP API (the CLI goes through it too), the timer, an Event Grid event.
TRIGGERS = ("http", "timer", "event")
# The options a queued run may carry: the HTTP API's run options (shared/api/routes.py RUN_OPTIONS)
# but "wait", which only shapes the HTTP answer. They are RunOptions' fields (shared/run/context.py).
OPTIONS = ("dry_run", "full_refresh", "confirm_removals")
# A queue message holds up to 64 KiB and may be sent with a visibility timeout of up to 7 days
# (Put Message, https://learn.microsoft.com/rest/api/storageservices/put-message). This app's
# messages are ~200 bytes.
MAX_MESSAGE_BYTES = 64 * 1024
MAX_DELAY_SECONDS = 7 * 24 * 3600
MAX_TRIES = 1_000  # times a run was put back on the queue (the engine gives up far earlier)
LATEST_SINCE = 4_102_444_800.0  # 2100-01-01T00:00:00Z: `since` is an epoch time before it
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
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


_WORK_KEYS = frozenset(f.name for f in fields(Work))  # what to_message writes


@dataclass(frozen=True)
class BlobCreated:
    """A metadata blob written in a container: `folder` is where it lies ("" for the root)."""

    container: str
    folder: str
    blob: str


def decode(body: bytes) -> Any:
    """The JSON a message holds, plain or Base64-encoded. Raises BadMessage for a key given twice
    or for neither form; UnicodeDecodeError and RecursionError (deep nesting) pass through."""
    text = body.decode("utf-8", errors="strict") if body else ""
    try:
        return _loads(text)
    except BadMessage:
        raise
    except ValueError:
        pass
    try:
        inner = base64.b64decode(text.strip(), validate=True).decode("utf-8")
        return _loads(inner)
    except BadMessage:
        raise
    except (binascii.Error, ValueError):
        raise BadMessage("the message is neither JSON nor Base64-encoded JSON") from None


def _loads(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_no_duplicates)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise BadMessage("the message gives the same key twice")
    return found


def parse(body: bytes) -> list[Work | BlobCreated]:
    """The work items a message names (several only for a list of events). Raises BadMessage,
    naming what is wrong and never quoting the message, for anything it cannot act on."""
    if len(body) > MAX_MESSAGE_BYTES:
        raise BadMessage(f"the message is over {MAX_MESSAGE_BYTES} bytes")
    try:
        return _parse(body)
    except BadMessage:
        raise
    except UnicodeDecodeError:
        raise BadMessage("the message is not UTF-8 text") from None
    except RecursionError:
        raise BadMessage("the message nests too deeply") from None
    except Exception as exc:  # anything else while reading a message is the message's fault too
        raise BadMessage(f"the message could not be read ({type(exc).__name__})") from None


def _parse(body: bytes) -> list[Work | BlobCreated]:
    decoded = decode(body)
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
    if not set(item) <= _WORK_KEYS:
        raise BadMessage(f"a unit of work has only the keys {', '.join(sorted(_WORK_KEYS))}")
    kind, export, run_id = item.get("kind"), item.get("export"), item.get("run_id")
    if kind not in KINDS:
        raise BadMessage("unknown kind of work")
    if not isinstance(export, str) or not is_export_name(export):
        raise BadMessage("a unit of work names an export: 1-63 characters of a-z, 0-9, '_' or '-'")
    if not is_run_id(run_id):
        raise BadMessage("a unit of work names a run id such as 20260101T020000Z-0a1b2c")
    trigger = item.get("trigger", "http")
    if trigger not in TRIGGERS:
        raise BadMessage(f"unknown trigger; known: {', '.join(TRIGGERS)}")
    options = item.get("options", {})
    if not isinstance(options, dict) or not set(options) <= set(OPTIONS):
        raise BadMessage(f"unknown run option; a queued run takes {', '.join(OPTIONS)}")
    if not all(isinstance(value, bool) for value in options.values()):
        raise BadMessage("options must be booleans")
    since = _number(item, "since", LATEST_SINCE)
    interval = _number(item, "interval", MAX_DELAY_SECONDS)
    tries = item.get("tries", 0)
    if not isinstance(tries, int) or isinstance(tries, bool) or not 0 <= tries <= MAX_TRIES:
        raise BadMessage(f"tries must be a whole number from 0 to {MAX_TRIES}")
    return Work(kind, export, str(run_id), trigger, options, since, interval, tries)


def _number(item: dict[str, Any], key: str, most: float) -> float:
    """A number from 0 to `most`. Compared before any conversion: NaN fails every comparison, an
    infinity or a 400-digit integer (float() would overflow on it) is over `most`."""
    value = item.get(key, 0)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= most:
        raise BadMessage(f"{key} must be a number from 0 to {most:.0f}")
    return float(value)


def _blob_created(event: dict[str, Any]) -> BlobCreated | None:
    """The metadata blob a BlobCreated event names; None for any other event or blob (ignored)."""
    if (event.get("eventType") or event.get("type")) != BLOB_CREATED:
        return None
    subject = event.get("subject")
    if not isinstance(subject, str) or not subject.startswith(_SUBJECT_PREFIX) or "/blobs/" not in subject:
        return None
    if _CONTROL.search(subject):  # no blob name holds one; the folder would reach a log line
        raise BadMessage("an event subject holds a control character")
    container, _, path = subject[len(_SUBJECT_PREFIX) :].partition("/blobs/")
    name = path.rsplit("/", 1)[-1]
    if not container or not (name in METADATA_NAMES or name.endswith(METADATA_SUFFIX)):
        return None
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    return BlobCreated(container, folder, path)
