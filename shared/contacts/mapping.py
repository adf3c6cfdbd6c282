"""Rows to SendGrid contacts: mapping and validation. Pure, no I/O (memos of date values aside).

A row becomes either a contact dict (the shape of SendGrid's ContactRequest) or a `Rejected`
with a reason. Reasons are a small fixed vocabulary safe to log and count; `detail` says which
column and may be stored in the rejects CSV, never logged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.contacts.packing import normalise_number
from shared.definitions import RESERVED_FIELD_MAX_LENGTH, ExportDefinition
from shared.errors import ExportError
from shared.sendgrid.fields import CustomField

# A value longer than this is not a profile attribute but a broken row: rejected whatever the
# overlength policy (postal_code and custom fields have no SendGrid limit of their own).
MAX_VALUE_CHARS = 4096
EMAIL_MAX_LENGTH = 254  # ContactRequest schema: email maxLength

# Pragmatic address syntax: dot-atom local part (max 64) @ a domain of LDH labels with an
# alphabetic top-level label. SendGrid lower-cases emails; so do we before comparing.
# (Splitting it, with each domain's verdict remembered, measured 0.45 -> 0.43 us a row: not kept.)
_EMAIL_RE = re.compile(
    r"^(?=.{1,64}@)[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$"
)
# A top-level label is letters, or an IDN's ASCII form (punycode, RFC 3492: "xn--" then letters,
# digits, hyphens), as in user@example.xn--p1ai.
MAX_NUMBER_CHARS = 64  # longer is not a number a marketing field holds
_US_DATE_RE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+\d{1,2}:\d{2}(?::\d{2})?(?:\s*[AaPp][Mm])?)?$")


# Reasons that say the file is damaged where the row was read, not that a value is wrong: a run
# that saw any of them holds back mirror removals (the rows may be contacts still in the segment).
STRUCTURAL = frozenset({"wrong number of columns", "invalid encoding", "NUL byte", "value too large"})


@dataclass(frozen=True)
class Rejected:
    reason: str
    detail: str = ""
    email: str = ""  # set when the email itself was valid (mirror mode must not remove them)


# NUL, or a lone surrogate: those only appear through errors="surrogateescape" when a partition
# holds bytes its declared encoding cannot decode.
_BAD_CHARACTERS = re.compile("[\x00\ud800-\udfff]")


def has_bad_characters(value: str) -> str | None:
    """'NUL byte' for NULs, 'invalid encoding' for bytes the declared encoding could not decode."""
    if not _BAD_CHARACTERS.search(value):
        return None
    return "NUL byte" if "\x00" in value else "invalid encoding"


def coerce_number(value: str) -> int | float | None:
    """A Number custom field's value (stripped) as sent, or None: `packing.normalise_number`
    (typed so that orjson writes the stdlib encoder's bytes) on at most MAX_NUMBER_CHARS."""
    if len(value) > MAX_NUMBER_CHARS:
        return None
    return normalise_number(value)


def _parse_date(value: str) -> str | None:
    """The reference parse behind `coerce_date` (its results define what coerce_date returns)."""
    us = _US_DATE_RE.match(value)
    try:
        if us:
            parsed = datetime(int(us.group(3)), int(us.group(1)), int(us.group(2)))
        else:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.strftime("%Y-%m-%dT00:00:00Z")


# Memos for coerce_date, so most rows cost two look-ups instead of a parse and a strftime (~3 us
# a value; bench/hotpath.py). An ISO value is a day "YYYY-MM-DD" and what follows it; the day
# alone decides the result (fromisoformat splits date from time at index 10 when a value starts
# that way, and keeps the date as written, offset or not). So days and suffixes are remembered
# apart: `_days` maps a day to its result ("" for no date), `_times` holds suffixes seen valid
# without moving the date. Anything else is memoised whole in `_others`. Each stops learning
# when full (bounded memory); a miss takes the reference parse. tests/test_mapping.py checks the
# results equal the reference's on many generated values.
_MEMO_ENTRIES = 32_768
_ISO_DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_days: dict[str, str] = {}
_times: set[str] = set()
_others: dict[str, str] = {}


def coerce_date(value: str) -> str | None:
    """A date as SendGrid's JSON API takes it for Date custom fields, ISO 8601 at midnight UTC
    (`2024-01-31T00:00:00Z`), or None. Recorded against the real API (grouparoo's fixtures, see
    docs/reference.md): ISO sent, accepted and read back; MM/DD/YYYY is documented for
    CSV uploads only.

    Accepts ISO 8601 dates and date-times (what Customer Insights writes for dateTime
    attributes) and US-culture dates such as "8/1/2018 8:30:00 AM", seen in CDM samples.
    """
    day = _days.get(value[:10])
    if day is not None and (len(value) == 10 or value[10:] in _times):
        return day or None
    known = _others.get(value)
    if known is not None:
        return known or None
    return _learn_date(value)


def _learn_date(value: str) -> str | None:
    result = _parse_date(value)
    start = value[:10]
    if _ISO_DAY_RE.fullmatch(start):
        if start not in _days and len(_days) < _MEMO_ENTRIES:
            _days[start] = _parse_date(start) or ""
        if result is not None and result == _days.get(start):
            if len(_times) < _MEMO_ENTRIES:
                _times.add(value[10:])  # valid, and the date unmoved by it: valid after any day
            return result
    if len(_others) < _MEMO_ENTRIES:
        _others[value] = result or ""
    return result


def resolve_custom_fields(wanted: dict[str, str], available: dict[str, CustomField]) -> dict[str, CustomField]:
    """Match definition custom field names to the account's fields (names are unique
    case-insensitively in SendGrid). Unknown names are one clear error before anything is sent."""
    by_lower = {name.lower(): field for name, field in available.items()}
    resolved, unknown = {}, []
    for name in wanted:
        found = available.get(name) or by_lower.get(name.lower())
        if found is None:
            unknown.append(name)
        else:
            resolved[name] = found
    if unknown:
        raise ExportError(
            "unknown_custom_field",
            f"custom field(s) {', '.join(sorted(unknown))} do not exist in the SendGrid account; "
            "create them in SendGrid (Marketing > Custom Fields) or fix the definition",
        )
    return resolved


def _column_index(columns: tuple[str, ...], column: str, key: str) -> int:
    if column in columns:
        return columns.index(column)
    folded = [i for i, c in enumerate(columns) if c.lower() == column.lower()]
    if len(folded) == 1:
        return folded[0]
    raise ExportError(
        "unknown_column",
        f"'{key}' maps column '{column}', which the segment does not have "
        f"(columns: {', '.join(columns[:40])}{' ...' if len(columns) > 40 else ''})",
    )


class ContactMapper:
    """Maps one row (values in segment column order) to a contact or a rejection."""

    def __init__(
        self,
        definition: ExportDefinition,
        columns: tuple[str, ...],
        custom_fields: dict[str, CustomField],
    ) -> None:
        self.width = len(columns)
        self.truncate = definition.on_overlength == "truncate"
        self.email_index = _column_index(columns, definition.mapping["email"], "mapping.email")
        # postal_code has no SendGrid limit: MAX_VALUE_CHARS stands in, so every field has a number.
        self.reserved = [
            (field, _column_index(columns, column, f"mapping.{field}"), RESERVED_FIELD_MAX_LENGTH[field] or MAX_VALUE_CHARS)
            for field, column in definition.mapping.items()
            if field != "email"
        ]
        # (coercion or None for Text, field id, column index, field name), resolved once.
        kinds = {"Number": coerce_number, "Date": coerce_date}
        self.custom = [
            (
                kinds.get(custom_fields[name].field_type),
                custom_fields[name].id,
                _column_index(columns, column, f"custom_fields.{name}"),
                custom_fields[name].name,
            )
            for name, column in definition.custom_fields.items()
        ]
        self.columns = columns

    def map(self, values: list[str]) -> dict[str, Any] | Rejected:
        if len(values) != self.width:
            return Rejected("wrong number of columns", f"{len(values)} values for {self.width} columns")

        # One look at the whole row settles size and characters for nearly every row; only a row
        # that fails it has each value looked at (the fields then say which one is at fault).
        joined = "\x1f".join(values)
        careful = len(joined) > MAX_VALUE_CHARS or "\x00" in joined
        if not careful and not joined.isascii():
            try:
                joined.encode("utf-8")  # lone surrogates (undecodable input bytes) cannot be encoded
            except UnicodeEncodeError:
                careful = True
        email = values[self.email_index].strip().lower()
        if careful and (len(email) > MAX_VALUE_CHARS or _BAD_CHARACTERS.search(email)):
            return self._problem(email, self.email_index)
        if not email:
            return Rejected("missing email", self.columns[self.email_index])
        if len(email) > EMAIL_MAX_LENGTH:
            return Rejected("email too long", self.columns[self.email_index])
        if not _EMAIL_RE.match(email):
            return Rejected("invalid email", self.columns[self.email_index])
        contact: dict[str, Any] = {"email": email}
        for field, index, max_length in self.reserved:  # the hot loop of a run: kept flat
            value = values[index].strip()
            if value:
                if careful and (len(value) > MAX_VALUE_CHARS or _BAD_CHARACTERS.search(value)):
                    return self._problem(value, index, email)
                if len(value) > max_length:
                    if not self.truncate:
                        return Rejected(f"{field} too long", f"{self.columns[index]}: over {max_length} characters", email)
                    value = value[:max_length].rstrip()
                contact[field] = value
        return self._custom(values, contact, email, careful) if self.custom else contact

    def _custom(self, values: list[str], contact: dict[str, Any], email: str, careful: bool) -> dict[str, Any] | Rejected:
        """Custom field values, coerced to their SendGrid types, into contact["custom_fields"]."""
        custom: dict[str, Any] = {}
        for coerce, field_id, index, name in self.custom:
            value = values[index].strip()
            if not value:
                continue
            if careful and (len(value) > MAX_VALUE_CHARS or _BAD_CHARACTERS.search(value)):
                return self._problem(value, index, email)
            if coerce is None:
                custom[field_id] = value
            else:
                coerced = coerce(value)
                if coerced is None:
                    what = "number" if coerce is coerce_number else "date"
                    return Rejected(f"{name} is not a {what}", self.columns[index], email)
                custom[field_id] = coerced
        if custom:
            contact["custom_fields"] = custom
        return contact

    def _problem(self, value: str, index: int, email: str = "") -> Rejected:
        """Why a value that failed the quick check (too long, or bad characters) is rejected."""
        if len(value) > MAX_VALUE_CHARS:
            return Rejected("value too large", f"{self.columns[index]}: over {MAX_VALUE_CHARS} characters", email)
        return Rejected(has_bad_characters(value) or "invalid encoding", self.columns[index], email)
