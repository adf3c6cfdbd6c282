"""Every line format a run writes to disk, each with one encoder and one parser. Pure.

Nothing else in the app splits these lines on tabs. All are bytes, newline-terminated, and carry
emails and partition names as UTF-8 with surrogateescape (a partition name comes from the
metadata, which may hold anything, a tab included: it is always parsed from the right):

  key line       email TAB hash [TAB unset ;] NUL position TAB partition TAB row
                 one per valid contact, in spill (segment) order. What comes before the NUL is
                 the contact's record line once SendGrid applied it (no email, hash or unset code
                 holds a NUL), so the usual contact's entry is copied, never re-encoded. Sorted as
                 bytes, key lines sort by email (TAB sorts before any byte an email may hold).
                 The record's journal (shared/state/journal.py) is key lines too: those of the
                 contacts each request carries, written before it goes
  spill line     partition TAB row TAB encoded contact                 the contacts to send
  decisions file what the delta decided, in email order, one line per email of the segment or
                 the record: an unchanged contact's next record line as it will be stored, or
                 (for a contact to send, or a leaver: its entry depends on how the run goes) a
                 decision line, NUL action TAB position TAB email TAB new hash TAB old hash TAB
                 unset TAB old extra (no record line starts with a NUL: no email does)
  record line    email TAB hash [TAB extra]                            the delivered record, sorted

`unset` names the mapped fields a contact had no value for (codes from `shared.fields`, comma
separated; empty when every field had one). A record line's extra is `<unset>;<job id>[;<hash>;<unset>]`:
the fields this export did not set for the contact (so an emptied value can be cleared and a
value others maintain is never touched), and an import job that was still pending when the line
was written (the contact was accepted, not yet applied: it is not sent again meanwhile, and the
next run settles it), with the entry to go back to if that job does not apply it (the version
SendGrid still holds; none for a contact that was new). A line without extra (every line an
earlier release wrote) is a settled entry whose fields are not known.

Two hashes are markers, never a contact's real hash (a hash is 16 hex digits), so such an entry
always differs from the segment's contact and the contact is sent when it is in the segment:
- OFF_LIST (`off`): mirror mode unlinked the contact from the lists (it left the segment). It stays
  known, with the fields the export had set (its unset codes), so that if it comes back, values
  the export set and that are now empty are cleared. It is not one of the contacts the export
  manages on its lists, and never a leaver again.
- UNSURE (`unsure`): a run may have sent the contact (its journal says it was about to) and
  nothing says whether SendGrid took it: SendGrid may hold any version. It counts as on the
  lists (a leaver if it left), with the unset codes common to every version SendGrid may hold.

A position is the contact's index among the valid contacts of the run (its spill line number).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

RowRef = tuple[str, int]  # (partition name, row number): where a row came from
OFF_LIST = b"off"  # an entry's hash: unlinked from the lists by mirror mode (see the module docstring)
UNSURE = b"unsure"  # an entry's hash: SendGrid may hold any version of the contact


class KeyLine(NamedTuple):
    email: bytes
    digest: bytes
    position: int
    ref: RowRef
    unset: bytes = b""


class DecisionLine(NamedTuple):
    email: bytes
    new_hash: bytes  # b"": not in the segment now (a leaver)
    old_hash: bytes  # b"": never delivered
    action: str  # delta.SAME, SEND or LEAVE
    position: int  # for SEND, the spill position; else -1
    old_extra: bytes = b""  # the record entry's extra, kept when the entry is
    unset: bytes = b""  # the segment's contact: fields it has no value for


class RecordEntry(NamedTuple):
    email: bytes
    digest: bytes
    extra: bytes = b""


def _ref(partition: bytes, row: bytes) -> RowRef:
    return partition.decode("utf-8", "surrogateescape"), int(row)


# -- key lines ---------------------------------------------------------------------------------
def encode_key(email: str, digest: str, position: int, partition: str, row: int, unset: str = "") -> bytes:
    if unset:
        return f"{email}\t{digest}\t{unset};\0{position}\t{partition}\t{row}\n".encode("utf-8", "surrogateescape")
    return f"{email}\t{digest}\0{position}\t{partition}\t{row}\n".encode("utf-8", "surrogateescape")


def parse_key(line: bytes) -> KeyLine:
    email, digest, unset, position = key_fields(line)
    where = line.rstrip(b"\n").partition(b"\0")[2].partition(b"\t")[2]  # partition TAB row
    partition, row = where.rsplit(b"\t", 1)
    return KeyLine(email, digest, position, _ref(partition, row), unset)


def key_fields(line: bytes) -> tuple[bytes, bytes, bytes, int]:
    """(email, hash, unset, position) of a key line: what the delta compares and carries."""
    body, _, rest = line.partition(b"\0")
    email, digest, *unset = body.split(b"\t", 2)
    return email, digest, unset[0][:-1] if unset else b"", int(rest[: rest.index(b"\t")])


def key_as_record(line: bytes) -> bytes:
    """The record line a key line becomes once its contact is applied."""
    return line.partition(b"\0")[0] + b"\n"


def keys_as_records(lines: list[bytes]) -> list[bytes]:
    """`key_as_record` of each line without its newline, in one pass (the hot path of the delta
    and of the record: join them with newlines)."""
    return [line.partition(b"\0")[0] for line in lines]


# -- spill lines -------------------------------------------------------------------------------
def encode_spill(partition: str, row: int, encoded: bytes) -> bytes:
    return f"{partition}\t{row}\t".encode("utf-8", "surrogateescape") + encoded + b"\n"


def parse_spill(line: bytes) -> tuple[RowRef, bytes]:
    """(row reference, encoded contact). JSON holds no raw tab, so the contact is the last field."""
    partition, row, encoded = line.rstrip(b"\n").rsplit(b"\t", 2)
    return _ref(partition, row), encoded


# -- the decisions file ------------------------------------------------------------------------
def encode_decision(
    email: bytes,
    new_hash: bytes | None,
    old_hash: bytes | None,
    action: str,
    position: int,
    old_extra: bytes = b"",
    unset: bytes = b"",
) -> bytes:
    return (
        b"\t".join([b"\0" + action.encode(), str(position).encode(), email, new_hash or b"", old_hash or b"", unset, old_extra])
        + b"\n"
    )


def parse_decision(line: bytes) -> DecisionLine:
    """A decision line; a record line of the decisions file reads as the unchanged contact it is."""
    if not line.startswith(b"\0"):
        entry = parse_record(line)
        if entry is None:
            raise ValueError("a blank line in a decisions file")
        return DecisionLine(entry.email, entry.digest, entry.digest, "same", -1, entry.extra, unset_of(entry.extra))
    action, position, email, new_hash, old_hash, unset, old_extra = line[1:].rstrip(b"\n").split(b"\t", 6)
    return DecisionLine(email, new_hash, old_hash, action.decode(), int(position), old_extra, unset)


def split_decisions(piece: bytes) -> Iterator[tuple[bool, bytes]]:
    """A piece of a decisions file (whole lines) as (is a decision line, bytes): each decision line
    on its own, the record lines between them together, as they stand."""
    start, end = 0, len(piece)
    at = 0 if piece.startswith(b"\0") else _decision_after(piece, 0)
    while at >= 0:
        if at > start:
            yield False, piece[start:at]
        start = piece.find(b"\n", at) + 1 or end
        yield True, piece[at:start]
        at = _decision_after(piece, start - 1)  # from the newline that ended it
    if start < end:
        yield False, piece[start:]


def _decision_after(piece: bytes, start: int) -> int:
    found = piece.find(b"\n\0", start)
    return found + 1 if found >= 0 else -1


# -- record lines ------------------------------------------------------------------------------
def encode_record(email: bytes, digest: bytes, extra: bytes = b"") -> bytes:
    return email + b"\t" + digest + (b"\t" + extra if extra else b"") + b"\n"


def parse_record(line: bytes) -> RecordEntry | None:
    """The entry of a record line, or None for a blank line."""
    line = line.rstrip(b"\n")
    if not line:
        return None
    email, _, rest = line.partition(b"\t")
    digest, _, extra = rest.partition(b"\t")
    return RecordEntry(email, digest, extra)


def encode_extra(unset: bytes = b"", job: bytes = b"", restore: RecordEntry | None = None) -> bytes:
    """An entry's extra; `restore` (with a pending job): the entry to go back to if the job fails."""
    if restore is not None and restore.digest:
        return b";".join([unset, job, restore.digest, unset_of(restore.extra)])
    return unset + b";" + job if unset or job else b""


def pending_job(extra: bytes) -> bytes:
    """The pending import job an extra names, or b""."""
    return extra.split(b";", 2)[1] if b";" in extra else b""


def restore_entry(email: bytes, extra: bytes) -> RecordEntry | None:
    """The entry a pending extra says to go back to when its job did not apply the contact."""
    parts = extra.split(b";")
    if len(parts) < 4 or not parts[2]:
        return None
    return RecordEntry(email, parts[2], encode_extra(parts[3]))


def unset_of(extra: bytes) -> bytes:
    """The fields an extra says this export did not set, or b"" (all set, or unknown)."""
    return extra.partition(b";")[0]
