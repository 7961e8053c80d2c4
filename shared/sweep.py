"""The sweep: a keepAlive for each call of the pages it is given, at most KEEPALIVE_CONCURRENCY in flight.

    Sweep.run(pages, skipped)    `concurrency` workers take calls one at a time from the pages (one page of the
      ├── Sender                 table in memory, the next read ahead); each call gets `Sender.keep_alive`, and
      └── Writer                 its outcome goes to the `Writer` (shared/writers.py); the tally is the summary

Warnings: a failure per call (the first 20 of a sweep, see shared/loglimit.py), and each call at risk (its last
success, or its registration, older than KEEPALIVE_AT_RISK_MINUTES).
"""

from __future__ import annotations

import contextvars
import enum
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from shared.errors import CallkeeperError, TickInterrupted
from shared.events import call_ended_event
from shared.graph import KeepAliveResult
from shared.loglimit import failure_budget, failure_level
from shared.logsafe import get_logger, safe
from shared.models import CallRecord, format_time
from shared.settings import Settings
from shared.storage import SkippedRows
from shared.summary import TickSummary
from shared.telemetry import call_fields

logger = get_logger(__name__)

NO_TENANT = "no tenant: register the call with tenantId or set GRAPH_TENANT_ID"

T = TypeVar("T")


class Sender(Protocol):
    def keep_alive(self, call_id: str, tenant_id: str) -> KeepAliveResult: ...


@dataclass(frozen=True, slots=True)
class Unsaved:
    """Outcomes a writer buffered but could not write (storage failed): they count as failures."""

    succeeded: int = 0
    failed: int = 0


class Writer(Protocol):
    """What a tick changes. Each method returns the record after the change, or None when gone.

    A writer may buffer `succeeded`/`failed` and write them later; `flush` writes what is buffered
    (the sweep calls it once, at its end) and tells what could not be saved since the last flush.
    """

    def succeeded(self, record: CallRecord, result: KeepAliveResult, now: datetime) -> CallRecord | None: ...

    def failed(self, record: CallRecord, status: int | None, error: str | None, now: datetime) -> CallRecord | None: ...

    def end(self, record: CallRecord, event: dict[str, Any]) -> None: ...

    def flush(self) -> Unsaved: ...


class Outcome(enum.Enum):
    SUCCEEDED = "succeeded"
    ENDED = "ended"
    FAILED = "failed"
    NOT_SENT = "not_sent"  # dry run: nothing sent


@dataclass(frozen=True, slots=True)
class CallOutcome:
    outcome: Outcome
    retries: int = 0
    at_risk: bool = False
    unsaved: bool = False  # storage failed on this call's write: its state in the table is not this tick's


class _Tally:
    """The sweep's counts, added to by the workers as their calls finish."""

    def __init__(self, on_progress: Callable[[int], None] | None) -> None:
        self.counts = dict.fromkeys(Outcome, 0)
        self.retries = self.at_risk = self.unsaved = 0
        self._on_progress = on_progress
        self._lock = threading.Lock()

    def add(self, outcome: CallOutcome) -> None:
        with self._lock:
            self.counts[outcome.outcome] += 1
            self.retries += outcome.retries
            self.at_risk += outcome.at_risk
            self.unsaved += outcome.unsaved
            if self._on_progress is not None:
                self._on_progress(1)


@dataclass
class Sweep:
    """Sends a keepAlive for each call of the pages it is given, with at most `concurrency` in flight."""

    settings: Settings
    sender: Sender
    writer: Writer
    now: Callable[[], datetime]
    dry_run: bool = False
    on_progress: Callable[[int], None] | None = None

    def run(self, pages: Iterable[list[CallRecord]], skipped: SkippedRows | None = None) -> TickSummary:
        started = time.monotonic()
        tally = _Tally(self.on_progress)
        # `concurrency` workers take the next call from the pages themselves, one at a time under a lock:
        # no queue to fill, and memory holds the page being swept (and the one read ahead), not the table.
        # (A thread pool's futures, or a bounded queue, cost more CPU per call than the keepAlive's own Python.)
        records = (record for page in pages for record in page)
        take = threading.Lock()
        stopped: list[BaseException] = []
        calls = 0

        def sweep_calls() -> None:  # one worker: the next call, until there is none
            nonlocal calls
            while True:
                with take:
                    if stopped:
                        return
                    try:
                        record = next(records, None)
                    except BaseException as error:  # reading the table failed: the rest waits for the next tick
                        stopped.append(error)
                        return
                    if record is None:
                        return
                    calls += 1
                try:
                    outcome = self._one(record)
                except BaseException:  # `_one` handles what it can; this keeps the count right
                    outcome = CallOutcome(Outcome.FAILED, unsaved=True)
                tally.add(outcome)

        # Ctrl-C (command line): no new call is taken, the ones in flight finish, then the summary is raised.
        # (`Thread.join` cannot be trusted once interrupted, so the workers count themselves in and out.)
        begun = 0
        finished = threading.Semaphore(0)

        def worker() -> None:  # a worker's thread: counted in, and out whatever happens
            nonlocal begun
            with take:
                begun += 1
            try:
                sweep_calls()
            finally:
                finished.release()

        with failure_budget(logger):  # per-call failure warnings: the first 20, then one line with the rest's count
            workers = [  # each in a copy of this context, which holds the budget
                threading.Thread(
                    target=contextvars.copy_context().run, args=(worker,), name=f"keepalive-{i}", daemon=True
                )
                for i in range(self.settings.concurrency)
            ]
            interrupted = False
            try:
                try:
                    for thread in workers:
                        thread.start()
                    for thread in workers:
                        thread.join()
                except KeyboardInterrupt:
                    interrupted = True
                    with take:
                        stopped.append(KeyboardInterrupt())
                        waiting = begun
                    for _ in range(waiting):
                        finished.acquire()
            finally:
                lost = self.writer.flush()  # every worker is done: what is still buffered goes now
        complete = not stopped
        if stopped and not interrupted:
            error = stopped[0]
            if not isinstance(error, CallkeeperError):
                raise error
            logger.error(
                "keepalive tick could not read calls error=%s; calls not yet handled wait for the next tick",
                type(error).__name__,
            )
        counts = tally.counts
        summary = TickSummary(
            calls=calls,
            succeeded=counts[Outcome.SUCCEEDED] - lost.succeeded,
            ended=counts[Outcome.ENDED],
            failed=counts[Outcome.FAILED] + lost.succeeded,
            skipped=skipped.count if skipped is not None else 0,
            not_sent=counts[Outcome.NOT_SENT],
            retries=tally.retries,
            at_risk=tally.at_risk,
            seconds=time.monotonic() - started,
            dry_run=self.dry_run,
            complete=complete,
            unsaved=tally.unsaved + lost.succeeded + lost.failed,
        )
        if interrupted:
            raise TickInterrupted(summary)
        return summary

    def _one(self, record: CallRecord) -> CallOutcome:
        try:
            return self._keep_alive(record)
        except CallkeeperError as error:  # storage failing mid-tick: the call stays for the next tick
            logger.log(
                failure_level(logging.ERROR),
                "keepalive failed callId=%s error=%s",
                safe(record.call_id),
                type(error).__name__,
                extra=call_fields(
                    "keepaliveFailed",
                    call_id=record.call_id,
                    tenant_id=record.tenant_id,
                    outcome="failed",
                    error=type(error).__name__,
                ),
            )
        except Exception:
            logger.exception("keepalive failed unexpectedly callId=%s", safe(record.call_id))
        return CallOutcome(Outcome.FAILED, at_risk=self._warn_if_at_risk(record), unsaved=True)

    def _keep_alive(self, record: CallRecord) -> CallOutcome:
        tenant_id = record.tenant_id or self.settings.tenant_id
        if tenant_id is None:
            logger.log(
                failure_level(),
                "keepalive failed callId=%s error=%s",
                safe(record.call_id),
                NO_TENANT,
                extra=call_fields(
                    "keepaliveFailed",
                    call_id=record.call_id,
                    tenant_id=None,
                    outcome="failed",
                    error="no tenant",
                    consecutive_failures=record.consecutive_failures + 1,
                ),
            )
            stored = self.writer.failed(record, None, "no tenant", self.now())
            return CallOutcome(Outcome.FAILED, at_risk=self._warn_if_at_risk(stored))
        started = time.monotonic()
        result = self.sender.keep_alive(record.call_id, tenant_id)
        now = self.now()
        if result.gone:
            event = call_ended_event(
                record, tenant_id=tenant_id, detected_at=now, reason="keepAliveNotFound", graph=result.graph_fields()
            )
            self.writer.end(record, event)
            return CallOutcome(Outcome.ENDED, result.retries)
        if result.ok:
            self.writer.succeeded(record, result, now)
            return CallOutcome(Outcome.SUCCEEDED, result.retries)
        if not result.sent:
            return CallOutcome(Outcome.NOT_SENT, at_risk=self._warn_if_at_risk(record))
        logger.log(
            failure_level(),
            "keepalive failed callId=%s tenantId=%s status=%s error=%s attempts=%d consecutiveFailures=%d",
            safe(record.call_id),
            tenant_id,
            result.status,
            result.error,
            result.attempts,
            record.consecutive_failures + 1,
            extra=call_fields(
                "keepaliveFailed",
                call_id=record.call_id,
                tenant_id=tenant_id,
                outcome="failed",
                status=result.status,
                error=result.error,
                attempts=result.attempts,
                retries=result.retries,
                consecutive_failures=record.consecutive_failures + 1,
                seconds=time.monotonic() - started,
            ),
        )
        stored = self.writer.failed(record, result.status, result.error, now)
        return CallOutcome(Outcome.FAILED, result.retries, at_risk=self._warn_if_at_risk(stored))

    def _warn_if_at_risk(self, record: CallRecord | None) -> bool:
        """Warn when a call's last success (or registration) is older than KEEPALIVE_AT_RISK_MINUTES."""
        if record is None:
            return False
        last = record.last_keepalive_at or record.registered_at
        limit = timedelta(minutes=self.settings.at_risk_minutes)
        if self.now() - last <= limit:
            return False
        minutes = int((self.now() - last).total_seconds() // 60)
        logger.warning(
            "keepalive at risk callId=%s tenantId=%s lastSuccess=%s minutes=%d",
            safe(record.call_id),
            record.tenant_id,
            format_time(last),
            minutes,
            extra=call_fields(
                "keepaliveAtRisk",
                call_id=record.call_id,
                tenant_id=record.tenant_id,
                outcome="atRisk",
                last_success=format_time(last),
                minutes=minutes,
            ),
        )
        return True


_END = object()


def read_ahead(pages: Iterable[T]) -> Iterator[T]:
    """`pages`, with the next page read on a thread of its own while the current one is swept.

    One page ahead, no more: memory holds two pages. A failure reading a page is raised here, in order.
    """
    iterator = iter(pages)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="keepalive-read") as reader:
        ahead = reader.submit(next, iterator, _END)
        while True:
            page = ahead.result()
            if page is _END:
                return
            ahead = reader.submit(next, iterator, _END)
            yield page  # type: ignore[misc]  # not _END here
