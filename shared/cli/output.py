"""Where the command line's results go (stdout: rich tables for a person, or JSON), and its tables."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from typing import Any, TextIO

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from shared.models import CallRecord
from shared.telemetry import summary_fields, tick_outcome

NONE = "-"
WIDE = 100_000  # --wide: as wide as the rows are; the terminal may wrap them


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """The reader of stdout went away (`| head`): raise, so that `main` ends as a closed pipe ends a command."""
        raise BrokenPipeError


class Output:
    """Results on stdout: tables as wide as the terminal (else COLUMNS, else 80), or JSON for a script."""

    def __init__(self, stream: TextIO, *, as_json: bool, wide: bool = False) -> None:
        self.stream = stream
        self.as_json = as_json
        self.partial = False  # a result was begun on stdout: an error must not be appended to it
        self.console = _Console(
            file=stream, highlight=False, markup=False, emoji=False, width=WIDE if wide else None, soft_wrap=False
        )
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "")
        self._ensure_ascii = encoding not in ("utf8", "utf8sig")

    def json_text(self, value: Any) -> str:
        return json.dumps(value, ensure_ascii=self._ensure_ascii)

    def json(self, value: Any) -> None:
        self.stream.write(self.json_text(value) + "\n")
        self.stream.flush()

    def line(self, text: str) -> None:
        self.console.print(Text(printable(text)))


_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})  # controls (C0, DEL, C1), format, lone surrogates, U+2028/9


def printable(text: str) -> str:
    """`text` as a terminal may show it: every control (ESC included), format character (bidi controls,
    zero-width), line or paragraph separator and lone surrogate written as `\\xNN`, `\\uNNNN` or
    `\\UNNNNNNNN`, so a stored value (metadata, lastError) can neither move the cursor, recolour or retitle
    the terminal, nor reorder what it shows. Everything else is shown as it is."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(_escaped(char) if unicodedata.category(char) in _UNPRINTABLE else char for char in text)


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _text(value: Any) -> Text:
    return Text(NONE if value is None else printable(str(value)))


def metadata_text(metadata: dict[str, str]) -> str:
    return printable(" ".join(f"{key}={value}" for key, value in metadata.items())) or NONE


def record_table(record: CallRecord) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for name, value in record.to_json().items():
        table.add_row(Text(name), Text(metadata_text(value)) if name == "metadata" else _text(value))
    return table


def short_time(value: str | None) -> str:
    """`2026-11-27T13:20:00.456Z` -> `11-27 13:20` (UTC); the whole value with --wide."""
    return NONE if value is None else f"{value[5:10]} {value[11:16]}"


def _last_result(data: dict[str, Any]) -> str:
    """The last attempt in one cell: lastError when it failed (it starts with the status), else lastStatus."""
    if data["lastError"] is not None:
        return printable(str(data["lastError"]))
    return NONE if data["lastStatus"] is None else str(data["lastStatus"])


def list_table(records: Sequence[CallRecord], *, wide: bool, width: int = 80) -> Table:
    """The calls: by default short, to fit `width` columns (long callIds and results cut with an ellipsis,
    tenants to 8 characters, times to `MM-DD hh:mm` UTC); `wide` with every field whole."""
    rows = [record.to_json() for record in records]
    if wide:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        names = ("callId", "tenantId", "registeredAt", "lastKeepAliveAt", "lastStatus", "consecutiveFailures")
        for name in (*names, "lastError", "metadata"):
            table.add_column(name, no_wrap=True)
        for data in rows:
            table.add_row(*(_text(data[name]) for name in (*names, "lastError")), Text(metadata_text(data["metadata"])))
        return table
    results = [_last_result(data) for data in rows]
    flexible = width - _FIXED - _GAPS
    result_width = max(len("lastResult"), min(max(map(cell_len, results), default=0), 21))
    id_width = min(
        max(len("callId"), max((cell_len(data["callId"]) for data in rows), default=0)), flexible - result_width
    )
    id_width = max(id_width, 12)
    result_width = max(len("lastResult"), flexible - id_width)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("callId", width=id_width, overflow="ellipsis", no_wrap=True)
    table.add_column("tenant", width=8, overflow="crop", no_wrap=True)
    table.add_column("lastKeepAlive", width=13, no_wrap=True)
    table.add_column("fails", width=5, no_wrap=True, justify="right")
    table.add_column("lastResult", width=result_width, overflow="ellipsis", no_wrap=True)
    for data, result in zip(rows, results, strict=True):
        table.add_row(
            _text(data["callId"]),
            _text(data["tenantId"]),
            Text(short_time(data["lastKeepAliveAt"])),
            _text(data["consecutiveFailures"]),
            Text(result),
        )
    return table


_FIXED = 8 + 13 + 5  # tenant, lastKeepAlive, fails
_GAPS = 3 * 4  # between 5 columns


def tick_json(summary: Any, *, interrupted: bool = False) -> dict[str, Any]:
    """`tick --json`: the summary's fields, camelCase, and its `outcome` (ok, failures, incomplete, interrupted)."""
    values = {key: value for key, value in summary_fields(summary).items() if key != "event"}
    values["outcome"] = "interrupted" if interrupted else tick_outcome(summary)
    return values


def summary_table(values: dict[str, Any]) -> Table:
    title = "keepalive tick (dry run)" if values.get("dryRun") else "keepalive tick"
    table = Table(title=title, box=box.SIMPLE, show_header=False)
    table.add_column("name", style="bold")
    table.add_column("value", justify="right")
    labels = {"atRisk": "at risk", "dryRun": "dry run", "complete": "read every call"}
    for key, value in values.items():
        if key == "outcome":
            continue
        if isinstance(value, bool):
            shown = "yes" if value else "no"
        elif key == "seconds" and isinstance(value, float):
            shown = f"{value:.1f}"
        else:
            shown = str(value)
        table.add_row(Text(labels.get(key, key)), Text(shown))
    table.add_row(Text("outcome"), Text(str(values["outcome"])))
    return table
