"""The command line's commands: `calls list|show|add|remove`, `tick` and `events resend`. Each returns its exit
code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from shared import registry
from shared.call_events import resend_poisoned
from shared.cli.advice import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from shared.cli.output import Output, list_table, record_table, summary_table, tick_json
from shared.context import Context
from shared.errors import CallNotFound, InvalidMetadata, TickInterrupted, UsageError
from shared.keepalive import check_settings, run_tick  # the timer's engine
from shared.logsafe import get_logger
from shared.models import validate_call_id, validate_metadata, validate_tenant_id
from shared.storage import PAGE_SIZE
from shared.summary import TickSummary

logger = get_logger("shared.cli")

Command = Callable[[Context, argparse.Namespace, Output, Console], int]


def calls_list(ctx: Context, args: argparse.Namespace, out: Output, errors: Console) -> int:
    """Every call, one page of the table at a time: JSON is streamed, tables are printed per page."""
    token: str | None = None
    count = 0
    wide = bool(getattr(args, "wide", False))
    while True:
        records, token = ctx.calls.list_page(PAGE_SIZE, token)
        if out.as_json:
            if not out.partial:  # begun once the first page is read; left unterminated if a later page fails
                out.stream.write('{"value": [')
                out.partial = True
            for record in records:
                out.stream.write((", " if count else "") + out.json_text(record.to_json()))
                count += 1
        elif records:
            out.console.print(list_table(records, wide=wide, width=out.console.width))
            count += len(records)
        if token is None:
            break
    if out.as_json:
        out.stream.write("]}\n")
        out.stream.flush()
    else:
        shortened = "" if wide or not count else " (shortened: --wide shows every field)"
        out.line(f"{count} call{'' if count == 1 else 's'} registered{shortened}")
    return EXIT_OK


def calls_show(ctx: Context, args: argparse.Namespace, out: Output, errors: Console) -> int:
    call_id = validate_call_id(args.call_id)
    record = ctx.calls.get(call_id)
    if record is None:
        raise CallNotFound(f"no call is registered with callId {call_id!r}")
    if out.as_json:
        out.json(record.to_json())
    else:
        out.console.print(record_table(record))
    return EXIT_OK


def parse_metadata(items: Sequence[str]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidMetadata(f"--metadata takes KEY=VALUE (got {item!r})")
        if key in metadata:
            raise InvalidMetadata(f"--metadata {key!r} is given twice")
        metadata[key] = value
    return validate_metadata(metadata)


def calls_add(ctx: Context, args: argparse.Namespace, out: Output, errors: Console) -> int:
    call_id = validate_call_id(args.call_id)
    tenant_id = validate_tenant_id(args.tenant)
    metadata = parse_metadata(args.metadata)
    record, created = registry.register_explicitly(
        ctx.calls,
        ctx.recent_ends,
        call_id=call_id,
        tenant_id=tenant_id,
        default_tenant_id=ctx.settings.tenant_id,
        metadata=metadata,
        now=ctx.now(),
    )
    if out.as_json:  # the record the API answers, and whether it was created (the API's 201 rather than 200)
        out.json({**record.to_json(), "created": created})
    else:
        out.line(f"created call {call_id}" if created else f"already registered: call {call_id} (left unchanged)")
        out.console.print(record_table(record))
    if created and record.tenant_id is None and not out.as_json:  # with --json, the log line on stderr says it
        out.line(f"warning: call {call_id} has no tenant: {registry.NO_TENANT}")
    return EXIT_OK


def calls_remove(ctx: Context, args: argparse.Namespace, out: Output, errors: Console) -> int:
    call_id = validate_call_id(args.call_id)
    try:
        registry.unregister(ctx.calls, call_id)
    except CallNotFound:
        raise CallNotFound(f"no call is registered with callId {call_id!r}") from None
    if not out.as_json:  # the API answers 204 with no body: --json prints nothing
        out.line(f"removed call {call_id}")
    return EXIT_OK


def count_calls(ctx: Context) -> int:
    """How many calls there are, for the progress bar (rows the app cannot read left out), a page at a time."""
    return ctx.calls.count(more_than=sys.maxsize)


def _show_summary(out: Output, summary: TickSummary, *, interrupted: bool) -> None:
    values = tick_json(summary, interrupted=interrupted)
    if out.as_json:
        out.json(values)
    else:
        out.console.print(summary_table(values))


def tick(ctx: Context, args: argparse.Namespace, out: Output, errors: Console) -> int:
    dry_run = True if args.dry_run else None  # None: GRAPH_DRY_RUN decides, as for the timer
    check_settings(ctx.settings, dry_run=ctx.settings.dry_run or args.dry_run)  # before the bar counts the table
    show_bar = errors.is_terminal
    total = count_calls(ctx) if show_bar else None  # the bar only: a script's tick reads the table once
    columns = (
        SpinnerColumn(),
        TextColumn("keepalive"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("calls"),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=errors, disable=not show_bar, redirect_stdout=False) as progress:
            task = progress.add_task("keepalive", total=total)
            summary = run_tick(ctx, dry_run=dry_run, on_progress=lambda n: progress.advance(task, n))
    except TickInterrupted as stop:  # Ctrl-C: the calls in flight finished; say what was done
        partial: TickSummary = stop.summary  # type: ignore[assignment]
        logger.warning("%s interrupted=true (the calls not handled wait for the next tick)", partial.log_text())
        _show_summary(out, partial, interrupted=True)
        return EXIT_INTERRUPTED
    _show_summary(out, summary, interrupted=False)
    return EXIT_OK if tick_json(summary)["outcome"] == "ok" else EXIT_FAILED


def events_resend(ctx: Context, args: argparse.Namespace, out: Output, errors: Console) -> int:
    """Poisoned call events back onto CALL_EVENTS_QUEUE_NAME, for the queue function to publish again."""
    limit = getattr(args, "limit", None)
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1", usage="events resend [--limit N]", prog="events resend")
    result = resend_poisoned(ctx, limit=limit)
    if out.as_json:
        out.json({"moved": result.moved, "left": result.left, "from": result.source, "to": result.target})
    else:
        out.line(
            f"moved {result.moved} event{'' if result.moved == 1 else 's'} from {result.source} to {result.target}"
        )
        if result.left:
            out.line(f"left {result.left} message{'' if result.left == 1 else 's'} on {result.source}: not base64 text")
    return EXIT_FAILED if result.left else EXIT_OK
