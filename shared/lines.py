"""Every line format a run writes to disk, each with one encoder and one parser. Pure.

Nothing else in the app splits these lines on tabs. All are bytes, newline-terminated, and carry
emails and partition names as UTF-8 with surrogateescape (a partition name comes from the
metadata, which may hold anything):

  key line       email TAB hash TAB position TAB partition TAB row     one per valid contact, in
                 spill (segment) order; sorted as bytes, they sort by email (TAB < any email byte)
  spill line     partition TAB row TAB encoded contact                 the contacts to send
  decision line  email TAB new hash TAB old hash TAB action TAB position TAB old extra
                                                                       what the delta decided
  record line    email TAB hash [TAB extra]                            the delivered record, sorted

A record line's extra says more about the entry: `<fields>;<job id>`, where the job id names an
import job that was still pending when the line was written (the contact was accepted, not yet
applied: it is not sent again meanwhile, and the next run settles it), and fields is reserved for
which fields the export set. A line without extra (every line an earlier release wrote) is a
settled entry.

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


class DecisionLine(NamedTuple):
    email: bytes
    new_hash: bytes  # b"": not in the segment now (a leaver)
    old_hash: bytes  # b"": never delivered
    action: str  # delta.SAME, SEND or LEAVE
    position: int  # for SEND, the spill position; else -1
    old_extra: bytes = b""  # the record entry's extra, kept when the entry is


class RecordEntry(NamedTuple):
    email: bytes
    digest: bytes
    extra: bytes = b""


def _ref(partition: bytes, row: bytes) -> RowRef:
    return partition.decode("utf-8", "surrogateescape"), int(row)


# -- key lines ---------------------------------------------------------------------------------
def encode_key(email: str, digest: str, position: int, partition: str, row: int) -> bytes:
    return f"{email}\t{digest}\t{position}\t{partition}\t{row}\n".encode("utf-8", "surrogateescape")


def parse_key(line: bytes) -> KeyLine:
    email, digest, position, partition, row = line.rstrip(b"\n").split(b"\t")
    return KeyLine(email, digest, int(position), _ref(partition, row))


def key_for_diff(line: bytes) -> tuple[bytes, bytes, bytes]:
    """(email, hash, position) of a key line: what the delta compares (the row is not)."""
    email, digest, position, _ = line.split(b"\t", 3)
    return email, digest, position


def key_as_record(line: bytes) -> bytes:
    """The record line a key line becomes once its contact is applied."""
    return line[: line.index(b"\t", line.index(b"\t") + 1)] + b"\n"


# -- spill lines -------------------------------------------------------------------------------
def encode_spill(partition: str, row: int, encoded: bytes) -> bytes:
    return f"{partition}\t{row}\t".encode("utf-8", "surrogateescape") + encoded + b"\n"


def parse_spill(line: bytes) -> tuple[RowRef, bytes]:
    """(row reference, encoded contact)."""
    partition, row, encoded = line.rstrip(b"\n").split(b"\t", 2)
    return _ref(partition, row), encoded


# -- decision lines ----------------------------------------------------------------------------
def encode_decision(email: bytes, new_hash: bytes | None, old_hash: bytes | None, action: str, position: int,
                    old_extra: bytes = b"") -> bytes:
    return b"\t".join([email, new_hash or b"", old_hash or b"", action.encode(), str(position).encode(),
                       old_extra]) + b"\n"


def parse_decision(line: bytes) -> DecisionLine:
    email, new_hash, old_hash, action, position, old_extra = line.rstrip(b"\n").split(b"\t")
    return DecisionLine(email, new_hash, old_hash, action.decode(), int(position), old_extra)


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


def encode_extra(fields: bytes = b"", job: bytes = b"") -> bytes:
    return fields + b";" + job if fields or job else b""


def pending_job(extra: bytes) -> bytes:
    """The pending import job an extra names, or b""."""
    return extra.partition(b";")[2]
