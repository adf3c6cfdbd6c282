"""Packing contacts into request bodies under both caps, pure."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from shared.contacts.packing import (
    MAX_BODY_BYTES,
    MAX_CONTACTS_PER_REQUEST,
    Chunk,
    Packer,
    build_body,
    encode_contact,
    enveloped,
    max_contact_bytes,
    minimum_requests,
    pack,
)

LISTS = ["0f9c3a4e-1b2d-4c5e-8f70-123456789abc"]


def contacts(count: int, pad: int = 0) -> list[tuple[int, bytes]]:
    return [(i, encode_contact({"email": f"p{i}@example.com", "first_name": "x" * pad})) for i in range(count)]


def test_count_cap_splits_at_30000_contacts() -> None:
    items = contacts(65_001)
    chunks = list(pack(items, LISTS))
    assert [c.count for c in chunks] == [30_000, 30_000, 5_001]
    assert all(len(c.body) <= MAX_BODY_BYTES for c in chunks)
    assert sum((c.refs for c in chunks), []) == list(range(65_001))


def test_byte_cap_splits_large_contacts_and_bodies_are_exact_json() -> None:
    items = contacts(3_000, pad=4_000)  # ~4 KB each: the byte cap binds long before the count cap
    chunks = list(pack(items, LISTS))
    total_bytes = sum(len(e) + 1 for _, e in items)
    assert len(chunks) == minimum_requests(len(items), total_bytes)
    for chunk in chunks:
        assert len(chunk.body) <= MAX_BODY_BYTES
        body = json.loads(chunk.body)
        assert body["list_ids"] == LISTS and len(body["contacts"]) == chunk.count
    # Greedy: every body but the last is full, the next contact would not have fitted.
    for chunk in chunks[:-1]:
        assert len(chunk.body) + len(items[0][1]) + 1 > MAX_BODY_BYTES


def test_small_caps_are_honoured_exactly() -> None:
    items = contacts(10)
    chunks = list(pack(items, LISTS, max_contacts=3))
    assert [c.count for c in chunks] == [3, 3, 3, 1]
    body = build_body(LISTS, [e for _, e in items[:3]])
    assert body == chunks[0].body


def test_a_contact_that_cannot_fit_alone_is_refused() -> None:
    huge = encode_contact({"email": "a@example.com", "first_name": "x" * (max_contact_bytes(LISTS) + 1)})
    with pytest.raises(ValueError):
        list(pack([(0, huge)], LISTS))
    just_fits = b"x" * max_contact_bytes(LISTS)
    (chunk,) = pack([(0, just_fits)], LISTS)
    assert len(chunk.body) == MAX_BODY_BYTES


@pytest.mark.parametrize("count", [2, 3, 7])
def test_a_body_is_closed_only_when_the_next_contact_would_break_the_byte_cap(count: int) -> None:
    parts = [encode_contact({"email": f"p{i}@example.com"}) for i in range(count)]
    exact = len(build_body(LISTS, parts))
    (chunk,) = pack(enumerate(parts), LISTS, max_body_bytes=exact)  # fills the body to the byte
    assert len(chunk.body) == exact and chunk.count == count
    first, second = pack(enumerate(parts), LISTS, max_body_bytes=exact - 1)  # one byte short: the last waits
    assert (first.count, second.count) == (count - 1, 1)
    assert first.body == build_body(LISTS, parts[:-1]) and second.body == build_body(LISTS, parts[-1:])


@pytest.mark.parametrize("count", [0, 1, 2, 5])
def test_a_body_is_its_envelope_around_the_contacts_joined_by_commas(count: int) -> None:
    parts = [encode_contact({"email": f"p{i}@example.com"}) for i in range(count)]
    kept = list(parts)
    body = enveloped(b"<head>", parts, b"<tail>")
    assert body == b"<head>" + b",".join(kept) + b"<tail>"
    assert parts == kept  # the caller's contacts are left bare (a refused request is split from them)
    assert json.loads(build_body(LISTS, parts)) == {"list_ids": LISTS, "contacts": [json.loads(p) for p in parts]}


def test_minimum_requests_is_the_larger_of_the_two_needs() -> None:
    assert minimum_requests(0, 0) == 0
    assert minimum_requests(MAX_CONTACTS_PER_REQUEST + 1, 10) == 2
    assert minimum_requests(10, 3 * MAX_BODY_BYTES + 1) == 4


@pytest.mark.parametrize(
    "contact",
    [
        {"email": "a@x.io", "first_name": 'Zoë "Q" O\'Brien\\', "city": "São\tPaulo\n", "country": "日本"},
        {"email": "a@x.io", "custom_fields": {"e1_N": 12.5, "e2_T": "x"}},
    ],
)
def test_contacts_encode_exactly_as_compact_json(contact: dict[str, Any]) -> None:
    assert encode_contact(contact) == json.dumps(contact, ensure_ascii=False, separators=(",", ":")).encode()


def test_packing_in_batches_closes_the_same_bodies_as_one_by_one() -> None:
    # One by one (`pack`) closes a body exactly when the next contact would break a cap (the
    # tests above pin where); batches of any size must close the same bodies.
    rng = random.Random(9)
    for _ in range(300):
        parts = [b"x" * rng.randint(1, 40) for _ in range(rng.randint(0, 60))]
        caps = {"max_contacts": rng.randint(1, 12), "max_body_bytes": rng.randint(len(build_body(LISTS, [])) + 40, 300)}
        one_by_one = list(pack(enumerate(parts), LISTS, **caps))
        packer: Packer[int] = Packer(LISTS, **caps)
        batched: list[Chunk[int]] = []
        start = 0
        while start < len(parts):
            stop = start + rng.randint(1, 15)
            batched += packer.extend(list(range(start, min(stop, len(parts)))), parts[start:stop])
            start = stop
        last = packer.flush()
        batched += [last] if last is not None else []
        assert batched == one_by_one
        # A body keeps where its contacts start, not the contacts: cut back out, they are the same.
        assert [part for chunk in batched for part in chunk.parts()] == parts
        assert all(chunk.refs == list(range(chunk.refs[0], chunk.refs[0] + chunk.count)) for chunk in batched)


def test_a_batch_refuses_a_contact_too_large_for_any_body_before_closing_a_body() -> None:
    packer: Packer[int] = Packer(LISTS, max_body_bytes=100)
    closed: list[Chunk[int]] = []
    with pytest.raises(ValueError, match="larger than a request body"):
        closed.extend(packer.extend([0, 1], [b"x" * 10, b"x" * 100]))
    assert closed == []  # nothing is handed out to send first
