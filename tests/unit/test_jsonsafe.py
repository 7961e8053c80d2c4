"""JSON from outside is refused, as not JSON, before `json.loads` would recurse deep enough to starve finalizers."""

from __future__ import annotations

import json

import pytest

from shared.jsonsafe import _TOKEN, MAX_DEPTH, TooDeep, loads, too_deep


def nested(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


def test_a_document_within_the_depth_is_parsed_as_json_loads_parses_it():
    for text in (nested(MAX_DEPTH), "[" * MAX_DEPTH + "]" * MAX_DEPTH, '{"value": [{"k": "v"}]}', "3", '"x"'):
        assert loads(text) == json.loads(text)
        assert loads(text.encode("utf-8")) == json.loads(text)


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 1_000, 40_000, 1_000_000])
def test_a_deeper_document_is_refused_before_json_loads_recurses(levels):
    for text in (nested(levels), "[" * levels + "]" * levels, "[" * levels):  # closed or not
        with pytest.raises(TooDeep):  # json.loads would raise RecursionError (or recurse 1,000 frames) instead
            loads(text)
    assert isinstance(TooDeep("x"), ValueError)  # every caller already treats it as text that is not JSON


def test_brackets_inside_strings_do_not_count():
    text = json.dumps({"k": "[" * 10_000, "e": '\\"[' * 500, "b": "{" * 300})
    assert not too_deep(text) and loads(text)["k"] == "[" * 10_000


@pytest.mark.parametrize("text", ['"' + '\\"' * 100 + "\\", '"' * 200, '["' + "\\" * 201, "[" * 200 + '"\\' * 100])
def test_the_scan_is_linear_whatever_the_text_holds(text):
    """Escaped quotes to the end, a trailing backslash, an unterminated string: a token matches wherever a quote or
    a bracket stands, so the scan never fails and restarts (which would make it quadratic in the text)."""
    for position, char in enumerate(text):
        if char in '"[]{}':
            assert _TOKEN.match(text, position) is not None, position
    with pytest.raises(ValueError):
        loads(text)


def test_text_that_is_not_utf8_is_a_value_error():
    with pytest.raises(ValueError):
        loads(b"\xff\xfe[]")
