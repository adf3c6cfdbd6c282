"""The delta's line formats, external sort and record, on small files. Pure (temporary files only)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from shared.delta import diff, extsort, lines


def decide(tmp_path: Path, keys: list[bytes], record: list[bytes], **options: object) -> tuple[diff.Plan, bytes]:
    """decide over files, as a run does; the plan and the decisions file."""
    (tmp_path / "keys").write_bytes(b"".join(keys))
    (tmp_path / "record").write_bytes(b"".join(record))
    settings: dict[str, object] = {
        "valid": len(keys),
        "has_record": bool(record),
        "mirror": False,
        "keep": lambda email: False,
        **options,
    }
    with (
        open(tmp_path / "keys", "rb") as key_file,
        open(tmp_path / "record", "rb") as record_file,
        open(tmp_path / "decisions", "wb") as decisions,
        open(tmp_path / "leavers", "wb") as leavers,
    ):
        plan = diff.decide(key_file, record_file, tmp_path, decisions, leavers, **settings)  # type: ignore[arg-type]
    return plan, (tmp_path / "decisions").read_bytes()


def record_after(decided: bytes, applied: bool = True) -> bytes:
    return b"".join(diff.next_record([decided], lambda position, email: applied, lambda email: False))


# -- key lines -----------------------------------------------------------------------------------
def test_a_key_line_holds_its_record_line_before_the_position() -> None:
    plain = lines.encode_key("a@x.io", "h1", 3, "odd\tpart\0ition", 7)
    unset = lines.encode_key("a@x.io", "h1", 4, "p", 8, "fn,+e1_T")
    assert lines.key_fields(plain) == (b"a@x.io", b"h1", b"", 3)
    assert lines.key_fields(unset) == (b"a@x.io", b"h1", b"fn,+e1_T", 4)
    assert lines.parse_key(plain) == (b"a@x.io", b"h1", 3, ("odd\tpart\0ition", 7), b"")
    assert lines.parse_key(unset) == (b"a@x.io", b"h1", 4, ("p", 8), b"fn,+e1_T")
    assert lines.keys_as_records([plain, unset]) == [b"a@x.io\th1", b"a@x.io\th1\tfn,+e1_T;"]
    # the record part is the record line the applied contact gets, as the record encodes it
    assert lines.key_as_record(unset) == lines.encode_record(b"a@x.io", b"h1", lines.encode_extra(b"fn,+e1_T"))


def test_key_lines_sort_by_email() -> None:
    keys = [lines.encode_key(email, "ff", n, "p", n) for n, email in enumerate(["a@x.iob", "a@x.io.uk", "a@x.io"])]
    assert [lines.key_fields(key)[0] for key in sorted(keys)] == [b"a@x.io", b"a@x.io.uk", b"a@x.iob"]


# -- the decisions file --------------------------------------------------------------------------
def test_a_decisions_file_splits_into_record_stretches_and_decision_lines() -> None:
    send = lines.encode_decision(b"b@x.io", b"h2", b"", "send", 4, b"", b"fn")
    leave = lines.encode_decision(b"e@x.io", b"", b"h5", "leave", -1, b"?;")
    piece = b"a@x.io\th1\n" + send + b"c@x.io\th3\nd@x.io\th4\tci;\n" + leave
    assert list(lines.split_decisions(piece)) == [
        (False, b"a@x.io\th1\n"),
        (True, send),
        (False, b"c@x.io\th3\nd@x.io\th4\tci;\n"),
        (True, leave),
    ]
    assert list(lines.split_decisions(leave + send)) == [(True, leave), (True, send)]
    assert list(lines.split_decisions(b"a@x.io\th1\n")) == [(False, b"a@x.io\th1\n")]
    assert lines.parse_decision(send) == (b"b@x.io", b"h2", b"", "send", 4, b"", b"fn")
    # a record line there is an unchanged contact, its entry as it stays
    assert lines.parse_decision(b"d@x.io\th4\tci;j1\n") == (b"d@x.io", b"h4", b"h4", "same", -1, b"ci;j1", b"ci")


# -- the external sort ---------------------------------------------------------------------------
def test_a_file_is_sorted_in_runs_of_bounded_size_and_merged_in_batches(tmp_path: Path) -> None:
    data = [f"user{(i * 7919) % 1000:04d}@x.io\t{i}\n".encode() for i in range(1000)]
    (tmp_path / "in").write_bytes(b"".join(data))
    with open(tmp_path / "in", "rb") as source:
        runs = extsort.sorted_runs(source, tmp_path, run_bytes=2_000)
    assert len(runs) > 5 and all(isinstance(run, Path) for run in runs[:-1]) and isinstance(runs[-1], list)
    batches = list(extsort.merged(runs, merge_bytes=500))  # a few lines from each run at a time
    assert len(batches) > 20 and [line for batch in batches for line in batch] == sorted(data)
    assert sorted(tmp_path.iterdir()) == [tmp_path / "in"]  # the runs are removed
    with open(tmp_path / "in", "rb") as source:  # all of it fits: one run, kept in memory
        assert extsort.sorted_runs(source, tmp_path) == [sorted(data)]


def test_pieces_are_whole_lines(tmp_path: Path) -> None:
    content = b"".join(f"line {n}\n".encode() for n in range(100)) + b"last, unterminated"
    (tmp_path / "f").write_bytes(content)
    with open(tmp_path / "f", "rb") as stream:
        pieces = list(extsort.pieces(stream, size=16))
    assert b"".join(pieces) == content and len(pieces) > 10
    assert all(piece.endswith(b"\n") for piece in pieces[:-1])


# -- decide and the record after it -------------------------------------------------------------
def test_unchanged_contacts_carry_their_record_lines_as_they_stand(tmp_path: Path) -> None:
    keys = [
        lines.encode_key("a@x.io", "h1", 0, "p", 1),
        lines.encode_key("b@x.io", "h2", 1, "p", 2, "fn"),
        lines.encode_key("c@x.io", "h3", 2, "p", 3, "fn"),
        lines.encode_key("d@x.io", "new", 3, "p", 4),
    ]
    record = [b"a@x.io\th1\n", b"b@x.io\th2\tfn;\n", b"c@x.io\th3\tfn;job7;h0;\n", b"d@x.io\th4\n"]
    plan, decided = decide(tmp_path, keys, record)
    assert (plan.upsert, plan.unchanged, plan.managed, plan.send_mask) == (1, 3, 4, bytearray([0, 0, 0, 1]))
    # a, b settled: their lines; c: its job still pending, its line too; d: a decision
    assert decided.startswith(b"a@x.io\th1\nb@x.io\th2\tfn;\nc@x.io\th3\tfn;job7;h0;\n\0send\t3\td@x.io\t")
    assert record_after(decided) == b"a@x.io\th1\nb@x.io\th2\tfn;\nc@x.io\th3\tfn;job7;h0;\nd@x.io\tnew\n"
    assert record_after(decided, applied=False) == b"".join(record)


def test_an_unchanged_contact_whose_unset_fields_changed_gets_its_new_entry(tmp_path: Path) -> None:
    # the same hash (a field mapped now, empty for this contact), another unset code; an entry
    # of an earlier release (no extra), and a record ending without a newline, after a blank line
    keys = [lines.encode_key("a@x.io", "h1", 0, "p", 1, "fn,ci"), lines.encode_key("b@x.io", "h2", 1, "p", 2)]
    record = [b"a@x.io\th1\tfn;\n", b"\n", b"b@x.io\th2"]
    plan, decided = decide(tmp_path, keys, record)
    assert (plan.upsert, plan.unchanged, plan.managed) == (0, 2, 2)
    assert decided == b"a@x.io\th1\tfn,ci;\nb@x.io\th2\n" == record_after(decided)


def test_a_full_refresh_sends_unchanged_contacts_too(tmp_path: Path) -> None:
    keys = [lines.encode_key("a@x.io", "h1", 0, "p", 1)]
    plan, decided = decide(tmp_path, keys, [b"a@x.io\th1\n"], full_refresh=True)
    assert (plan.upsert, plan.unchanged, plan.send_mask) == (1, 0, None)
    assert lines.parse_decision(decided).action == "send"


@pytest.mark.parametrize(
    "record",
    [
        [b"a@x.io\th1\n", b"c@x.io\th3\n", b"b@x.io\th2\n"],  # c is unchanged (taken at once), then b after it
        [b"a@x.io\th1\n", b"a@x.io\th1\n"],  # the same entry twice
        [b"b@x.io\th2\n", b"a@x.io\th1\n"],
    ],
)
def test_a_record_out_of_order_is_refused_however_its_entries_are_taken(tmp_path: Path, record: list[bytes]) -> None:
    keys = [lines.encode_key("a@x.io", "h1", 0, "p", 1), lines.encode_key("c@x.io", "h3", 1, "p", 2)]
    with pytest.raises(ValueError, match="not sorted"):
        decide(tmp_path, keys, record)


def test_the_delta_over_many_runs_matches_the_one_in_memory(tmp_path: Path) -> None:
    keys = [
        lines.encode_key(f"u{(n * 7919) % 500:03d}@x.io", f"h{n % 3}", n, "p", n + 1, "fn" if n % 4 else "") for n in range(500)
    ]
    record = sorted(lines.key_as_record(key).replace(b"\th2", b"\told") for key in keys[:400])
    record += [b"z%03d@x.io\th\n" % n for n in range(20)]  # leavers after the last key
    plan, decided = decide(tmp_path, keys, record, mirror=True)
    runs = extsort.sorted_runs(keys, tmp_path, lines_per_run=37)
    assert len(runs) > 10
    whole = b"".join(diff.first_record(extsort.merged(runs), None))
    assert whole == b"".join(sorted(lines.key_as_record(key) for key in keys))
    assert record_after(decided) == b"".join(sorted(whole.splitlines(True) + record[-20:]))
    assert (plan.upsert, plan.unchanged, plan.remove, plan.managed) == (233, 267, 20, 420)
    assert (tmp_path / "leavers").read_bytes() == b"".join(b"z%03d@x.io\n" % n for n in range(20))
    pieces = list(extsort.pieces(open(tmp_path / "decisions", "rb"), size=100))  # noqa: SIM115
    assert b"".join(diff.next_record(pieces, lambda p, e: True, lambda e: False)) == record_after(decided)


def test_a_first_record_names_pending_jobs_and_leaves_out_what_failed() -> None:
    keys = sorted(
        [
            lines.encode_key("b@x.io", "h2", 0, "p", 1, "fn"),
            lines.encode_key("a@x.io", "h1", 1, "p", 2),
            lines.encode_key("c@x.io", "h3", 2, "p", 3),
        ]
    )
    outcome: dict[int, bool | bytes] = {0: b"job1", 1: True, 2: False}
    assert b"".join(diff.first_record([keys], lambda position, email: outcome[position])) == b"a@x.io\th1\nb@x.io\th2\tfn;job1\n"
    assert b"".join(diff.first_record([keys], None)) == b"a@x.io\th1\nb@x.io\th2\tfn;\nc@x.io\th3\n"


@pytest.mark.slow
def test_leavers_are_written_as_they_come_whatever_their_number(tmp_path: Path) -> None:
    # A segment emptied or narrowed: every record entry is a leaver. They once all waited in
    # memory for the next key (~250 MB a million); now memory stays flat as their number grows.
    def peak(entries: int) -> int:
        record = (b"c%07d@x.io\th%d\n" % (n, n) for n in range(entries))
        with open(tmp_path / "d", "wb") as out, open(tmp_path / "l", "wb") as leavers:
            tracemalloc.start()
            try:
                plan = diff.decide(
                    [], record, tmp_path, out, leavers, valid=0, has_record=True, mirror=True, keep=lambda email: False
                )
                _, top = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert plan.remove == entries and (tmp_path / "l").read_bytes().count(b"\n") == entries
        return top

    small, large = peak(20_000), peak(200_000)
    assert large < small + 1024 * 1024  # ten times the leavers, not ten times the memory
