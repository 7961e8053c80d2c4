"""Where the command line's results go (stdout: rich tables for a person, or JSON), and its tables."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from shared.models import CallRecord
from shared.telemetry import summary_fields, tick_outcome

NONE = "-"
WIDE = 100_000  # --wide: as wide as the rows are; the terminal may wrap them


class Output:
    """Results on stdout: tables as wide as the terminal (else COLUMNS, else 80), or JSON for a script."""

    def __init__(self, stream: TextIO, *, as_json: bool, wide: bool = False) -> None:
        self.stream = stream
        self.as_json = as_json
        self.partial = False  # a result was begun on stdout: an error must not be appended to it
        self.console = Console(
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
        self.console.print(Text(text))


def _text(value: Any) -> Text:
    return Text(NONE if value is None else str(value))


def metadata_text(metadata: dict[str, str]) -> str:
    return " ".join(f"{key}={value}" for key, value in metadata.items()) or NONE


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


def list_table(records: Iterable[CallRecord], *, wide: bool) -> Table:
    """The calls: by default short (ids and times cut to fit 80 columns), `wide` with every field whole."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    if wide:
        names = ("callId", "tenantId", "registeredAt", "lastKeepAliveAt", "lastStatus", "consecutiveFailures")
        for name in (*names, "lastError"):
            table.add_column(name, no_wrap=True)
        for record in records:
            data = record.to_json()
            table.add_row(*(_text(data[name]) for name in names), _text(data["lastError"]))
        return table
    table.add_column("callId", overflow="ellipsis", no_wrap=True, min_width=12, ratio=3)
    table.add_column("tenant", no_wrap=True, max_width=8)
    table.add_column("lastKeepAlive", no_wrap=True)
    table.add_column("status", no_wrap=True, justify="right")
    table.add_column("fails", no_wrap=True, justify="right")
    table.add_column("lastError", overflow="ellipsis", no_wrap=True, min_width=9, ratio=1)
    for record in records:
        data = record.to_json()
        tenant = data["tenantId"]
        table.add_row(
            _text(data["callId"]),
            Text(tenant[:8] if tenant else NONE),
            Text(short_time(data["lastKeepAliveAt"])),
            _text(data["lastStatus"]),
            _text(data["consecutiveFailures"]),
            _text(data["lastError"]),
        )
    return table


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
