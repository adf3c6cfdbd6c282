"""tools/devserver.py's reading of the app's function.json and host.json, and its routing, auth
and queue rules, without a socket or a stand-in (tests/integration/test_console_serve.py
serves the app for real)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from tools import devserver
from tools.devserver import Part, QueueFunction, QueueRules, match_route, parse_template

ROOT = Path(__file__).resolve().parents[2]


def route_of(functions: list[devserver.HttpFunction], method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """Which function serves `path` (below /api/) for `method`, as Host.find decides."""
    segments = path.split("/") if path else []
    if segments and segments[-1] == "":
        segments = segments[:-1]
    for function in functions:
        values = match_route(function.parts, segments)
        if values is not None and (function.methods is None or method in function.methods):
            return function.name, values
    return None


@pytest.fixture(scope="module")
def functions() -> list[devserver.HttpFunction]:
    return devserver.load_functions(ROOT)[0]


def test_every_function_of_the_app_is_read_from_its_function_json() -> None:
    http, queues, other = devserver.load_functions(ROOT)
    assert {f.name: f.auth_level for f in http} == {
        "export_console": "anonymous",
        "export_health": "anonymous",
        "export_http": "function",
        "export_setup": "function",
    }
    assert [(q.name, q.queue, q.connection) for q in queues] == [("export_worker", "%RUN_QUEUE%", "AzureWebJobsStorage")]
    assert other == ["export_timer (timerTrigger)"]
    # Literal first segments route before the setup function's constrained parameter.
    assert [f.name for f in http][-1] == "export_setup"


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "exports", ("export_http", {})),
        ("GET", "exports/vip", ("export_http", {"name": "vip"})),
        ("POST", "exports/vip/run", ("export_http", {"name": "vip", "action": "run"})),
        (
            "GET",
            "exports/vip/runs/20260101T020000Z-0a1b2c",
            ("export_http", {"name": "vip", "action": "runs", "id": "20260101T020000Z-0a1b2c"}),
        ),
        ("GET", "Exports/vip/", ("export_http", {"name": "vip"})),
        ("GET", "sources", ("export_setup", {"area": "sources"})),
        ("GET", "SendGrid/lists", ("export_setup", {"area": "SendGrid", "item": "lists"})),
        ("POST", "preview", ("export_setup", {"area": "preview"})),
        ("GET", "console", ("export_console", {})),
        ("GET", "console/console.js", ("export_console", {"asset": "console.js"})),
        ("GET", "health", ("export_health", {})),
        ("DELETE", "exports/vip", None),  # a method the route does not take: the host's 404
        ("POST", "console", None),
        ("GET", "health/more", None),
        ("GET", "other", None),  # the setup route's regex refuses it
        ("GET", "exports/vip/runs/1/more", None),
        ("GET", "exports//run", None),
        ("GET", "sourcesx", None),
    ],
)
def test_routes_are_matched_as_the_host_matches_them(
    functions: list[devserver.HttpFunction], method: str, path: str, expected: tuple[str, dict[str, str]] | None
) -> None:
    assert route_of(functions, method, path) == expected


def test_route_templates_are_parsed() -> None:
    assert parse_template("exports/{name?}/{action?}/{id?}") == (
        Part(literal="exports"),
        Part(name="name", optional=True),
        Part(name="action", optional=True),
        Part(name="id", optional=True),
    )
    assert parse_template("{area:regex(^(sources|sendgrid|preview)$)}/{item?}") == (
        Part(name="area", constraint="regex(^(sources|sendgrid|preview)$)"),
        Part(name="item", optional=True),
    )
    assert parse_template("files/{*rest}") == (Part(literal="files"), Part(name="rest", catch_all=True))
    assert match_route(parse_template("files/{*rest}"), ["files", "a", "b"]) == {"rest": "a/b"}
    assert match_route(parse_template("items/{id:int}"), ["items", "12"]) == {"id": "12"}
    assert match_route(parse_template("items/{id:int}"), ["items", "x"]) is None


@pytest.mark.parametrize("template", ["file.{ext}", "{a?}/{b}", "{a:unknown}", "{1x}"])
def test_routes_the_host_would_serve_differently_are_refused(template: str) -> None:
    with pytest.raises(ValueError):
        parse_template(template)


def test_host_json_rules_are_read() -> None:
    host = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    prefix, rules = devserver.read_host(ROOT)
    assert prefix == "api"
    assert rules == QueueRules(
        batch_size=host["batchSize"],
        max_dequeue_count=host["maxDequeueCount"],
        visibility_timeout=30.0,
        max_polling_interval=10.0,
        message_encoding="none",
    )


def test_binding_expressions_are_resolved_from_the_app_settings() -> None:
    assert devserver.resolve("%RUN_QUEUE%", {"RUN_QUEUE": "runs"}) == "runs"
    assert devserver.resolve("%A%-%B%", {"A": "x", "B": "y"}) == "x-y"
    assert devserver.resolve("%RUN_QUEUE%", {}) is None
    assert devserver.resolve("plain", {}) == "plain"


def test_function_keys_are_checked_in_the_header_or_the_code_parameter(functions: list[devserver.HttpFunction]) -> None:
    host = devserver.Host.__new__(devserver.Host)  # no socket: only the key check
    host.key = "right"
    http = next(f for f in functions if f.name == "export_http")
    console = next(f for f in functions if f.name == "export_console")
    assert host.authorized(http, {"x-functions-key": "right"}, {})
    assert host.authorized(http, {}, {"code": "right"})
    assert not host.authorized(http, {}, {})
    assert not host.authorized(http, {"x-functions-key": "wrong"}, {"code": "wrong"})
    assert not host.authorized(http, {"x-functions-key": "rightish"}, {})
    assert host.authorized(console, {}, {})


@dataclass
class Message:
    content: str
    dequeue_count: int
    id: str = "m1"
    pop_receipt: str = "r1"


@dataclass
class FakeQueue:
    queue_name: str
    sent: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    updated: list[tuple[str, int]] = field(default_factory=list)

    def send_message(self, text: str) -> None:
        self.sent.append(text)

    def delete_message(self, message: Message) -> None:
        self.deleted.append(message.content)

    def update_message(self, message: Message, visibility_timeout: int) -> None:
        self.updated.append((message.content, visibility_timeout))

    def create_queue(self) -> None:
        pass


def worker(main: Any, rules: QueueRules) -> tuple[devserver.QueueWorker, FakeQueue, FakeQueue]:
    queue, poison = FakeQueue("runs"), FakeQueue("runs-poison")
    made = devserver.QueueWorker.__new__(devserver.QueueWorker)  # no connection: fakes instead
    made.function, made.rules, made.invocations = QueueFunction("w", "runs", "c", main), rules, 0
    made.queue, made.poison = cast(Any, queue), cast(Any, poison)
    return made, queue, poison


def test_the_worker_deletes_retries_and_poisons_as_host_json_says() -> None:
    seen: list[bytes] = []

    def main(msg: Any) -> None:
        seen.append(msg.get_body())
        if b"boom" in msg.get_body():
            raise RuntimeError("unexpected")

    rules = QueueRules(max_dequeue_count=5, visibility_timeout=30, message_encoding="none")
    made, queue, poison = worker(main, rules)
    assert made.invoke(Message('{"kind": "run"}', 1)) == "done"
    assert made.invoke(Message('{"boom": 1}', 4)) == "retried"
    assert made.invoke(Message('{"boom": 2}', 5)) == "poisoned"
    assert seen == [b'{"kind": "run"}', b'{"boom": 1}', b'{"boom": 2}']  # messageEncoding none: the text as stored
    assert queue.deleted == ['{"kind": "run"}', '{"boom": 2}']
    assert queue.updated == [('{"boom": 1}', 30)]
    assert poison.sent == ['{"boom": 2}']


def test_base64_messages_are_decoded_when_host_json_says_so() -> None:
    seen: list[bytes] = []
    made, _, _ = worker(lambda msg: seen.append(msg.get_body()), QueueRules(message_encoding="base64"))
    made.invoke(Message("eyJhIjogMX0=", 1))
    assert seen == [b'{"a": 1}']
