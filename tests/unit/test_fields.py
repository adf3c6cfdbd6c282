"""Which fields a contact had no value for, and clearing what this export set before. Pure."""

from __future__ import annotations

import random
from pathlib import Path

from shared.delta import diff, lines
from shared.sendgrid import fields
from shared.sendgrid.fields import CustomField

TIER = CustomField("loyalty_tier", "e1_T", "Text")
VALUE = CustomField("lifetime_value", "e2_N", "Number")
RESERVED = ("first_name", "city")


def test_unset_codes_name_the_mapped_fields_without_a_value() -> None:
    full = {"email": "a@x.io", "first_name": "Ana", "city": "Porto", "custom_fields": {"e1_T": "Gold", "e2_N": 3}}
    assert fields.unset_code(full, RESERVED, [TIER, VALUE]) == ""
    assert fields.unset_code({"email": "a@x.io", "city": "Porto"}, RESERVED, [TIER, VALUE]) == "fn,+e1_T,+e2_N"
    assert fields.field_codes(RESERVED, [TIER, VALUE]) == ["fn", "ci", "+e1_T", "+e2_N"]
    assert fields.clearable_codes(RESERVED, [TIER, VALUE]) == {b"fn", b"ci", b"+e1_T"}  # not Number


def test_cleared_fields_go_out_as_empty_strings() -> None:
    contact = fields.with_cleared({"email": "a@x.io", "city": "Porto"}, b"fn,+e1_T")
    assert contact == {"email": "a@x.io", "city": "Porto", "first_name": "", "custom_fields": {"e1_T": ""}}


def test_decide_clears_only_what_the_export_set_and_the_record_keeps_what_it_did_not(tmp_path: Path) -> None:
    # a: first name emptied, set before -> cleared; b: city never set by the export -> untouched;
    # c: unchanged -> nothing sent at all.
    keys = [
        lines.encode_key("a@x.io", "h1", 0, "p", 1, "fn"),
        lines.encode_key("b@x.io", "h2", 1, "p", 2, "ci"),
        lines.encode_key("c@x.io", "h3", 2, "p", 3),
    ]
    record = [
        lines.encode_record(b"a@x.io", b"old"),
        lines.encode_record(b"b@x.io", b"old", b"ci;"),
        lines.encode_record(b"c@x.io", b"h3"),
    ]

    def clears(old_extra: bytes, unset: bytes) -> bytes:
        old = set(lines.unset_of(old_extra).split(b",")) - {b""}
        return b",".join(sorted((set(unset.split(b",")) & {b"fn", b"ci"}) - old))

    with open(tmp_path / "d", "wb") as decisions, open(tmp_path / "l", "wb") as leavers:
        plan = diff.decide(
            keys,
            record,
            tmp_path,
            decisions,
            leavers,
            valid=3,
            has_record=True,
            mirror=False,
            keep=lambda e: False,
            clears=clears,
        )
    assert plan.clears == {0: b"fn"} and plan.upsert == 2 and plan.unchanged == 1
    decided = (tmp_path / "d").read_bytes().splitlines(keepends=True)
    record_after = list(diff.next_record(decided, lambda position, email: True, lambda email: False))
    assert record_after == [b"a@x.io\th1\tfn;\n", b"b@x.io\th2\tci;\n", b"c@x.io\th3\n"]


def test_a_key_line_becomes_its_record_line_with_or_without_unset_fields() -> None:
    plain = lines.encode_key("a@x.io", "h1", 3, "odd\tpartition", 7)
    unset = lines.encode_key("a@x.io", "h1", 3, "p", 7, "fn,+e1_T")
    assert lines.key_as_record(plain) == b"a@x.io\th1\n"
    assert lines.key_as_record(unset) == b"a@x.io\th1\tfn,+e1_T;\n"
    assert lines.parse_key(plain).ref == ("odd\tpartition", 7)  # a tab in a partition name is kept


def test_remembered_unset_codes_are_those_of_unset_code_for_every_shape() -> None:
    codes = fields.UnsetCodes(RESERVED, [TIER, VALUE])
    rng = random.Random(2)
    for _ in range(2000):
        contact: dict[str, object] = {"email": "a@x.io"}
        contact.update({name: "x" for name in RESERVED if rng.random() < 0.7})
        custom: dict[str, object] = {f.id: "y" for f in (TIER, VALUE) if rng.random() < 0.5}
        if custom or rng.random() < 0.5:
            contact["custom_fields"] = custom
        assert codes(contact) == fields.unset_code(contact, RESERVED, [TIER, VALUE])
    few = fields.UnsetCodes(RESERVED, [TIER, VALUE])
    few.MAX_SHAPES = 2  # a full memo still answers, it only stops learning
    shapes: list[dict[str, object]] = [{"email": "a"}, {"email": "a", "city": "c"}, {"email": "a", "first_name": "f"}]
    for contact in shapes:
        assert few(contact) == fields.unset_code(contact, RESERVED, [TIER, VALUE])
