"""GET /api/exports/{name}/runs: the run history, newest first, paged by run id."""

from __future__ import annotations

from typing import Any

from azure.storage.blob import BlobServiceClient, ContainerClient
from helpers import definition, person, run, write

from shared.api import routes


def history(app: Any, **query: str) -> routes.ApiResponse:
    return routes.handle(app, "GET", "vip", "runs", b"", query)


def test_runs_are_listed_newest_first_and_paged_without_latest_json(app_factory: Any, source_container: ContainerClient) -> None:
    write(source_container, [[person(i) for i in range(1, 4)]])
    app = app_factory([definition()])
    assert history(app).body == {"export": "vip", "runs": [], "next_before": None}  # never ran
    run_ids = [run(app).body["run_id"] for _ in range(3)]
    newest_first = sorted(run_ids, reverse=True)

    everything = history(app)
    assert everything.status == 200
    assert [r["run_id"] for r in everything.body["runs"]] == newest_first and everything.body["next_before"] is None
    first = everything.body["runs"][0]
    assert set(first) == {"run_id", "trigger", "status", "started_at", "finished_at", "counts", "error"}
    assert first["trigger"] == "http" and first["status"] == "succeeded"

    page = history(app, limit="2")
    assert [r["run_id"] for r in page.body["runs"]] == newest_first[:2]
    assert page.body["next_before"] == newest_first[1]
    rest = history(app, limit="2", before=page.body["next_before"])
    assert [r["run_id"] for r in rest.body["runs"]] == newest_first[2:] and rest.body["next_before"] is None


def test_an_unreadable_report_is_listed_as_such_and_bad_parameters_are_refused(
    app_factory: Any, source_container: ContainerClient, blob_service: BlobServiceClient, state_container_name: str
) -> None:
    write(source_container, [[person(1)]])
    app = app_factory([definition()])
    run_id = run(app).body["run_id"]
    state = blob_service.get_container_client(state_container_name)
    state.upload_blob(f"runs/vip/{run_id}.json", b"{not json", overwrite=True)
    assert history(app).body["runs"] == [{"run_id": run_id, "problem": "the stored report is not readable"}]
    for query in ({"limit": "0"}, {"limit": "201"}, {"limit": "ten"}, {"before": "latest"}, {"email": "x"}):
        answer = history(app, **query)
        assert answer.status == 400, query
    assert history(app, limit="200").status == 200
    assert routes.handle(app, "POST", "vip", "runs").status == 405
