"""Mapping and validation of rows, pure."""

from __future__ import annotations

import json
import math
import random
import re
from datetime import datetime

import pytest
from helpers import definition

from shared.contacts.mapping import (
    MAX_VALUE_CHARS,
    ContactMapper,
    Rejected,
    coerce_date,
    coerce_number,
    has_bad_characters,
    resolve_custom_fields,
)
from shared.contacts.packing import JsonFloat, encode_contact, normalise_number
from shared.definitions import parse_definition
from shared.errors import ExportError
from shared.sendgrid.fields import CustomField

COLUMNS = ("CustomerId", "FirstName", "LastName", "EMail", "City", "State", "PostCode", "Country", "Tier", "Value", "Since")
FIELDS = {
    "loyalty_tier": CustomField("loyalty_tier", "e1_T", "Text"),
    "lifetime_value": CustomField("lifetime_value", "e2_N", "Number"),
    "member_since": CustomField("member_since", "e3_D", "Date"),
}


def mapper(**overrides: object) -> ContactMapper:
    raw = definition(custom_fields={"loyalty_tier": "Tier", "lifetime_value": "Value", "member_since": "Since"})
    raw.update(overrides)
    return ContactMapper(parse_definition(raw), COLUMNS, FIELDS)


def row(**values: str) -> list[str]:
    base = dict(
        zip(
            COLUMNS,
            ["C1", "Ana", "Costa", "ana@example.com", "Lisbon", "Lisboa", "1100-148", "Portugal", "Gold", "12.50", "2024-03-05"],
            strict=True,
        )
    )
    base.update(values)
    return [base[c] for c in COLUMNS]


def test_a_good_row_becomes_a_contact_shaped_for_sendgrid() -> None:
    contact = mapper().map(row(EMail="  Ana.Costa@Example.COM ", FirstName=" Ana ", Value="12", Since="3/5/2024"))
    assert contact == {
        "email": "ana.costa@example.com",
        "first_name": "Ana",
        "last_name": "Costa",
        "city": "Lisbon",
        "state_province_region": "Lisboa",
        "postal_code": "1100-148",
        "country": "Portugal",
        "custom_fields": {"e1_T": "Gold", "e2_N": 12, "e3_D": "2024-03-05T00:00:00Z"},
    }


def test_empty_optional_fields_are_left_out() -> None:
    contact = mapper().map(row(FirstName="  ", City="", Tier="", Value="", Since=""))
    assert isinstance(contact, dict)
    assert "first_name" not in contact and "city" not in contact and "custom_fields" not in contact


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"EMail": ""}, "missing email"),
        ({"EMail": "   "}, "missing email"),
        ({"EMail": "not-an-email"}, "invalid email"),
        ({"EMail": "a@b"}, "invalid email"),
        ({"EMail": "a b@example.com"}, "invalid email"),
        ({"EMail": ".a@example.com"}, "invalid email"),
        ({"EMail": "a..b@example.com"}, "invalid email"),
        ({"EMail": "a@example..com"}, "invalid email"),
        ({"EMail": "a@-example.com"}, "invalid email"),
        ({"EMail": "a@example.c0m"}, "invalid email"),
        ({"EMail": "x" * 250 + "@example.com"}, "email too long"),
        ({"EMail": "ana\x00@example.com"}, "NUL byte"),
        ({"City": "Lis\udcffbon"}, "invalid encoding"),
        ({"FirstName": "A" * (MAX_VALUE_CHARS + 1)}, "value too large"),
        ({"PostCode": "9" * 1_000_000}, "value too large"),
        ({"Value": "twelve"}, "lifetime_value is not a number"),
        ({"Value": "nan"}, "lifetime_value is not a number"),
        ({"Value": "1e999"}, "lifetime_value is not a number"),
        ({"Since": "yesterday"}, "member_since is not a date"),
        ({"Since": "13/45/2024"}, "member_since is not a date"),
    ],
)
def test_bad_values_reject_the_row_with_a_reason(values: dict[str, str], reason: str) -> None:
    result = mapper().map(row(**values))
    assert isinstance(result, Rejected)
    assert result.reason == reason
    # Rows whose email is fine but another value is not keep the email (mirror mode keeps them).
    assert result.email == ("ana@example.com" if "EMail" not in values else "")


def test_wrong_number_of_columns_is_rejected() -> None:
    assert mapper().map(row()[:-1]) == Rejected("wrong number of columns", "10 values for 11 columns")
    assert isinstance(mapper().map([*row(), "extra"]), Rejected)


def test_overlength_fields_truncate_by_default_and_reject_on_request() -> None:
    long_name = "B" * 60
    contact = mapper().map(row(FirstName=long_name, City="C" * 61))
    assert isinstance(contact, dict)
    assert contact["first_name"] == "B" * 50 and contact["city"] == "C" * 60
    result = mapper(on_overlength="reject").map(row(FirstName=long_name))
    assert result == Rejected("first_name too long", "FirstName: over 50 characters", "ana@example.com")


def test_unknown_column_is_an_error_before_any_row() -> None:
    with pytest.raises(ExportError) as caught:
        ContactMapper(parse_definition(definition(mapping={"email": "Mail"})), COLUMNS, {})
    assert caught.value.code == "unknown_column" and "'Mail'" in caught.value.message


def test_column_names_match_case_insensitively_when_unambiguous() -> None:
    m = ContactMapper(parse_definition(definition(mapping={"email": "email"})), COLUMNS, {})
    assert m.map(row()) == {"email": "ana@example.com"}


def test_custom_field_names_resolve_to_ids_or_fail_clearly() -> None:
    available = {"Loyalty_Tier": CustomField("Loyalty_Tier", "e9_T", "Text")}
    assert resolve_custom_fields({"loyalty_tier": "Tier"}, available)["loyalty_tier"].id == "e9_T"
    with pytest.raises(ExportError) as caught:
        resolve_custom_fields({"loyalty_tier": "Tier", "shoe_size": "Shoe"}, available)
    assert caught.value.code == "unknown_custom_field" and "shoe_size" in caught.value.message


def test_coercions() -> None:
    assert coerce_number("42") == 42 and coerce_number("-1.5") == -1.5 and coerce_number("1,5") is None
    assert coerce_date("2024-12-31T23:00:00Z") == "2024-12-31T00:00:00Z"  # ISO 8601, as the JSON API takes it
    assert coerce_date("8/1/2018 8:30:00 AM") == "2018-08-01T00:00:00Z"
    assert coerce_date("2024-02-30") is None
    contact = mapper().map(row(EMail="O'Brien+tag@Sub.Example.co.uk"))
    assert isinstance(contact, dict) and contact["email"] == "o'brien+tag@sub.example.co.uk"


def date_reference(value: str) -> str | None:
    """The Date semantics the exporter has always had: a US-culture date, or whatever
    datetime.fromisoformat takes (a "Z" read as +00:00), as that day at midnight UTC."""
    us = re.match(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+\d{1,2}:\d{2}(?::\d{2})?(?:\s*[AaPp][Mm])?)?$", value)
    try:
        if us:
            parsed = datetime(int(us.group(3)), int(us.group(1)), int(us.group(2)))
        else:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.strftime("%Y-%m-%dT00:00:00Z")


DAYS = [
    "2024-01-31",
    "2024-02-29",
    "2023-02-29",
    "2024-02-30",
    "2024-13-01",
    "2024-00-10",
    "0999-03-04",
    "0001-01-01",
    "9999-12-31",
    "2024-1-31",
    "2024-W05-3",
    "20240131",
    "٢٠٢٤-01-31",
    "2024/01/31",
    "Z024-01-31",
]
SUFFIXES = [
    "",
    "T00:00:00Z",
    "T10:13:22Z",
    "T10:13:22.5+05:30",
    "T23:59:59.999999-11:59",
    " 10:00",
    "x10:00",
    "T10",
    "T24:00:00",
    "T24:00",
    "T23:59:60",
    "T10:00:00+25:00",
    "T",
    "Z",
    "T10:00:00Z junk",
    "10:00",
    "T10:00:00+05:30:15.5",
    "T1",
    "TZ",
    "T10:00:00.1234567Z",
    "T10:00:00ZZ",
    " ",
]
US = [
    "8/1/2018 8:30:00 AM",
    "12/31/2020",
    "2/30/2020",
    "13/1/2020",
    "1/1/2020 25:99",
    "1/1/2020  7:05 pm",
    "01/02/0999",
    "1/1/2020x",
]


def test_dates_are_what_they_have_always_been_on_first_sight_and_after() -> None:
    # coerce_date remembers days and what follows them: every answer, the first time a value is
    # seen and every later time, in any order, is the reference's.
    values = [day + suffix for day in DAYS for suffix in SUFFIXES] + US + ["", "not a date", "2024-01-31" * 3]
    rng = random.Random(7)
    for _ in range(3):
        rng.shuffle(values)
        for value in values:
            assert coerce_date(value) == date_reference(value), value
    assert coerce_date("2024-03-05T23:30:00-08:00") == "2024-03-05T00:00:00Z"  # the date as written


def test_numbers_are_typed_so_that_their_bytes_never_change() -> None:
    # Number values come from packing.normalise_number: a float that orjson would write as
    # 1e-7 (the stdlib writes 1e-07) is marked to take the stdlib encoder's path.
    contact = mapper().map(row(Value="1e-7"))
    assert isinstance(contact, dict) and type(contact["custom_fields"]["e2_N"]) is JsonFloat
    assert encode_contact(contact).endswith(b'"e2_N":1e-07,"e3_D":"2024-03-05T00:00:00Z"}}')
    assert coerce_number("١٢") == 12 and coerce_number("-" + "9" * 63) == -int("9" * 63)


def test_number_checks_take_linear_time_and_refuse_what_no_field_holds() -> None:
    # "9" * 4090 + "x" made the old pattern backtrack quadratically (435 ms a value).
    assert coerce_number("9" * 4090 + "x") is None and coerce_number("9" * 65) is None
    assert coerce_number("1.5e3") == 1500.0 and coerce_number(".5") == 0.5 and coerce_number("5.") == 5.0
    assert coerce_number("1e") is None and coerce_number("+") is None and coerce_number("1.2.3") is None


def test_punycode_top_level_domains_are_valid_emails() -> None:
    contact = mapper().map(row(EMail="user@example.xn--p1ai"))
    assert isinstance(contact, dict) and contact["email"] == "user@example.xn--p1ai"
    assert isinstance(mapper().map(row(EMail="user@example.xn--")), Rejected)


def test_any_surrogate_is_a_bad_character() -> None:
    assert has_bad_characters("a\ud800b") == "invalid encoding" and has_bad_characters("ok") is None


def number_reference(value: str) -> int | float | None:
    """Number semantics as they have always been: the pattern, then int or a finite float."""
    if not re.fullmatch(r"[+-]?(?:\d+(\.\d*)?|(\.)\d+)([eE][+-]?\d+)?", value):
        return None
    if re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    number = float(value)
    return number if math.isfinite(number) else None


def test_numbers_take_the_short_way_to_the_same_values_and_types() -> None:
    # Plain digits and digits.digits skip the pattern: same value, same type, same bytes.
    rng = random.Random(5)
    values = [
        "0",
        "00",
        "0.0",
        "0.00001",
        "0.0001",
        "0.000000001",
        "0.0000000001",
        "12.50",
        "١٢.٥",
        "9" * 64,
        "9" * 63 + ".5",
        "1.",
        ".5",
        "+1",
        "-0.00005",
        "1e5",
        "1_000",
        " 1",
        "1.2.3",
        "²",
        "١٢",
        "NaN",
        "inf",
        "9" * 299 + ".5",
        "9" * 310 + ".5",
    ]
    values += [f"{rng.uniform(0, 10 ** rng.randint(-10, 12)):.{rng.randint(0, 12)}f}" for _ in range(2000)]
    values += [str(rng.randrange(10 ** rng.randint(1, 30))) for _ in range(500)]
    for value in values:
        got, expected = normalise_number(value), number_reference(value)
        assert (
            got == expected
            and type(got) is type(expected)
            or (type(got) is JsonFloat and type(expected) is float and got == expected)
        ), value
        if expected is not None:
            assert encode_contact({"n": got}) == json.dumps({"n": expected}, separators=(",", ":")).encode(), value
