"""Completing a draft definition, pure: what POST /api/preview suggests and finds wrong.

A suggestion fills only what the draft leaves out: a name (from the segment's), reserved fields
(by the column names Customer Insights and CRMs use), custom fields (a column with a field's
name), and list ids for lists given by name. Privacy consent is never given for the user: its
absence is a problem. Whatever the draft sets is kept as it is and checked: unknown columns,
fields and lists (with the closest existing name), column types that cannot feed a Number or
Date field, and whatever `parse_definition` refuses. Messages name fields, and columns or lists
only when they are plain names (`shown`): no draft value goes back out otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.definitions import RESERVED_FIELD_MAX_LENGTH, is_export_name, parse_definition
from shared.errors import ExportError
from shared.sendgrid.fields import CustomField
from shared.setup import matching
from shared.source.discovery import short_reason, shown

CONSENT = (
    "set 'privacy_consent' to true to agree to send these profiles' personal data to SendGrid "
    "(out of the compliance boundary); a preview never sets it for you"
)


@dataclass(frozen=True)
class Problem:
    field: str
    message: str
    did_you_mean: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "message": self.message, "did_you_mean": self.did_you_mean}


@dataclass(frozen=True)
class Catalog:
    """What a SendGrid account has: its lists ({id, name, contact_count}) and custom fields."""

    lists: list[dict[str, Any]]
    fields: dict[str, CustomField]


@dataclass
class Completion:
    definition: dict[str, Any]
    suggestions: list[matching.Match] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # The mapping a sample is made with: reserved field -> column, custom field name -> its
    # SendGrid field and column; only entries whose field and column exist.
    reserved: dict[str, str] = field(default_factory=dict)
    custom: dict[str, tuple[CustomField, str]] = field(default_factory=dict)
    valid: bool = False

    def problem(self, field_name: str, message: str, did_you_mean: str | None = None) -> None:
        self.problems.append(Problem(field_name, message, did_you_mean))


def suggested_name(segment: str, existing: Collection[str]) -> str:
    """An export name made from the segment's, not one of `existing`."""
    base = re.sub(r"[^a-z0-9_-]+", "-", segment.casefold()).strip("-_")[:60].strip("-_") or "export"
    name, number = base, 2
    while name in existing:
        name, number = f"{base}-{number}", number + 1
    return name


def complete(
    draft: dict[str, Any],
    columns: Sequence[tuple[str, str]] | None,
    catalog: Catalog | None,
    existing: Collection[str],
) -> Completion:
    """The draft completed (see the module's docstring). `columns`: the segment's (name, CDM type),
    None when the segment was not found (its problem is the caller's); `catalog`: the account's
    lists and fields, None when they could not be read (a problem says why, elsewhere)."""
    definition = {key: value for key, value in draft.items() if key != "lists"}
    done = Completion(definition)
    if "name" not in draft:
        name = suggested_name(draft["segment"], existing)
        done.definition = {"name": name, **definition}
        done.suggestions.append(matching.Match("name", name, "made from the segment's name; an export's URL and blob name"))
    elif not is_export_name(draft["name"]):
        done.problem("name", "an export name is 1-63 characters of a-z, 0-9, '_' or '-', starting with a letter or digit")
    if columns is not None:
        _reserved(done, draft, columns)
        _custom(done, draft, columns, catalog)
    _lists(done, draft, catalog)
    if draft.get("privacy_consent") is not True:
        done.problem("privacy_consent", CONSENT)
    _parsed(done)
    return done


def _reserved(done: Completion, draft: dict[str, Any], columns: Sequence[tuple[str, str]]) -> None:
    names = [name for name, _ in columns]
    mapping: dict[str, str] = dict(draft.get("mapping", {}))
    taken = {matching.normalise(column) for column in (*mapping.values(), *draft.get("custom_fields", {}).values())}
    for field_name, column in mapping.items():
        where = f"mapping.{field_name}" if shown(field_name) == field_name else "mapping"
        if field_name not in RESERVED_FIELD_MAX_LENGTH:
            close = matching.did_you_mean(field_name, RESERVED_FIELD_MAX_LENGTH)
            done.problem(where, f"'{shown(field_name)}' is not a SendGrid reserved field (others go in custom_fields)", close)
        elif (found := matching.find_column(column, names)) is None:
            done.problem(where, f"column '{shown(column)}' is not in the segment", matching.did_you_mean(column, names))
        else:
            done.reserved[field_name] = found
    wanted = [name for name in RESERVED_FIELD_MAX_LENGTH if name not in mapping]
    for match in matching.reserved_matches(names, wanted, taken):
        mapping[match.field] = match.value
        done.reserved[match.field] = match.value
        done.suggestions.append(matching.Match(f"mapping.{match.field}", match.value, match.why))
    done.definition["mapping"] = mapping
    if "email" not in mapping:
        close = matching.did_you_mean("email", names)
        done.problem("mapping.email", "no column is mapped to email, and none is named like an email column: map one", close)


def _custom(done: Completion, draft: dict[str, Any], columns: Sequence[tuple[str, str]], catalog: Catalog | None) -> None:
    names = [name for name, _ in columns]
    types = dict(columns)
    wanted: dict[str, str] = dict(draft.get("custom_fields", {}))
    if catalog is None:
        for field_name in wanted:
            done.problem("custom_fields", f"custom field '{shown(field_name)}' not checked: the SendGrid account was not read")
        return
    by_fold = {name.casefold(): found for name, found in catalog.fields.items()}
    for field_name, column in wanted.items():
        where = f"custom_fields.{field_name}" if shown(field_name) == field_name else "custom_fields"
        sendgrid_field = catalog.fields.get(field_name) or by_fold.get(field_name.casefold())
        found = matching.find_column(column, names)
        if sendgrid_field is None:
            close = matching.did_you_mean(field_name, catalog.fields)
            done.problem(where, f"the SendGrid account has no custom field '{shown(field_name)}'", close)
        elif found is None:
            done.problem(where, f"column '{shown(column)}' is not in the segment", matching.did_you_mean(column, names))
        else:
            done.custom[field_name] = (sendgrid_field, found)
            if not matching.type_fits(types[found], sendgrid_field.field_type):
                done.problem(
                    where,
                    f"column '{shown(found)}' is of CDM type {types[found]}, which cannot feed "
                    f"{sendgrid_field.field_type} field '{shown(sendgrid_field.name)}': its rows would be rejected",
                )
    taken = {matching.normalise(c) for c in (*wanted.values(), *done.definition.get("mapping", {}).values())}
    chosen = {f.name.casefold() for f, _ in done.custom.values()} | {name.casefold() for name in wanted}
    offered = [(f.name, f.field_type) for f in catalog.fields.values() if f.name.casefold() not in chosen]
    offered = [(name, kind) for name, kind in offered if name not in RESERVED_FIELD_MAX_LENGTH]
    for match in matching.custom_matches(columns, offered, taken):
        wanted[match.field] = match.value
        done.custom[match.field] = (catalog.fields[match.field], match.value)
        done.suggestions.append(matching.Match(f"custom_fields.{match.field}", match.value, match.why))
    if wanted:
        done.definition["custom_fields"] = wanted


def _lists(done: Completion, draft: dict[str, Any], catalog: Catalog | None) -> None:
    entries = [(f"{key}[{index}]", entry) for key in ("list_ids", "lists") for index, entry in enumerate(draft.get(key, []))]
    ids: list[str] = []
    for where, entry in entries:
        canonical = matching.canonical_uuid(entry)
        if catalog is None:
            if canonical is None:
                done.problem(where, f"list '{shown(entry)}' not resolved: the SendGrid account was not read")
            elif canonical not in ids:
                ids.append(canonical)
            continue
        choice = matching.choose_list(entry, catalog.lists)
        if choice.list_id is None:
            done.problem(where, choice.problem or "no such list", choice.did_you_mean)
            continue
        if choice.list_id not in ids:
            ids.append(choice.list_id)
        if choice.name is not None or choice.list_id != entry:
            why = f"the list named '{choice.name}'" if choice.name is not None else "the list's id as SendGrid writes it"
            done.suggestions.append(matching.Match(where, choice.list_id, why))
    done.definition.pop("list_ids", None)
    if ids:
        done.definition["list_ids"] = ids
    elif not entries:
        done.problem(
            "list_ids", "name at least one SendGrid list, by id in 'list_ids' or by name in 'lists' (GET /api/sendgrid/lists)"
        )


_FIELD = re.compile(r"^export '[^']*': '([a-z_]+)")


def _parsed(done: Completion) -> None:
    """What parse_definition says: `valid` as the definition stands; any problem it finds with
    consent given that this module has not already named (consent is never given for real)."""
    try:
        parse_definition(done.definition)
        done.valid = True
    except ExportError:
        done.valid = False
    try:
        parse_definition({**done.definition, "privacy_consent": True})
    except ExportError as exc:
        match = _FIELD.match(exc.message)
        where = match.group(1) if match else "name" if exc.message.startswith("EXPORT_DEFINITIONS[0].name") else "definition"
        covered = (f"{where}.", f"{where}[", *(("lists[",) if where == "list_ids" else ()))
        if not any(p.field == where or p.field.startswith(covered) for p in done.problems):
            done.problem(where, short_reason(exc.message, (str(done.definition.get("name")), where)))
