"""Delta between the segment and what was last delivered, on sorted streams: `decide` makes the
plan, `next_record` / `first_record` the record after a run. Pure but for the temporary files of
the external sort and the open files it is handed.

The delivered record is a text file sorted by email, one line per contact this exporter had
applied by SendGrid: `email<TAB>hash`, where the hash covers the contact's mapped fields and
the list ids. The segment's valid contacts are sorted the same way (an external sort: sorted
runs on disk, merged), so the two are compared in one pass with memory independent of size.

Sorting lines as bytes sorts them by email: a TAB (0x09) follows the email and sorts before any
character an email may hold, so "a@x.io<TAB>..." comes before "a@x.io.uk<TAB>...".
"""

from __future__ import annotations

import hashlib
import heapq
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final, Literal, NamedTuple, cast

from shared.lines import (
    RecordEntry,
    encode_decision,
    encode_extra,
    encode_record,
    key_as_record,
    key_for_diff,
    parse_decision,
    parse_record,
    pending_job,
    restore_entry,
    unset_of,
)

UNKNOWN = b"?"  # an entry's unset code when which fields the export set is not known

# What became of a sent contact: True applied, False not, or the id of its still-pending job.
Outcome = Callable[[int, bytes], "bool | bytes"]

LINES_PER_RUN = 100_000  # lines sorted in memory at a time (a few tens of MB at most)

Action = Literal["same", "send", "leave"]
SAME: Final = "same"
SEND: Final = "send"
LEAVE: Final = "leave"


def lists_suffix(list_ids: Iterable[str]) -> bytes:
    return b"\x1e" + ",".join(sorted(list_ids)).encode()


def contact_hash(encoded_contact: bytes, list_ids: Iterable[str] | bytes) -> str:
    """A stable hash of a contact as sent: its encoded fields and its lists (a list of ids, or
    `lists_suffix` of them computed once)."""
    suffix = list_ids if isinstance(list_ids, bytes) else lists_suffix(list_ids)
    return hashlib.blake2b(encoded_contact + suffix, digest_size=8).hexdigest()


def external_sort(lines: Iterable[bytes], workdir: Path, lines_per_run: int = LINES_PER_RUN) -> Iterator[bytes]:
    """Yield newline-terminated lines in byte order, holding at most `lines_per_run` in memory."""
    return merge_runs(sorted_runs(lines, workdir, lines_per_run))


Runs = list[Path] | list[bytes]  # sorted run files, or (when all fitted in one) the sorted lines


def sorted_runs(lines: Iterable[bytes], workdir: Path, lines_per_run: int = LINES_PER_RUN) -> Runs:
    """The first half of an external sort: sorted runs of at most `lines_per_run` lines."""
    runs: list[Path] = []
    batch: list[bytes] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= lines_per_run:
            runs.append(_write_run(sorted(batch), workdir))
            batch = []
    if not runs:  # everything fitted in one batch
        return sorted(batch)
    if batch:
        runs.append(_write_run(sorted(batch), workdir))
    return runs


def merge_runs(runs: Runs) -> Iterator[bytes]:
    """The second half: the runs merged, in order; run files are removed when done."""
    if not runs or isinstance(runs[0], bytes):
        yield from runs  # type: ignore[misc]
        return
    paths = cast(list[Path], runs)
    with ExitStack() as stack:
        files = [stack.enter_context(open(path, "rb")) for path in paths]
        yield from heapq.merge(*files)
    for path in paths:
        path.unlink(missing_ok=True)


def _write_run(lines: list[bytes], workdir: Path) -> Path:
    with tempfile.NamedTemporaryFile("wb", dir=workdir, prefix="run-", suffix=".txt", delete=False) as handle:
        handle.writelines(lines)
        return Path(handle.name)


def read_record(lines: Iterable[bytes]) -> Iterator[RecordEntry]:
    """The entries of a delivered record, checked to be in strictly ascending order."""
    previous = b""
    for raw in lines:
        entry = parse_record(raw)
        if entry is None:
            continue
        if entry[0] <= previous:
            raise ValueError("the delivered record is not sorted by email")
        previous = entry[0]
        yield entry


class Decision(NamedTuple):  # one per contact: a tuple is cheaper than a dataclass
    email: bytes
    new_hash: bytes | None  # None: not in the segment now (a leaver)
    old_hash: bytes | None  # None: never delivered
    action: Action
    payload: bytes = b""  # for SEND, what the segment side carried (the spill position)
    old_extra: bytes = b""  # the record entry's extra (fields not set, a pending job)
    unset: bytes = b""  # the segment's contact: the fields it has no value for


def diff(
    current: Iterator[tuple[bytes, ...]],
    record: Iterator[RecordEntry] | Iterator[tuple[bytes, bytes]],
    *,
    full_refresh: bool = False,
) -> Iterator[Decision]:
    """Merge (email, hash, payload[, unset]) of the segment with the record's (email, hash[,
    extra]), both sorted by email: new or changed contacts are sent (all of them on a full refresh), unchanged ones
    are left alone, and record entries no longer in the segment are leavers."""
    now = next(current, None)
    was = next(record, None)
    while now is not None or was is not None:
        if was is None or (now is not None and now[0] < was[0]):
            assert now is not None
            yield Decision(now[0], now[1], None, SEND, now[2], b"", _unset(now))
            now = next(current, None)
        elif now is None or was[0] < now[0]:
            yield Decision(was[0], None, was[1], LEAVE, b"", _extra(was))
            was = next(record, None)
        else:
            same = now[1] == was[1] and not full_refresh
            yield Decision(now[0], now[1], was[1], SAME if same else SEND, b"" if same else now[2], _extra(was),
                           _unset(now))
            now, was = next(current, None), next(record, None)


def _extra(entry: tuple[bytes, ...]) -> bytes:
    return entry[2] if len(entry) > 2 else b""


def _unset(key: tuple[bytes, ...]) -> bytes:
    return key[3] if len(key) > 3 else b""


@dataclass
class Plan:
    """What a run will do, from the comparison of the segment with the delivered record."""

    upsert: int = 0
    remove: int = 0
    unchanged: int = 0
    managed: int = 0  # contacts in the delivered record: what this export put on its lists
    send_mask: bytearray | None = None  # spill positions to send; None: all of them
    clears: dict[int, bytes] = field(default_factory=dict)  # spill position -> fields to send as ""


def decide(
    keys: Iterable[bytes],
    record: Iterable[bytes],
    workdir: Path,
    decisions: BinaryIO,
    leavers: BinaryIO,
    *,
    valid: int,
    has_record: bool,
    mirror: bool,
    keep: Callable[[bytes], bool],
    full_refresh: bool = False,
    clears: Callable[[bytes, bytes], bytes] | None = None,
) -> Plan:
    """Sort the key lines, merge them with the record lines and write one decision line per email
    of either, and (mirror mode) the leavers to unlink, but not those `keep` protects (rows
    rejected this time for another value, and those whose import job is still pending: they leave
    once it settled). `clears(old extra, unset)` names the fields a changed contact must send as
    "" (values this export set that are now empty). Only short keys are sorted; contacts stay in
    the spill."""
    plan = Plan()
    send_all = full_refresh or not has_record
    mask = None if send_all else bytearray(valid)
    current = (key_for_diff(line) for line in external_sort(keys, workdir))
    for decision in diff(current, read_record(record), full_refresh=full_refresh):
        position = -1
        if decision.old_hash is not None:
            plan.managed += 1
        if decision.action == SEND:
            position = int(decision.payload)
            plan.upsert += 1
            if mask is not None:
                mask[position] = 1
            if clears is not None and decision.old_hash is not None and decision.unset:
                cleared = clears(decision.old_extra, decision.unset)
                if cleared:
                    plan.clears[position] = cleared
        elif decision.action == SAME:
            plan.unchanged += 1
        elif mirror and not keep(decision.email) and not pending_job(decision.old_extra):
            leavers.write(decision.email + b"\n")
            plan.remove += 1
        decisions.write(encode_decision(decision.email, decision.new_hash, decision.old_hash, decision.action, position,
                                        decision.old_extra, decision.unset))
    plan.send_mask = mask
    return plan


def next_record(decision_lines: Iterable[bytes], outcome: Outcome, removed: Callable[[bytes], bool],
                carried_unknown: bool = False) -> Iterator[bytes]:
    """The record after a run, in email order, from its decision lines: a sent contact takes its
    new hash once SendGrid applied it, or with its job's id while that job is pending (it is not
    sent again meanwhile); otherwise it keeps its old entry, or none, and is sent again next time.
    A leaver stays unless it was removed from the lists. `carried_unknown`: the record was written
    against other fields (or unknown ones), so an entry carried over as it was says "?" for which
    fields the export set (nothing is ever cleared for it)."""
    for line in decision_lines:
        email, new_hash, old_hash, action, position, old_extra, unset = parse_decision(line)
        if action == SAME:  # the same contact: the same unset fields, and a pending job stays pending
            yield encode_record(email, new_hash, old_extra if pending_job(old_extra) else encode_extra(unset))
        elif action == SEND:
            result = outcome(position, email)
            if result is True:
                yield encode_record(email, new_hash, encode_extra(unset))
            elif result:  # pending: keep what SendGrid holds now, to go back to if the job fails
                yield encode_record(email, new_hash, encode_extra(unset, result, _holds(email, old_hash, old_extra)))
            elif old_hash:
                yield encode_record(email, old_hash, _carried(old_extra, carried_unknown))
        elif not removed(email):
            yield encode_record(email, old_hash, _carried(old_extra, carried_unknown))


def _holds(email: bytes, old_hash: bytes, old_extra: bytes) -> RecordEntry | None:
    """What SendGrid holds of a contact about to be replaced: its record entry, or (when that
    entry was itself pending) the one before it; None for a contact it does not hold."""
    if not old_hash:
        return None
    if pending_job(old_extra):
        return restore_entry(email, old_extra)
    return RecordEntry(email, old_hash, old_extra)


def _carried(old_extra: bytes, unknown: bool) -> bytes:
    if not unknown:
        return old_extra
    restore = restore_entry(b"", old_extra)
    return encode_extra(UNKNOWN, pending_job(old_extra), restore._replace(extra=encode_extra(UNKNOWN)) if restore else None)


def first_record(sorted_keys: Iterable[bytes], outcome: Outcome | None) -> Iterator[bytes]:
    """The record after a first delivery (every valid contact was sent), from the sorted key
    lines: each applied contact, and each whose job is still pending with that job's id;
    `outcome=None` when every one of them was applied."""
    if outcome is None:  # the usual case: every contact was sent and applied
        yield from map(key_as_record, sorted_keys)
        return
    for line in sorted_keys:
        email, digest, position, unset = key_for_diff(line)
        result = outcome(int(position), email)
        if result is True:
            yield encode_record(email, digest, encode_extra(unset))
        elif result:
            yield encode_record(email, digest, encode_extra(unset, result))


def settle_record(lines: Iterable[bytes], outcome: Callable[[bytes, bytes], bool | None]) -> Iterator[bytes]:
    """The record with its pending entries settled: `outcome(job id, email)` is True when that
    job applied the contact (the mark goes), False when it did not (the entry goes back to what
    SendGrid still holds, or goes when it held nothing: the contact is sent again), None while
    the job is still pending (the entry stays as it is)."""
    for raw in lines:
        entry = parse_record(raw)
        if entry is None:
            continue
        job = pending_job(entry.extra)
        if not job:
            yield raw if raw.endswith(b"\n") else raw + b"\n"
            continue
        result = outcome(job, entry.email)
        if result is None:
            yield encode_record(*entry)
        elif result:
            yield encode_record(entry.email, entry.digest, encode_extra(unset_of(entry.extra)))
        elif (held := restore_entry(entry.email, entry.extra)) is not None:
            yield encode_record(*held)
