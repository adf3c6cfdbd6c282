"""The set-up requests' input, checked, pure: query strings (`limit`, `continuation`, `export`)
and the preview's body. Every cap a request could raise is here. A bad input is a 400
(`bad_request`) whose message names the parameter or key, never its value: nothing a browser, a
spreadsheet or a log could misread goes back out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from shared.definitions import ExportDefinition, is_export_name
from shared.errors import ExportError
from shared.source.walk import BAD_TOKEN, MAX_TOKEN_CHARS

HOST_PARAMETERS = frozenset({"code"})  # the function key, checked by the Functions host
DEFAULT_SOURCES, MAX_SOURCES = 20, 100
MAX_PREVIEW_BODY_BYTES = 32 * 1024  # a draft definition is a few hundred bytes
DEFAULT_SAMPLE, MAX_SAMPLE = 5, 20
DEFAULT_ROWS, MAX_ROWS = 1000, 10_000
MAX_TEXT_CHARS = 1024  # a folder, segment, column or list name
MAX_ENTRIES = 100  # entries of mapping, custom_fields, list_ids, lists
OPTIONS = ("show_values", "sample_size", "rows")
# A draft is a definition (its keys, all optional here but source_folder and segment) plus
# `lists`: SendGrid lists by name (or id), resolved into list_ids.
DRAFT_KEYS = frozenset(item.name for item in fields(ExportDefinition)) | {"lists"}
_KEY = re.compile(r"[A-Za-z0-9_]{1,40}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _bad(message: str) -> ExportError:
    return ExportError("bad_request", message)


def _named(keys: list[str]) -> str:
    """Keys for a message: those that are plain names, the count of the others."""
    plain = [k for k in sorted(keys) if _KEY.fullmatch(k)]
    others = len(keys) - len(plain)
    return ", ".join(plain + ([f"{others} other key(s)"] if others else []))


def refuse_unknown(query: Mapping[str, str], allowed: frozenset[str]) -> None:
    unknown = [key for key in query if key not in allowed | HOST_PARAMETERS]
    if unknown:
        allowed_text = ", ".join(sorted(allowed)) or "none"
        raise _bad(f"unknown query parameter(s) {_named(unknown)}; allowed: {allowed_text}")


def sources_query(query: Mapping[str, str]) -> tuple[int, str | None]:
    """GET /api/sources: `limit` (1 to MAX_SOURCES, default DEFAULT_SOURCES) and `continuation`."""
    refuse_unknown(query, frozenset({"limit", "continuation"}))
    text = query.get("limit", str(DEFAULT_SOURCES))
    if not (text.isascii() and text.isdigit() and len(text) <= 3 and 1 <= int(text) <= MAX_SOURCES):
        raise _bad(f"'limit' must be a whole number from 1 to {MAX_SOURCES}")
    continuation = query.get("continuation")
    if continuation is not None and (len(continuation) > MAX_TOKEN_CHARS or not re.fullmatch(r"[A-Za-z0-9._-]+", continuation)):
        raise _bad(BAD_TOKEN)
    return int(text), continuation


def export_query(query: Mapping[str, str]) -> str | None:
    """GET /api/sendgrid/...: `export`, the export whose SendGrid account to read (None: the default)."""
    refuse_unknown(query, frozenset({"export"}))
    name = query.get("export")
    if name is not None and not is_export_name(name):
        raise _bad("'export' must be an export name: 1-63 characters of a-z, 0-9, '_' or '-'")
    return name


@dataclass(frozen=True)
class PreviewRequest:
    draft: dict[str, Any]  # the definition's keys as given, `lists` included
    show_values: bool = False
    sample_size: int = DEFAULT_SAMPLE
    rows: int = DEFAULT_ROWS


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise _bad("the request body names the same key twice")
    return dict(pairs)


def _whole(body: dict[str, Any], key: str, default: int, top: int, low: int) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= top:
        raise _bad(f"'{key}' must be a whole number from {low} to {top}")
    return value


def _text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_TEXT_CHARS and not _CONTROL.search(value)


def _check_draft(draft: dict[str, Any]) -> None:
    for key in ("source_folder", "segment"):
        if not _text(draft.get(key)) or not draft[key].strip():
            raise _bad(f"'{key}' is required: a non-empty string of at most {MAX_TEXT_CHARS} characters")
    for key in ("mapping", "custom_fields"):
        value = draft.get(key, {})
        if not isinstance(value, dict) or len(value) > MAX_ENTRIES:
            raise _bad(f"'{key}' must be an object of at most {MAX_ENTRIES} field names to column names")
        if not all(_text(field) and len(field) <= 100 and _text(column) for field, column in value.items()):
            raise _bad(f"'{key}' must map field names (1-100 characters) to column names (strings)")
    for key in ("list_ids", "lists"):
        value = draft.get(key, [])
        if not isinstance(value, list) or len(value) > MAX_ENTRIES or not all(_text(item) for item in value):
            raise _bad(f"'{key}' must be an array of at most {MAX_ENTRIES} list ids or names (strings)")


def preview_request(body: bytes, query: Mapping[str, str]) -> PreviewRequest:
    """POST /api/preview: a draft definition and the preview's options, in a JSON object."""
    refuse_unknown(query, frozenset())
    if len(body) > MAX_PREVIEW_BODY_BYTES:
        raise _bad(f"the request body is over {MAX_PREVIEW_BODY_BYTES} bytes")
    try:
        parsed = json.loads(body, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError):  # bad JSON or UTF-8, a 5,000-digit number, deep nesting
        raise _bad('the request body must be a JSON object, e.g. {"source_folder": "...", "segment": "..."}') from None
    if not isinstance(parsed, dict):
        raise _bad("the request body must be a JSON object")
    unknown = [key for key in parsed if key not in DRAFT_KEYS and key not in OPTIONS]
    if unknown:
        raise _bad(f"unknown key(s) {_named(unknown)}; a draft takes a definition's keys, 'lists' and {', '.join(OPTIONS)}")
    show = parsed.get("show_values", False)
    if not isinstance(show, bool):
        raise _bad("'show_values' must be true or false")
    sample_size = _whole(parsed, "sample_size", DEFAULT_SAMPLE, MAX_SAMPLE, 0)
    rows = _whole(parsed, "rows", DEFAULT_ROWS, MAX_ROWS, 1)
    draft = {key: value for key, value in parsed.items() if key in DRAFT_KEYS}
    _check_draft(draft)
    return PreviewRequest(draft, show, sample_size, rows)
