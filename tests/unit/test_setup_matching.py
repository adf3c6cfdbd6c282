"""Matching names for a draft, pure: reserved fields by the names Customer Insights, Dynamics 365
and CRMs use, custom fields by name, lists by id or name, CDM types that can feed a field, and
did-you-mean."""

from __future__ import annotations

from typing import Any

import pytest

from shared.setup import matching
from shared.setup.matching import Match

LISTS: list[dict[str, Any]] = [
    {"id": "0f9c3a4e-1b2d-4c5e-8f70-123456789abc", "name": "Newsletter", "contact_count": 3},
    {"id": "a1b2c3d4-e5f6-4789-8abc-def012345678", "name": "VIP", "contact_count": 0},
    {"id": "11111111-2222-4333-8444-555555555555", "name": "Twice", "contact_count": 0},
    {"id": "66666666-2222-4333-8444-555555555555", "name": "twice", "contact_count": 0},
]


@pytest.mark.parametrize(
    ("column", "field"),
    [
        ("EMail", "email"),
        ("Email", "email"),
        ("PrimaryEmail", "email"),
        ("EmailAddress", "email"),
        ("EMailAddress1", "email"),
        ("emailaddress1", "email"),
        ("Email Address", "email"),
        ("FirstName", "first_name"),
        ("GivenName", "first_name"),
        ("first_name", "first_name"),
        ("LastName", "last_name"),
        ("Surname", "last_name"),
        ("FamilyName", "last_name"),
        ("PostCode", "postal_code"),
        ("PostalCode", "postal_code"),
        ("ZipCode", "postal_code"),
        ("Zip", "postal_code"),
        ("address1_postalcode", "postal_code"),
        ("City", "city"),
        ("address1City", "city"),
        ("State", "state_province_region"),
        ("StateOrProvince", "state_province_region"),
        ("Region", "state_province_region"),
        ("Country", "country"),
        ("CountryOrRegion", "country"),
        ("AddressLine1", "address_line_1"),
        ("address1_line2", "address_line_2"),
    ],
)
def test_each_name_crm_and_customer_insights_use_matches_its_reserved_field(column: str, field: str) -> None:
    (match,) = matching.reserved_matches(["CustomerId", column], matching.RESERVED_SYNONYMS, set())
    assert (match.field, match.value) == (field, column)


def test_the_why_says_who_uses_the_name_and_a_column_is_offered_once() -> None:
    found = matching.reserved_matches(["EMail", "EMailAddress1", "Zip"], ["email", "postal_code"], set())
    assert found == [
        Match("email", "EMail", "column 'EMail' is what Customer Insights calls the primary email"),
        Match("postal_code", "Zip", "column 'Zip' is a common CRM name for the postal code"),
    ]
    # A column the draft already uses is not offered again, nor is external_id ever suggested.
    assert matching.reserved_matches(["EMail", "CustomerId"], ["email", "external_id"], {"email"}) == []


def test_custom_fields_match_by_name_with_case_spaces_and_underscores_ignored_and_a_fitting_type() -> None:
    columns = [("Loyalty Tier", "string"), ("LIFETIME_VALUE", "double"), ("MemberSince", "boolean"), ("Other", "string")]
    fields = [("loyalty_tier", "Text"), ("lifetime value", "Number"), ("member_since", "Date"), ("absent", "Text")]
    found = matching.custom_matches(columns, fields, set())
    assert [(m.field, m.value) for m in found] == [("loyalty_tier", "Loyalty Tier"), ("lifetime value", "LIFETIME_VALUE")]
    assert found[0].why == "column 'Loyalty Tier' has the name of SendGrid Text field 'loyalty_tier'"


@pytest.mark.parametrize(
    ("data_type", "field_type", "fits"),
    [
        ("int64", "Number", True),
        ("Double", "Number", True),
        ("decimal", "Number", True),
        ("string", "Number", True),  # a string column may hold numbers: not refused
        ("unknown", "Number", True),
        ("dateTime", "Number", False),
        ("boolean", "Number", False),
        ("DateTime", "Date", True),
        ("dateTimeOffset", "Date", True),
        ("string", "Date", True),
        ("Int64", "Date", False),
        ("guid", "Date", False),
        ("boolean", "Text", True),
    ],
)
def test_a_cdm_type_feeds_a_number_or_date_field_only_when_it_can_hold_one(data_type: str, field_type: str, fits: bool) -> None:
    assert matching.type_fits(data_type, field_type) is fits


def test_columns_match_exactly_or_by_case_when_that_is_one_column() -> None:
    assert matching.find_column("EMail", ["EMail", "email"]) == "EMail"
    assert matching.find_column("EMAIL", ["EMail", "email"]) is None  # two differ only in case: ambiguous
    assert matching.find_column("city", ["City"]) == "City"
    assert matching.find_column("Town", ["City"]) is None


@pytest.mark.parametrize(
    ("word", "candidates", "close"),
    [
        ("Emial", ["CustomerId", "EMail", "City"], "EMail"),
        ("frist_name", ["first_name", "last_name"], "first_name"),
        ("Newsleter", ["Newsletter", "VIP"], "Newsletter"),
        ("nothing like it", ["Newsletter", "VIP"], None),
        ("x", [], None),
    ],
)
def test_did_you_mean_is_the_closest_existing_name_or_none(word: str, candidates: list[str], close: str | None) -> None:
    assert matching.did_you_mean(word, candidates) == close


def test_lists_are_chosen_by_id_in_any_spelling_or_by_name() -> None:
    assert matching.choose_list("0f9c3a4e-1b2d-4c5e-8f70-123456789abc", LISTS).list_id == LISTS[0]["id"]
    assert matching.choose_list("{0F9C3A4E-1B2D-4C5E-8F70-123456789ABC}", LISTS).list_id == LISTS[0]["id"]
    assert matching.choose_list("Newsletter", LISTS) == matching.ListChoice(LISTS[0]["id"], "Newsletter")
    assert matching.choose_list("vip", LISTS) == matching.ListChoice(LISTS[1]["id"], "VIP")
    assert matching.choose_list("Twice", LISTS).list_id == LISTS[2]["id"]  # the exact name wins
    ambiguous = matching.choose_list("TWICE", LISTS)
    assert ambiguous.list_id is None and ambiguous.problem and "2 lists" in ambiguous.problem
    missing = matching.choose_list("Newsleter", LISTS)
    assert (missing.list_id, missing.did_you_mean) == (None, "Newsletter")
    unknown_id = matching.choose_list("99999999-2222-4333-8444-555555555555", LISTS)
    assert unknown_id.list_id is None and unknown_id.did_you_mean is None
