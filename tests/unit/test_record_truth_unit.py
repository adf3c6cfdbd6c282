"""The pure parts of "one truth for a run across time": the one rule for whether SendGrid applied
a contact, entries off the lists, and merging a journal into the record. No stand-ins."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from shared.delta import diff, extsort, lines
from shared.delta.lines import OFF_LIST, UNSURE
from shared.errors import ExportError
from shared.run.checkpoint import Checkpoint
from shared.run.delivery import KeyLines
from shared.run.reading import jobs_by_position
from shared.sendgrid import jobs
from shared.sendgrid.jobs import JobEntry
from shared.state.journal import append_blocks

JOB = "0f9c3a4e-1b2d-4c5e-8f70-123456789abc"
EARLIER = "a1b2c3d4-e5f6-4789-8abc-def012345678"


def errored(errored_count: Any, contacts: int = 10) -> JobEntry:
    return {"job_id": JOB, "contacts": contacts, "status": "errored", "results": {"errored_count": errored_count}}


# -- the one rule -----------------------------------------------------------------------------
def test_an_errored_job_applies_its_other_contacts_only_when_its_errors_file_names_every_failure() -> None:
    named = {"a@x.io": "bad"}
    assert jobs.applied_by(errored(1), named)("b@x.io") is True
    assert jobs.applied_by(errored(1), named)("a@x.io") is False
    # Two failed, one named: which other one failed is not known, so none counts as applied.
    assert jobs.applied_by(errored(2), named)("b@x.io") is False
    assert jobs.applied_by(errored(1), {"a@x.io": "bad", "c@x.io": "bad"})("b@x.io") is False  # more named than failed
    assert jobs.applied_by(errored("n/a"), named)("b@x.io") is False  # a count that is not one
    assert jobs.applied_by({"job_id": JOB, "contacts": 1, "status": "errored"}, named)("b@x.io") is False  # no count
    assert jobs.applied_by(errored(1), None)("b@x.io") is False  # the errors file was not read
    assert jobs.applied_by(errored(1), {})("b@x.io") is False  # nor named anyone


def test_completed_failed_forgotten_and_pending_jobs() -> None:
    assert jobs.applied_by({"job_id": JOB, "contacts": 1, "status": "completed"}, None)("a@x.io") is True
    assert jobs.applied_by({"job_id": JOB, "contacts": 1, "status": "failed"}, {"a@x.io": "limit"})("b@x.io") is False
    # A job SendGrid does not know (404 on its status) is answered as failed by the client.
    assert jobs.applied_by({"job_id": JOB, "contacts": 0, "status": "failed", "results": {}}, None)("a@x.io") is False
    assert jobs.applied_by({"job_id": JOB, "contacts": 1, "status": "pending"}, None)("a@x.io") is None
    assert jobs.applied_by({"job_id": JOB, "contacts": 1, "status": "queued?"}, None)("a@x.io") is None  # not final


def test_deliveries_follow_the_one_rule_and_what_is_learnt_after_they_settled() -> None:
    deliveries = jobs.Deliveries({JOB: [0, 10]})
    deliveries.failed(JOB, {"a@x.io": "bad"})
    deliveries.settle([errored(2)])
    assert deliveries.outcome(3, b"b@x.io") is False and deliveries.outcome(4, b"a@x.io") is False
    deliveries.failed(JOB, {"a@x.io": "bad", "c@x.io": "bad"})  # the file read again, whole
    assert deliveries.outcome(3, b"b@x.io") is True and deliveries.outcome(5, b"c@x.io") is False
    assert not deliveries.all_applied()


# -- entries off the lists --------------------------------------------------------------------
def test_markers_never_equal_a_contacts_hash() -> None:
    for marker in (OFF_LIST, UNSURE):
        assert len(marker) != len(diff.contact_hash(b'{"email":"a@x.io"}', ["l1"]))
        assert lines.parse_record(lines.encode_record(b"a@x.io", marker, b"ci;")) == (b"a@x.io", marker, b"ci;")


def decide(tmp_path: Path, keys: list[bytes], record: list[bytes], **options: Any) -> tuple[diff.Plan, list[Any], bytes]:
    with open(tmp_path / "d", "wb") as out, open(tmp_path / "l", "wb") as leavers:
        plan = diff.decide(
            keys,
            record,
            tmp_path,
            out,
            leavers,
            valid=len(keys),
            has_record=True,
            keep=lambda email: False,
            **{"mirror": True, **options},
        )
    decisions = list(map(lines.parse_decision, (tmp_path / "d").read_bytes().splitlines(True)))
    return plan, decisions, (tmp_path / "l").read_bytes()


def test_entries_off_the_lists_are_not_managed_never_leave_and_are_sent_when_they_come_back(tmp_path: Path) -> None:
    keys = [lines.encode_key("a@x.io", "h1", 0, "p", 1), lines.encode_key("c@x.io", "h3", 1, "p", 2, "ci")]
    record = [b"a@x.io\th1\n", b"b@x.io\toff\tpc;\n", b"c@x.io\toff\tpc;\n", b"d@x.io\th4\n"]
    plan, decisions, leavers = decide(tmp_path, keys, record, clears=lambda old, unset: b"ci" if b"ci" not in old else b"")
    assert plan.managed == 2 and plan.remove == 1 and leavers == b"d@x.io\n"  # b and c are off the lists
    assert [(d.email, d.action) for d in decisions] == [
        (b"a@x.io", "same"),
        (b"b@x.io", "leave"),
        (b"c@x.io", "send"),
        (b"d@x.io", "leave"),
    ]
    assert plan.upsert == 1 and plan.clears == {1: b"ci"}  # c is back: its city, set before, is cleared


def test_a_removed_leaver_stays_known_off_the_lists(tmp_path: Path) -> None:
    rows = [
        lines.encode_decision(b"a@x.io", b"", b"h1", "leave", -1, b"ci,fn;"),
        lines.encode_decision(b"b@x.io", b"", b"h2", "leave", -1, b""),
        lines.encode_decision(b"c@x.io", b"", b"h3", "leave", -1, b""),
        lines.encode_decision(b"d@x.io", b"", b"off", "leave", -1, b"pc;"),
    ]
    removed = {b"a@x.io", b"b@x.io", b"d@x.io"}.__contains__
    assert list(diff.next_record(rows, lambda p, e: False, removed)) == [
        b"a@x.io\toff\tci,fn;\n",
        b"b@x.io\toff\n",
        b"c@x.io\th3\n",  # not looked up: stays, tried again
        b"d@x.io\toff\tpc;\n",
    ]
    unknown = list(diff.next_record(rows[:1], lambda p, e: False, removed, carried_unknown=True))
    assert unknown == [b"a@x.io\toff\t?;\n"]  # which fields it set is not known: nothing is cleared


# -- merging a journal ------------------------------------------------------------------------
def journal(*keys: tuple[str, str, int, str]) -> list[list[bytes]]:
    """A journal (key lines) of (email, hash, position, unset), sorted as a run sorts it."""
    written = b"".join(lines.encode_key(e, h, p, "part\t1", p + 1, u) for e, h, p, u in keys)
    return list(extsort.merged(extsort.sorted_runs(io.BytesIO(written).readlines(), Path("."))))


def merge(record: list[bytes], journaled: list[list[bytes]], job_at: diff.JobAt, unknown: bool = False) -> list[bytes]:
    return list(diff.merge_journal(record, journaled, job_at, unknown))


def test_accepted_contacts_become_pending_with_the_entry_to_go_back_to() -> None:
    record = [
        b"a@x.io\th0\tci;\n",  # settled
        b"b@x.io\th0\n",  # not in the journal
        b"c@x.io\th1\t;" + EARLIER.encode() + b";h0;pc\n",  # pending on an earlier job
        b"d@x.io\toff\tfn;\n",  # unlinked earlier
    ]
    journaled = journal(("a@x.io", "h2", 0, ""), ("c@x.io", "h2", 1, "ci"), ("d@x.io", "h2", 2, ""), ("e@x.io", "h2", 3, "fn"))
    job = JOB.encode()
    assert merge(record, journaled, lambda position: job) == [
        b"a@x.io\th2\t;" + job + b";h0;ci\n",
        b"b@x.io\th0\n",
        # Newer than the pending one, whose job may yet apply h1 or not: back to UNSURE (sent
        # again), with the fields unset in both h1 and h0 (none: pc was set by h1).
        b"c@x.io\th2\tci;" + job + b";unsure;\n",
        b"d@x.io\th2\t;" + job + b";off;fn\n",  # back: if the job does not apply it, it is off the lists still
        b"e@x.io\th2\tfn;" + job + b"\n",  # new: nothing to go back to
    ]


def test_contacts_not_known_to_be_sent_are_unsure_and_refused_ones_keep_their_entry() -> None:
    record = [b"a@x.io\th0\tci,pc;\n", b"b@x.io\th0\tci;\n", b"c@x.io\th1\tfn;" + JOB.encode() + b";h0;fn,ci\n"]
    journaled = journal(
        ("a@x.io", "h2", 0, "ci,fn"), ("b@x.io", "h2", 1, ""), ("c@x.io", "h2", 2, "ci,fn"), ("d@x.io", "h2", 3, "pc")
    )
    refused = {1}
    merged = merge(record, journaled, lambda position: False if position in refused else None)
    assert merged == [
        b"a@x.io\tunsure\tci;\n",  # set by either version but the city: only it is never cleared
        b"b@x.io\th0\tci;\n",  # refused by SendGrid: never applied
        b"c@x.io\tunsure\tfn;\n",  # the pending version, the one before it and the journal's
        b"d@x.io\tunsure\tpc;\n",
    ]
    assert merge([], journal(("a@x.io", "h2", 0, "ci")), lambda p: None, unknown=True) == [b"a@x.io\tunsure\t?;\n"]


def test_merging_the_same_journal_again_changes_nothing() -> None:
    record = [b"a@x.io\th0\tci;\n", b"b@x.io\th0\n"]
    journaled = journal(("a@x.io", "h2", 0, ""), ("a@x.io", "h2", 0, ""), ("c@x.io", "h2", 1, ""))  # a sent twice
    job_at = {0: JOB.encode(), 1: None}.__getitem__
    once = merge(record, journaled, job_at)
    assert once == [b"a@x.io\th2\t;" + JOB.encode() + b";h0;ci\n", b"b@x.io\th0\n", b"c@x.io\tunsure\n"]
    assert merge(once, journaled, job_at) == once
    # After the job settled (applied), merging again gives the same job to settle once more.
    settled = list(diff.settle_record(once, lambda job, email: True))
    assert merge(settled, journaled, job_at)[0] == b"a@x.io\th2\t;" + JOB.encode() + b";h2;\n"


def test_a_checkpoint_says_which_journaled_contacts_went_with_which_job() -> None:
    stale = Checkpoint({"snapshot": "old"}, "run", 30, 20, 1, [], {JOB: [0, 10], "not an id": [10, 20]}, [4])
    job_at = jobs_by_position(stale)
    assert [job_at(p) for p in (0, 4, 9, 10, 25)] == [JOB.encode(), False, JOB.encode(), None, None]
    assert jobs_by_position(None)(0) is None


# -- the journal's pieces and the key lines it is written from --------------------------------
def test_journal_blocks_hold_whole_lines_under_the_cap() -> None:
    data = b"".join(b"%d\n" % i for i in range(1000))
    pieces = append_blocks(data, 100)
    assert b"".join(pieces) == data and all(len(p) <= 100 and p.endswith(b"\n") for p in pieces)
    assert append_blocks(b"", 100) == []
    with pytest.raises(ExportError):
        append_blocks(b"x" * 200 + b"\n", 100)


def test_key_lines_are_read_forward_at_the_positions_asked(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_bytes(b"".join(lines.encode_key(f"c{i}@x.io", "h", i, "p", i + 1) for i in range(100)))
    reader = KeyLines(path)
    assert [lines.key_fields(k)[3] for k in reader.at([3, 4, 50])] == [3, 4, 50]
    assert [lines.key_fields(k)[3] for k in reader.at(list(range(60, 70)))] == list(range(60, 70))  # a run
    assert [lines.key_fields(k)[0] for k in reader.at([99])] == [b"c99@x.io"]
    with pytest.raises(ValueError):
        reader.at([10])  # behind
    reader.close()
    short = KeyLines(path)
    with pytest.raises(ValueError):
        short.at([99, 100])  # not written (yet)
    short.close()
