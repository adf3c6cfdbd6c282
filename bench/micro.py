"""Figures for two hot-path building blocks, in isolation (no Azurite, no sandbox):

- encoding: µs a contact, the stdlib encoder vs the old fast path vs orjson (`encode_contact`), on
  realistic contacts (bench/data.py rows through the real mapper, custom fields included);
- de-duplication: ns a call and bytes held, a Python set of hashes (the old Deduplicator) vs
  `shared.contacts.dedup.EmailSet`, and the cost of the hash itself (hash() vs blake2b-8).

    python -m bench.micro [--contacts 5000] [--sizes 75000,1000000]

CPU time (process_time), best of a few repeats: on a busy machine the best is the least
disturbed. Figures only.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import time
import tracemalloc
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import Any

import orjson

from bench import data
from shared.contacts.dedup import EmailSet
from shared.contacts.mapping import ContactMapper
from shared.contacts.packing import encode_contact
from shared.definitions import parse_definition
from shared.sendgrid.fields import CustomField

_stdlib = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def stdlib_encode(contact: dict[str, Any]) -> bytes:
    return _stdlib(contact).encode("utf-8")


def old_encode(contact: dict[str, Any]) -> bytes:
    """encode_contact as it was before orjson: the C string escaper for plain contacts."""
    if "custom_fields" in contact:
        return _stdlib(contact).encode("utf-8")
    return ("{" + ",".join(['"' + key + '":' + encode_basestring(value) for key, value in contact.items()]) + "}").encode("utf-8")


def realistic_contacts(count: int) -> list[dict[str, Any]]:
    definition = parse_definition(
        {
            "name": "bench",
            "source_folder": "f",
            "segment": "S",
            "list_ids": ["3f1c5a7e-9b2d-4e6f-8a1c-2b3d4e5f6a7b"],
            "privacy_consent": True,
            "mapping": data.MAPPING,
            "custom_fields": data.CUSTOM_FIELDS,
        }
    )
    ids = {"Text": "e1_T", "Number": "e2_N", "Date": "e3_D"}
    fields = {name: CustomField(name, ids[kind], kind) for name, kind in data.FIELD_TYPES.items()}
    to_map = ContactMapper(definition, data.COLUMNS, fields).map
    contacts: list[dict[str, Any]] = []
    for row in data.profiles(count * 2):
        contact = to_map(row)
        if isinstance(contact, dict):
            contacts.append(contact)
            if len(contacts) == count:
                break
    return contacts


def best_per_call(function: Callable[[Any], Any], items: list[Any], repeats: int = 7) -> float:
    """Seconds a call, the best of `repeats` passes over `items`."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for item in items:
            function(item)
        best = min(best, time.process_time() - started)
    return best / len(items)


def encoding(count: int) -> None:
    contacts = realistic_contacts(count)
    with_custom = sum("custom_fields" in c for c in contacts)
    assert all(encode_contact(c) == stdlib_encode(c) for c in contacts)
    size = sum(len(encode_contact(c)) for c in contacts) / len(contacts)
    print(
        f"encoding {len(contacts):,} realistic contacts ({with_custom:,} with custom fields, {size:.0f} bytes "
        "each); identical bytes all three ways"
    )
    for name, function in (
        ("stdlib json", stdlib_encode),
        ("old encode_contact", old_encode),
        ("orjson.dumps alone", orjson.dumps),
        ("encode_contact (orjson)", encode_contact),
    ):
        tracemalloc.start()
        kept = [function(c) for c in contacts]
        held = tracemalloc.get_traced_memory()[0] / len(kept)
        tracemalloc.stop()
        del kept
        print(
            f"  {name:26} {best_per_call(function, contacts) * 1e6:6.2f} µs a contact, {held:5.0f} bytes held "
            "by each encoded contact"
        )


def dedup_figures(size: int) -> None:
    emails = [f"{first}.{size}.{i}@example-mail.com" for i, first in enumerate(["ana", "bo", "chloe"] * (size // 3))]
    fresh = [e[:1] + e[1:] for e in emails]  # new str objects: no cached hash

    def build(factory: Callable[[], tuple[Any, Callable[[str], bool]]]) -> tuple[float, float, float, int]:
        gc.collect()
        best = float("inf")
        for _ in range(3):  # timed without tracemalloc, which taxes every allocation
            holder, first_time = factory()
            started = time.process_time()
            for email in emails:
                first_time(email)
            best = min(best, (time.process_time() - started) / len(emails))
        again = best_per_call(first_time, fresh, repeats=3)  # every call a repeat: a lookup
        del holder, first_time
        gc.collect()
        tracemalloc.start()
        holder, first_time = factory()
        for email in emails:
            first_time(email)
        held, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return best, again, peak, held

    def python_set() -> tuple[Any, Callable[[str], bool]]:
        seen: set[int] = set()

        def first_time(email: str) -> bool:  # the old shared.mapping.Deduplicator.first_time
            key = hash(email)
            if key in seen:
                return False
            seen.add(key)
            return True

        return seen, first_time

    def email_set() -> tuple[Any, Callable[[str], bool]]:
        table = EmailSet()
        return table, table.first_time

    def email_set_sized() -> tuple[Any, Callable[[str], bool]]:
        table = EmailSet(expected=size)
        return table, table.first_time

    print(f"de-duplication of {len(emails):,} emails (memory: tracemalloc; peak includes growth)")
    for name, factory in (("set[int] of hash()", python_set), ("EmailSet", email_set), ("EmailSet(expected=n)", email_set_sized)):
        insert, again, peak, held = build(factory)
        print(
            f"  {name:22} insert {insert * 1e9:5.0f} ns, repeat {again * 1e9:4.0f} ns a call; held "
            f"{held / 1e6:6.1f} MB ({held / len(emails):5.1f} B a profile), peak {peak / 1e6:6.1f} MB"
        )


def hash_cost() -> None:
    emails = [f"person.{i}@example-mail.com" for i in range(100_000)]
    fresh = [e[:1] + e[1:] for e in emails]
    builtin = best_per_call(hash, fresh, repeats=1)  # the first pass computes; str caches its hash

    def blake(email: str) -> int:
        return int.from_bytes(hashlib.blake2b(email.encode(), digest_size=8).digest(), "little")

    print(f"hash an email: hash() {builtin * 1e9:.0f} ns, blake2b-8 {best_per_call(blake, emails) * 1e9:.0f} ns")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=5_000)
    parser.add_argument("--sizes", default="75000,1000000")
    args = parser.parse_args()
    encoding(args.contacts)
    hash_cost()
    for size in map(int, args.sizes.split(",")):
        dedup_figures(size)


if __name__ == "__main__":
    main()
