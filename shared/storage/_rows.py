"""Reading the calls table tolerantly: a row the app cannot read costs that row, never the others.

A row written by another program, or damaged by hand, is skipped and left in place: it is logged as a
WARNING naming its PartitionKey and RowKey (quoted with `logsafe.safe`, since anyone may have written
them) and counted, so the tick's summary reports `skipped=N`. The sweep, a work range, the command line,
`GET /api/calls` and the call count all read rows through `read_rows`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from shared.errors import UnreadableRow
from shared.logsafe import get_logger, safe
from shared.models import CallRecord

logger = get_logger(__name__)


class SkippedRows:
    """How many unreadable rows were skipped (thread-safe: the sweep reads pages on a thread of its own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def add(self, entity: Mapping[str, Any], error: UnreadableRow, *, log: bool = True) -> None:
        with self._lock:
            self._count += 1
        if log:
            logger.warning(
                "calls row skipped partitionKey=%s rowKey=%s reason=%s; the row is left in place",
                safe(entity.get("PartitionKey")),
                safe(entity.get("RowKey")),
                safe(error.reason),
            )


def read_rows(entities: Iterable[Mapping[str, Any]], skipped: SkippedRows | None = None) -> list[CallRecord]:
    """The calls of `entities`, leaving out (logging and counting in `skipped`) the rows it cannot read."""
    records: list[CallRecord] = []
    tally = skipped if skipped is not None else SkippedRows()
    for entity in entities:
        try:
            records.append(CallRecord.from_entity(entity))
        except UnreadableRow as error:
            tally.add(entity, error)
    return records


def count_rows(entities: Iterable[Mapping[str, Any]]) -> int:
    """How many of `entities` are calls the app can read (the others are not logged here: a sweep logs them)."""
    counted = 0
    for entity in entities:
        try:
            CallRecord.from_entity(entity)
        except UnreadableRow:
            continue
        counted += 1
    return counted
