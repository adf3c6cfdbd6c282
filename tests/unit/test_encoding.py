"""Encoded contacts are byte for byte what the stdlib encoder writes (the delivered record hashes
these bytes: a changed byte would resend the contact), for every contact the mapper can produce."""

from __future__ import annotations

import json
import math
import random
import re
import struct
import tracemalloc
from typing import Any

import pytest

from shared.contacts.mapping import ContactMapper, Rejected
from shared.contacts.packing import JsonFloat, encode_contact, normalise_number
from shared.definitions import parse_definition
from shared.sendgrid.fields import CustomField

_reference_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def reference(contact: dict[str, Any]) -> bytes:
    """What the exporter has always sent, and hashed into the delivered record."""
    return _reference_encode(contact).encode("utf-8")


COLUMNS = ("Id", "Mail", "First", "Last", "Street", "Town", "Region", "Zip", "Land", "Tier", "Value", "Since")
FIELDS = {
    "loyalty_tier": CustomField("loyalty_tier", "e1_T", "Text"),
    "lifetime_value": CustomField("lifetime_value", "e2_N", "Number"),
    "member_since": CustomField("member_since", "e3_D", "Date"),
}


def mapper(on_overlength: str = "truncate") -> ContactMapper:
    definition = parse_definition(
        {
            "name": "enc",
            "source_folder": "f",
            "segment": "S",
            "list_ids": ["0f9c3a4e-1b2d-4c5e-8f70-123456789abc"],
            "privacy_consent": True,
            "on_overlength": on_overlength,
            "mapping": {
                "email": "Mail",
                "first_name": "First",
                "last_name": "Last",
                "address_line_1": "Street",
                "city": "Town",
                "state_province_region": "Region",
                "postal_code": "Zip",
                "country": "Land",
            },
            "custom_fields": {"loyalty_tier": "Tier", "lifetime_value": "Value", "member_since": "Since"},
        }
    )
    return ContactMapper(definition, COLUMNS, FIELDS)


# Text a profile can hold: accents, CJK, emoji (astral), quotes and backslashes, every control
# character but NUL, DEL, the JSON-in-JS troublemakers U+2028/U+2029, a BOM, combining marks.
PIECES = [
    "Zoë",
    "São Paulo",
    "日本語",
    "🙂👩🏽‍💻",
    '"quoted"',
    "back\\slash",
    "O'Brien",
    "a/b",
    "\u2028\u2029",
    "\ufeff",
    "e\u0301",
    "\x7f",
    "tab\there",
    "line\nbreak",
    "cr\rlf",
    "\b\f",
    "𝔘𝔫𝔦",
    "\uffff",
    "\U0010ffff",
    *map(chr, range(1, 32)),
    "plain",
    "x" * 40,
    " padded ",
]
NUMBERS = [
    "0",
    "-0",
    "+7",
    "42",
    "007",
    "-13",
    "3.14",
    "-2.5",
    ".5",
    "5.",
    "1e3",
    "1E-3",
    "2.50",
    "1234.56",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "123456789012345678901234567890",
    "-" + "9" * 300,
    "1e16",
    "1.5e+16",
    "9.9e300",
    "1.7976931348623157e308",
    "5e-324",
    "1e-10",
    "-3e-12",
    "0.0001",
    "1e-4",
    "0.00012",
    "-0.0",
    "0.000",
    "1e999",
    "12abc",
    "",
]
BAND = ["1e-5", "0.00001", "-2.5e-07", "9.99e-5", "1e-9", "0.000000001", "3.3E-06"]  # orjson differs here
DATES = ["2019-03-14T00:00:00Z", "2019-03-14", "3/14/2019 8:30:00 AM", "12/1/2020", "not a date", ""]


def generated_rows(count: int, numbers: list[str], seed: int = 1) -> list[list[str]]:
    rng = random.Random(seed)

    def text(most: int) -> str:
        return "".join(rng.choice(PIECES) for _ in range(rng.randrange(0, most)))

    rows = []
    for i in range(count):
        rows.append(
            [
                str(i),
                f"p{i}.{rng.choice(['a', 'o_k', 'x+y'])}@example.com",
                text(4),
                text(3),
                text(6),
                text(3),
                text(2),
                text(2),
                text(2),
                rng.choice(["Gold", "", "Silber ✓", text(3)]),
                rng.choice(numbers),
                rng.choice(DATES),
            ]
        )
    return rows


def test_every_code_point_but_surrogates_encodes_as_the_stdlib_does() -> None:
    points = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for start in range(0, len(points), 8192):
        contact = {
            "email": "a@example.com",
            "first_name": "".join(points[start : start + 8192]),
            "custom_fields": {"e1_T": "".join(points[start : start + 64])},
        }
        assert encode_contact(contact) == reference(contact)


def test_contacts_from_the_mapper_encode_as_the_stdlib_does() -> None:
    contacts = 0
    for on_overlength in ("truncate", "reject"):
        to_map = mapper(on_overlength).map
        for row in generated_rows(6_000, NUMBERS):
            contact = to_map(row)
            if isinstance(contact, Rejected):
                continue
            contacts += 1
            assert encode_contact(contact) == reference(contact)
    assert contacts > 6_000  # most rows map; numbers and dates that do not are rejected


def test_numbers_orjson_writes_otherwise_come_from_the_mapper_as_the_stdlib_writes_them() -> None:
    to_map = mapper().map
    for row in generated_rows(500, BAND, seed=2):
        contact = to_map(row)
        if not isinstance(contact, Rejected):
            assert encode_contact(contact) == reference(contact)


def number_reference(text: str) -> int | float | None:
    """The Number semantics the exporter has always had: integer text exactly, other number text
    as a finite float, anything else not a number."""
    if not re.fullmatch(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", text):
        return None
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    number = float(text)
    return number if math.isfinite(number) else None


def random_float_texts(count: int) -> list[str]:
    rng = random.Random(4)
    texts: list[str] = []
    while len(texts) < count:
        value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(value):
            texts.append(rng.choice([repr(value), f"{value:.6e}", f"{value:.12g}"]))
        exponent = rng.randrange(-12, 20)  # dense around the band and the repr switch to exponents
        texts.append(f"{rng.uniform(-10, 10):.{rng.randrange(0, 17)}f}e{exponent}")
    return texts


@pytest.mark.parametrize("texts", [NUMBERS + BAND, random_float_texts(100_000)], ids=["chosen", "random"])
def test_normalised_numbers_keep_their_value_and_encode_as_the_stdlib_does(texts: list[str]) -> None:
    for text in texts:
        number = normalise_number(text)
        expected = number_reference(text)
        assert number == expected and type(number) in (type(expected), JsonFloat), text
        contact = {"email": "a@example.com", "custom_fields": {"e2_N": number}}
        assert encode_contact(contact) == reference(contact), text


def test_floats_orjson_writes_otherwise_are_json_floats() -> None:
    for text, written in [("1e-7", b"1e-07"), ("0.00001", b"1e-05"), ("-4.2e-9", b"-4.2e-09")]:
        number = normalise_number(text)
        assert isinstance(number, JsonFloat)
        assert encode_contact({"email": "a@example.com", "custom_fields": {"e2_N": number}}).endswith(
            b'"e2_N":' + written + b"}}"
        )
    for text in ["0.0001", "1e-10", "1e16", "0", "12.5"]:
        assert type(normalise_number(text)) is not JsonFloat


@pytest.mark.parametrize(
    "text",
    ["", "nan", "inf", "-Infinity", "1e999", "-1e999", "0x10", "1_000", "1,5", "1.2.3", "e5", ".", "+", " 5", "5 ", "9" * 5_000],
)
def test_what_is_not_a_finite_number_is_refused(text: str) -> None:
    assert normalise_number(text) is None


def test_an_encoded_contact_holds_no_more_memory_than_its_bytes() -> None:
    # A run keeps tens of thousands of encoded contacts at once (a request body's parts).
    contacts = [
        contact
        for contact in map(mapper().map, generated_rows(2_000, ["12.5", "7"], seed=3))
        if not isinstance(contact, Rejected)
    ]
    tracemalloc.start()
    try:
        encoded = [encode_contact(contact) for contact in contacts]
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held <= sum(len(e) for e in encoded) + 100 * len(encoded)


def test_the_mapper_rejects_what_cannot_be_encoded() -> None:
    # Lone surrogates (bytes the partition's encoding could not decode) and NUL never reach the
    # encoder: the mapper rejects the row. Were one to reach it, both encoders refuse it alike.
    to_map = mapper().map
    for bad in ["Zo\udcebe", "\udc80", "a\x00b"]:
        row = generated_rows(1, ["1"])[0]
        row[2] = bad
        assert isinstance(to_map(row), Rejected)
    contact = {"email": "a@example.com", "first_name": "\udc80"}
    with pytest.raises(UnicodeEncodeError):
        reference(contact)
    with pytest.raises(UnicodeEncodeError):
        encode_contact(contact)
