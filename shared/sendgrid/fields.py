"""SendGrid's contact fields: custom field types and ids, and the short codes a run keeps of the
fields it did not set (to clear an emptied value, never one others set). Pure, no I/O.

Custom fields are addressed by id (`e1_T`, `w1`...), not by name, and ids differ between
accounts: names are resolved to ids at run time with GET /v3/marketing/field_definitions
(`custom_fields[] {id, name, field_type}`, field_type Text | Number | Date; OpenAPI
tsg_mc_custom_fields_v3.json in twilio/sendgrid-oai).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# SendGrid field types (GET /v3/marketing/field_definitions: field_type Text | Number | Date).
FIELD_TYPES = ("Text", "Number", "Date")


@dataclass(frozen=True)
class CustomField:
    name: str
    id: str
    field_type: str


# Short codes for the mapped fields a contact had no value for (kept per contact in the delivered
# record: see shared/delta/lines.py). Reserved fields by two letters; custom fields by "+" and their id.
RESERVED_CODES = {
    "first_name": "fn",
    "last_name": "ln",
    "country": "co",
    "state_province_region": "st",
    "city": "ci",
    "postal_code": "pc",
    "address_line_1": "a1",
    "address_line_2": "a2",
    "external_id": "xi",
}
_RESERVED_BY_CODE = {code: name for name, code in RESERVED_CODES.items()}


def field_codes(reserved: Iterable[str], custom: Iterable[CustomField]) -> list[str]:
    """The codes of every field a definition maps (the email aside), in a fixed order."""
    return [RESERVED_CODES[name] for name in reserved if name in RESERVED_CODES] + ["+" + f.id for f in custom]


def unset_code(contact: dict[str, Any], reserved: Iterable[str], custom: Iterable[CustomField]) -> str:
    """The codes of the mapped fields `contact` has no value for, comma separated ("" for none)."""
    values = contact.get("custom_fields") or {}
    missing = [RESERVED_CODES[name] for name in reserved if name in RESERVED_CODES and name not in contact]
    missing += ["+" + f.id for f in custom if f.id not in values]
    return ",".join(missing)


class UnsetCodes:
    """`unset_code` for one definition's fields, remembered per shape of contact (which keys it
    and its custom_fields have, all the code depends on): a run's contacts come in few shapes,
    and one look-up costs less than half the code's making. At most MAX_SHAPES are remembered."""

    MAX_SHAPES = 4_096

    def __init__(self, reserved: Iterable[str], custom: Iterable[CustomField]) -> None:
        self.reserved, self.custom = tuple(reserved), tuple(custom)
        self._known: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}

    def __call__(self, contact: dict[str, Any]) -> str:
        shape = (tuple(contact), tuple(contact.get("custom_fields") or ()))
        code = self._known.get(shape)
        if code is None:
            code = unset_code(contact, self.reserved, self.custom)
            if len(self._known) < self.MAX_SHAPES:
                self._known[shape] = code
        return code


def clearable_codes(reserved: Iterable[str], custom: Iterable[CustomField]) -> set[bytes]:
    """Fields that may be sent as "" to clear a value: reserved fields and Text custom fields
    ("" clears a stored value: recorded for first_name against the real API). Number and Date
    custom fields are never cleared: what SendGrid does with "" there is not recorded, and a bad
    value fails the whole contact in the import job."""
    codes = [RESERVED_CODES[name] for name in reserved if name in RESERVED_CODES]
    codes += ["+" + f.id for f in custom if f.field_type == "Text"]
    return {code.encode() for code in codes}


def with_cleared(contact: dict[str, Any], codes: bytes) -> dict[str, Any]:
    """The contact with the fields `codes` names set to "" (a cleared value in SendGrid)."""
    for code in codes.decode().split(","):
        if code.startswith("+"):
            contact.setdefault("custom_fields", {})[code[1:]] = ""
        elif code in _RESERVED_BY_CODE:
            contact[_RESERVED_BY_CODE[code]] = ""
    return contact
