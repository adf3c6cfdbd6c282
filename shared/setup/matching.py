"""Matching names, pure: which column feeds which SendGrid reserved field (by the names Customer
Insights, Dynamics 365 and common CRMs use), which column has a custom field's name, which
list a name means, whether a column's CDM type can feed a custom field's type, and the closest
existing name to a mistyped one (did you mean).

Names compare with case, spaces and underscores ignored (`normalise`), except where a
definition's own rule applies: a column matches exactly, or case-insensitively when that is
unambiguous (shared/contacts/mapping.py, which the run uses).
"""

from __future__ import annotations

import difflib
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

CI, D365, COMMON = "ci", "d365", "common"
# Reserved field -> (normalised column name, who uses it), in order of preference. The Customer
# Insights names are those of its unified profile and exports (docs/reference.md: "Typical
# profile columns"); Dynamics 365 names are a contact's (emailaddress1, address1_city, ...).
# external_id is never suggested: SendGrid treats it as an identifier of the contact.
RESERVED_SYNONYMS: dict[str, tuple[tuple[str, str], ...]] = {
    "email": (("email", CI), ("primaryemail", CI), ("emailaddress", COMMON), ("emailaddress1", D365)),
    "first_name": (("firstname", CI), ("givenname", COMMON)),
    "last_name": (("lastname", CI), ("surname", COMMON), ("familyname", COMMON)),
    "postal_code": (
        ("postcode", CI),
        ("postalcode", CI),
        ("address1postalcode", D365),
        ("zipcode", COMMON),
        ("zip", COMMON),
    ),
    "city": (("city", CI), ("address1city", D365)),
    "state_province_region": (
        ("state", CI),
        ("stateorprovince", CI),
        ("address1stateorprovince", D365),
        ("region", COMMON),
        ("province", COMMON),
    ),
    "country": (("country", CI), ("countryorregion", CI), ("address1country", D365)),
    "address_line_1": (("addressline1", COMMON), ("address1line1", D365), ("streetaddress", COMMON), ("street", COMMON)),
    "address_line_2": (("addressline2", COMMON), ("address1line2", D365)),
}
LABELS = {
    "email": "the primary email",
    "first_name": "the first name",
    "last_name": "the last name",
    "postal_code": "the postal code",
    "city": "the city",
    "state_province_region": "the state or province",
    "country": "the country or region",
    "address_line_1": "the first address line",
    "address_line_2": "the second address line",
}
_WHO = {CI: "what Customer Insights calls", D365: "what Dynamics 365 calls", COMMON: "a common CRM name for"}

# CDM data types (model.json `dataType`, entity documents' `dataType` / `dataFormat`), lower-cased,
# that can hold a value of the SendGrid type. A type not named here (string, unknown, a semantic
# type) may hold anything: it is not refused.
NUMBER_TYPES = frozenset(
    {"int16", "int32", "int64", "integer", "biginteger", "smallinteger", "tinyinteger", "byte", "double", "float", "decimal"}
)
DATE_TYPES = frozenset({"date", "datetime", "datetimeoffset"})
NOT_NUMBERS = DATE_TYPES | {"boolean", "time", "guid"}
NOT_DATES = NUMBER_TYPES | {"boolean", "time", "guid"}


@dataclass(frozen=True)
class Match:
    """A suggested value for a field, and why."""

    field: str
    value: str
    why: str


def normalise(name: str) -> str:
    """A name with case, spaces and underscores ignored."""
    return re.sub(r"[\s_]+", "", name).casefold()


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to `word` (difflib, case and spacing ignored), or None if none is close."""
    by_form: dict[str, str] = {}
    for candidate in candidates:
        by_form.setdefault(normalise(candidate), candidate)
    close = difflib.get_close_matches(normalise(word), list(by_form), n=1, cutoff=0.6)
    return by_form[close[0]] if close else None


def find_column(column: str, columns: Sequence[str]) -> str | None:
    """The segment's column a definition's `column` names: the same, or the one that differs
    only in case when exactly one does (ContactMapper's rule); None otherwise."""
    if column in columns:
        return column
    folded = [c for c in columns if c.casefold() == column.casefold()]
    return folded[0] if len(folded) == 1 else None


def reserved_matches(columns: Sequence[str], wanted: Iterable[str], taken: set[str]) -> list[Match]:
    """Columns for the reserved fields `wanted`, by name; a column in `taken` (or matched once)
    is not offered again. `taken` holds normalised names and grows with each match."""
    by_form: dict[str, str] = {}
    for column in columns:
        by_form.setdefault(normalise(column), column)
    found = []
    for field in wanted:
        for form, who in RESERVED_SYNONYMS.get(field, ()):
            named = by_form.get(form)
            if named is not None and form not in taken:
                taken.add(form)
                found.append(Match(field, named, f"column '{named}' is {_WHO[who]} {LABELS[field]}"))
                break
    return found


def custom_matches(columns: Sequence[tuple[str, str]], fields: Iterable[tuple[str, str]], taken: set[str]) -> list[Match]:
    """Columns (name, CDM type) whose name is a custom field's (name, SendGrid type), case, spaces
    and underscores ignored, and whose type can feed it; `taken` as in `reserved_matches`."""
    by_form: dict[str, tuple[str, str]] = {}
    for name, data_type in columns:
        by_form.setdefault(normalise(name), (name, data_type))
    found = []
    for field, field_type in fields:
        form = normalise(field)
        column = by_form.get(form)
        if column is None or form in taken or not type_fits(column[1], field_type):
            continue
        taken.add(form)
        found.append(Match(field, column[0], f"column '{column[0]}' has the name of SendGrid {field_type} field '{field}'"))
    return found


def type_fits(data_type: str, field_type: str) -> bool:
    """Whether a column of this CDM data type can feed a custom field of this SendGrid type."""
    kind = data_type.casefold()
    if field_type == "Number":
        return kind not in NOT_NUMBERS
    if field_type == "Date":
        return kind not in NOT_DATES
    return True


def canonical_uuid(text: str) -> str | None:
    """The canonical (lower-case, hyphenated) form of a UUID, or None when `text` is not one."""
    try:
        return str(uuid.UUID(text)) if len(text) <= 45 else None
    except ValueError:
        return None


@dataclass(frozen=True)
class ListChoice:
    """What a `list_ids` / `lists` entry means: the list's id, or why there is none."""

    list_id: str | None
    name: str | None = None  # the list's name, when the entry gave it by name
    problem: str | None = None
    did_you_mean: str | None = None


def choose_list(entry: str, lists: Sequence[dict[str, Any]]) -> ListChoice:
    """A list by id (any UUID spelling) or by name: exact, else case-insensitive if that is one list."""
    canonical = canonical_uuid(entry)
    if canonical is not None:
        if any(item["id"] == canonical for item in lists):
            return ListChoice(canonical)
        return ListChoice(None, problem="no list of the SendGrid account has this id")
    named = [item for item in lists if item["name"] == entry]
    if not named:
        named = [item for item in lists if item["name"].casefold() == entry.casefold()]
    if len(named) == 1:
        return ListChoice(named[0]["id"], named[0]["name"])
    if named:
        return ListChoice(None, problem=f"{len(named)} lists of the SendGrid account have this name: give the list's id")
    close = did_you_mean(entry, [item["name"] for item in lists])
    return ListChoice(None, problem="no list of the SendGrid account has this name", did_you_mean=close)
