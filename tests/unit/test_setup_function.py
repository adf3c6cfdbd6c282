"""export_setup as the Functions host sees it: a function key, a route that serves exactly the
set-up paths (never exports/... or health), and a `main` the Python worker loads."""

from __future__ import annotations

import importlib
import inspect
import json
import re
import typing

import azure.functions as func
import pytest
from helpers import ROOT

from shared.api import compose
from shared.settings import SETTINGS

BINDINGS = json.loads((ROOT / "export_setup" / "function.json").read_text())["bindings"]


def route_matches(path: str) -> bool:
    """Whether the route template serves `path` (below /api/), as ASP.NET routing matches it:
    `{area:regex(...)}` a segment the (case-insensitive) regex matches, `{item?}` any optional one."""
    template = BINDINGS[0]["route"]
    area_rule = re.fullmatch(r"\{area:regex\((.+)\)\}/\{item\?\}", template)
    assert area_rule, template
    parts = path.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and re.search(area_rule.group(1), parts[0], re.IGNORECASE) is not None


def test_the_function_needs_a_key_and_takes_get_and_post() -> None:
    trigger, out = BINDINGS
    assert trigger["type"] == "httpTrigger" and trigger["authLevel"] == "function"
    assert set(trigger["methods"]) == {"get", "post"} and out == {"type": "http", "direction": "out", "name": "$return"}


@pytest.mark.parametrize("path", ["sources", "sendgrid/lists", "sendgrid/fields", "preview"])
def test_the_route_serves_the_setup_paths(path: str) -> None:
    assert route_matches(path)


@pytest.mark.parametrize(
    "path", ["exports", "exports/vip", "exports/vip/run", "health", "sourcesx", "xsources", "sendgrid/lists/x", "", "admin"]
)
def test_the_route_never_shadows_another_functions_paths(path: str) -> None:
    assert not route_matches(path)
    for other in ("export_http", "export_health"):
        route = json.loads((ROOT / other / "function.json").read_text())["bindings"][0]["route"]
        assert not route_matches(route.split("/")[0])


def test_the_trigger_loads_as_the_python_worker_checks_it() -> None:
    """The worker's loading rules, as tests/unit/test_edges_invocation.py states them."""
    main = importlib.import_module("export_setup").main
    parameters = set(inspect.signature(main).parameters)
    assert "context" in parameters and "context" not in {b["name"] for b in BINDINGS}
    hints = typing.get_type_hints(main)
    assert hints["context"] is func.Context and isinstance(hints["context"], type)
    assert parameters - {"context"} == {b["name"] for b in BINDINGS if b["name"] != "$return"}


def test_without_settings_the_trigger_answers_500_in_the_usual_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    import export_setup  # noqa: PLC0415

    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(compose, "_app", None)
    request = func.HttpRequest("GET", "/api/sources", body=b"", route_params={"area": "sources"})
    response = export_setup.main(request)
    assert response.status_code == 500 and response.mimetype == "application/json"
    assert json.loads(response.get_body())["error"]["code"] == "internal_error"
