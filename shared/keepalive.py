"""The entry points of a keep-alive tick: what the timer, the work queue and the command line call.

    run_timer(ctx)           the timer: fans out above KEEPALIVE_FANOUT_THRESHOLD, else run_tick; then purges old ends
    run_work(ctx, message)   the queue function: sweeps the partitions a work message names, at its budget share
    run_tick(ctx)            one sweep of the whole table (timer below the threshold, command line), full budget
    preflight(ctx, dry)      whether a tick can run (settings, credential, storage), and its sender and writer
    purge_quietly(memory, now)   the timer's purge of ends older than 24 hours, within `purge_budget`

Each sweeps with `shared.sweep.Sweep`, writing through `shared.writers`; each tenant is paced at the sweep's share
of KEEPALIVE_TENANT_RATE (shared/budget.py, shared/ratelimit.py). A dry run takes the same path with a sender and a
writer that change nothing, and never fans out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from shared.budget import TenantCounts, warn_if_too_slow
from shared.context import Context
from shared.errors import CallkeeperError, InvalidWorkMessage, RangeIncomplete, SettingsError, StorageError
from shared.fanout import (
    MAX_DEQUEUE_COUNT,
    WorkMessage,
    WorkRange,
    enqueue,
    estimate_calls,
    new_tick_id,
    parse_work,
    plan_ranges,
)
from shared.logsafe import get_logger, safe
from shared.schedule import schedule_interval
from shared.settings import Settings
from shared.storage import PAGE_SIZE, EndMemory, Purged, SkippedRows
from shared.summary import TickSummary
from shared.sweep import Sender, Sweep, Writer, read_ahead
from shared.telemetry import summary_fields
from shared.writers import BatchWriter, DryRunSender, DryRunWriter

logger = get_logger(__name__)


def check_settings(settings: Settings, *, dry_run: bool) -> None:
    """Whether a tick may run with these settings: `SettingsError` naming every bad one (a dry run needs no
    credential, and sends nothing, so no CA bundle either). The timer, a work message and the command line all ask
    here."""
    problems = settings.problems(dry_run=dry_run)
    ca_bundle = None if dry_run else settings.ca_bundle_problem()
    if ca_bundle is not None:
        problems += (ca_bundle,)
    if problems:
        raise SettingsError(problems)


def preflight(ctx: Context, *, dry: bool) -> tuple[Sender, Writer]:
    """Check the settings and storage, and build the sender and writer of a sweep. Raises when it cannot run."""
    settings = ctx.settings
    try:
        check_settings(settings, dry_run=dry)
        if not dry:
            ctx.tokens().check()  # the certificate's file, too
    except SettingsError as error:  # one ERROR naming them, and nothing changes
        logger.error("keepalive tick not run: invalid settings: %s", "; ".join(error.problems))
        raise
    sender: Sender
    writer: Writer
    if dry:
        sender, writer = DryRunSender(settings), DryRunWriter()
    else:
        sender = ctx.graph()
        writer = BatchWriter(ctx.calls, ctx.event_queues, ctx.recent_ends, ctx.now)
        if settings.events_problems:  # they do not stop this tick (see shared/settings.py), but they are named
            logger.error("call events not published: invalid settings: %s", "; ".join(settings.events_problems))
    try:
        ctx.prepare_storage(not dry)
    except StorageError:
        logger.error("keepalive tick not run: storage unavailable (AzureWebJobsStorage); nothing changed")
        raise
    return sender, writer


def run_tick(
    ctx: Context, *, dry_run: bool | None = None, on_progress: Callable[[int], None] | None = None
) -> TickSummary:
    """Sweep every registered call once (timer and command line). Raises on bad settings or storage down."""
    dry = ctx.settings.dry_run if dry_run is None else dry_run
    sender, writer = preflight(ctx, dry=dry)
    sweep = Sweep(ctx.settings, sender, writer, ctx.now, dry_run=dry, on_progress=on_progress)
    skipped = SkippedRows()
    tenants = TenantCounts(ctx.settings.tenant_id)  # counted on the way: the budget check needs no read of its own
    with ctx.limiter().pacing(ctx.settings.tenant_rate):  # the whole table: the whole budget
        summary = sweep.run(read_ahead(tenants.pages(ctx.calls.pages(PAGE_SIZE, skipped))), skipped)
    logger.info("%s", summary.log_text(), extra=summary_fields(summary))
    warn_if_too_slow(tenants.largest(), ctx.settings.tenant_rate, schedule_interval(ctx.settings.schedule))
    return summary


def run_timer(ctx: Context, *, past_due: bool) -> None:
    """The timer function's body: fan out above KEEPALIVE_FANOUT_THRESHOLD calls, else sweep here."""
    if past_due:
        logger.warning("keepalive tick is past due")
    settings = ctx.settings
    if settings.dry_run:  # a dry run never fans out nor purges: it reports the whole sweep itself, changing nothing
        run_tick(ctx)
        return
    preflight(ctx, dry=False)  # nothing is fanned out with a bad setting or storage down
    try:
        estimate = estimate_calls(ctx.calls, settings.fanout_threshold, settings.tenant_id)
    except StorageError:
        logger.error("keepalive tick not run: storage unavailable (AzureWebJobsStorage); nothing changed")
        raise
    interval = schedule_interval(settings.schedule)
    if estimate is not None:
        warn_if_too_slow(estimate.largest, settings.tenant_rate, interval, estimated=True)
        fan_out(ctx, estimate.calls)
    else:
        run_tick(ctx)
    # after the sweep or fan-out, so keepAlives never wait for it: ends older than 24 hours, within a time budget
    purge_quietly(ctx.recent_ends, ctx.now, budget=purge_budget(interval))


def fan_out(ctx: Context, estimate: int) -> list[WorkRange]:
    """Write one work message per range of about KEEPALIVE_FANOUT_THRESHOLD calls; sweep nothing here."""
    settings = ctx.settings
    ranges = plan_ranges(estimate, settings.fanout_threshold, new_tick_id(), settings.tenant_rate)
    try:
        enqueue(ctx.work_queue, ranges)
    except StorageError:
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
        logger.error(
            "keepalive work message dropped id=%s dequeueCount=%d error=%s", safe(message.id), dequeue_count, error
        )
        return None
    last_try = dequeue_count >= MAX_DEQUEUE_COUNT
    logger.log(
        logging.WARNING if last_try else logging.INFO,
        "keepalive work partitions=%s tickId=%s tenantRate=%g id=%s dequeueCount=%d%s",
        work.label,
        safe(work.tick_id),
        work.share(ctx.settings.tenant_rate),
        safe(message.id),
        dequeue_count,
        " last try: if it fails, the host moves the message to the poison queue" if last_try else "",
    )
    dry = ctx.settings.dry_run
    sender, writer = preflight(ctx, dry=dry)
    sweep = Sweep(ctx.settings, sender, writer, ctx.now, dry_run=dry)
    skipped = SkippedRows()
    pages = (page for part in work.partitions for page in ctx.calls.partition_pages(part, PAGE_SIZE, skipped))
    with ctx.limiter().pacing(work.share(ctx.settings.tenant_rate)):  # this range's share of the fleet's budget
        summary = sweep.run(read_ahead(pages), skipped)
    logger.info(
        "%s partitions=%s tickId=%s dequeueCount=%d",
        summary.log_text(),
        work.label,
        safe(work.tick_id),
        dequeue_count,
        extra={**summary_fields(summary), "partitions": work.label, "tickId": work.tick_id},
    )
    if not summary.complete or summary.unsaved:
        raise RangeIncomplete(
            f"keepalive range {work.label} incomplete (complete={str(summary.complete).lower()} "
            f"unsaved={summary.unsaved}); the queue delivers it again"
        )
    return summary


# --- the purge of ended calls, after the timer's sweep or fan-out ------------------------------------------------
PURGE_BUDGET_SECONDS = 120.0  # the most a timer invocation's purge takes (docs/reliability.md: what it keeps up with)
PURGE_SHARE = 0.2  # and at most this share of the schedule's interval, so a short schedule gets a short purge


def purge_budget(interval: float | None) -> float:
    """A timer invocation's purge budget: a fifth of the schedule's interval, at most 2 minutes (120 s at the
    default 10 minutes; the schedule unreadable: 120 s)."""
    return PURGE_BUDGET_SECONDS if interval is None else min(PURGE_BUDGET_SECONDS, interval * PURGE_SHARE)


def purge_quietly(
    memory: EndMemory,
    now: Callable[[], datetime],
    *,
    budget: float = PURGE_BUDGET_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> Purged | None:
    """The timer's purge, after its sweep or fan-out: logged, never failing the invocation.

    A WARNING when the budget ran out with ends left (the next invocation goes on); None when storage failed.
    """
    try:
        purged = memory.purge(now(), budget=budget, clock=clock)
    except CallkeeperError as error:
        logger.warning("ended calls not purged error=%s; the next timer invocation tries again", type(error).__name__)
        return None
    if purged.left:
        logger.warning(
            "ended calls left to purge removed=%d seconds=%.1f budgetSeconds=%g: the purge stopped at its time "
            "budget and the next timer invocation goes on; if this repeats, ends arrive faster than the purge "
            "removes them (docs/reliability.md)",
            purged.removed,
            purged.seconds,
            budget,
        )
    elif purged.removed:
        logger.info("ended calls purged removed=%d seconds=%.1f", purged.removed, purged.seconds)
    return purged
