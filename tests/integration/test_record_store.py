"""The delivered record's blob against Azurite (shared/state/record.py): staged blocks stay
invisible until committed, a commit keeps the record's condition and metadata, and a record can
be stored over the uncommitted blocks a stopped run left behind."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from helpers import definition, person, run, sandbox_config, sandbox_get, write

from shared.errors import ExportError
from shared.state.store import StateStore

LISTS = ("b-list", "a-list")
LINES = [f"person{i}@example.com\t{i:016x}\n".encode() for i in range(1, 400)]


@pytest.fixture
def store(blob_service: BlobServiceClient, state_container_name: str) -> StateStore:
    return StateStore(blob_service.get_container_client(state_container_name))


def stored(store: StateStore, tmp_path: Path) -> tuple[Any, bytes]:
    path = tmp_path / "got.tsv"
    info = store.record.download("vip", str(path))
    return info, path.read_bytes()


def test_a_staged_record_is_invisible_until_committed_then_whole_with_its_metadata(store: StateStore, tmp_path: Path) -> None:
    staged = store.record.stage("vip", iter(LINES), block_bytes=1_000)
    assert len(staged.block_ids) > 5
    assert stored(store, tmp_path) == (("", None, None), b"")  # readers still see no record
    store.record.commit("vip", staged, "", LISTS, ["first_name", "e1_T"])
    info, content = stored(store, tmp_path)
    assert content == b"".join(LINES)
    assert info.etag and info.list_ids == ("a-list", "b-list") and info.fields == ("first_name", "e1_T")


def test_a_commit_replaces_only_the_record_the_run_read(store: StateStore, tmp_path: Path) -> None:
    first = store.record.stage("vip", iter(LINES[:10]))
    second = store.record.stage("vip", iter(LINES[10:20]))  # another run's, staged beside it
    store.record.commit("vip", first, "", LISTS)
    with pytest.raises(ExportError) as missing_no_more:
        store.record.commit("vip", second, "", LISTS)  # it read no record: one appeared meanwhile
    assert missing_no_more.value.code == "run_in_progress"
    etag = stored(store, tmp_path)[0].etag
    third = store.record.stage("vip", iter(LINES[20:30]))
    store.record.commit("vip", third, etag, LISTS)
    assert stored(store, tmp_path)[1] == b"".join(LINES[20:30])
    with pytest.raises(ExportError) as stale:
        store.record.commit("vip", store.record.stage("vip", iter(LINES[:1])), etag, LISTS)
    assert stale.value.code == "run_in_progress"
    assert stored(store, tmp_path)[1] == b"".join(LINES[20:30])


def test_a_record_is_stored_over_the_blocks_a_stopped_run_staged(store: StateStore, tmp_path: Path) -> None:
    """A run stopped between staging and committing leaves uncommitted blocks and no record: the
    next run (which read no record) still stores its own, and only its own."""
    store.record.stage("vip", iter(LINES), block_bytes=1_000)
    path = tmp_path / "next.tsv"
    path.write_bytes(b"".join(LINES[:3]))
    store.record.save("vip", str(path), "", LISTS, [])
    info, content = stored(store, tmp_path)
    assert content == b"".join(LINES[:3]) and info.fields == ()


def test_a_record_is_stored_over_the_blocks_an_earlier_release_left_by_an_interrupted_upload(
    store: StateStore, tmp_path: Path
) -> None:
    """The SDK's own uploads (how an earlier release stored records over 4 MiB) name blocks with
    48 characters; one interrupted leaves them uncommitted for up to 7 days, and a Put Block with
    ids of another length is refused (400) meanwhile. With and without a record before."""

    def leftover() -> str:
        return f"{uuid.uuid4().int:048d}"  # as the SDK's _shared/uploads.py names blocks

    store.ensure()
    blob = store._container.get_blob_client("delivered/vip.tsv")
    blob.stage_block(leftover(), b"interrupted\n")
    path = tmp_path / "next.tsv"
    path.write_bytes(b"".join(LINES[:3]))
    store.record.save("vip", str(path), "", LISTS)
    etag = stored(store, tmp_path)[0].etag
    blob.stage_block(leftover(), b"interrupted again\n")
    path.write_bytes(b"".join(LINES[3:6]))
    store.record.save("vip", str(path), etag, LISTS)
    assert stored(store, tmp_path)[1] == b"".join(LINES[3:6])


def test_an_empty_record_is_a_record(store: StateStore, tmp_path: Path) -> None:
    store.record.commit("vip", store.record.stage("vip", iter([])), "", LISTS)
    info, content = stored(store, tmp_path)
    assert info.etag and content == b""


# -- in a first delivery ---------------------------------------------------------------------
def test_a_first_delivery_stages_its_record_while_its_import_jobs_are_confirmed(
    app_factory: Any, source_container: Any, sandbox: Any
) -> None:
    """The record goes up while SendGrid (the sandbox, holding the first status poll 3 s) has not
    said whether the job applied: once it says so, committing it is one request."""
    write(source_container, [[person(i) for i in range(1, 31)]])
    sandbox_config(
        sandbox,
        job_pending_polls=0,
        faults=[{"method": "GET", "path": "/v3/marketing/contacts/imports/", "status": 0, "delay": 3.0, "times": 1}],
    )
    app = app_factory([definition()])
    blob = app.services.state._container.get_blob_client("delivered/vip.tsv")
    answer: list[Any] = []
    running = threading.Thread(target=lambda: answer.append(run(app)))
    running.start()
    staged_while_held = False
    while running.is_alive() and not staged_while_held:
        held = [
            r
            for r in sandbox_get(sandbox, "requests")["requests"]
            if r["method"] == "GET" and "/imports/" in r["path"] and "answered_seq" not in r
        ]
        if held:
            try:
                staged_while_held = bool(blob.get_block_list("uncommitted")[1])
            except ResourceNotFoundError:
                pass
        time.sleep(0.02)
    running.join()
    assert answer[0].body["status"] == "succeeded"
    assert staged_while_held, "the record was not staged while the poll was being answered"
    record = blob.download_blob().readall().decode().splitlines()
    assert sorted(line.split("\t")[0] for line in record) == sorted(f"person{i}@example.com" for i in range(1, 31))


def test_a_first_delivery_whose_import_failed_a_contact_stores_the_record_as_it_turned_out(
    app_factory: Any, source_container: Any, sandbox: Any
) -> None:
    """The staged record (every contact applied) is not what happened: the record stored leaves
    out the contact the import failed, so the next run sends it again."""
    write(source_container, [[person(i) for i in range(1, 31)]])
    sandbox_config(sandbox, job_pending_polls=0, import_error_emails=["person2@example.com"])
    app = app_factory([definition()])
    assert run(app).body["counts"]["failed"] == 1
    record = app.services.state._container.download_blob("delivered/vip.tsv").readall().decode().splitlines()
    assert sorted(line.split("\t")[0] for line in record) == sorted(f"person{i}@example.com" for i in range(1, 31) if i != 2)
    sandbox_config(sandbox, import_error_emails=[])
    assert run(app).body["counts"]["sent"] == 1
