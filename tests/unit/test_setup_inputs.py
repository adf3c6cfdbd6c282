"""The set-up requests' input: every cap, every refusal a 400 that names the key, not its value."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.errors import ExportError
from shared.setup import inputs


def body(**draft: Any) -> bytes:
    return json.dumps({"source_folder": "ci/export", "segment": "Seg", **draft}).encode()


def refused(call: Any, *args: Any) -> str:
    with pytest.raises(ExportError) as caught:
        call(*args)
    assert caught.value.code == "bad_request"
    return caught.value.message


def test_sources_query_defaults_and_caps() -> None:
    assert inputs.sources_query({}) == (20, None)
    assert inputs.sources_query({"limit": "100", "continuation": "w1.abc_-", "code": "key"}) == (100, "w1.abc_-")
    for limit in ("0", "101", "1000000", "-1", "1.5", "²", "ten"):
        assert "'limit'" in refused(inputs.sources_query, {"limit": limit})
    for token in ("a b", "<x>", "w1." + "a" * 2000):
        assert token not in refused(inputs.sources_query, {"continuation": token})
    assert "verbose" in refused(inputs.sources_query, {"verbose": "1"})
    assert "<b>" not in refused(inputs.sources_query, {"<b>": "1"})


def test_export_query_takes_an_export_name_only() -> None:
    assert inputs.export_query({}) is None
    assert inputs.export_query({"export": "vip", "code": "k"}) == "vip"
    assert "VIP\n" not in refused(inputs.export_query, {"export": "VIP\n"})
    refused(inputs.export_query, {"account": "x"})


def test_a_preview_request_takes_a_draft_and_its_options() -> None:
    request = inputs.preview_request(body(lists=["Newsletter"], show_values=True, sample_size=0, rows=10_000), {})
    assert request.draft == {"source_folder": "ci/export", "segment": "Seg", "lists": ["Newsletter"]}
    assert (request.show_values, request.sample_size, request.rows) == (True, 0, 10_000)
    defaults = inputs.preview_request(body(), {"code": "key"})
    assert (defaults.show_values, defaults.sample_size, defaults.rows) == (False, 5, 1000)


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (body(sample_size=21), "'sample_size'"),
        (body(sample_size=True), "'sample_size'"),
        (body(rows=0), "'rows'"),
        (body(rows=10_001), "'rows'"),
        (body(show_values=1), "'show_values'"),
        (body(typo=1), "typo"),
        (body(mapping={"email": 3}), "'mapping'"),
        (body(mapping={"x" * 101: "EMail"}), "'mapping'"),
        (body(custom_fields={str(i): "c" for i in range(101)}), "'custom_fields'"),
        (body(list_ids="0f9c3a4e-1b2d-4c5e-8f70-123456789abc"), "'list_ids'"),
        (body(lists=["ok", ""]), "'lists'"),
        (body(segment="  "), "'segment'"),
        (body(source_folder="a\r\nb"), "'source_folder'"),
        (json.dumps({"segment": "Seg"}).encode(), "'source_folder'"),
        (b'{"source_folder": "a", "segment": "b", "segment": "c"}', "twice"),
        (b"[]", "JSON object"),
        (b"\xff", "JSON object"),
        (b"1" * 5000, "JSON object"),
        (body(pad="x" * inputs.MAX_PREVIEW_BODY_BYTES), "bytes"),
    ],
)
def test_a_bad_preview_body_is_refused_naming_the_key(data: bytes, named: str) -> None:
    assert named in refused(inputs.preview_request, data, {})


def test_a_preview_takes_no_query_parameter_but_the_function_key() -> None:
    refused(inputs.preview_request, body(), {"dry_run": "true"})
