"""What a sweep changes: the writers of its outcomes, and the dry run's sender and writer.

- `BatchWriter`: successes and failures buffered per partition and written as entity group transactions,
  each replace conditional on the ETag the call was read with, so a deleted call is never re-created.
- An ended call goes through `ending.end_call` at once (events, memory, delete), never buffered.
- `DryRunWriter` and `DryRunSender` change and send nothing; they log what a real tick would do.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.ending import end_call
from shared.errors import CallkeeperError
from shared.graph import GraphClient, KeepAliveResult
from shared.logsafe import get_logger, safe
from shared.models import CallRecord
from shared.settings import Settings
from shared.storage import BATCH_SIZE, PAGE_SIZE, Calls, EndMemory, EventQueue, NotSaved
from shared.sweep import Unsaved

logger = get_logger(__name__)

FLUSH_THREADS = 8  # transactions written at once by a BatchWriter


def _success(result: KeepAliveResult, now: datetime) -> Callable[[CallRecord], CallRecord]:
    return lambda r: r.with_result(now=now, status=result.status, error=None, ok=True)


def _failure(status: int | None, error: str | None, now: datetime) -> Callable[[CallRecord], CallRecord]:
    return lambda r: r.with_result(now=now, status=status, error=error, ok=False)


@dataclass(frozen=True, slots=True)
class _Pending:
    record: CallRecord
    change: Callable[[CallRecord], CallRecord]
    changed: CallRecord  # change(record), computed once
    ok: bool


class BatchWriter:
    """Buffers successes and failures per partition and writes them as entity group transactions.

    - A partition's buffer is written once it holds `batch_size` (100, the service's most) outcomes, by the
      worker whose outcome filled it; all buffers are written when together they hold more than `max_buffered`
      (two pages), and at `flush` (then `FLUSH_THREADS` at a time). Memory is bounded whatever the table's size,
      and a slow table slows the workers that write, not the memory.
    - Each replace is conditional on the ETag the call was read with (`Calls.update_all`): a call deleted
      meanwhile stays deleted, and one changed meanwhile is updated on a fresh read.
    - An outcome that cannot be saved (storage would refuse it, or refused it alone) costs only its own call:
      `Calls.update_all` writes the others, and `flush` counts each call by its own outcome (`Unsaved`).
    - The 404 path is not buffered: `ending.end_call` (events, memory, delete) runs at once.
    """

    def __init__(
        self,
        calls: Calls,
        events: Sequence[EventQueue],
        memory: EndMemory,
        now: Callable[[], datetime],
        *,
        batch_size: int = BATCH_SIZE,
        max_buffered: int = 2 * PAGE_SIZE,
    ) -> None:
        self._calls = calls
        self._events = tuple(events)
        self._memory = memory
        self._now = now
        self._batch_size = max(1, min(batch_size, BATCH_SIZE))
        self._max_buffered = max_buffered
        self._lock = threading.Lock()
        self._buffers: dict[str, list[_Pending]] = {}
        self._buffered = 0
        self._lost = Unsaved()

    def succeeded(self, record: CallRecord, result: KeepAliveResult, now: datetime) -> CallRecord | None:
        change = _success(result, now)
        return self._buffer(_Pending(record, change, change(record), True))

    def failed(self, record: CallRecord, status: int | None, error: str | None, now: datetime) -> CallRecord | None:
        change = _failure(status, error, now)
        return self._buffer(_Pending(record, change, change(record), False))

    def end(self, record: CallRecord, event: dict[str, Any]) -> None:
        end_call(self._calls, self._events, self._memory, record, event, self._now())

    def flush(self) -> Unsaved:
        with self._lock:
            batches = list(self._buffers.values())
            self._buffers.clear()
            self._buffered = 0
        if batches:
            with ThreadPoolExecutor(max_workers=FLUSH_THREADS, thread_name_prefix="keepalive-flush") as pool:
                list(pool.map(self._write, batches))
        with self._lock:
            lost, self._lost = self._lost, Unsaved()
        return lost

    def _buffer(self, pending: _Pending) -> CallRecord:
        partition = pending.record.keys[0]
        ready: list[list[_Pending]] = []
        with self._lock:
            buffer = self._buffers.setdefault(partition, [])
            buffer.append(pending)
            self._buffered += 1
            if len(buffer) >= self._batch_size:
                ready.append(self._buffers.pop(partition))
                self._buffered -= len(buffer)
            elif self._buffered > self._max_buffered:
                ready.extend(self._buffers.values())
                self._buffers.clear()
                self._buffered = 0
        for batch in ready:
            self._write(batch)
        return pending.changed

    def _write(self, batch: list[_Pending]) -> None:
        try:
            results = self._calls.update_all(
                [(pending.record, pending.change) for pending in batch], [pending.changed for pending in batch]
            )
        except Exception as error:  # counted and logged: the sweep reports them as failures
            self._count_lost(batch)
            level = logging.ERROR if isinstance(error, CallkeeperError) else logging.CRITICAL
            logger.log(
                level,
                "keepalive results not saved partition=%s calls=%d error=%s",
                batch[0].record.keys[0],
                len(batch),
                type(error).__name__,
                exc_info=not isinstance(error, CallkeeperError),
            )
            return
        lost = [
            (pending, result) for pending, result in zip(batch, results, strict=True) if isinstance(result, NotSaved)
        ]
        if not lost:
            return
        self._count_lost([pending for pending, _ in lost])
        outages = [result for _, result in lost if result.outage]
        if outages:  # each refused one was logged by the store; an outage is said once, as above
            logger.error(
                "keepalive results not saved partition=%s calls=%d error=%s",
                batch[0].record.keys[0],
                len(outages),
                outages[0].reason,
            )

    def _count_lost(self, lost: list[_Pending]) -> None:
        oks = sum(pending.ok for pending in lost)
        with self._lock:
            self._lost = Unsaved(self._lost.succeeded + oks, self._lost.failed + len(lost) - oks)


class DryRunWriter:
    """Changes nothing; says what it would have done."""

    def succeeded(self, record: CallRecord, result: KeepAliveResult, now: datetime) -> CallRecord | None:
        return record

    def failed(self, record: CallRecord, status: int | None, error: str | None, now: datetime) -> CallRecord | None:
        return record

    def end(self, record: CallRecord, event: dict[str, Any]) -> None:
        logger.info("dry run: would send callEnded and delete callId=%s", safe(record.call_id))

    def flush(self) -> Unsaved:
        return Unsaved()


class DryRunSender:
    """Sends nothing: logs the request a real tick would send."""

    def __init__(self, settings: Settings) -> None:
        self._root = settings.graph_base_url

    def keep_alive(self, call_id: str, tenant_id: str) -> KeepAliveResult:
        url = GraphClient.keep_alive_url(self._root, call_id)
        logger.info("dry run: would send POST %s tenantId=%s callId=%s", url, tenant_id, safe(call_id))
        return KeepAliveResult.not_sent()
