"""The run's stages on their own, mostly without Azurite: sending with a 400 (a stand-in SendGrid client
that answers as the real one does), checkpoints and resume identity, the delta's decisions."""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobLeaseClient, ContainerClient
from helpers import ROOT, definition

from shared.contacts import packing
from shared.definitions import parse_definition
from shared.delta import diff, lines
from shared.delta.lines import encode_spill
from shared.errors import ExportError
from shared.report import RunReport
from shared.run import checkpoint
from shared.run.checkpoint import Checkpoint
from shared.run.context import RunContext, RunOptions, Workspace
from shared.run.delivery import ContactSink
from shared.run.rejects import RejectsLog
from shared.sendgrid.client import SendGridClient, SendGridRejected
from shared.services import Services
from shared.source.blob import BlobSource
from shared.state.lease import acquire_run_lease
from shared.state.store import StateStore


class ScriptedSendGrid(SendGridClient):
    """Answers PUT /v3/marketing/contacts from a script: a list of error lists (a 400 naming
    them) or None (202). Records every body it was sent; sends nothing anywhere."""

    def __init__(self, script: list[list[dict[str, Any]] | None]) -> None:
        super().__init__("https://sendgrid.invalid", lambda refresh: "SG.scripted")
        self.script = list(script)
        self.bodies: list[dict[str, Any]] = []

    def upsert_contacts(self, body: bytes) -> str:
        self.bodies.append(json.loads(body))
        errors = self.script.pop(0) if self.script else None
        if errors is not None:
            raise SendGridRejected(errors)
        return f"job-{len(self.bodies)}"

    def import_status(self, job_id: str) -> dict[str, Any]:
        return {"status": "pending"}

    def close(self) -> None:
        pass


# The stages run here read neither the source nor the state: a container nothing listens at.
UNUSED = ContainerClient("http://127.0.0.1:9", "unused")


def context(tmp_path: Path, client: ScriptedSendGrid, **services: Any) -> RunContext:
    report = RunReport(export="vip", trigger="test", dry_run=False)
    workspace = Workspace(tmp_path)
    built = Services(source=BlobSource(UNUSED), state=StateStore(UNUSED), sendgrid=lambda: client, **services)
    return RunContext(
        parse_definition(definition()),
        built,
        report,
        RunOptions(),
        workspace,
        RejectsLog(workspace.rejects, report),
        started=built.clock(),
    )


def send(ctx: RunContext, count: int) -> list[Checkpoint]:
    saved: list[Checkpoint] = []
    sink = ContactSink(ctx, {"snapshot": "s"}, saved.append)
    for i in range(count):
        assert sink.add_batch([(i, "p_1", i + 1)], [json.dumps({"email": f"c{i}@example.com"}).encode()])
    sink.finish()
    ctx.rejects.close()
    return saved


def rejected_rows(ctx: RunContext) -> list[tuple[str, str]]:
    with open(ctx.workspace.rejects, newline="") as handle:
        return [(row["row"], row["reason"]) for row in csv.DictReader(handle)]


def test_a_400_naming_contacts_drops_exactly_those_and_resends_the_rest_once(tmp_path: Path) -> None:
    client = ScriptedSendGrid(
        [
            [
                {"field": "contacts[1].email", "message": "email 'c1' is not valid"},
                {"field": "contacts[4].email", "message": "email 'c4' is not valid"},
            ]
        ]
    )
    ctx = context(tmp_path, client)
    saved = send(ctx, 6)
    assert len(client.bodies) == 2  # the refused request and one resend
    assert [c["email"] for c in client.bodies[1]["contacts"]] == [f"c{i}@example.com" for i in (0, 2, 3, 5)]
    assert ctx.report.counts.sent == 4 and ctx.progress.refused == 2 and ctx.report.upserts == 2
    assert rejected_rows(ctx) == [("2", "rejected by SendGrid"), ("5", "rejected by SendGrid")]
    # The accepted job spans positions 0-5; the refused ones inside it never count as applied.
    deliveries = ctx.progress.deliveries
    deliveries.settle([{"job_id": "job-2", "contacts": 4, "status": "completed"}])
    assert [deliveries.applied(p, b"x") for p in range(6)] == [True, False, True, True, False, True]
    assert saved[-1].position == 6 and saved[-1].refused_positions == [1, 4]


def test_a_400_naming_no_contact_is_halved_within_a_budget(tmp_path: Path) -> None:
    unnamed = [{"field": None, "message": "bad request"}]
    client = ScriptedSendGrid([unnamed] * 3)  # the whole body, then its first half, then one contact
    ctx = context(tmp_path, client)
    send(ctx, 4)
    assert ctx.report.counts.sent == 3 and ctx.progress.refused == 1
    (tmp_path / "b").mkdir()
    stubborn = context(tmp_path / "b", ScriptedSendGrid([unnamed] * 1000))
    with pytest.raises(ExportError) as raised:
        send(stubborn, 4096)
    assert raised.value.code == "sendgrid_error" and stubborn.report.upserts <= 1 + 4 * 13  # 4·log2(n) at most


def test_a_request_level_400_stops_the_run_without_hunting(tmp_path: Path) -> None:
    client = ScriptedSendGrid([[{"field": "list_ids", "message": "list does not exist"}]])
    ctx = context(tmp_path, client)
    with pytest.raises(ExportError) as raised:
        send(ctx, 5)
    assert raised.value.code == "sendgrid_error" and "list_ids" in raised.value.message and len(client.bodies) == 1


def test_a_checkpoint_written_by_the_previous_release_still_resumes() -> None:
    stored = json.loads((ROOT / "tests" / "fixtures" / "checkpoint-0.1.json").read_text())
    found = checkpoint.matching(stored, dict(stored["identity"]))
    assert found is not None and found.position == 20 and found.sent == 19 and found.refused_positions == []
    report = RunReport(export="vip", trigger="test", dry_run=False)
    deliveries = checkpoint.resume(found, report)
    assert report.counts.sent == 19 and report.counts.rejected == 1 and report.rejects["rejected by SendGrid"] == 1
    assert report.resumed_from == {"run_id": "20261128T141502Z-a1b2c3", "contacts_skipped": 20}
    deliveries.settle(report.jobs)
    assert deliveries.applied(3, b"a@x.io") and not deliveries.applied(10, b"a@x.io")
    assert Checkpoint.from_json(found.to_json()) == found  # round trip, same keys


@pytest.mark.parametrize("change", ["snapshot", "definition", "record", "full_refresh"])
def test_a_checkpoint_of_another_identity_does_not_apply(change: str) -> None:
    stored = json.loads((ROOT / "tests" / "fixtures" / "checkpoint-0.1.json").read_text())
    wanted = {**stored["identity"], change: "something else"}
    assert checkpoint.matching(stored, wanted) is None


@pytest.mark.parametrize(
    "broken",
    [
        None,
        [],
        {"identity": {}},
        {"identity": {}, "run_id": "r", "position": "x", "sent": 1},
        {"identity": {}, "run_id": "r", "position": -1, "sent": 0},
    ],
)
def test_anything_that_is_not_a_checkpoint_is_ignored(broken: Any) -> None:
    assert Checkpoint.from_json(broken) is None


def test_decide_on_tiny_files(tmp_path: Path) -> None:
    keys = [
        lines.encode_key(email, digest, position, "p", position + 1)
        for position, (email, digest) in enumerate([("b@x.io", "h2"), ("a@x.io", "new"), ("d@x.io", "h4")])
    ]
    record = [
        lines.encode_record(b"a@x.io", b"old"),
        lines.encode_record(b"b@x.io", b"h2"),
        lines.encode_record(b"c@x.io", b"h3"),
        lines.encode_record(b"e@x.io", b"h5"),
    ]
    with open(tmp_path / "decisions", "wb") as decisions, open(tmp_path / "leavers", "wb") as leavers:
        plan = diff.decide(
            keys,
            record,
            tmp_path,
            decisions,
            leavers,
            valid=3,
            has_record=True,
            mirror=True,
            keep=lambda email: email == b"e@x.io",
        )
    assert (plan.upsert, plan.unchanged, plan.remove, plan.managed) == (2, 1, 1, 4)
    assert plan.send_mask == bytearray([0, 1, 1])
    assert (tmp_path / "leavers").read_bytes() == b"c@x.io\n"  # e is kept: rejected this time for another value
    decided = [lines.parse_decision(line) for line in (tmp_path / "decisions").read_bytes().splitlines(keepends=True)]
    assert [(d.email, d.action, d.position) for d in decided] == [
        (b"a@x.io", "send", 1),
        (b"b@x.io", "same", -1),
        (b"c@x.io", "leave", -1),
        (b"d@x.io", "send", 2),
        (b"e@x.io", "leave", -1),
    ]


@pytest.mark.slow
def test_a_run_that_lost_its_lease_stops_sending(tmp_path: Path, blob_service: Any) -> None:
    # The real lease on Azurite, broken as another run (or an operator) would break it.
    container = blob_service.create_container(f"lease-{uuid.uuid4().hex[:12]}")
    lease = acquire_run_lease(container, "vip", 15)
    try:
        BlobLeaseClient(container.get_blob_client("locks/vip")).break_lease(lease_break_period=0)
        assert lease.lost.wait(timeout=10)  # the renewer notices within a renewal period (5 s)
        client = ScriptedSendGrid([])
        ctx = context(tmp_path, client, max_contacts_per_request=2)
        ctx.lease = lease
        sink = ContactSink(ctx, {"snapshot": "s"}, lambda checkpoint: None)
        added = [sink.add_batch([(i, "p_1", i + 1)], [b'{"email":"c%d@example.com"}' % i]) for i in range(6)]
        sink.finish()
        assert added == [True, True, False, False, False, False] and client.bodies == []
        assert ctx.report.resumable and ctx.report.counts.sent == 0
    finally:
        lease.release()


def test_a_contact_that_clearing_takes_over_the_size_cap_is_rejected_and_the_rest_sent(tmp_path: Path) -> None:
    # Clearing adds `"field":""` entries; a contact just under the cap can end up over it.
    client = ScriptedSendGrid([])
    contacts = [{"email": f"c{i}@example.com", "first_name": "x" * (40 if i == 1 else 1)} for i in range(3)]
    encoded = [json.dumps(c, separators=(",", ":")).encode() for c in contacts]
    envelope = len(packing.build_body(definition()["list_ids"], []))
    ctx = context(tmp_path, client, max_body_bytes=envelope + len(encoded[1]) + 5)
    spill = tmp_path / "spill"
    spill.write_bytes(b"".join(encode_spill("p_1", i + 1, e) for i, e in enumerate(encoded)))
    sink = ContactSink(ctx, {"snapshot": "s"}, lambda checkpoint: None)
    assert sink.add_from_spill(spill, clears={1: b"ln,ci"})  # last_name and city go out as ""
    sink.finish()
    ctx.rejects.close()
    assert rejected_rows(ctx) == [("2", "contact too large")]
    assert [c["email"] for body in client.bodies for c in body["contacts"]] == ["c0@example.com", "c2@example.com"]
