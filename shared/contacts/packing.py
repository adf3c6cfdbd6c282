"""Encodes contacts as JSON and packs them into PUT /v3/marketing/contacts bodies under both
SendGrid caps. Pure.

Encoding: the bytes of an encoded contact are hashed into the delivered record, so they must stay
exactly those of the stdlib encoder (`json`, ensure_ascii=False, compact), or every contact would
be resent once. `orjson` (3.13.0, pinned: an upgrade must pass tests/test_encoding.py) writes the
same bytes for every string (all code points, checked) and for integers in [-2**63, 2**64 - 1],
~10x faster on realistic contacts (bench/micro.py: 3.7 -> 0.35 us, copy included). It refuses
larger integers, and writes floats with a decimal exponent of -5 to -9 differently (1e-07 vs
1e-7, 1e-05 vs 0.00001; measured over random bit patterns and every exponent from -330 to 308).
`normalise_number` (for Number custom fields) marks such floats as `JsonFloat`, which orjson
refuses, and a refused contact is encoded by the stdlib encoder: the same bytes for everything
the mapper produces (tests/test_encoding.py).

Packing:
SendGrid: "up to 30,000 contacts, or 6MB of data, whichever is lower" (OpenAPI description of
PUT /v3/marketing/contacts). 6MB is taken as 6,000,000 bytes of request body.
Bodies are assembled from contacts already encoded as JSON, so a body's size is known exactly
without encoding anything twice. Greedy packing in order gives the fewest requests possible
for an ordered stream: each body is closed only when the next contact would break a cap.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, repeat
from operator import add
from typing import Any, Generic, TypeVar

import orjson

MAX_CONTACTS_PER_REQUEST = 30_000
MAX_BODY_BYTES = 6_000_000

Ref = TypeVar("Ref")


@dataclass(frozen=True)
class Chunk(Generic[Ref]):
    refs: list[Ref]
    # Where each encoded contact starts in the body, and (last) where one more would: a body
    # keeps no list of its contacts beside it (6 MB more a body in flight), only where to cut.
    starts: array[int]
    body: bytes

    @property
    def count(self) -> int:
        return len(self.refs)

    def parts(self) -> list[bytes]:
        """The encoded contacts, in body order, cut from the body (to split it after a 400)."""
        body, starts = self.body, self.starts
        return [body[starts[i] : starts[i + 1] - 1] for i in range(len(starts) - 1)]


_stdlib_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_orjson_dumps = orjson.dumps
_join = b"".join


def encode_contact(contact: dict[str, Any]) -> bytes:
    """Compact JSON, as UTF-8: the bytes of the stdlib encoder (ensure_ascii=False, compact).
    orjson refuses (TypeError) exactly what it would write differently: integers beyond 64 bits
    and `JsonFloat`s; those contacts, and strings with lone surrogates (the mapper rejects
    those; the stdlib encoder then raises UnicodeEncodeError), go the stdlib way."""
    try:
        # A copy the size of the JSON: orjson (>= 3.12) hands back bytes that keep its whole
        # output buffer, >= 4 KB however short the JSON (measured: 4,098 bytes held for a
        # 290-byte contact; home-assistant/core PR 181513 saw the same), and a run keeps tens of
        # thousands of encoded contacts (a body's parts). The copy costs ~0.08 us.
        return _join((_orjson_dumps(contact), b""))
    except TypeError:
        return _stdlib_encode(contact).encode("utf-8")


class JsonFloat(float):
    """A float whose stdlib JSON form (repr: 1e-07) orjson would write otherwise (1e-7): orjson
    refuses float subclasses, so a contact holding one is encoded by the stdlib encoder."""

    __slots__ = ()


# The number syntax of Number custom fields. Linear: digits may be followed by a fraction only
# after a literal dot, so no two runs of digits compete for the same characters (`\d+\.?\d*`
# backtracked quadratically on "999...x"). As `\d` in a str pattern, it takes any Unicode digit.
# One look says both whether a text is a number and whether it is an integer: group 1 (a
# fraction), 2 (a leading dot) or 3 (an exponent) match only for non-integers.
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(\.\d*)?|(\.)\d+)([eE][+-]?\d+)?")
# |x| in [1e-9, 1e-4): repr has a decimal exponent of -5..-9, which orjson writes differently.
_ORJSON_DIFFERS_BELOW, _ORJSON_DIFFERS_FROM = 1e-4, 1e-9
_FAST_MAX_CHARS = 300  # digits and a dot: below 1e300, so float() is finite


def normalise_number(value: str) -> int | float | None:
    """A Number custom field's text (stripped) as the number to send, or None if it is not one.

    The values Number fields have always had (nothing delivered changes), typed so
    that `encode_contact` writes them as the stdlib encoder does:
    - integers are kept exact at any size (as today). orjson refuses those beyond 64 bits, so
      their contact takes the stdlib path: no digit is lost, no contact is resent. (Turning them
      into floats would change the value sent; refusing them would stop delivering contacts
      that are delivered today.)
    - floats of magnitude in [1e-9, 1e-4) become `JsonFloat` (equal, same repr); infinities
      and NaN (overflowing text such as 1e999) are not numbers, nor are integers of over
      4,300 digits (the mapper rejects values over 4,096 characters before).
    """
    # The usual forms first, "123" and "12.50" (digits as `\d` takes them, Unicode's Nd, as
    # int() and float() do), without the pattern; short enough that a float is finite.
    head, dot, tail = value.partition(".")
    if head.isdecimal() and len(value) <= _FAST_MAX_CHARS:
        if not dot:
            return int(value)
        if tail.isdecimal():
            number = float(value)
            return JsonFloat(number) if _ORJSON_DIFFERS_FROM <= number < _ORJSON_DIFFERS_BELOW else number
    match = _NUMBER_RE.fullmatch(value)
    if match is None:
        return None
    if match.lastindex is None:  # digits, a sign perhaps: an integer
        try:
            return int(value)
        except ValueError:  # over 4,300 digits (sys.int_info): no encoder could write it either
            return None
    number = float(value)
    if not math.isfinite(number):
        return None
    if _ORJSON_DIFFERS_FROM <= abs(number) < _ORJSON_DIFFERS_BELOW:
        return JsonFloat(number)
    return number


def body_envelope(list_ids: Sequence[str]) -> tuple[bytes, bytes]:
    head = b'{"list_ids":' + json.dumps(list(list_ids)).encode() + b',"contacts":['
    return head, b"]}"


def max_contact_bytes(list_ids: Sequence[str], max_body_bytes: int = MAX_BODY_BYTES) -> int:
    """The largest encoded contact that fits a request on its own."""
    head, tail = body_envelope(list_ids)
    return max_body_bytes - len(head) - len(tail)


def build_body(list_ids: Sequence[str], encoded: Iterable[bytes]) -> bytes:
    head, tail = body_envelope(list_ids)
    return enveloped(head, list(encoded), tail)


def enveloped(head: bytes, parts: list[bytes], tail: bytes) -> bytes:
    """`head + b",".join(parts) + tail` made in one allocation the size of the body: each of the
    two concatenations copied the whole body again (a 6 MB body: three fresh 6 MB blocks, each
    page-faulted in, measured 1.35 -> 0.70 ms in a loop that reuses memory, more in a run)."""
    if not parts:
        return head + tail
    seq = parts.copy()  # the caller's list is left as it was
    seq[0] = head + seq[0]
    seq[-1] = seq[-1] + tail  # one part: seq[0] is seq[-1], head already in it
    return b",".join(seq)


class Packer(Generic[Ref]):
    """Push-style packing: `extend` with contacts in order; it hands back each body as it fills,
    closed when the next contact would not fit. Greedy, so no more bodies than the caps need.
    Every contact must fit alone (see `max_contact_bytes`)."""

    def __init__(
        self, list_ids: Sequence[str], max_contacts: int = MAX_CONTACTS_PER_REQUEST, max_body_bytes: int = MAX_BODY_BYTES
    ) -> None:
        self.head, self.tail = body_envelope(list_ids)
        self.fixed = len(self.head) + len(self.tail)
        self.max_contacts, self.max_body_bytes = max_contacts, max_body_bytes
        self.refs: list[Ref] = []
        self.parts: list[bytes] = []
        # The body's size were it closed now, counting a comma before every contact and none
        # before the first: the envelope less one byte, plus each contact and its comma.
        self.size = self.fixed - 1

    def extend(self, refs: Sequence[Ref], parts: Sequence[bytes]) -> Iterator[Chunk[Ref]]:
        """Take a batch of contacts (a few C-level passes a batch, not a call a contact); yield
        each body that fills up, closed when the next contact would not fit. A contact too large
        for any body raises ValueError before anything is yielded for it."""
        # ends[k]: the bytes the batch's first k contacts add to a body (each with its comma).
        ends = list(map(add, accumulate(map(len, parts), initial=0), range(len(parts) + 1)))
        start, count = 0, len(parts)
        while start < count:
            room = self.max_body_bytes - self.size + ends[start]  # the largest `ends` that fits
            stop = min(bisect_right(ends, room, start) - 1, start + self.max_contacts - len(self.parts))
            if stop == start:  # the next contact does not fit: this body is full
                if self.fixed + len(parts[start]) > self.max_body_bytes:  # nor would any: refused before a send
                    raise ValueError("a contact is larger than a request body may be")
                full = self.flush()
                assert full is not None
                yield full
                continue
            self.parts += parts[start:stop]
            self.refs += refs[start:stop]
            self.size += ends[stop] - ends[start]
            start = stop

    def flush(self) -> Chunk[Ref] | None:
        if not self.parts:
            return None
        # Each contact is followed by a comma, or (the last) by the tail, one byte or more.
        starts = array("q", accumulate(map(add, map(len, self.parts), repeat(1)), initial=len(self.head)))
        chunk = Chunk(self.refs, starts, enveloped(self.head, self.parts, self.tail))
        self.refs, self.parts, self.size = [], [], self.fixed - 1
        return chunk


def pack(
    items: Iterable[tuple[Ref, bytes]],
    list_ids: Sequence[str],
    max_contacts: int = MAX_CONTACTS_PER_REQUEST,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Iterator[Chunk[Ref]]:
    """Yield request bodies in order, for an iterable of (ref, encoded contact)."""
    packer: Packer[Ref] = Packer(list_ids, max_contacts, max_body_bytes)
    for ref, encoded in items:
        yield from packer.extend([ref], [encoded])
    last = packer.flush()
    if last is not None:
        yield last


def minimum_requests(
    contacts: int, body_bytes: int, max_contacts: int = MAX_CONTACTS_PER_REQUEST, max_body_bytes: int = MAX_BODY_BYTES
) -> int:
    """The floor on requests: the larger of the two caps' needs."""
    return max(-(-contacts // max_contacts), -(-body_bytes // max_body_bytes))
