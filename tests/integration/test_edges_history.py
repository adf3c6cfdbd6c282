"""GET /api/exports/{name}/runs?before=<a run id far in the future> answers as from now, with a
handful of storage calls, instead of listing month by month back from year 9999."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from azure.storage.blob import ContainerClient
from helpers import definition, person, run, write

from shared.api import routes

# The Azure SDK logs every request it sends here (at INFO): one record per storage call.
HTTP_LOGGER = "azure.core.pipeline.policies.http_logging_policy"


def history(app: Any, **query: str) -> routes.ApiResponse:
    return routes.handle(app, "GET", "vip", "runs", b"", query)


def test_a_before_later_than_now_answers_as_now_in_a_few_calls(
    app_factory: Any, source_container: ContainerClient, caplog: pytest.LogCaptureFixture
) -> None:
    write(source_container, [[person(i) for i in range(1, 4)]])
    app = app_factory([definition()])
    newest_first = sorted((run(app).body["run_id"] for _ in range(3)), reverse=True)
    now = history(app, limit="200")
    assert [r["run_id"] for r in now.body["runs"]] == newest_first

    with caplog.at_level(logging.INFO, logger=HTTP_LOGGER):
        far = history(app, before="99991231T235959Z-000000", limit="200")
    calls = sum(1 for r in caplog.records if r.name == HTTP_LOGGER and r.getMessage().startswith("Request URL"))
    assert far.status == 200 and far.body == now.body
    assert 0 < calls <= 20, calls  # the oldest report, a month or two listed, three reports read

    # Paging still works from a real run id, and a `before` older than every run finds none.
    page = history(app, limit="2", before=newest_first[0])
    assert [r["run_id"] for r in page.body["runs"]] == newest_first[1:]
    assert history(app, before="20000101T000000Z-000000").body["runs"] == []
