"""What the triggers do for the Functions host's logging: threads the app starts during an
invocation carry its id (the worker's `context.thread_local_storage`), and the Azure SDK's
per-request HTTP logging stays at WARNING unless AZURE_SDK_HTTP_LOGGING asks for it.

`HostContext` stands in for the host's interface (azure.functions.Context: `invocation_id` and
`thread_local_storage`, a threading.local the worker reads each log record's invocation id from,
docs/reference.md); nothing of the app is replaced."""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import threading
import typing
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import azure.functions as func
import pytest
from helpers import ROOT

import export_http
from shared import invocation, telemetry
from shared.api import compose
from shared.settings import SETTINGS


class HostContext:
    def __init__(self, invocation_id: str) -> None:
        self.invocation_id = invocation_id
        self.thread_local_storage = threading.local()


def seen(context: HostContext) -> str | None:
    """The invocation id the host would give a log record written on this thread."""
    return getattr(context.thread_local_storage, "invocation_id", None)


def in_new_thread(context: HostContext) -> str | None:
    """What a thread this thread starts (as the app's threads start others) sees."""
    with ThreadPoolExecutor(1, "inner", initializer=invocation.carry_invocation()) as pool:
        return pool.submit(seen, context).result()


def test_threads_started_during_an_invocation_carry_its_id_and_none_after() -> None:
    context = HostContext("invocation-1")
    with invocation.serving(context):
        with ThreadPoolExecutor(2, "pool", initializer=invocation.carry_invocation()) as pool:
            assert pool.submit(seen, context).result() == "invocation-1"
            assert pool.submit(in_new_thread, context).result() == "invocation-1"
        found: list[str | None] = []
        carried = invocation.carry_invocation()

        def target() -> None:
            carried()
            found.append(seen(context))

        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
        assert found == ["invocation-1"]
    with ThreadPoolExecutor(1, initializer=invocation.carry_invocation()) as pool:
        assert pool.submit(seen, context).result() is None  # the invocation is over


def test_a_thread_pool_thread_serving_the_next_invocation_carries_the_next_id() -> None:
    first, second = HostContext("invocation-1"), HostContext("invocation-2")
    with invocation.serving(first):
        pass
    with invocation.serving(second), ThreadPoolExecutor(1, initializer=invocation.carry_invocation()) as pool:
        assert pool.submit(seen, second).result() == "invocation-2"
        assert pool.submit(seen, first).result() is None


def test_outside_the_host_carrying_is_a_no_op() -> None:
    carried = invocation.carry_invocation()
    carried()
    with invocation.serving(None), ThreadPoolExecutor(1, initializer=invocation.carry_invocation()) as pool:
        assert pool.submit(lambda: 42).result() == 42


@pytest.fixture
def sdk_http_logger() -> Iterator[logging.Logger]:
    """The SDK's logger, under a root logger at INFO as the Python worker sets it."""
    logger, root = logging.getLogger(telemetry.SDK_HTTP_LOGGER), logging.getLogger()
    levels = logger.level, root.level
    logger.setLevel(logging.NOTSET)
    root.setLevel(logging.INFO)
    yield logger
    logger.setLevel(levels[0])
    root.setLevel(levels[1])


def call_http_trigger(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS:  # no settings: the trigger answers 500 at once, after its set-up
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(compose, "_app", None)
    response = export_http.main(func.HttpRequest("GET", "/api/exports", body=b""))
    assert response.status_code == 500


def test_the_triggers_keep_the_azure_sdk_http_logging_at_warning(
    monkeypatch: pytest.MonkeyPatch, sdk_http_logger: logging.Logger
) -> None:
    assert telemetry.SDK_HTTP_LOGGER == "azure.core.pipeline.policies.http_logging_policy"
    assert sdk_http_logger.isEnabledFor(logging.INFO)
    monkeypatch.delenv(telemetry.SDK_HTTP_LOGGING, raising=False)
    call_http_trigger(monkeypatch)
    assert sdk_http_logger.getEffectiveLevel() == logging.WARNING


def test_azure_sdk_http_logging_is_there_when_asked_for(monkeypatch: pytest.MonkeyPatch, sdk_http_logger: logging.Logger) -> None:
    sdk_http_logger.setLevel(logging.WARNING)  # as an earlier invocation left it
    monkeypatch.setenv(telemetry.SDK_HTTP_LOGGING, "1")
    call_http_trigger(monkeypatch)
    assert sdk_http_logger.isEnabledFor(logging.INFO)


@pytest.mark.parametrize("name", ["export_http", "export_timer", "export_worker"])
def test_each_trigger_loads_as_the_python_worker_checks_it(name: str) -> None:
    """The worker's loading rules (Azure/azure-functions-python-worker, functions.py,
    Registry.add_function): a `context` parameter that no binding names gets the invocation's
    context, and its annotation must be a type named Context (an Optional is refused); every
    other parameter is a binding of function.json, and every binding but `$return` a parameter."""
    main = importlib.import_module(name).main
    bindings = json.loads((ROOT / name / "function.json").read_text())["bindings"]
    parameters = set(inspect.signature(main).parameters)
    assert "context" in parameters and "context" not in {b["name"] for b in bindings}
    hints = typing.get_type_hints(main)
    assert hints["context"] is func.Context and isinstance(hints["context"], type)
    assert parameters - {"context"} == {b["name"] for b in bindings if b["name"] != "$return"}
