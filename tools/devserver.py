"""A local Functions host for the app: its HTTP routes (the console included) and its queue worker.

`make serve` (`python -m tools.devserver --local`) starts Azurite, the SendGrid sandbox and the
sample export as `make demo` does (tools/demo.py's pieces), then serves the app on
http://127.0.0.1:7071/api/... with a local function key, printed with the console's address.
`python -m tools.devserver --port N` serves against whatever app settings are in the environment
(the key from DEVSERVER_FUNCTION_KEY, or a random one, printed).

What it plays of the Functions host, read from the app's own files:
- every `*/function.json` beside host.json: an httpTrigger's `route` (templates such as
  `exports/{name?}/{action?}/{id?}` and `{area:regex(^(sources|sendgrid|preview)$)}/{item?}`,
  literal segments before constrained parameters before plain ones, matched without regard to
  case), its `methods` (another method: 404, as the host's routing answers) and its `authLevel`
  (`anonymous`, or a function key in the `x-functions-key` header or the `code` query parameter:
  401 with no body otherwise); host.json's `extensions.http.routePrefix` (default `api`).
  The trigger's `main` is called with a real `azure.functions.HttpRequest`, and its
  `HttpResponse` written out through azure.functions' own converter (the Content-Type the
  worker would add).
- the queueTrigger (export_worker): its queue (`%RUN_QUEUE%` from the environment) in the
  `AzureWebJobsStorage` account, or locally the state account's connection string (as the app
  sends to it). Messages are read `batchSize` at a time, invisible while they run; a message
  whose invocation returns is deleted, one that raises becomes visible again after
  `visibilityTimeout`, and after `maxDequeueCount` tries it moves to `<queue>-poison`; an empty
  queue is polled again after 100 ms, doubling up to `maxPollingInterval` (host.json
  `extensions.queues`). `messageEncoding: "none"` hands the text over as it is stored.
Not played: the timer (POST /api/exports/{name}/run instead), the admin API, lock renewal of a
message that runs longer than 10 minutes. It binds 127.0.0.1 only, answers only requests whose
Host is 127.0.0.1 or localhost on its port, and never logs a query string (it can hold the key).
"""

from __future__ import annotations

import argparse
import base64
import hmac
import importlib
import json
import os
import re
import secrets
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func
import azure.functions.queue as func_queue
from azure.functions.http import HttpResponseConverter

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORT = 7071  # what `func start` uses
KEY_SETTING = "DEVSERVER_FUNCTION_KEY"
MAX_BODY_BYTES = 100 * 1024 * 1024  # the host's default maxRequestBodySize
PROCESSING_VISIBILITY = 600  # seconds a message is invisible while it runs (the host's 10 minutes)
MIN_POLL_SECONDS = 0.1
FUNCTION_HEADER = "x-functions-key"


# ------------------------------------------------------------------ route templates


@dataclass(frozen=True)
class Part:
    """One segment of a route template: a literal, or a parameter (optional, constrained, catch-all)."""

    literal: str | None = None
    name: str = ""
    optional: bool = False
    constraint: str | None = None
    catch_all: bool = False

    def rank(self) -> int:
        """Routing precedence of the segment: lower wins (literal, constrained, plain, optional, catch-all)."""
        if self.literal is not None:
            return 0
        if self.catch_all:
            return 4
        return 3 if self.optional else 1 if self.constraint else 2

    def accepts(self, value: str) -> bool:
        if self.literal is not None:
            return value.casefold() == self.literal.casefold()
        return self.constraint is None or constraint_accepts(self.constraint, value)


_CONSTRAINTS: dict[str, Callable[[str], bool]] = {
    "int": lambda v: re.fullmatch(r"-?[0-9]+", v) is not None,
    "long": lambda v: re.fullmatch(r"-?[0-9]+", v) is not None,
    "alpha": lambda v: re.fullmatch(r"[A-Za-z]+", v) is not None,
    "bool": lambda v: v.casefold() in ("true", "false"),
    "guid": lambda v: re.fullmatch(r"\{?[0-9A-Fa-f]{8}-?([0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}\}?", v) is not None,
}


def constraint_accepts(constraint: str, value: str) -> bool:
    """ASP.NET Core's route constraints that the app could use: regex(...) (matched, not
    anchored unless the pattern says so, ignoring case) and a few named ones."""
    if constraint.startswith("regex(") and constraint.endswith(")"):
        return re.search(constraint[len("regex(") : -1], value, re.IGNORECASE) is not None
    return _CONSTRAINTS[constraint](value)


def parse_template(template: str) -> tuple[Part, ...]:
    """`exports/{name?}/{action?}`, `{area:regex(^(a|b)$)}/{item?}`, `files/{*rest}` -> Parts.
    A segment mixing text and a parameter, an unknown constraint, or a required parameter after
    an optional one is refused (ValueError): such a route would not be served as the host does."""
    parts: list[Part] = []
    for segment in template.strip("/").split("/") if template.strip("/") else []:
        if not (segment.startswith("{") and segment.endswith("}")):
            if "{" in segment or "}" in segment:
                raise ValueError(f"route segment {segment!r}: text and a parameter in one segment are not supported")
            parts.append(Part(literal=segment))
            continue
        inner = segment[1:-1]
        catch_all = inner.startswith("*")
        inner = inner.lstrip("*")
        optional = inner.endswith("?")
        inner = inner.removesuffix("?")
        name, _, constraint = inner.partition(":")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"route segment {segment!r}: not a parameter name")
        if constraint and not (constraint.startswith("regex(") and constraint.endswith(")")) and constraint not in _CONSTRAINTS:
            raise ValueError(f"route segment {segment!r}: constraint {constraint!r} is not supported here")
        parts.append(Part(name=name, optional=optional, constraint=constraint or None, catch_all=catch_all))
    for before, after in zip(parts, parts[1:], strict=False):
        if (before.optional or before.catch_all) and not (after.optional or after.catch_all):
            raise ValueError(f"route {template!r}: a required segment follows an optional one")
    return tuple(parts)


def match_route(parts: tuple[Part, ...], segments: list[str]) -> dict[str, str] | None:
    """The route parameters when the (percent-decoded) path segments match the template, else None."""
    values: dict[str, str] = {}
    for index, part in enumerate(parts):
        if part.catch_all:
            rest = "/".join(segments[index:])
            if rest:
                values[part.name] = rest
            return values if rest or part.optional else None
        if index >= len(segments):
            return values if part.optional else None
        if not segments[index] or not part.accepts(segments[index]):
            return None
        if part.literal is None:
            values[part.name] = segments[index]
    return values if len(segments) == len(parts) else None


# ------------------------------------------------------------------ the app's functions


@dataclass(frozen=True)
class HttpFunction:
    name: str
    route: str
    parts: tuple[Part, ...]
    methods: frozenset[str] | None  # None: every method
    auth_level: str  # anonymous | function | admin
    main: Callable[..., Any]

    def precedence(self) -> tuple[int, ...]:
        return (*(p.rank() for p in self.parts), 9)


@dataclass(frozen=True)
class QueueFunction:
    name: str
    queue: str  # as function.json says it, e.g. %RUN_QUEUE%
    connection: str
    main: Callable[..., Any]


@dataclass(frozen=True)
class QueueRules:
    """host.json's extensions.queues, as the host applies them."""

    batch_size: int = 16
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    max_polling_interval: float = 60.0
    message_encoding: str = "base64"


def _timespan(text: object, default: float) -> float:
    """A host.json time span ("00:00:30", "00:00:00.100") in seconds."""
    if not isinstance(text, str):
        return default
    match = re.fullmatch(r"(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2}(?:\.\d+)?)", text.strip())
    if not match:
        raise ValueError(f"host.json: {text!r} is not a time span (hh:mm:ss)")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def read_host(root: Path = ROOT) -> tuple[str, QueueRules]:
    """host.json's route prefix and queue rules."""
    host = json.loads((root / "host.json").read_text(encoding="utf-8"))
    extensions = host.get("extensions", {})
    prefix = str(extensions.get("http", {}).get("routePrefix", "api")).strip("/")
    queues = extensions.get("queues", {})
    defaults = QueueRules()
    rules = QueueRules(
        batch_size=int(queues.get("batchSize", defaults.batch_size)),
        max_dequeue_count=int(queues.get("maxDequeueCount", defaults.max_dequeue_count)),
        visibility_timeout=_timespan(queues.get("visibilityTimeout"), defaults.visibility_timeout),
        max_polling_interval=_timespan(queues.get("maxPollingInterval"), defaults.max_polling_interval),
        message_encoding=str(queues.get("messageEncoding", defaults.message_encoding)).lower(),
    )
    return prefix, rules


def _entry(folder: Path, config: Mapping[str, Any]) -> Callable[..., Any]:
    script = str(config.get("scriptFile", "__init__.py"))
    module_name = folder.name if script == "__init__.py" else f"{folder.name}.{Path(script).stem}"
    module = importlib.import_module(module_name)
    return cast(Callable[..., Any], getattr(module, str(config.get("entryPoint", "main"))))


def load_functions(root: Path = ROOT) -> tuple[list[HttpFunction], list[QueueFunction], list[str]]:
    """Every function of the app (folders beside host.json with a function.json): HTTP ones in
    routing order, queue ones, and the names of those not served here (timers and others)."""
    http: list[HttpFunction] = []
    queues: list[QueueFunction] = []
    other: list[str] = []
    for path in sorted(root.glob("*/function.json")):
        config = json.loads(path.read_text(encoding="utf-8"))
        if config.get("disabled") is True:
            continue
        bindings = [b for b in config.get("bindings", []) if b.get("direction") == "in"]
        trigger = next((b for b in bindings if str(b.get("type", "")).endswith("Trigger")), None)
        name = path.parent.name
        if trigger is None or trigger["type"] not in ("httpTrigger", "queueTrigger"):
            other.append(f"{name} ({trigger['type'] if trigger else 'no trigger'})")
            continue
        main = _entry(path.parent, config)
        if trigger["type"] == "httpTrigger":
            route = str(trigger.get("route") or name)
            methods = trigger.get("methods")
            http.append(
                HttpFunction(
                    name=name,
                    route=route,
                    parts=parse_template(route),
                    methods=frozenset(str(m).upper() for m in methods) if methods else None,
                    auth_level=str(trigger.get("authLevel", "function")).lower(),
                    main=main,
                )
            )
        else:
            queue = str(trigger["queueName"])
            queues.append(QueueFunction(name, queue, str(trigger.get("connection") or "AzureWebJobsStorage"), main))
    http.sort(key=HttpFunction.precedence)
    return http, queues, other


def resolve(expression: str, env: Mapping[str, str]) -> str | None:
    """A binding expression's app settings (%NAME%) filled in from `env`; None when one is unset."""
    missing: list[str] = []

    def setting(match: re.Match[str]) -> str:
        value = env.get(match.group(1))
        if value is None:
            missing.append(match.group(1))
            return ""
        return value

    resolved = re.sub(r"%([^%]+)%", setting, expression)
    return None if missing else resolved


# ------------------------------------------------------------------ HTTP


class Host(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, key: str, prefix: str, functions: list[HttpFunction], quiet: bool = False) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.key = key
        self.prefix = prefix
        self.functions = functions
        self.quiet = quiet
        self.after_invocation: Callable[[], None] = lambda: None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def find(self, method: str, path: str) -> tuple[HttpFunction, dict[str, str]] | None:
        """The function that serves `path` (below the route prefix) for `method`, and its route values."""
        raw = path.split("/") if path else []
        if raw and raw[-1] == "":  # a trailing slash
            raw = raw[:-1]
        segments = [unquote(segment) for segment in raw]
        for function in self.functions:
            values = match_route(function.parts, segments)
            if values is not None and (function.methods is None or method in function.methods):
                return function, values
        return None

    def authorized(self, function: HttpFunction, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
        if function.auth_level == "anonymous":
            return True
        given = headers.get(FUNCTION_HEADER) or query.get("code") or ""
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.key.encode())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server: Host

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self.serve()

    def do_POST(self) -> None:  # noqa: N802
        self.serve()

    def do_PUT(self) -> None:  # noqa: N802
        self.serve()

    def do_DELETE(self) -> None:  # noqa: N802
        self.serve()

    def do_PATCH(self) -> None:  # noqa: N802
        self.serve()

    def do_HEAD(self) -> None:  # noqa: N802
        self.serve()

    def do_OPTIONS(self) -> None:  # noqa: N802
        self.serve()

    def serve(self) -> None:
        method = self.command.upper()
        parts = urlsplit(self.path)
        allowed_hosts = {f"127.0.0.1:{self.server.port}", f"localhost:{self.server.port}"}
        if (self.headers.get("Host") or "").lower() not in allowed_hosts:
            # Another name resolving to 127.0.0.1 (DNS rebinding) must not reach the app.
            self.reply(400, {"Content-Type": "text/plain; charset=utf-8"}, b"unknown Host")
            return
        prefix = f"/{self.server.prefix}/" if self.server.prefix else "/"
        route_path = parts.path[len(prefix) :] if parts.path.startswith(prefix) else None
        found = self.server.find(method, route_path) if route_path is not None else None
        if found is None:
            self.reply(404)
            return
        function, values = found
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        headers = {name.lower(): value for name, value in self.headers.items()}
        if not self.server.authorized(function, headers, query):
            self.reply(401)
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.reply(413)
            return
        body = self.rfile.read(length) if length else b""
        request = func.HttpRequest(
            method=method,
            url=f"http://{self.headers.get('Host')}{self.path}",
            headers=headers,
            params=query,
            route_params=values,
            body=body,
        )
        try:
            response = function.main(request)
        except Exception:  # the host answers 500 and logs the function's exception
            traceback.print_exc()
            self.reply(500)
            return
        finally:
            self.server.after_invocation()
        encoded = HttpResponseConverter.encode(response, expected_type=None).value  # what the worker hands the host
        out = {str(name): str(value.value) for name, value in encoded["headers"].items()}
        body = b"" if method == "HEAD" else bytes(encoded["body"].value or b"")
        self.reply(int(encoded["status_code"].value), out, body)

    def reply(self, status: int, headers: Mapping[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if not self.server.quiet:  # the path only: a query string can hold the function key (?code=)
            sys.stderr.write(f"{time.strftime('%H:%M:%S')} {self.command} {urlsplit(self.path).path} {code}\n")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        if not self.server.quiet:
            sys.stderr.write(f"{time.strftime('%H:%M:%S')} {format % args}\n")


# ------------------------------------------------------------------ the queue worker


class QueueWorker:
    """Plays the host's queue listener for one queueTrigger (see the module's docstring)."""

    def __init__(self, function: QueueFunction, connection_string: str, queue_name: str, rules: QueueRules) -> None:
        from azure.storage.queue import QueueClient  # noqa: PLC0415 - only when a worker is served

        self.function = function
        self.rules = rules
        self.queue = QueueClient.from_connection_string(connection_string, queue_name)
        self.poison = QueueClient.from_connection_string(connection_string, f"{queue_name}-poison")
        self.stop = threading.Event()
        self.wakeup = threading.Event()
        self.invocations = 0
        self.thread = threading.Thread(target=self.loop, name=f"queue {queue_name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        """Poll at once: an HTTP invocation may have queued work (as the host polls at once after a
        function of the app adds a message), instead of after the idle back-off."""
        self.wakeup.set()

    def close(self, timeout: float = 5.0) -> None:
        self.stop.set()
        self.wakeup.set()
        self.thread.join(timeout)

    def loop(self) -> None:
        from azure.core.exceptions import AzureError, ResourceExistsError  # noqa: PLC0415

        try:
            self.queue.create_queue()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            sys.stderr.write(f"queue worker: the queue could not be created ({type(exc).__name__}); retrying as it polls\n")
        delay = MIN_POLL_SECONDS
        with ThreadPoolExecutor(max_workers=max(1, self.rules.batch_size), thread_name_prefix="invocation") as pool:
            while not self.stop.is_set():
                try:
                    batch = list(
                        self.queue.receive_messages(
                            max_messages=max(1, min(32, self.rules.batch_size)), visibility_timeout=PROCESSING_VISIBILITY
                        )
                    )
                except AzureError as exc:
                    sys.stderr.write(f"queue worker: the queue could not be read ({type(exc).__name__})\n")
                    batch = []
                if not batch:
                    if self.wakeup.wait(delay):
                        delay = MIN_POLL_SECONDS
                    else:
                        delay = min(delay * 2, max(MIN_POLL_SECONDS, self.rules.max_polling_interval))
                    self.wakeup.clear()
                    continue
                delay = MIN_POLL_SECONDS
                try:
                    list(pool.map(self.invoke, batch))
                except Exception:  # deleting or moving a message failed: it comes back when its time is up
                    traceback.print_exc()

    def invoke(self, message: Any) -> str:
        """One invocation: done (deleted), retried (visible again after visibilityTimeout) or poisoned."""
        text = str(message.content)
        body = base64.b64decode(text) if self.rules.message_encoding == "base64" else text.encode()
        dequeue_count = int(message.dequeue_count or 1)
        qm = func_queue.QueueMessage(id=message.id, body=body, dequeue_count=dequeue_count, pop_receipt=message.pop_receipt)
        self.invocations += 1
        try:
            self.function.main(qm)
        except Exception:  # the host logs it, then retries or poisons the message
            traceback.print_exc()
            if dequeue_count >= self.rules.max_dequeue_count:
                try:
                    self.poison.create_queue()
                except Exception:  # noqa: BLE001 - it exists
                    pass
                self.poison.send_message(text)
                self.queue.delete_message(message)
                sys.stderr.write(f"queue worker: a message failed {dequeue_count} times; moved to {self.poison.queue_name}\n")
                return "poisoned"
            self.queue.update_message(message, visibility_timeout=int(self.rules.visibility_timeout))
            return "retried"
        self.queue.delete_message(message)
        return "done"


def start_workers(
    functions: list[QueueFunction], rules: QueueRules, env: Mapping[str, str]
) -> tuple[list[QueueWorker], list[str]]:
    """A worker per queue trigger, with lines that say what each serves (or why it is not served)."""
    workers: list[QueueWorker] = []
    lines: list[str] = []
    for function in functions:
        queue_name = resolve(function.queue, env)
        connection = env.get(function.connection) or env.get(f"{function.connection}__queueServiceUri")
        local = _state_connection_string()
        if queue_name is None:
            # The host would not start the trigger; the app itself falls back to its default queue.
            queue_name = _app_queue_name()
            if queue_name is not None:
                lines.append(f"  note           {function.queue} is not an app setting; serving the app's queue, {queue_name}")
        if connection is None or not connection.strip() or "=" not in connection:
            connection = local
        if not connection or queue_name is None:
            lines.append(f"  queue worker   {function.name}: not served (no connection string for its queue)")
            continue
        worker = QueueWorker(function, connection, queue_name, rules)
        worker.start()
        workers.append(worker)
        lines.append(
            f"  queue worker   {function.name} on {queue_name} (batchSize {rules.batch_size}, visibilityTimeout "
            f"{rules.visibility_timeout:g}s, maxDequeueCount {rules.max_dequeue_count} -> {queue_name}-poison)"
        )
    return workers, lines


def _state_connection_string() -> str | None:
    """Locally the run queue is in the state account's connection string (the app sends there)."""
    try:
        from shared.api.compose import get_app  # noqa: PLC0415 - after the settings are in the environment

        return get_app().settings.state_connection_string
    except Exception:  # noqa: BLE001 - invalid settings: the HTTP routes say so; no worker
        return None


def _app_queue_name() -> str | None:
    try:
        from shared.api.compose import get_app  # noqa: PLC0415

        return get_app().settings.run_queue
    except Exception:  # noqa: BLE001
        return None


# ------------------------------------------------------------------ running it


def serve(port: int, key: str, *, quiet: bool = False, banner: list[str] | None = None) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM)."""
    prefix, rules = read_host()
    http, queues, other = load_functions()
    host = Host(port, key, prefix, http, quiet)
    base = f"http://127.0.0.1:{host.port}"
    workers, worker_lines = start_workers(queues, rules, os.environ)

    def wake_workers() -> None:
        for worker in workers:
            worker.wake()

    host.after_invocation = wake_workers
    lines = [f"ci-sendgrid-export dev server on {base} (Ctrl-C stops it)", *(banner or [])]
    lines.append(f"  function key   {key}   (header {FUNCTION_HEADER}, or ?code=)")
    if any(f.name == "export_console" for f in http):
        lines.append(f"  console        {base}/{prefix}/console#key={key}")
    for function in http:
        methods = ",".join(sorted(function.methods)) if function.methods else "any"
        lines.append(f"  http           {methods:9} /{prefix}/{function.route}   ({function.name}, {function.auth_level})")
    lines += worker_lines
    lines += [f"  not served     {name}" for name in other]
    print("\n".join(lines), flush=True)
    try:
        host.serve_forever(poll_interval=0.05)
    finally:
        host.server_close()
        for worker in workers:
            worker.close()


def _stop_on_sigterm() -> None:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)  # unwinds serve() and whatever --local started

    signal.signal(signal.SIGTERM, stop)


def serve_local(port: int, key: str, quiet: bool) -> None:
    """`make serve`: the stand-ins and the sample export of `make demo`, then serve()."""
    from azure.storage.blob import BlobServiceClient  # noqa: PLC0415

    from tools import demo, sendgrid_sandbox  # noqa: PLC0415
    from tools.localstack import start_azurite  # noqa: PLC0415

    definition = demo.example_definition()
    with tempfile.TemporaryDirectory(prefix="sg-serve-") as tmp:
        azurite = start_azurite(Path(tmp) / "azurite")
        sandbox = sendgrid_sandbox.start(demo.sandbox_state(definition))
        try:
            service = BlobServiceClient.from_connection_string(azurite.connection_string)
            partitions = demo.write_sample(service, definition)
            demo.use_local_settings(azurite, sandbox)
            os.environ["AzureWebJobsStorage"] = azurite.connection_string  # the host's account: the run queue's
            banner = [
                f"  Azurite        blob 127.0.0.1:{azurite.port}, queue 127.0.0.1:{azurite.queue_port} (a temporary folder)",
                f"  SendGrid       the sandbox at {sandbox.url} (its contacts: {sandbox.url}/_sandbox/contacts)",
                f"  sample export  {demo.CONTAINER}/{definition['source_folder']}: {definition['segment']} "
                f"({demo.PROFILES:,} profiles, {partitions} partitions) and {demo.SIGNUPS_SEGMENT} (no export yet)",
                f"  definitions    {demo.EXAMPLE} (EXPORT_DEFINITIONS_FILE)",
            ]
            serve(port, key, quiet=quiet, banner=banner)
        finally:
            sandbox.shutdown()
            azurite.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.devserver", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port on 127.0.0.1 (default {DEFAULT_PORT}; 0: any free one)"
    )
    parser.add_argument(
        "--local", action="store_true", help="start Azurite, the SendGrid sandbox and the sample export first (make serve)"
    )
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    key = os.environ.get(KEY_SETTING) or secrets.token_urlsafe(24)
    _stop_on_sigterm()
    try:
        if args.local:
            serve_local(args.port, key, args.quiet)
        else:
            serve(args.port, key, quiet=args.quiet)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"devserver: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
