"""Delta between the segment and what was last delivered, on sorted streams: `decide` makes the
plan, `next_record` / `first_record` the record after a run. Pure but for the temporary files of
the external sort and the open files it is handed.

The delivered record is a text file sorted by email, one line per contact this exporter had
applied by SendGrid: `email<TAB>hash`, where the hash covers the contact's mapped fields and
the list ids (and, see `shared.lines`: contacts pending on an import job, contacts it may have
sent, and contacts mirror mode unlinked, each known still). `merge_journal` takes in what a run
that stored no record was about to send. The segment's valid contacts are sorted the same way (an external sort,
`shared.extsort`), so the two are compared in one pass with memory independent of size.

Sorting lines as bytes sorts them by email: a TAB (0x09) follows the email and sorts before any
character an email may hold, so "a@x.io<TAB>..." comes before "a@x.io.uk<TAB>...".

The usual contact of a delta run is unchanged and settled: its key line's record part (see
`shared.lines`) is its record line as it stands, and that line is carried into the decisions
file, and from there into the next record, as bytes (no parsing, no tuple per contact).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import BinaryIO, Final, Literal, cast

from shared.delta.extsort import merged, pieces, sorted_runs
from shared.delta.lines import (
    OFF_LIST,
    UNSURE,
    DecisionLine,
    RecordEntry,
    encode_decision,
    encode_extra,
    encode_record,
    key_as_record,
    key_fields,
    keys_as_records,
    parse_decision,
    parse_record,
    pending_job,
    restore_entry,
    split_decisions,
    unset_of,
)

UNKNOWN = b"?"  # an entry's unset code when which fields the export set is not known

# What became of a sent contact: True applied, False not, or the id of its still-pending job.
Outcome = Callable[[int, bytes], "bool | bytes"]
# Whether SendGrid may hold a sent contact its outcome does not say is applied (SendGrid accepted
# it and did not say it did not apply it): by send position (or pending job id) and email.
MayHold = Callable[[int, bytes], bool]

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
    # blake2b-8 of contact + suffix, from a copy of an empty one: the same digest as
    # blake2b(contact + suffix, digest_size=8), without the constructor's keyword parsing or
    # the concatenation (0.81 -> 0.56 us a contact).
    digest = _EMPTY_HASH.copy()
    digest.update(encoded_contact)
    digest.update(suffix)
    return digest.hexdigest()


_EMPTY_HASH = hashlib.blake2b(digest_size=8)


def _lines(source: Iterable[bytes]) -> Iterator[bytes | None]:
    """The lines of a binary file (read a block at a time) or of any other iterable of lines,
    without their newlines, then None."""
    if hasattr(source, "read"):
        split = (piece.split(b"\n") for piece in pieces(cast(BinaryIO, source)))
        return chain(chain.from_iterable(split), (None,))  # a blank after each piece: blanks are skipped
    return chain((line.rstrip(b"\n") for line in source), (None,))


# -- the plan ----------------------------------------------------------------------------------
@dataclass
class Plan:
    """What a run will do, from the comparison of the segment with the delivered record."""

    upsert: int = 0
    remove: int = 0
    unchanged: int = 0
    managed: int = 0  # contacts in the delivered record on its lists (not OFF_LIST): what this export manages
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
    """Sort the key lines and merge them with the record's (both by email) into the decisions
    file: new or changed contacts are sent (all of them on a full refresh), unchanged ones keep
    their entry, record entries no longer in the segment are leavers; in mirror mode the leavers
    to unlink go to `leavers`, but not those `keep` protects (rows rejected this time for another
    value), nor those whose import job is still pending (they leave once it settled), nor entries
    off the lists already (OFF_LIST: not managed; a contact that comes back is sent, as changed).
    `clears(old extra, unset)` names the fields a changed contact must send as "" (values this
    export set that are now empty). Only short keys are sorted; contacts stay in the spill. An
    unsorted record raises ValueError."""
    plan = Plan()
    mask = None if full_refresh or not has_record else bytearray(valid)
    take = _lines(record).__next__  # (take no more once it gave None)
    now = take()  # the record line up next
    taken = b""  # the record line taken last (its email comes before the next one's)
    seen = slow = 0
    out: list[bytes] = []
    append = out.append

    def send(key: tuple[bytes, bytes, bytes, int], entry: RecordEntry | None) -> None:
        email, digest, unset, position = key
        plan.upsert += 1
        if mask is not None:
            mask[position] = 1
        old_hash, old_extra = (entry.digest, entry.extra) if entry is not None else (b"", b"")
        if entry is not None and clears is not None and unset and (cleared := clears(old_extra, unset)):
            plan.clears[position] = cleared
        append(encode_decision(email, digest, old_hash, SEND, position, old_extra, unset)[:-1])

    def upto(email: bytes | None) -> RecordEntry | None:
        """Take the record's entries before `email` (None: all that are left) as leavers; the
        entry at `email`, if the record has it (then taken too)."""
        nonlocal now, taken
        while now is not None:
            entry = parse_record(now)
            if entry is not None:
                if email is not None and entry.email >= email:
                    if entry.email > email:
                        return None
                    plan.managed += int(entry.digest != OFF_LIST)
                    taken, now = now, take()
                    return entry
                if entry.email <= (parse_record(taken) or RecordEntry(b"", b"")).email:
                    raise ValueError("the delivered record is not sorted by email")
                off = entry.digest == OFF_LIST  # unlinked already: not managed, never a leaver again
                plan.managed += int(not off)
                if mirror and not off and not keep(entry.email) and not pending_job(entry.extra):
                    leavers.write(entry.email + b"\n")
                    plan.remove += 1
                append(encode_decision(entry.email, b"", entry.digest, LEAVE, -1, entry.extra)[:-1])
                if len(out) >= FLUSH_LINES:  # leavers may run long between two keys: memory stays flat
                    _write_lines(decisions, out)
                taken = now
            now = take()
        return None

    for batch in merged(sorted_runs(keys, workdir)):
        seen += len(batch)
        for line, settled in zip(batch, keys_as_records(batch), strict=True):
            if settled == now and not full_refresh:  # the usual contact: its entry stays as it is
                append(now)
                taken, now = now, take()
                continue
            slow += 1
            key = key_fields(line)
            entry = upto(key[0])
            if entry is None or full_refresh or entry.digest != key[1]:
                send(key, entry)
            elif pending_job(entry.extra):  # unchanged: a pending job stays pending
                append(encode_record(entry.email, entry.digest, entry.extra)[:-1])
            else:  # unchanged, with the unset fields it has now
                append(settled)
        _write_lines(decisions, out)
    upto(None)
    _write_lines(decisions, out)
    plan.unchanged = seen - plan.upsert
    plan.managed += seen - slow  # every contact taken at once was in the record
    plan.send_mask = mask
    return plan


FLUSH_LINES = 8_192  # decision lines held at most before they are written


def _write_lines(out: BinaryIO, lines: list[bytes]) -> None:
    """Write lines (without their newlines) and forget them."""
    if lines:
        out.write(b"\n".join(lines) + b"\n")
        lines.clear()


# -- the record after a run --------------------------------------------------------------------
def next_record(
    decisions: Iterable[bytes],
    outcome: Outcome,
    removed: Callable[[bytes], bool],
    carried_unknown: bool = False,
    may_hold: MayHold | None = None,
) -> Iterator[bytes]:
    """The record after a run, in email order, from its decisions file (whole lines at a time,
    see `pieces`): an unchanged contact's line is there as it stays; a sent contact takes its new
    hash once SendGrid applied it, or with its job's id while that job is pending (it is not
    sent again meanwhile); otherwise it keeps its old entry, or none, and is sent again next time,
    unless SendGrid may hold it all the same (`may_hold`: not applied as far as is known, but not
    said to have failed either): then it is UNSURE, with the fields unset in every version it may
    hold, so what this run may have set is cleared once it is empty.
    A leaver stays unless it was removed from the lists; then it stays known, off the lists
    (OFF_LIST, with the fields the export had set, to clear them if it comes back). `carried_unknown`:
    the record was written against other fields (or unknown ones), so an entry carried over as it
    was says "?" for which fields the export set (nothing is ever cleared for it)."""
    for piece in decisions:
        for decided, part in split_decisions(piece):
            if not decided:
                yield part
            elif line := _entry_after(parse_decision(part), outcome, removed, carried_unknown, may_hold):
                yield line


def _entry_after(
    decision: DecisionLine,
    outcome: Outcome,
    removed: Callable[[bytes], bool],
    carried_unknown: bool,
    may_hold: MayHold | None = None,
) -> bytes:
    """A contact's next record line (b"": none), from its decision and how the run went."""
    email, new_hash, old_hash, action, position, old_extra, unset = decision
    if action == SAME:  # the same contact: the same unset fields, and a pending job stays pending
        return encode_record(email, new_hash, old_extra if pending_job(old_extra) else encode_extra(unset))
    if action == SEND:
        result = outcome(position, email)
        if result is True:
            return encode_record(email, new_hash, encode_extra(unset))
        if result:  # pending: keep what SendGrid holds now, to go back to if the job fails
            return encode_record(email, new_hash, encode_extra(unset, result, _holds(email, old_hash, old_extra)))
        if may_hold is not None and may_hold(position, email):  # the sent version, or what it held
            return _unsure(email, unset, _holds(email, old_hash, _carried(old_extra, carried_unknown)))
        return encode_record(email, old_hash, _carried(old_extra, carried_unknown)) if old_hash else b""
    if removed(email):  # unlinked (a leaver is never pending): known, off the lists
        return encode_record(email, OFF_LIST, encode_extra(unset_of(_carried(old_extra, carried_unknown))))
    return encode_record(email, old_hash, _carried(old_extra, carried_unknown))


def _holds(email: bytes, old_hash: bytes, old_extra: bytes, job: bytes = b"") -> RecordEntry | None:
    """What SendGrid holds of a contact about to be replaced: its record entry; None for a
    contact it does not hold. When that entry is itself pending, its job may yet apply it or not:
    SendGrid holds that version or the one before it (or none), so the entry to go back to is
    UNSURE (sent again), with the fields unset in each version it may hold (those the export may
    have set are cleared when they are empty). An entry pending on `job` itself (the same request
    merged again) goes back to what it was to go back to."""
    if not old_hash:
        return None
    if job and pending_job(old_extra) == job:
        return restore_entry(email, old_extra)
    if pending_job(old_extra):
        versions = [unset_of(old_extra)]
        if (before := restore_entry(email, old_extra)) is not None:
            versions.append(unset_of(before.extra))
        return RecordEntry(email, UNSURE, encode_extra(_common_unset(versions)))
    return RecordEntry(email, old_hash, old_extra)


def _unsure(email: bytes, sent_unset: bytes, held: RecordEntry | None) -> bytes:
    """The UNSURE entry of a contact SendGrid holds either as sent (with `sent_unset`) or as `held`
    (None: as it held it before, nothing of this export)."""
    versions = [sent_unset] if held is None else [sent_unset, unset_of(held.extra)]
    return encode_record(email, UNSURE, encode_extra(_common_unset(versions)))


def _carried(old_extra: bytes, unknown: bool) -> bytes:
    if not unknown:
        return old_extra
    restore = restore_entry(b"", old_extra)
    return encode_extra(UNKNOWN, pending_job(old_extra), restore._replace(extra=encode_extra(UNKNOWN)) if restore else None)


def first_record(batches: Iterable[list[bytes]], outcome: Outcome | None, may_hold: MayHold | None = None) -> Iterator[bytes]:
    """The record after a first delivery (every valid contact was sent), from the sorted key
    lines (`merged` batches): each applied contact, each whose job is still pending with that
    job's id, and each SendGrid may hold all the same (`may_hold`) as UNSURE; `outcome=None`
    when every one of them was applied (their lines are copied)."""
    for batch in batches:
        if outcome is None:  # the usual case: every contact was sent and applied
            yield b"\n".join(keys_as_records(batch)) + b"\n" if batch else b""
            continue
        for line in batch:
            email, digest, unset, position = key_fields(line)
            result = outcome(position, email)
            if result is True:
                yield key_as_record(line)
            elif result:
                yield encode_record(email, digest, encode_extra(unset, result))
            elif may_hold is not None and may_hold(position, email):
                yield _unsure(email, unset, None)


def settle_record(
    lines: Iterable[bytes],
    outcome: Callable[[bytes, bytes], bool | None],
    may_hold: Callable[[bytes, bytes], bool] | None = None,
) -> Iterator[bytes]:
    """The record with its pending entries settled: `outcome(job id, email)` is True when that
    job applied the contact (the mark goes), False when it did not (the entry goes back to what
    SendGrid still holds, or goes when it held nothing: the contact is sent again), None while
    the job is still pending (the entry stays as it is). A contact not applied that SendGrid may
    hold all the same (`may_hold(job id, email)`: the job did not say it failed it) becomes
    UNSURE, with the fields unset in both versions it may hold."""
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
        elif may_hold is not None and may_hold(job, entry.email):
            yield _unsure(entry.email, unset_of(entry.extra), restore_entry(entry.email, entry.extra))
        elif (held := restore_entry(entry.email, entry.extra)) is not None:
            yield encode_record(*held)


# -- the journal of a run that did not store its record ----------------------------------------
# What became of a journaled contact, by its position: the id of the import job of the request
# SendGrid accepted with it, False when SendGrid refused it (never applied), None when nothing
# says whether it was sent (the run stopped between writing its journal and its checkpoint).
JobAt = Callable[[int], "bytes | bool | None"]


def merge_journal(
    record: Iterable[bytes], journal: Iterable[list[bytes]], job_at: JobAt, unknown: bool = False
) -> Iterator[bytes]:
    """The record with a journal merged in, in email order: `journal` gives the journal's lines
    sorted (`merged` batches), `record` the record's lines. A contact an accepted request carried
    becomes a pending entry with that request's job (to be settled by the next run), keeping the
    entry to go back to if the job does not apply it (what SendGrid held: `_holds`; a journal
    entry is newer than any pending one of the record). A contact that may or may not have been
    sent becomes UNSURE (sent again if still in the segment, unlinked in mirror mode if it left).
    A refused one keeps its entry. `unknown`: the journal was written against other fields than
    the record, so its unset codes say "?" (nothing is cleared on their account)."""
    take = _lines(record).__next__
    now = take()
    for email, lines in _by_email(chain.from_iterable(journal)):
        while now is not None and (not now or now.partition(b"\t")[0] < email):
            if now:  # the record's lines before this email stay as they are
                yield now + b"\n"
            now = take()
        old = None
        if now and now.partition(b"\t")[0] == email:
            old, now = parse_record(now), take()
        if line := _journaled(email, lines, old, job_at, unknown):
            yield line
    while now is not None:
        if now:
            yield now + b"\n"
        now = take()


def _by_email(lines: Iterable[bytes]) -> Iterator[tuple[bytes, list[tuple[bytes, bytes, int]]]]:
    """Sorted journal (key) lines as (email, [(hash, unset, position)...]), one group per email."""
    group: list[tuple[bytes, bytes, int]] = []
    current = b""
    for line in lines:
        if not line.strip(b"\n"):
            continue
        email, digest, unset, position = key_fields(line)
        if email != current and group:
            yield current, group
            group = []
        current = email
        group.append((digest, unset, position))
    if group:
        yield current, group


def _journaled(
    email: bytes, lines: list[tuple[bytes, bytes, int]], old: RecordEntry | None, job_at: JobAt, unknown: bool
) -> bytes:
    """A journaled contact's record line (b"": none), from its journal lines and record entry."""
    sent = {(digest, UNKNOWN if unknown else unset, job_at(position)) for digest, unset, position in lines}
    sent = {(digest, unset, job) for digest, unset, job in sent if job is not False}  # refused: never applied
    if not sent:
        return encode_record(*old) if old is not None else b""
    if len(sent) == 1:
        ((digest, unset, job),) = sent
        if isinstance(job, bytes):  # accepted: pending on its job
            held = _holds(email, old.digest, old.extra, job) if old is not None else None
            return encode_record(email, digest, encode_extra(unset, job, held))
    # Whatever SendGrid holds now: the record's version, the one it was to go back to, or a sent one.
    versions = [unset for _, unset, _ in sent]
    if old is not None:
        versions.append(unset_of(old.extra))
        if (held := restore_entry(email, old.extra)) is not None:
            versions.append(unset_of(held.extra))
    return encode_record(email, UNSURE, encode_extra(_common_unset(versions)))


def _common_unset(codes: list[bytes]) -> bytes:
    """The fields unset in every one of `codes`: none of those versions set them ("?" if any is
    unknown)."""
    if UNKNOWN in codes:
        return UNKNOWN
    common = set(codes[0].split(b","))
    for code in codes[1:]:
        common &= set(code.split(b","))
    return b",".join(code for code in codes[0].split(b",") if code and code in common)
