"""Checking a definitions file (exports.json) without any app setting: the way the app reads it,
each definition's own checks, and the JSON Schema (when jsonschema is installed)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.definitions import definitions_file_schema, parse_definition
from shared.errors import ExportError
from shared.settings import SettingsError, parse_definitions_document, read_definitions_file


def _json_path(parts: Sequence[object]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(the file)"


def _schema_message(error: Any) -> str:
    """jsonschema's message, but a pattern's regular expression is not shown: it helps nobody."""
    if error.validator == "pattern":
        return f"{error.instance!r:.80} is not in the form this field takes"
    return str(error.message)


def schema_problems(document: Any) -> list[str] | None:
    """What the JSON Schema says about a parsed definitions file: one line per error, naming where
    (exports[0].list_ids[1]); None when jsonschema is not installed (requirements-dev.txt)."""
    try:
        import jsonschema  # noqa: PLC0415 - a development tool, not a runtime package
    except ImportError:
        return None
    validator = jsonschema.Draft7Validator(definitions_file_schema())
    if isinstance(document, dict) and isinstance(document.get("exports"), list) or isinstance(document, list):
        # Each definition on its own, so an error names its field (the whole file's oneOf would
        # only say "not valid under any of the given schemas").
        items = document["exports"] if isinstance(document, dict) else document
        prefix: list[object] = ["exports"] if isinstance(document, dict) else []
        one = jsonschema.Draft7Validator({"$ref": "#/definitions/definition", "definitions": validator.schema["definitions"]})
        found = [
            f"{_json_path([*prefix, index, *error.absolute_path])}: {_schema_message(error)}"
            for index, item in enumerate(items)
            for error in sorted(one.iter_errors(item), key=lambda e: list(map(str, e.absolute_path)))
        ]
        if found or validator.is_valid(document):
            return found
    return [f"{_json_path(list(error.absolute_path))}: {_schema_message(error)}" for error in validator.iter_errors(document)]


def validate_file(path: Path) -> dict[str, Any]:
    """A definitions file checked as the app reads it (the parser) and against the JSON Schema:
    {"file", "valid", "problem" (the file as a whole), "exports": [{"name", "valid", "problem"}],
    "schema": {"checked", "errors"}}. Needs no app setting."""
    result: dict[str, Any] = {"file": str(path), "valid": False, "problem": None, "exports": []}
    result["schema"] = {"checked": False, "errors": []}
    label = path.name
    try:
        text = read_definitions_file(path, label)
        definitions = parse_definitions_document(text, label)
    except SettingsError as exc:
        result["problem"] = str(exc)
        try:  # what the schema says too, when the file is JSON at all
            document = json.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError, RecursionError):
            return result
    else:
        document = json.loads(text)
        for name, raw in definitions.items():
            try:
                parse_definition(raw)
            except ExportError as exc:
                result["exports"].append({"name": name, "valid": False, "problem": exc.to_dict()})
            else:
                result["exports"].append({"name": name, "valid": True, "problem": None})
    errors = schema_problems(document)
    result["schema"] = {"checked": errors is not None, "errors": errors or []}
    result["valid"] = result["problem"] is None and all(e["valid"] for e in result["exports"]) and not errors
    return result
