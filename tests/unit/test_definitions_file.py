"""The definitions file: read from the app root (exports.json beside host.json by default, or the
path EXPORT_DEFINITIONS_FILE names), optional when it is the default, refused when the path leads
out of the app; the EXPORT_DEFINITIONS setting wins over it; every error names the file, and a
JSON error its line. The file ships with the app (.funcignore)."""

from __future__ import annotations

import fnmatch
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, definition

from shared.settings import DEFAULT_DEFINITIONS_FILE, SETTINGS, SettingsError, load_definitions, load_settings

BASE = {
    "SOURCE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
    "SOURCE_CONTAINER": "customer-insights",
    "SENDGRID_API_KEY": "SG.local",
}


def write(root: Path, relative: str, content: Any) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content, indent=2), encoding="utf-8")
    return path


def test_the_default_file_is_exports_json_in_the_app_root(tmp_path: Path) -> None:
    write(tmp_path, "host.json", {"version": "2.0"})
    write(tmp_path, "exports.json", {"$schema": "./schema/exports.schema.json", "exports": [definition()]})
    settings = load_settings(BASE, app_root=tmp_path)
    assert settings.definitions_from == "exports.json" and list(settings.definitions) == ["vip"]
    assert settings.definitions["vip"] == definition()  # raw, as in the file; `$schema` is not a definition


def test_the_app_root_is_the_folder_of_host_json() -> None:
    from shared.settings import APP_ROOT  # noqa: PLC0415

    assert (APP_ROOT / "host.json").is_file() and APP_ROOT == ROOT
    assert DEFAULT_DEFINITIONS_FILE == "exports.json"


def test_a_bare_array_is_read_too(tmp_path: Path) -> None:
    write(tmp_path, "exports.json", [definition(), definition(name="promo")])
    assert list(load_settings(BASE, app_root=tmp_path).definitions) == ["vip", "promo"]


def test_a_custom_path_inside_the_app_root(tmp_path: Path) -> None:
    write(tmp_path, "config/prod exports.json", {"exports": [definition(name="prod")]})
    write(tmp_path, "exports.json", {"exports": [definition(name="default")]})
    settings = load_settings({**BASE, "EXPORT_DEFINITIONS_FILE": "config/prod exports.json"}, app_root=tmp_path)
    assert settings.definitions_from == "config/prod exports.json" and list(settings.definitions) == ["prod"]
    # ./ and a detour that stays inside are the same file.
    again = load_settings({**BASE, "EXPORT_DEFINITIONS_FILE": "./config/../config/prod exports.json"}, app_root=tmp_path)
    assert again.definitions_from == "config/prod exports.json"


def test_the_setting_wins_over_the_file(tmp_path: Path) -> None:
    write(tmp_path, "exports.json", {"exports": [definition(name="from-file")]})
    env = {**BASE, "EXPORT_DEFINITIONS": json.dumps([definition(name="from-setting")])}
    settings = load_settings(env, app_root=tmp_path)
    assert settings.definitions_from == "EXPORT_DEFINITIONS" and list(settings.definitions) == ["from-setting"]
    # Even a broken file is not read then...
    write(tmp_path, "exports.json", "{ not json")
    assert list(load_settings(env, app_root=tmp_path).definitions) == ["from-setting"]
    # ...and a blank setting is no setting: the file is read.
    write(tmp_path, "exports.json", {"exports": [definition(name="from-file")]})
    blank = load_settings({**BASE, "EXPORT_DEFINITIONS": "  "}, app_root=tmp_path)
    assert blank.definitions_from == "exports.json" and list(blank.definitions) == ["from-file"]


def test_the_setting_takes_the_files_form_too() -> None:
    env = {**BASE, "EXPORT_DEFINITIONS": json.dumps({"$schema": "x", "exports": [definition()]})}
    assert list(load_settings(env).definitions) == ["vip"]


def test_no_setting_and_no_file_is_no_exports_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="shared.settings"):
        settings = load_settings(BASE, app_root=tmp_path)
    assert settings.definitions == {} and settings.definitions_from is None
    assert "no export definitions" in caplog.text and "exports.json" in caplog.text


def test_a_file_the_setting_names_must_be_there(tmp_path: Path) -> None:
    with pytest.raises(
        SettingsError, match=r"EXPORT_DEFINITIONS_FILE.*config/prod\.json|config/prod\.json.*EXPORT_DEFINITIONS_FILE"
    ):
        load_settings({**BASE, "EXPORT_DEFINITIONS_FILE": "config/prod.json"}, app_root=tmp_path)
    (tmp_path / "exports.json").mkdir()  # a folder where the default file would be
    with pytest.raises(SettingsError, match="exports.json"):
        load_settings(BASE, app_root=tmp_path)


@pytest.mark.parametrize("path", ["../exports.json", "../../etc/passwd", "/etc/passwd", "config/../../outside.json", ".."])
def test_a_path_out_of_the_app_root_is_refused(tmp_path: Path, path: str) -> None:
    root = tmp_path / "app"
    root.mkdir()
    write(tmp_path, "exports.json", {"exports": [definition()]})  # beside the app: never read
    with pytest.raises(SettingsError, match="EXPORT_DEFINITIONS_FILE") as caught:
        load_settings({**BASE, "EXPORT_DEFINITIONS_FILE": path}, app_root=root)
    assert "app root" in str(caught.value)
    # Refused even when EXPORT_DEFINITIONS wins: a bad setting is a bad setting.
    with pytest.raises(SettingsError, match="EXPORT_DEFINITIONS_FILE"):
        load_settings({**BASE, "EXPORT_DEFINITIONS_FILE": path, "EXPORT_DEFINITIONS": "[]"}, app_root=root)


def test_a_link_out_of_the_app_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    outside = write(tmp_path, "secret.json", {"exports": [definition()]})
    os.symlink(outside, root / "exports.json")
    with pytest.raises(SettingsError, match="app root"):
        load_settings(BASE, app_root=root)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{\n  "exports": [\n    {"name": "vip",}\n  ]\n}\n', r"exports\.json.*not valid JSON.*line 3"),
        ("[\n" + json.dumps(definition()) + "\n", r"exports\.json.*not valid JSON.*line 3"),
        ('{"exports": [], "export": []}', r"exports\.json.*'export'"),
        ('{"$schema": "./schema/exports.schema.json"}', r"exports\.json.*\"exports\""),
        ('{"exports": {}}', r"exports\.json"),
        ('"vip"', r"exports\.json \(EXPORT_DEFINITIONS_FILE\) must be a JSON array"),
        ('[{"name": "vip", "name": "promo"}]', r"exports\.json.*names 'name' twice"),
        ('[{"name": "vip", "max_profiles": NaN}]', r"exports\.json.*NaN is not a JSON number"),
        ("[" + "1" * 5000 + "]", r"exports\.json.*huge number"),
        (
            json.dumps({"exports": [definition(), definition()]}),
            r"exports\.json \(EXPORT_DEFINITIONS_FILE\) has two exports named 'vip'",
        ),
        (
            json.dumps({"exports": [definition(name="Bad Name")]}),
            r"exports\.json \(EXPORT_DEFINITIONS_FILE\): exports\[0\]\.name",
        ),
        (json.dumps([{"segment": "x"}]), r"exports\.json \(EXPORT_DEFINITIONS_FILE\)\[0\]\.name"),
        ("", r"exports\.json.*empty"),
    ],
)
def test_a_broken_file_is_a_settings_error_naming_the_file(tmp_path: Path, content: str, expected: str) -> None:
    write(tmp_path, "exports.json", content)
    with pytest.raises(SettingsError, match=expected) as caught:
        load_settings(BASE, app_root=tmp_path)
    # The health probe names the setting at fault by the longest declared name in the message.
    named = next(n for n in sorted(SETTINGS, key=len, reverse=True) if n in str(caught.value))
    assert named == "EXPORT_DEFINITIONS_FILE"


def test_bytes_that_are_not_utf8_are_named(tmp_path: Path) -> None:
    (tmp_path / "exports.json").write_bytes(b'[{"name": "vip", "display_name": "caf\xe9"}]')
    with pytest.raises(SettingsError, match=r"exports\.json.*not UTF-8"):
        load_settings(BASE, app_root=tmp_path)


def test_a_byte_order_mark_is_fine(tmp_path: Path) -> None:
    (tmp_path / "exports.json").write_bytes(b"\xef\xbb\xbf" + json.dumps([definition()]).encode())
    assert list(load_definitions({}, tmp_path)[0]) == ["vip"]


def test_one_invalid_definition_does_not_stop_the_others(tmp_path: Path) -> None:
    write(tmp_path, "exports.json", {"exports": [definition(), definition(name="broken", list_ids=["nope"])]})
    assert list(load_settings(BASE, app_root=tmp_path).definitions) == ["vip", "broken"]  # checked when used


def test_the_setting_is_declared_and_documented() -> None:
    assert "EXPORT_DEFINITIONS_FILE" in SETTINGS and not SETTINGS["EXPORT_DEFINITIONS_FILE"].local_only
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "| `EXPORT_DEFINITIONS_FILE` |" in readme


def ignored_by_funcignore(path: str) -> bool:
    """Whether a .funcignore pattern (gitignore syntax, as the Core Tools and azd read it) leaves
    `path` (relative, '/'-separated) out of the deployed package."""
    ignored = False
    for line in (ROOT / ".funcignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        anchored = pattern.startswith("/") or "/" in pattern
        pattern = pattern.lstrip("/")
        parts = path.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hit = (
            any(fnmatch.fnmatch(c, pattern) for c in candidates) if anchored else any(fnmatch.fnmatch(p, pattern) for p in parts)
        )
        if hit:
            ignored = not negated
    return ignored


def test_the_definitions_file_ships_with_the_app() -> None:
    """azd zips the app folder minus what .funcignore names (azd >= 1.18, Azure/azure-dev#5383; the
    Core Tools always did): exports.json beside host.json must not be named there."""
    assert not ignored_by_funcignore(DEFAULT_DEFINITIONS_FILE)
    assert not ignored_by_funcignore("host.json") and not ignored_by_funcignore("shared/settings.py")
    assert ignored_by_funcignore("tests/unit/test_settings.py") and ignored_by_funcignore("tools/demo.py")  # the check works
    gitignored = (ROOT / ".gitignore").read_text().split()
    assert DEFAULT_DEFINITIONS_FILE not in gitignored  # committed with the app, like host.json
