"""The command line's tables never hand a stored value's control sequences to the terminal (shared/cli/output.py)."""

from __future__ import annotations

import io
import unicodedata
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from shared.cli.output import Output, list_table, printable, record_table
from shared.models import CallRecord

HOSTILE = {
    "csi": "\x1b[2J\x1b[31m",  # clear the screen, turn red
    "osc title": "\x1b]0;pwned\x07",  # retitle the window
    "c1 csi": "\x9b31m",
    "bidi": "evil\u202egnp.exe",  # right-to-left override
    "zero width": "a\u200bb\ufeff",
    "line separator": "one\u2028two\u2029",
    "newline and tab": "one\ntwo\tthree\r",
    "del and backspace": "x\x7f\x08",
    "lone surrogate": "\ud800",
}
ACTIVE = {chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))} | {
    "\u202e",
    "\u200b",
    "\ufeff",
    "\u2028",
    "\u2029",
    "\ud800",
}


def rendered(table) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None, force_terminal=False).print(table)
    return out.getvalue()


def record(value: str) -> CallRecord:
    return CallRecord(
        "call-1", None, datetime(2026, 11, 27, 13, 10, tzinfo=UTC), "reg-1", last_status=502,
        last_error=f"502 {value}", consecutive_failures=3, metadata={"note": value, value: "key"},
    )  # fmt: skip


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
def test_show_and_list_escape_every_control_and_format_character_of_a_stored_value(value):
    for table in (
        record_table(record(value)),
        list_table([record(value)], wide=False),
        list_table([record(value)], wide=True),
    ):
        text = rendered(table)
        assert not (set(text) - {"\n"}) & ACTIVE, repr(text)  # only the table's own line ends
    shown = rendered(record_table(record(value)))
    assert printable(value) in shown  # visible, as escapes: the operator sees that something odd is stored


def test_a_plain_value_is_shown_as_it_is():
    for value in ("standup", "é漢😀 with spaces", "a\\x1b stays as typed"):
        assert printable(value) == value


def test_a_line_of_the_command_line_is_escaped_too():
    out = io.StringIO()
    Output(out, as_json=False).line("removed call \x1b[2Jx")
    assert "\x1b" not in out.getvalue() and "\\x1b[2Jx" in out.getvalue()


@settings(max_examples=300, deadline=None, database=None)
@given(st.text())
def test_no_text_keeps_a_character_a_terminal_acts_on(text):
    shown = printable(text)
    assert not any(unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp") for char in shown)
