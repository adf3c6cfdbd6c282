"""The README is the users' reference: its settings table names exactly the settings the code
declares (`SETTINGS` in shared/settings.py), and its definitions table exactly the fields a
definition may have (the fields of `ExportDefinition`, which are the keys `parse_definition`
accepts: shared/definitions.py builds its allowed keys from them). A new setting or field fails
here until the README documents it; a removed one fails until the README drops it. The README
also stays short."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import fields
from pathlib import Path

from shared.definitions import RESERVED_FIELD_MAX_LENGTH, ExportDefinition
from shared.settings import SETTINGS

README = Path(__file__).resolve().parents[2] / "README.md"
MAX_LINES = 300
SETTINGS_HEADING = "## Settings"
DEFINITIONS_HEADING = "## Export definitions"
_BACKTICKED = re.compile(r"`([^`]+)`")
_SEPARATOR = re.compile(r"\|(\s*:?-+:?\s*\|)+")


def section(text: str, heading: str) -> str:
    """The lines under `heading` (a `## ` line), up to the next `## ` heading."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == heading]
    assert len(starts) == 1, f"README.md must have one '{heading}' section, found {len(starts)}"
    body: list[str] = []
    for line in lines[starts[0] + 1 :]:
        if line.startswith("## "):
            break
        body.append(line)
    return "\n".join(body)


def first_column_names(text: str) -> list[str]:
    """The names in backticks in the first column of the first Markdown table in `text`, below
    its header row."""
    rows: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("|"):
            rows.append(line.strip())
        elif rows:
            break
    assert len(rows) >= 2 and _SEPARATOR.fullmatch(rows[1]), "no Markdown table (header and separator rows) found"
    names: list[str] = []
    for row in rows[2:]:
        first_cell = row.split("|")[1]
        names.extend(_BACKTICKED.findall(first_cell))
    return names


def differences(declared: set[str], documented: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(declared but not documented, documented but not declared, documented twice)."""
    twice = sorted(name for name, count in Counter(documented).items() if count > 1)
    return sorted(declared - set(documented)), sorted(set(documented) - declared), twice


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def definition_fields() -> set[str]:
    return {item.name for item in fields(ExportDefinition)}


def test_readme_is_at_most_300_lines() -> None:
    count = len(readme_text().splitlines())
    assert count <= MAX_LINES, f"README.md has {count} lines; keep it to {MAX_LINES} and move the rest to docs/"


def test_settings_table_names_every_declared_setting() -> None:
    documented = first_column_names(section(readme_text(), SETTINGS_HEADING))
    missing, unknown, twice = differences(set(SETTINGS), documented)
    assert missing == [], f"settings declared in shared/settings.py but not in README's table: {missing}"
    assert unknown == [], f"README's settings table names settings the code does not declare: {unknown}"
    assert twice == [], f"README's settings table names these twice: {twice}"


def test_definitions_table_names_every_definition_field() -> None:
    documented = first_column_names(section(readme_text(), DEFINITIONS_HEADING))
    missing, unknown, twice = differences(definition_fields(), documented)
    assert missing == [], f"definition fields in shared/definitions.py but not in README's table: {missing}"
    assert unknown == [], f"README's definitions table names fields a definition may not have: {unknown}"
    assert twice == [], f"README's definitions table names these twice: {twice}"


def test_definitions_table_names_every_reserved_field_mapping_takes() -> None:
    rows = [line for line in section(readme_text(), DEFINITIONS_HEADING).splitlines() if line.startswith("| `mapping` |")]
    assert len(rows) == 1, "README's definitions table must have one `mapping` row"
    named = set(_BACKTICKED.findall(rows[0]))
    missing = sorted(set(RESERVED_FIELD_MAX_LENGTH) - named)
    assert missing == [], f"README's `mapping` row does not name these SendGrid reserved fields: {missing}"


def test_a_row_dropped_from_the_readme_is_noticed() -> None:
    """The checks above can fail: without one setting's row, or with a stray one, the same parse
    and comparison report it."""
    text = section(readme_text(), SETTINGS_HEADING)
    dropped = "RUN_LEASE_SECONDS"
    without = "\n".join(line for line in text.splitlines() if not line.startswith(f"| `{dropped}` |"))
    assert differences(set(SETTINGS), first_column_names(without))[0] == [dropped]
    stray = text.replace(f"| `{dropped}` |", "| `NOT_A_SETTING` |")
    assert differences(set(SETTINGS), first_column_names(stray))[:2] == ([dropped], ["NOT_A_SETTING"])


def test_the_table_parser_reads_first_columns_only() -> None:
    text = "intro\n\n| name | meaning |\n|---|---|\n| `A` | see `B` |\n| `C`, `D` | x |\n\nafter\n\n| `E` | y |\n"
    assert first_column_names(text) == ["A", "C", "D"]
