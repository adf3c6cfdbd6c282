"""Packs encoded contacts into PUT /v3/marketing/contacts bodies under both SendGrid caps. Pure.

SendGrid: "up to 30,000 contacts, or 6MB of data, whichever is lower" (OpenAPI description of
PUT /v3/marketing/contacts). 6MB is taken as 6,000,000 bytes of request body.
Bodies are assembled from contacts already encoded as JSON, so a body's size is known exactly
without encoding anything twice. Greedy packing in order gives the fewest requests possible
for an ordered stream: each body is closed only when the next contact would break a cap.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Generic, TypeVar

MAX_CONTACTS_PER_REQUEST = 30_000
MAX_BODY_BYTES = 6_000_000

Ref = TypeVar("Ref")


@dataclass(frozen=True)
class Chunk(Generic[Ref]):
    refs: list[Ref]
    parts: list[bytes]  # the encoded contacts, in body order (to split the body after a 400)
    body: bytes

    @property
    def count(self) -> int:
        return len(self.refs)


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode_contact(contact: dict) -> bytes:
    """Compact JSON, as UTF-8. A contact of plain string fields (the usual one) is assembled from
    the C string escaper directly: the same bytes as json.dumps, a third faster per contact."""
    if "custom_fields" in contact:
        return _encode(contact).encode("utf-8")
    return ("{" + ",".join(['"' + key + '":' + encode_basestring(value) for key, value in contact.items()])
            + "}").encode("utf-8")


def body_envelope(list_ids: Sequence[str]) -> tuple[bytes, bytes]:
    head = b'{"list_ids":' + json.dumps(list(list_ids)).encode() + b',"contacts":['
    return head, b"]}"


def max_contact_bytes(list_ids: Sequence[str], max_body_bytes: int = MAX_BODY_BYTES) -> int:
    """The largest encoded contact that fits a request on its own."""
    head, tail = body_envelope(list_ids)
    return max_body_bytes - len(head) - len(tail)


def build_body(list_ids: Sequence[str], encoded: Iterable[bytes]) -> bytes:
    head, tail = body_envelope(list_ids)
    return head + b",".join(encoded) + tail


class Packer(Generic[Ref]):
    """Push-style packing: `add` each contact; it hands back a full body when the contact would
    not fit in the current one. Greedy, so no more bodies than the caps need."""

    def __init__(self, list_ids: Sequence[str], max_contacts: int = MAX_CONTACTS_PER_REQUEST,
                 max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.head, self.tail = body_envelope(list_ids)
        self.fixed = len(self.head) + len(self.tail)
        self.max_contacts, self.max_body_bytes = max_contacts, max_body_bytes
        self.refs: list[Ref] = []
        self.parts: list[bytes] = []
        self.size = self.fixed

    def add(self, ref: Ref, encoded: bytes) -> Chunk[Ref] | None:
        """Every contact must fit alone (see `max_contact_bytes`)."""
        if self.fixed + len(encoded) > self.max_body_bytes:
            raise ValueError("a contact is larger than a request body may be")
        full = None
        extra = len(encoded) + 1  # the comma before it
        if self.parts and (len(self.parts) >= self.max_contacts or self.size + extra > self.max_body_bytes):
            full = self.flush()
        if not self.parts:
            extra -= 1
        self.refs.append(ref)
        self.parts.append(encoded)
        self.size += extra
        return full

    def flush(self) -> Chunk[Ref] | None:
        if not self.parts:
            return None
        chunk = Chunk(self.refs, self.parts, self.head + b",".join(self.parts) + self.tail)
        self.refs, self.parts, self.size = [], [], self.fixed
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
        full = packer.add(ref, encoded)
        if full is not None:
            yield full
    last = packer.flush()
    if last is not None:
        yield last


def minimum_requests(contacts: int, body_bytes: int, max_contacts: int = MAX_CONTACTS_PER_REQUEST,
                     max_body_bytes: int = MAX_BODY_BYTES) -> int:
    """The floor on requests: the larger of the two caps' needs."""
    return max(-(-contacts // max_contacts), -(-body_bytes // max_body_bytes))
