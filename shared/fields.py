"""SendGrid's contact fields: custom field types and ids. Pure, no I/O.

Custom fields are addressed by id (`e1_T`, `w1`...), not by name, and ids differ between
accounts: names are resolved to ids at run time with GET /v3/marketing/field_definitions
(`custom_fields[] {id, name, field_type}`, field_type Text | Number | Date; OpenAPI
tsg_mc_custom_fields_v3.json in twilio/sendgrid-oai).
"""

from __future__ import annotations

from dataclasses import dataclass

# SendGrid field types (GET /v3/marketing/field_definitions: field_type Text | Number | Date).
FIELD_TYPES = ("Text", "Number", "Date")


@dataclass(frozen=True)
class CustomField:
    name: str
    id: str
    field_type: str
