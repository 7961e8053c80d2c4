"""The keep-alive sweep: every call gets a keepAlive, and the outcome is written back.

    run_timer(ctx)           the timer: fans out above KEEPALIVE_FANOUT_THRESHOLD, else sweeps (run_tick)
    run_work(ctx, message)   the queue function: sweeps the partitions a work message names
    run_tick(ctx)            one sweep of the whole table (timer below the threshold, command line)
      └── Sweep.run(pages)   bounded thread pool, one page of the table at a time, the next page read ahead
            ├── Sender       GraphClient (each tenant paced at the sweep's share of KEEPALIVE_TENANT_RATE
            │                by the instance's RateLimiter, see shared/budget.py), or DryRunSender
            └── Writer       BatchWriter (entity group transactions per partition; event, then delete),
                             StorageWriter (one conditional update per call), or DryRunWriter

The dry run uses the same path with a sender and a writer that change nothing, and never fans out.
"""

from __future__ import annotations

import contextvars
import enum
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

from shared.budget import TenantCounts, schedule_interval, warn_if_too_slow
from shared.context import Context
from shared.ended import EndedCalls, purge_quietly
from shared.errors import KeepAliveError, SettingsError, StorageUnavailable, TickInterrupted
from shared.events import CleanupQueue, call_ended_event
from shared.fanout import (
    MAX_DEQUEUE_COUNT,
    InvalidWorkMessage,
    RangeIncomplete,
    WorkMessage,
    WorkRange,
    enqueue,
    estimate_calls,
    new_tick_id,
    parse_work,
    plan_ranges,
)
from shared.graph import KeepAliveResult
from shared.loglimit import failure_budget, failure_level
from shared.logsafe import safe
from shared.models import CallRecord, format_time
from shared.rows import SkippedRows
from shared.settings import Settings
from shared.store import CallStore
from shared.summary import TickSummary
from shared.tablewire import MAX_OPERATIONS
from shared.telemetry import call_fields, summary_fields

logger = logging.getLogger(__name__)

NO_TENANT = "no tenant: register the call with tenantId or set GRAPH_TENANT_ID"
PAGE_SIZE = 1000  # calls per page read (Table Storage's most)
FLUSH_THREADS = 8  # transactions written at once by a BatchWriter

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

    def ended(self, record: CallRecord, event: dict[str, Any]) -> None: ...

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


class StorageWriter:
    """Writes each outcome at once with a conditional update, and events to the cleanup queue, never
    re-creating a deleted call."""

    def __init__(self, calls: CallStore, cleanup: CleanupQueue, ended: EndedCalls, now: Callable[[], datetime]) -> None:
        self._calls = calls
        self._cleanup = cleanup
        self._ended = ended
        self._now = now

    def succeeded(self, record: CallRecord, result: KeepAliveResult, now: datetime) -> CallRecord | None:
        return self._calls.update(record, _success(result, now))

    def failed(self, record: CallRecord, status: int | None, error: str | None, now: datetime) -> CallRecord | None:
        return self._calls.update(record, _failure(status, error, now))

    def ended(self, record: CallRecord, event: dict[str, Any]) -> None:
        self._cleanup.send(event)  # first the event: a failure here keeps the call for the next tick
        try:  # remembered, so a late `established` notification does not bring it back
            self._ended.remember(record.call_id, tenant_id=event["tenantId"], reason=event["reason"], now=self._now())
        except KeepAliveError:
            logger.warning("ended call not remembered callId=%s", safe(record.call_id))
        self._calls.delete(record)  # then the entry: a failure here repeats the event (same eventId) next tick

    def flush(self) -> Unsaved:
        return Unsaved()


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


class BatchWriter(StorageWriter):
    """Buffers successes and failures per partition and writes them as entity group transactions.

    - A partition's buffer is written once it holds `batch_size` (100, the service's most) outcomes; all
      buffers are written when together they hold more than `max_buffered` (two pages), and at `flush`.
      Memory is bounded whatever the table's size. Writes run on a few threads of their own, so the
      sweep's workers go on sending keepAlives meanwhile.
    - Each replace is conditional on the ETag the call was read with. A transaction refused because a
      call changed or was deleted meanwhile is written again one call at a time (`CallStore.update`),
      so a deleted call stays deleted and a changed one is updated on a fresh read.
    - The 404 path is not buffered: the event is sent, then the call deleted, at once (StorageWriter).
    """

    def __init__(
        self,
        calls: CallStore,
        cleanup: CleanupQueue,
        ended: EndedCalls,
        now: Callable[[], datetime],
        *,
        batch_size: int = MAX_OPERATIONS,
        max_buffered: int = 2 * PAGE_SIZE,
    ) -> None:
        super().__init__(calls, cleanup, ended, now)
        self._batch_size = max(1, min(batch_size, MAX_OPERATIONS))
        self._max_buffered = max_buffered
        self._lock = threading.Lock()
        self._buffers: dict[str, list[_Pending]] = {}
        self._buffered = 0
        self._lost_succeeded = 0
        self._lost_failed = 0
        self._writers: ThreadPoolExecutor | None = None
        self._writing: set[Future[None]] = set()
        self._room = threading.BoundedSemaphore(4 * FLUSH_THREADS)  # transactions queued or being written

    def succeeded(self, record: CallRecord, result: KeepAliveResult, now: datetime) -> CallRecord | None:
        change = _success(result, now)
        return self._buffer(_Pending(record, change, change(record), True))

    def failed(self, record: CallRecord, status: int | None, error: str | None, now: datetime) -> CallRecord | None:
        change = _failure(status, error, now)
        return self._buffer(_Pending(record, change, change(record), False))

    def flush(self) -> Unsaved:
        with self._lock:
            batches = list(self._buffers.values())
            self._buffers.clear()
            self._buffered = 0
        for batch in batches:
            self._submit(batch)
        with self._lock:
            writing, self._writing = self._writing, set()
            writers, self._writers = self._writers, None
        for future in writing:
            future.result()
        if writers is not None:
            writers.shutdown(wait=True)
        with self._lock:
            lost = Unsaved(self._lost_succeeded, self._lost_failed)
            self._lost_succeeded = self._lost_failed = 0
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
            self._submit(batch)
        return pending.changed

    def _submit(self, batch: list[_Pending]) -> None:
        self._room.acquire()  # backpressure: a slow table slows the sweep instead of filling memory
        with self._lock:
            if self._writers is None:
                self._writers = ThreadPoolExecutor(max_workers=FLUSH_THREADS, thread_name_prefix="keepalive-write")
            future = self._writers.submit(self._write, batch)
            self._writing.add(future)
        future.add_done_callback(self._written)

    def _written(self, future: Future[None]) -> None:
        with self._lock:
            self._writing.discard(future)
        self._room.release()

    def _write(self, batch: list[_Pending]) -> None:
        try:
            self._calls.update_all(
                [(pending.record, pending.change) for pending in batch], [pending.changed for pending in batch]
            )
        except Exception as error:  # counted and logged: the sweep reports them as failures
            oks = sum(pending.ok for pending in batch)
            with self._lock:
                self._lost_succeeded += oks
                self._lost_failed += len(batch) - oks
            level = logging.ERROR if isinstance(error, KeepAliveError) else logging.CRITICAL
            logger.log(
                level,
                "keepalive results not saved partition=%s calls=%d error=%s",
                batch[0].record.keys[0],
                len(batch),
                type(error).__name__,
                exc_info=not isinstance(error, KeepAliveError),
            )


class DryRunWriter:
    """Changes nothing; says what it would have done."""

    def succeeded(self, record: CallRecord, result: KeepAliveResult, now: datetime) -> CallRecord | None:
        return record

    def failed(self, record: CallRecord, status: int | None, error: str | None, now: datetime) -> CallRecord | None:
        return record

    def ended(self, record: CallRecord, event: dict[str, Any]) -> None:
        logger.info("dry run: would send callEnded and delete callId=%s", safe(record.call_id))

    def flush(self) -> Unsaved:
        return Unsaved()


class DryRunSender:
    """Sends nothing: logs the request a real tick would send."""

    def __init__(self, settings: Settings) -> None:
        self._root = settings.graph_base_url

    def keep_alive(self, call_id: str, tenant_id: str) -> KeepAliveResult:
        url = f"{self._root}/v1.0/communications/calls/{quote(call_id, safe='')}/keepAlive"
        logger.info("dry run: would send POST %s tenantId=%s callId=%s", url, tenant_id, safe(call_id))
        return KeepAliveResult.not_sent()


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

        def work() -> None:
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

        def run_work() -> None:
            nonlocal begun
            with take:
                begun += 1
            try:
                work()
            finally:
                finished.release()

        with failure_budget(logger):  # per-call failure warnings: the first 20, then one line with the rest's count
            workers = [  # each in a copy of this context, which holds the budget
                threading.Thread(
                    target=contextvars.copy_context().run, args=(run_work,), name=f"keepalive-{i}", daemon=True
                )
                for i in range(self.settings.concurrency)
            ]
            interrupted = False
            try:
                try:
                    for worker in workers:
                        worker.start()
                    for worker in workers:
                        worker.join()
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
            if not isinstance(error, KeepAliveError):
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
        except KeepAliveError as error:  # storage failing mid-tick: the call stays for the next tick
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
        if result.ended:
            event = call_ended_event(
                record, tenant_id=tenant_id, detected_at=now, reason="keepAliveNotFound", graph=result.graph_fields()
            )
            self.writer.ended(record, event)
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


def check_settings(settings: Settings, *, dry_run: bool) -> None:
    """Refuse to sweep with a missing or invalid setting: one ERROR naming them, and nothing changes."""
    problems = settings.problems(dry_run=dry_run)
    if problems:
        logger.error("keepalive tick not run: invalid settings: %s", "; ".join(problems))
        raise SettingsError(problems)


def _prepare(ctx: Context, *, dry: bool) -> tuple[Sender, Writer]:
    """Check the settings and storage, and build the sender and writer of a sweep. Raises when it cannot run."""
    settings = ctx.settings
    check_settings(settings, dry_run=dry)
    sender: Sender
    writer: Writer
    if dry:
        sender, writer = DryRunSender(settings), DryRunWriter()
    else:
        try:
            ctx.tokens().check()
        except SettingsError as error:
            logger.error("keepalive tick not run: invalid settings: %s", "; ".join(error.problems))
            raise
        sender = ctx.graph()
        writer = BatchWriter(ctx.calls, ctx.cleanup, ctx.ended, ctx.now)
    try:
        ctx.storage.table()
        if not dry:
            ctx.storage.queue(settings.cleanup_queue_name)
    except StorageUnavailable:
        logger.error("keepalive tick not run: storage unavailable (AzureWebJobsStorage); nothing changed")
        raise
    return sender, writer


def run_tick(
    ctx: Context, *, dry_run: bool | None = None, on_progress: Callable[[int], None] | None = None
) -> TickSummary:
    """Sweep every registered call once (timer and command line). Raises on bad settings or storage down."""
    dry = ctx.settings.dry_run if dry_run is None else dry_run
    sender, writer = _prepare(ctx, dry=dry)
    sweep = Sweep(ctx.settings, sender, writer, ctx.now, dry_run=dry, on_progress=on_progress)
    skipped = SkippedRows()
    tenants = TenantCounts(ctx.settings.tenant_id)  # counted on the way: the budget check needs no read of its own
    with ctx.limiter().share(ctx.settings.tenant_rate):  # the whole table: the whole budget
        summary = sweep.run(read_ahead(tenants.pages(ctx.calls.pages(PAGE_SIZE, skipped))), skipped)
    logger.info(summary.log_text(), extra=summary_fields(summary))
    warn_if_too_slow(tenants.largest(), ctx.settings.tenant_rate, schedule_interval(ctx.settings.schedule))
    return summary


def run_timer(ctx: Context, *, past_due: bool) -> None:
    """The timer function's body: fan out above KEEPALIVE_FANOUT_THRESHOLD calls, else sweep here."""
    if past_due:
        logger.warning("keepalive tick is past due")
    settings = ctx.settings
    if not settings.dry_run:  # a dry run never fans out: it reports the whole sweep itself
        _prepare(ctx, dry=False)  # nothing is fanned out with a bad setting or storage down
        purge_quietly(ctx.ended, ctx.now)  # ends older than 24 hours, a bounded batch per tick
        try:
            estimate = estimate_calls(ctx.calls, settings.fanout_threshold, settings.tenant_id)
        except StorageUnavailable:
            logger.error("keepalive tick not run: storage unavailable (AzureWebJobsStorage); nothing changed")
            raise
        if estimate is not None:
            interval = schedule_interval(settings.schedule)
            warn_if_too_slow(estimate.largest, settings.tenant_rate, interval, estimated=True)
            fan_out(ctx, estimate.calls)
            return
    run_tick(ctx)


def fan_out(ctx: Context, estimate: int) -> list[WorkRange]:
    """Write one work message per range of about KEEPALIVE_FANOUT_THRESHOLD calls; sweep nothing here."""
    settings = ctx.settings
    ranges = plan_ranges(estimate, settings.fanout_threshold, new_tick_id(), settings.tenant_rate)
    try:
        enqueue(ctx.storage, settings.work_queue_name, ranges)
    except StorageUnavailable:
        logger.error(
            "keepalive fanout failed: storage unavailable; ranges not queued wait for the next tick tickId=%s",
            ranges[0].tick_id,
        )
        raise
    logger.info(
        "keepalive fanout ranges=%d calls=%d threshold=%d tenantRate=%d tickId=%s queue=%s",
        len(ranges),
        estimate,
        settings.fanout_threshold,
        settings.tenant_rate,
        ranges[0].tick_id,
        settings.work_queue_name,
    )
    return ranges


def run_work(ctx: Context, message: WorkMessage) -> TickSummary | None:
    """The queue function's body: sweep the partitions a work message names, re-read now.

    An invalid message is logged and dropped (None). A range whose sweep could not finish raises
    `RangeIncomplete`, so the host delivers the message again (up to maxDequeueCount, then poison).
    """
    dequeue_count = message.dequeue_count or 1
    try:
        work = parse_work(message.get_body())
    except InvalidWorkMessage as error:
        logger.error("keepalive work message dropped id=%s dequeueCount=%d error=%s", message.id, dequeue_count, error)
        return None
    last_try = dequeue_count >= MAX_DEQUEUE_COUNT
    logger.log(
        logging.WARNING if last_try else logging.INFO,
        "keepalive work partitions=%s tickId=%s tenantRate=%g id=%s dequeueCount=%d%s",
        work.label,
        work.tick_id,
        work.share(ctx.settings.tenant_rate),
        message.id,
        dequeue_count,
        " last try: if it fails, the host moves the message to the poison queue" if last_try else "",
    )
    dry = ctx.settings.dry_run
    sender, writer = _prepare(ctx, dry=dry)
    sweep = Sweep(ctx.settings, sender, writer, ctx.now, dry_run=dry)
    skipped = SkippedRows()
    pages = (page for part in work.partitions for page in ctx.calls.partition_pages(part, PAGE_SIZE, skipped))
    with ctx.limiter().share(work.share(ctx.settings.tenant_rate)):  # this range's share of the fleet's budget
        summary = sweep.run(read_ahead(pages), skipped)
    logger.info(
        "%s partitions=%s tickId=%s dequeueCount=%d",
        summary.log_text(),
        work.label,
        work.tick_id,
        dequeue_count,
        extra={**summary_fields(summary), "partitions": work.label, "tickId": work.tick_id},
    )
    if not summary.complete or summary.unsaved:
        raise RangeIncomplete(
            f"keepalive range {work.label} incomplete (complete={str(summary.complete).lower()} "
            f"unsaved={summary.unsaved}); the queue delivers it again"
        )
    return summary
