"""A preview's sample is masked by default, keeping each contact's shape."""

from __future__ import annotations

import pytest

from shared.setup.masking import mask_contact, mask_email


@pytest.mark.parametrize(
    ("email", "masked"),
    [
        ("jane.doe@contoso.com", "j***@c***.com"),
        ("j@c.io", "j***@c***.io"),
        ("jane@mail.contoso.co.uk", "j***@m***.uk"),
        ("user@example.xn--p1ai", "u***@e***.xn--p1ai"),
        ("not-an-email", "***"),
    ],
)
def test_an_email_keeps_its_first_characters_and_top_level_domain(email: str, masked: str) -> None:
    assert mask_email(email) == masked


def test_every_value_of_a_contact_is_masked_and_its_shape_kept() -> None:
    contact = {
        "email": "martin.costa@example.com",
        "first_name": "Martin",
        "last_name": "C",
        "custom_fields": {"e1_T": "Gold", "e2_N": 1234.5, "e3_D": "2024-01-31T00:00:00Z"},
    }
    assert mask_contact(contact) == {
        "email": "m***@e***.com",
        "first_name": "M***",
        "last_name": "***",
        "custom_fields": {"e1_T": "G***", "e2_N": "***", "e3_D": "2***"},
    }
    assert contact["first_name"] == "Martin"  # the contact itself is left as it was
