"""Every line format a run writes to disk, each with one encoder and one parser. Pure.

Nothing else in the app splits these lines on tabs. All are bytes, newline-terminated, and carry
emails and partition names as UTF-8 with surrogateescape (a partition name comes from the
metadata, which may hold anything, a tab included: it is always parsed from the right):

  key line       email TAB hash TAB position TAB unset TAB partition TAB row
                 one per valid contact, in spill (segment) order; sorted as bytes they sort by
                 email (TAB sorts before any byte an email may hold)
  spill line     partition TAB row TAB encoded contact                 the contacts to send
  decision line  email TAB new hash TAB old hash TAB action TAB position TAB old extra TAB unset
                 what the delta decided, one per email of the segment or the record
  record line    email TAB hash [TAB extra]                            the delivered record, sorted

`unset` names the mapped fields a contact had no value for (codes from `shared.fields`, comma
separated; empty when every field had one). A record line's extra is `<unset>;<job id>[;<hash>;<unset>]`:
the fields this export did not set for the contact (so an emptied value can be cleared and a
value others maintain is never touched), and an import job that was still pending when the line
was written (the contact was accepted, not yet applied: it is not sent again meanwhile, and the
next run settles it), with the entry to go back to if that job does not apply it (the version
SendGrid still holds; none for a contact that was new). A line without extra (every line an
earlier release wrote) is a settled entry whose fields are not known.

A position is the contact's index among the valid contacts of the run (its spill line number).
"""

from __future__ import annotations

from typing import NamedTuple

RowRef = tuple[str, int]  # (partition name, row number): where a row came from


class KeyLine(NamedTuple):
    email: bytes
    digest: bytes
    position: int
    ref: RowRef
    unset: bytes = b""


class KeyForDiff(NamedTuple):
    email: bytes
    digest: bytes
    position: bytes
    unset: bytes


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
    return f"{email}\t{digest}\t{position}\t{unset}\t{partition}\t{row}\n".encode("utf-8", "surrogateescape")


def parse_key(line: bytes) -> KeyLine:
    email, digest, position, unset, rest = line.rstrip(b"\n").split(b"\t", 4)
    partition, row = rest.rsplit(b"\t", 1)
    return KeyLine(email, digest, int(position), _ref(partition, row), unset)


def key_for_diff(line: bytes) -> KeyForDiff:
    """What the delta compares and carries of a key line (the row is not)."""
    email, digest, position, unset, _ = line.split(b"\t", 4)
    return KeyForDiff(email, digest, position, unset)


def key_as_record(line: bytes) -> bytes:
    """The record line a key line becomes once its contact is applied."""
    second = line.index(b"\t", line.index(b"\t") + 1)
    third = line.index(b"\t", second + 1)
    if line[third + 1] == 9:  # no unset code (the usual contact): "email<TAB>hash" as it stands
        return line[:second] + b"\n"
    return line[:second] + b"\t" + line[third + 1:line.index(b"\t", third + 1)] + b";\n"


# -- spill lines -------------------------------------------------------------------------------
def encode_spill(partition: str, row: int, encoded: bytes) -> bytes:
    return f"{partition}\t{row}\t".encode("utf-8", "surrogateescape") + encoded + b"\n"


def parse_spill(line: bytes) -> tuple[RowRef, bytes]:
    """(row reference, encoded contact). JSON holds no raw tab, so the contact is the last field."""
    partition, row, encoded = line.rstrip(b"\n").rsplit(b"\t", 2)
    return _ref(partition, row), encoded


# -- decision lines ----------------------------------------------------------------------------
def encode_decision(email: bytes, new_hash: bytes | None, old_hash: bytes | None, action: str, position: int,
                    old_extra: bytes = b"", unset: bytes = b"") -> bytes:
    return b"\t".join([email, new_hash or b"", old_hash or b"", action.encode(), str(position).encode(),
                       old_extra, unset]) + b"\n"


def parse_decision(line: bytes) -> DecisionLine:
    email, new_hash, old_hash, action, position, old_extra, unset = line.rstrip(b"\n").split(b"\t")
    return DecisionLine(email, new_hash, old_hash, action.decode(), int(position), old_extra, unset)


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
