"""The walk's continuation token and a folder's problem text, pure."""

from __future__ import annotations

import base64
import json

import pytest

from shared.errors import ExportError
from shared.source import discovery
from shared.source.walk import Limits, Walk, _Frame, is_metadata


def token_of(state: object) -> str:
    return "w1." + base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")


def test_a_token_carries_the_walks_place_and_comes_back_the_same() -> None:
    walk = Walk("CustomerInsights_x/", [_Frame("2!88!marker", 3), _Frame(None, 1)])
    token = walk.token()
    assert token is not None and token.startswith("w1.") and len(token) < 200
    back = Walk.resume(token)
    assert (back.prefix, back.frames) == (walk.prefix, walk.frames)
    assert Walk("", []).token() is None  # the walk is over


@pytest.mark.parametrize(
    "state",
    [
        {"p": "a/", "f": [[None, 0]]},  # a folder one level deeper than its frames
        {"p": "", "f": []},
        {"p": "a", "f": [[None, 0], [None, 0]]},  # not a folder name
        {"p": "", "f": [[None, -1]]},
        {"p": "", "f": [[None, True]]},
        {"p": "", "f": [["", 0]]},
        {"p": "", "f": [[None, 0, 0]]},
        {"p": "", "f": [[None, 0]], "x": 1},
        {"p": "a/" * 11, "f": [[None, 0]] * 12},  # deeper than the walk goes
        [1, 2],
    ],
)
def test_a_token_the_walk_did_not_write_is_refused(state: object) -> None:
    with pytest.raises(ValueError):
        Walk.resume(token_of(state))


@pytest.mark.parametrize("token", ["", "w1.", "w1.!!!", "w2." + token_of({"p": "", "f": [[None, 0]]})[3:], "w1." + "A" * 5000])
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(ValueError):
        Walk.resume(token)


def test_a_walk_too_deep_in_long_names_for_a_token_says_so() -> None:
    long = "x" * 900
    with pytest.raises(ExportError, match="too long"):
        Walk(f"{long}/{long}/", [_Frame(None, 0), _Frame(None, 0), _Frame(None, 0)]).token()


def test_metadata_files_are_model_json_and_manifests() -> None:
    assert is_metadata("model.json") and is_metadata("default.manifest.cdm.json") and is_metadata("x.manifest.cdm.json")
    assert not is_metadata(".manifest.cdm.json") and not is_metadata("model.json.bak") and not is_metadata("Seg.cdm.json")


def test_a_fresh_budget_always_fits_one_folder() -> None:
    Limits()
    bad: dict[str, int]
    for bad in ({"request_pages": 8}, {"request_bytes": 1}, {"request_downloads": 10}, {"page_size": 0}):
        with pytest.raises(ValueError):
            Limits(**bad)


def test_a_problem_names_files_and_entities_but_blanks_what_the_file_held() -> None:
    message = "model.json partition 2 columnHeaders must be true or false, not 'jane@example.com'"
    assert discovery.short_reason(message) == "model.json partition 2 columnHeaders must be true or false, not '…'"
    kept = discovery.short_reason("model.json entity 'Customers' has no attributes", ("Customers",))
    assert kept == "model.json entity 'Customers' has no attributes"
    assert discovery.short_reason("entity '=cmd|x' bad", ("=cmd|x",)) == "entity '…' bad"
    assert "\n" not in discovery.short_reason("a\nb") and len(discovery.short_reason("x" * 500)) == 200
    assert discovery.shown("Contact.cdm.json") == "Contact.cdm.json" and discovery.shown("<b>") == "…"
