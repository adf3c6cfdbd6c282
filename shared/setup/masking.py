"""Masking a preview's sample contacts, pure. A contact as the run would send it (reserved fields,
`custom_fields` by id) keeps its shape; each value is replaced by a hint of it:
- the email: the first character of the local part and of the domain's first label, then the
  top-level domain (`jane.doe@contoso.co.uk` -> `j***@c***.uk`);
- any other text (dates included): its first character (`Martin` -> `M***`);
- numbers (Number custom fields): `***`.
Values are shown whole only when the request asks for them (`"show_values": true`).
"""

from __future__ import annotations

from typing import Any

MASK = "***"


def mask_email(email: str) -> str:
    local, _, domain = email.rpartition("@")
    labels = domain.split(".")
    if not local or len(labels) < 2:
        return MASK
    return f"{local[:1]}{MASK}@{labels[0][:1]}{MASK}.{labels[-1]}"


def mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return f"{value[:1]}{MASK}" if len(value) > 1 else MASK
    if isinstance(value, dict):
        return {key: mask_value(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [mask_value(inner) for inner in value]
    return MASK  # numbers, booleans


def mask_contact(contact: dict[str, Any]) -> dict[str, Any]:
    """The contact with every value masked (the email as an address, the rest by `mask_value`)."""
    return {
        key: mask_email(value) if key == "email" and isinstance(value, str) else mask_value(value)
        for key, value in contact.items()
    }
