"""Completing a draft, pure: suggestions only where the draft says nothing, consent never given,
and a completed draft that parse_definition accepts once consent is given."""

from __future__ import annotations

from typing import Any

from shared.definitions import parse_definition
from shared.sendgrid.fields import CustomField
from shared.setup.draft import Catalog, complete, suggested_name

LIST = "0f9c3a4e-1b2d-4c5e-8f70-123456789abc"
COLUMNS = (
    ("CustomerId", "string"),
    ("EMail", "string"),
    ("GivenName", "string"),
    ("Loyalty_Tier", "string"),
    ("Since", "dateTime"),
)
CATALOG = Catalog(
    [{"id": LIST, "name": "Newsletter", "contact_count": 0}],
    {
        "loyalty_tier": CustomField("loyalty_tier", "e1_T", "Text"),
        "lifetime_value": CustomField("lifetime_value", "e2_N", "Number"),
    },
)


def draft(**extra: Any) -> dict[str, Any]:
    return {"source_folder": "ci/export", "segment": "High Value Customers", **extra}


def test_a_minimal_draft_gets_a_name_fields_and_is_told_about_consent_and_lists() -> None:
    done = complete(draft(), COLUMNS, CATALOG, existing={"high-value-customers"})
    assert done.definition == {
        "name": "high-value-customers-2",
        "source_folder": "ci/export",
        "segment": "High Value Customers",
        "mapping": {"email": "EMail", "first_name": "GivenName"},
        "custom_fields": {"loyalty_tier": "Loyalty_Tier"},
    }
    assert [s.field for s in done.suggestions] == ["name", "mapping.email", "mapping.first_name", "custom_fields.loyalty_tier"]
    assert {p.field for p in done.problems} == {"privacy_consent", "list_ids"} and not done.valid
    assert "privacy_consent" not in done.definition  # never given for the user
    parse_definition({**done.definition, "privacy_consent": True, "list_ids": [LIST]})


def test_what_the_draft_sets_is_kept_and_checked_not_overridden() -> None:
    given = draft(
        name="vip",
        mapping={"email": "CustomerId"},
        custom_fields={"lifetime_value": "Since"},
        lists=["newsletter"],
        privacy_consent=True,
        sync_mode="mirror",
    )
    done = complete(given, COLUMNS, CATALOG, existing=set())
    assert done.definition["mapping"]["email"] == "CustomerId" and done.definition["name"] == "vip"
    assert done.definition["list_ids"] == [LIST] and "lists" not in done.definition
    assert done.definition["custom_fields"] == {"lifetime_value": "Since", "loyalty_tier": "Loyalty_Tier"}
    (typed,) = done.problems
    assert typed.field == "custom_fields.lifetime_value" and "dateTime" in typed.message
    assert done.valid  # it parses; the type problem is the column's, which parse_definition does not see
    parse_definition(done.definition)


def test_what_parse_definition_refuses_is_a_problem_once() -> None:
    done = complete(draft(list_ids=[LIST], max_profiles=0, privacy_consent=False), COLUMNS, CATALOG, existing=set())
    assert [p.field for p in done.problems] == ["privacy_consent", "max_profiles"]
    bad_name = complete(draft(name="Bad Name", list_ids=[LIST]), COLUMNS, CATALOG, existing=set())
    assert [p.field for p in bad_name.problems].count("name") == 1


def test_without_the_account_lists_by_name_and_custom_fields_are_not_resolved_but_ids_are_kept() -> None:
    done = complete(draft(list_ids=[LIST.upper()], lists=["Newsletter"], custom_fields={"x": "EMail"}), COLUMNS, None, set())
    assert done.definition["list_ids"] == [LIST]
    assert {p.field for p in done.problems} >= {"lists[0]", "custom_fields"}


def test_an_unknown_segment_gets_no_field_suggestions() -> None:
    done = complete(draft(), None, CATALOG, existing=set())
    assert [s.field for s in done.suggestions] == ["name"] and "mapping" not in done.definition


def test_suggested_names_are_export_names() -> None:
    assert suggested_name("HighValueCustomers", set()) == "highvaluecustomers"
    assert suggested_name("  Åsa's <VIP> list!  ", set()) == "sa-s-vip-list"
    assert suggested_name("!!!", {"export"}) == "export-2"
    assert len(suggested_name("x" * 200, set())) <= 63
