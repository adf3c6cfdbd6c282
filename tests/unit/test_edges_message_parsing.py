"""The checks on run-queue messages refuse nothing the app writes itself, and the run id check
is the one report.new_run_id's ids pass."""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest

from shared.api import routes
from shared.engine import messages
from shared.engine.messages import BadMessage, BlobCreated, Work, parse
from shared.report import is_run_id, new_run_id
from shared.run.context import RunOptions


def test_a_queued_run_takes_the_http_run_options_but_wait_and_they_are_run_options() -> None:
    assert set(messages.OPTIONS) == {f.name for f in dataclasses.fields(RunOptions)}
    assert routes.RUN_OPTIONS - set(messages.OPTIONS) == {"wait"}


@pytest.mark.parametrize("kind", messages.KINDS)
@pytest.mark.parametrize("trigger", messages.TRIGGERS)
def test_every_message_the_app_writes_parses_back_to_itself(kind: str, trigger: str) -> None:
    works = [
        Work(kind, "vip", new_run_id(), trigger),
        Work(kind, "vip-2_x", new_run_id(), trigger, {name: True for name in messages.OPTIONS}, tries=30),
    ]
    if kind == "confirm":  # only a confirm message carries when its confirmation began and its delay
        works.append(Work(kind, "vip", new_run_id(), trigger, {"full_refresh": False}, since=1_767_225_600.25, interval=900.0))
    for work in works:
        text = json.dumps(work.to_message())
        assert parse(text.encode()) == [work]
        assert parse(base64.b64encode(text.encode())) == [work]


def test_a_message_without_a_trigger_is_an_http_one_and_an_event_still_parses() -> None:
    run_id = new_run_id()
    assert parse(json.dumps({"kind": "run", "export": "vip", "run_id": run_id}).encode()) == [Work("run", "vip", run_id)]
    event = {"eventType": messages.BLOB_CREATED, "subject": "/blobServices/default/containers/c/blobs/CI/x/model.json"}
    assert parse(json.dumps([event]).encode()) == [BlobCreated("c", "CI/x", "CI/x/model.json")]


def test_run_ids_are_what_new_run_id_makes() -> None:
    assert all(is_run_id(new_run_id()) for _ in range(20))
    assert is_run_id("20260101T020000Z-0a1b2c")
    for text in (
        "20260101T020000Z-0a1b2c\n",
        "20260101T020000Z-0A1B2C",
        "2026010lT020000Z-0a1b2c",
        "٢٠٢٦0101T020000Z-0a1b2c",  # digits, but not ASCII ones
        "../other/latest",
        "",
        None,
        20260101,
    ):
        assert not is_run_id(text), text


def test_the_reason_never_quotes_the_message() -> None:
    secret = "person1@example.com"
    for body in (
        {"kind": "run", "export": "vip", "run_id": secret},
        {"kind": "run", "export": secret, "run_id": new_run_id()},
        {"kind": "run", "export": "vip", "run_id": new_run_id(), secret: 1},
        {"kind": "run", "export": "vip", "run_id": new_run_id(), "trigger": secret},
        {"kind": "run", "export": "vip", "run_id": new_run_id(), "options": {secret: True}},
        {"kind": secret, "export": "vip", "run_id": new_run_id()},
    ):
        with pytest.raises(BadMessage) as caught:
            parse(json.dumps(body).encode())
        assert secret not in str(caught.value)
