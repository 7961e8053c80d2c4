"""The keep-alive sweep: every call gets a keepAlive, and the outcome is written back.

    run_tick(ctx)            one sweep of the whole table (timer, command line)
      └── Sweep.run(pages)   bounded thread pool, one page of the table at a time
            ├── Sender       GraphClient, or DryRunSender that only says what it would send
            └── Writer       StorageWriter (conditional updates; event, then delete), or DryRunWriter

The dry run uses the same path with a sender and a writer that change nothing.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote

from shared.context import Context
from shared.errors import KeepAliveError, SettingsError, StorageUnavailable
from shared.events import CleanupQueue, call_ended_event
from shared.graph import KeepAliveResult
from shared.models import CallRecord, format_time
from shared.settings import Settings
from shared.store import CallStore, EndedCalls

logger = logging.getLogger(__name__)

NO_TENANT = "no tenant: register the call with tenantId or set GRAPH_TENANT_ID"


class Sender(Protocol):
    def keep_alive(self, call_id: str, tenant_id: str) -> KeepAliveResult: ...


class Writer(Protocol):
    """What a tick changes. Each method returns the stored record after the change, or None when gone."""

    def succeeded(self, record: CallRecord, result: KeepAliveResult, now: datetime) -> CallRecord | None: ...

    def failed(self, record: CallRecord, status: int | None, error: str | None, now: datetime) -> CallRecord | None: ...

    def ended(self, record: CallRecord, event: dict[str, Any]) -> None: ...


class Outcome(enum.Enum):
    SUCCEEDED = "succeeded"
    ENDED = "ended"
    FAILED = "failed"
    SKIPPED = "skipped"  # dry run: nothing sent


@dataclass(frozen=True, slots=True)
class CallOutcome:
    outcome: Outcome
    retries: int = 0
    at_risk: bool = False


@dataclass(frozen=True, slots=True)
class TickSummary:
    calls: int = 0
    succeeded: int = 0
    ended: int = 0
    failed: int = 0
    retries: int = 0
    skipped: int = 0
    at_risk: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    complete: bool = True  # False when reading the table failed part way: the rest waits for the next tick

    def log_text(self) -> str:
        return (
            f"keepalive tick calls={self.calls} succeeded={self.succeeded} ended={self.ended} failed={self.failed} "
            f"retries={self.retries} seconds={self.seconds:.1f} at_risk={self.at_risk} skipped={self.skipped} "
            f"dry_run={str(self.dry_run).lower()} complete={str(self.complete).lower()}"
        )


class StorageWriter:
    """Writes outcomes to the table and events to the cleanup queue, never re-creating a deleted call."""

    def __init__(self, calls: CallStore, cleanup: CleanupQueue, ended: EndedCalls, now: Callable[[], datetime]) -> None:
        self._calls = calls
        self._cleanup = cleanup
        self._ended = ended
        self._now = now

    def succeeded(self, record: CallRecord, result: KeepAliveResult, now: datetime) -> CallRecord | None:
        return self._calls.update(record, lambda r: r.with_result(now=now, status=result.status, error=None, ok=True))

    def failed(self, record: CallRecord, status: int | None, error: str | None, now: datetime) -> CallRecord | None:
        return self._calls.update(record, lambda r: r.with_result(now=now, status=status, error=error, ok=False))

    def ended(self, record: CallRecord, event: dict[str, Any]) -> None:
        self._cleanup.send(event)  # first the event: a failure here keeps the call for the next tick
        try:  # remembered, so a late `established` notification does not bring it back
            self._ended.remember(record.call_id, tenant_id=event["tenantId"], reason=event["reason"], now=self._now())
        except KeepAliveError:
            logger.warning("ended call not remembered callId=%s", record.call_id)
        self._calls.delete(record)  # then the entry: a failure here repeats the event (same eventId) next tick


class DryRunWriter:
    """Changes nothing; says what it would have done."""

    def succeeded(self, record: CallRecord, result: KeepAliveResult, now: datetime) -> CallRecord | None:
        return record

    def failed(self, record: CallRecord, status: int | None, error: str | None, now: datetime) -> CallRecord | None:
        return record

    def ended(self, record: CallRecord, event: dict[str, Any]) -> None:
        logger.info("dry run: would send callEnded and delete callId=%s", record.call_id)


class DryRunSender:
    """Sends nothing: logs the request a real tick would send."""

    def __init__(self, settings: Settings) -> None:
        self._root = settings.graph_base_url

    def keep_alive(self, call_id: str, tenant_id: str) -> KeepAliveResult:
        url = f"{self._root}/v1.0/communications/calls/{quote(call_id, safe='')}/keepAlive"
        logger.info("dry run: would send POST %s tenantId=%s callId=%s", url, tenant_id, call_id)
        return KeepAliveResult.not_sent()


@dataclass
class Sweep:
    """Sends a keepAlive for each call of the pages it is given, with at most `concurrency` in flight."""

    settings: Settings
    sender: Sender
    writer: Writer
    now: Callable[[], datetime]
    dry_run: bool = False
    on_progress: Callable[[int], None] | None = None
    _counts: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))

    def run(self, pages: Iterable[list[CallRecord]]) -> TickSummary:
        started = time.monotonic()
        calls = retries = at_risk = 0
        complete = True
        concurrency = self.settings.concurrency
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="keepalive") as pool:
            pending: set[Future[CallOutcome]] = set()

            def collect(done: set[Future[CallOutcome]]) -> None:
                nonlocal retries, at_risk
                for future in done:
                    outcome = future.result()
                    self._counts[outcome.outcome] += 1
                    retries += outcome.retries
                    at_risk += outcome.at_risk
                    if self.on_progress is not None:
                        self.on_progress(1)

            try:
                for page in pages:
                    for record in page:
                        calls += 1
                        if len(pending) >= 2 * concurrency:  # bounded: memory does not grow with the table
                            done, pending = wait(pending, return_when=FIRST_COMPLETED)
                            collect(done)
                        pending.add(pool.submit(self._one, record))
            except KeepAliveError as error:
                complete = False
                logger.error(
                    "keepalive tick could not read calls error=%s; calls not yet handled wait for the next tick",
                    type(error).__name__,
                )
            done, _ = wait(pending)
            collect(done)
        counts = self._counts
        return TickSummary(
            calls=calls,
            succeeded=counts[Outcome.SUCCEEDED],
            ended=counts[Outcome.ENDED],
            failed=counts[Outcome.FAILED],
            skipped=counts[Outcome.SKIPPED],
            retries=retries,
            at_risk=at_risk,
            seconds=time.monotonic() - started,
            dry_run=self.dry_run,
            complete=complete,
        )

    def _one(self, record: CallRecord) -> CallOutcome:
        try:
            return self._keep_alive(record)
        except KeepAliveError as error:  # storage failing mid-tick: the call stays for the next tick
            logger.error("keepalive failed callId=%s error=%s", record.call_id, type(error).__name__)
        except Exception:
            logger.exception("keepalive failed unexpectedly callId=%s", record.call_id)
        return CallOutcome(Outcome.FAILED, at_risk=self._warn_if_at_risk(record))

    def _keep_alive(self, record: CallRecord) -> CallOutcome:
        tenant_id = record.tenant_id or self.settings.tenant_id
        if tenant_id is None:
            logger.warning("keepalive failed callId=%s error=%s", record.call_id, NO_TENANT)
            stored = self.writer.failed(record, None, "no tenant", self.now())
            return CallOutcome(Outcome.FAILED, at_risk=self._warn_if_at_risk(stored))
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
            return CallOutcome(Outcome.SKIPPED, at_risk=self._warn_if_at_risk(record))
        logger.warning(
            "keepalive failed callId=%s tenantId=%s status=%s error=%s attempts=%d consecutiveFailures=%d",
            record.call_id,
            tenant_id,
            result.status,
            result.error,
            result.attempts,
            record.consecutive_failures + 1,
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
        logger.warning(
            "keepalive at risk callId=%s tenantId=%s lastSuccess=%s minutes=%d",
            record.call_id,
            record.tenant_id,
            format_time(last),
            int((self.now() - last).total_seconds() // 60),
        )
        return True


def check_settings(settings: Settings, *, dry_run: bool) -> None:
    """Refuse to sweep with a missing or invalid setting: one ERROR naming them, and nothing changes."""
    problems = settings.problems(dry_run=dry_run)
    if problems:
        logger.error("keepalive tick not run: invalid settings: %s", "; ".join(problems))
        raise SettingsError(problems)


def run_tick(
    ctx: Context, *, dry_run: bool | None = None, on_progress: Callable[[int], None] | None = None
) -> TickSummary:
    """Sweep every registered call once (timer and command line). Raises on bad settings or storage down."""
    settings = ctx.settings
    dry = settings.dry_run if dry_run is None else dry_run
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
        writer = StorageWriter(ctx.calls, ctx.cleanup, ctx.ended, ctx.now)
    try:
        ctx.storage.table()
        if not dry:
            ctx.storage.queue(settings.cleanup_queue_name)
    except StorageUnavailable:
        logger.error("keepalive tick not run: storage unavailable (AzureWebJobsStorage); nothing changed")
        raise
    sweep = Sweep(settings, sender, writer, ctx.now, dry_run=dry, on_progress=on_progress)
    summary = sweep.run(ctx.calls.pages())
    logger.info(summary.log_text())
    return summary


def run_timer(ctx: Context, *, past_due: bool) -> None:
    """The timer function's body."""
    if past_due:
        logger.warning("keepalive tick is past due")
    run_tick(ctx)
