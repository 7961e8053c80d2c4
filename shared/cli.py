"""The operator command line, `python -m shared`, run from the app folder.

    python -m shared calls list                     every call (page by page), a table; --json: {"value": [...]}
    python -m shared calls show CALL_ID             one call; --json: the record
    python -m shared calls add CALL_ID [--tenant T] [--metadata K=V]...   register, as POST /api/calls does
    python -m shared calls remove CALL_ID           unregister, as DELETE /api/calls/{callId} does
    python -m shared tick [--dry-run]               sweep every call now, with the timer's engine (no fan-out)

Settings: a non-empty environment variable, else `Values` of `local.settings.json` in the current folder
(whose values are also put into this process's environment where unset, as the Functions host does).
Results go to stdout, logs and errors to stderr.

Exit codes:
    0  done
    1  the sweep recorded failures or could not read every call; the call was not found; the call is
       registered under another tenant (conflict); storage unavailable
    2  bad usage; an invalid callId, tenantId or metadata; a bad setting (named on stderr)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from shared import __version__, registry
from shared.context import Context
from shared.errors import (
    ApiError,
    CallNotFound,
    InvalidCallId,
    InvalidMetadata,
    InvalidRequest,
    InvalidTenantId,
    KeepAliveError,
    SettingsError,
    StorageMisconfigured,
)
from shared.keepalive import run_tick  # the timer's engine
from shared.models import CallRecord, validate_call_id, validate_metadata, validate_tenant_id
from shared.settings import LOCAL_SETTINGS_FILE, load_for_cli_process
from shared.telemetry import summary_fields, tick_outcome

logger = logging.getLogger(__name__)

PROG = "python -m shared"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
PAGE_SIZE = 1000
# ApiErrors that mean "you asked for something invalid" (2); the others are about the state of things (1).
_USAGE_ERRORS = (InvalidRequest, InvalidCallId, InvalidTenantId, InvalidMetadata, StorageMisconfigured)
_NONE = "-"
Command = Callable[[Context, argparse.Namespace, "Output", Console], int]
_NOTE = "Not found, conflict and storage errors exit 1; bad usage, ids and settings exit 2."


class Output:
    """Where results go: rich tables for a person, or JSON for a script, on stdout."""

    def __init__(self, stream: TextIO, *, as_json: bool) -> None:
        self.stream = stream
        self.as_json = as_json
        self.partial = False  # a result was begun on stdout: an error must not be appended to it
        terminal = stream.isatty()
        # Piped: no colours, and wide enough that a table does not fold callIds and times.
        self.console = Console(
            file=stream, highlight=False, markup=False, emoji=False, width=None if terminal else 200, soft_wrap=False
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


# --- the parser ---------------------------------------------------------------------------------
def _common(subcommand: bool) -> argparse.ArgumentParser:
    """--json and --verbose, accepted before or after the subcommand."""
    default: Any = argparse.SUPPRESS if subcommand else False
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--json", action="store_true", default=default, help="print JSON (what the API answers)")
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="log at DEBUG")
    return parser


def build_parser() -> argparse.ArgumentParser:
    common = [_common(subcommand=True)]
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Operator command line of callkeeper: the registered calls, and a keep-alive sweep on demand.",
        epilog="Exit codes: 0 done; 1 the sweep recorded failures, or the call was not found or conflicts, or "
        "storage is unavailable; 2 bad usage, an invalid id or a bad setting. Settings: the environment, else "
        f"{LOCAL_SETTINGS_FILE} in the current folder.",
        parents=[_common(subcommand=False)],
    )
    parser.add_argument("--version", action="version", version=f"callkeeper {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="{calls,tick}", required=True)

    calls = commands.add_parser(
        "calls", help="list, show, add or remove registered calls", description="The registered calls.", epilog=_NOTE
    )
    actions = calls.add_subparsers(dest="action", metavar="{list,show,add,remove}", required=True)
    actions.add_parser(
        "list",
        parents=common,
        help="every registered call",
        description='Every registered call, read page by page. --json prints {"value": [records]}.',
    ).set_defaults(run=_calls_list)
    show = actions.add_parser(
        "show", parents=common, help="one call", description="One call; exit 1 when it is not registered.", epilog=_NOTE
    )
    show.add_argument("call_id", metavar="CALL_ID")
    show.set_defaults(run=_calls_show)
    add = actions.add_parser(
        "add",
        parents=common,
        help="register a call",
        description="Register a call as POST /api/calls does: a call registered already is left as it is "
        "(exit 0); under another tenant it is a conflict (exit 1). It also clears the memory of the call's end.",
        epilog=_NOTE,
    )
    add.add_argument("call_id", metavar="CALL_ID")
    add.add_argument("--tenant", metavar="TENANT_ID", help="the call's tenant (a GUID); default GRAPH_TENANT_ID")
    add.add_argument(
        "--metadata", metavar="KEY=VALUE", action="append", default=[], help="metadata for the bot (repeatable)"
    )
    add.set_defaults(run=_calls_add)
    remove = actions.add_parser(
        "remove",
        parents=common,
        help="unregister a call",
        description="Unregister a call as DELETE /api/calls/{callId} does (no callEnded event); exit 1 when it "
        "is not registered.",
        epilog=_NOTE,
    )
    remove.add_argument("call_id", metavar="CALL_ID")
    remove.set_defaults(run=_calls_remove)

    tick = commands.add_parser(
        "tick",
        parents=common,
        help="send a keepAlive for every call now",
        description="Sweep every registered call now with the timer's engine, in this process (no fan-out): "
        "a progress bar on stderr when it is a terminal, then a summary table. Exit 1 when calls failed or "
        "not every call could be read (ended calls are not failures).",
        epilog="GRAPH_DRY_RUN=true makes every tick a dry run.",
    )
    tick.add_argument("--dry-run", action="store_true", help="send nothing and change nothing; say what would be sent")
    tick.set_defaults(run=_tick)
    return parser


# --- calls --------------------------------------------------------------------------------------
def _text(value: Any) -> Text:
    return Text(_NONE if value is None else str(value))


def _metadata_text(metadata: dict[str, str]) -> str:
    return " ".join(f"{key}={value}" for key, value in metadata.items()) or _NONE


def _record_table(record: CallRecord) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in record.to_json().items():
        table.add_row(Text(name), Text(_metadata_text(value)) if name == "metadata" else _text(value))
    return table


def _list_table(records: Iterable[CallRecord]) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    for header in ("callId", "tenantId", "registeredAt", "lastKeepAliveAt", "lastStatus", "failures", "lastError"):
        table.add_column(header, overflow="fold")
    for record in records:
        data = record.to_json()
        table.add_row(
            *(_text(data[name]) for name in ("callId", "tenantId", "registeredAt", "lastKeepAliveAt", "lastStatus")),
            _text(data["consecutiveFailures"]),
            _text(data["lastError"]),
        )
    return table


def _calls_list(ctx: Context, args: argparse.Namespace, out: Output, errors: Console) -> int:
    """Every call, one page of the table at a time: JSON is streamed, tables are printed per page."""
    token: str | None = None
    count = 0
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
            out.console.print(_list_table(records))
            count += len(records)
        if token is None:
            break
    if out.as_json:
        out.stream.write("]}\n")
        out.stream.flush()
    else:
        out.line(f"{count} call{'' if count == 1 else 's'} registered")
    return EXIT_OK


def _calls_show(ctx: Context, args: argparse.Namespace, out: Output, errors: Console) -> int:
    call_id = validate_call_id(args.call_id)
    record = ctx.calls.get(call_id)
    if record is None:
        raise CallNotFound(f"no call is registered with callId {call_id!r}")
    if out.as_json:
        out.json(record.to_json())
    else:
        out.console.print(_record_table(record))
    return EXIT_OK


def _parse_metadata(items: Sequence[str]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidMetadata(f"--metadata takes KEY=VALUE (got {item!r})")
        if key in metadata:
            raise InvalidMetadata(f"--metadata {key!r} is given twice")
        metadata[key] = value
    return validate_metadata(metadata)


def _calls_add(ctx: Context, args: argparse.Namespace, out: Output, errors: Console) -> int:
    call_id = validate_call_id(args.call_id)
    tenant_id = validate_tenant_id(args.tenant)
    metadata = _parse_metadata(args.metadata)
    record, created = registry.register_explicitly(ctx, call_id=call_id, tenant_id=tenant_id, metadata=metadata)
    if out.as_json:
        out.json(record.to_json())
    else:
        out.line(f"created call {call_id}" if created else f"already registered: call {call_id} (left unchanged)")
        out.console.print(_record_table(record))
    return EXIT_OK


def _calls_remove(ctx: Context, args: argparse.Namespace, out: Output, errors: Console) -> int:
    call_id = validate_call_id(args.call_id)
    record = ctx.calls.get(call_id)
    if record is None or not ctx.calls.delete(record):
        raise CallNotFound(f"no call is registered with callId {call_id!r}")
    logger.info("call removed callId=%s", call_id)
    if not out.as_json:  # the API answers 204 with no body: --json prints nothing
        out.line(f"removed call {call_id}")
    return EXIT_OK


# --- tick ---------------------------------------------------------------------------------------
def count_calls(ctx: Context) -> int:
    """How many calls there are, for the progress bar (rows the app cannot read left out), a page at a time."""
    return ctx.calls.count(more_than=sys.maxsize)


def tick_json(summary: Any) -> dict[str, Any]:
    """`tick --json`: the summary's fields, camelCase, and its `outcome` (ok, failures, incomplete)."""
    return {key: value for key, value in summary_fields(summary).items() if key != "event"}


def _summary_table(summary: Any) -> Table:
    values = tick_json(summary)
    title = "keepalive tick (dry run)" if values.get("dryRun") else "keepalive tick"
    table = Table(title=title, box=box.SIMPLE, show_header=False)
    table.add_column("name", style="bold")
    table.add_column("value", justify="right")
    labels = {"atRisk": "at risk", "dryRun": "dry run", "complete": "read every call"}
    for key, value in values.items():
        if key in ("outcome",):
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


def _tick(ctx: Context, args: argparse.Namespace, out: Output, errors: Console) -> int:
    dry_run = True if args.dry_run else None  # None: GRAPH_DRY_RUN decides, as for the timer
    problems = ctx.settings.problems(dry_run=ctx.settings.dry_run if dry_run is None else True)
    if problems:
        raise SettingsError(problems)
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
    with Progress(*columns, console=errors, disable=not show_bar, redirect_stdout=False) as progress:
        task = progress.add_task("keepalive", total=total)
        summary = run_tick(ctx, dry_run=dry_run, on_progress=lambda n: progress.advance(task, n))
    if out.as_json:
        out.json(tick_json(summary))
    else:
        out.console.print(_summary_table(summary))
    return EXIT_OK if tick_outcome(summary) == "ok" else EXIT_FAILED


# --- main ---------------------------------------------------------------------------------------
def _configure_logging(verbose: bool, errors: Console) -> None:
    handler: logging.Handler
    if errors.is_terminal:
        handler = RichHandler(console=errors, show_path=False, markup=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    else:
        handler = logging.StreamHandler(errors.file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)
    for noisy in ("azure", "msal", "urllib3"):  # per-request chatter of the SDKs
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)


def _fail(errors: Console, message: str) -> None:
    errors.print(Text(f"{PROG}: error: {message}"), soft_wrap=True, highlight=False)


def _exit_code(error: ApiError) -> int:
    return EXIT_USAGE if isinstance(error, _USAGE_ERRORS) else EXIT_FAILED


def main(argv: Sequence[str] | None = None, *, cwd: Path | None = None) -> int:
    """Run one command; returns the exit code (argparse itself exits 2 on bad usage)."""
    args = build_parser().parse_args(argv)
    errors = Console(stderr=True, highlight=False, markup=False, emoji=False)
    out = Output(sys.stdout, as_json=bool(args.json))
    _configure_logging(bool(args.verbose), errors)
    folder = cwd or Path.cwd()
    try:
        settings = load_for_cli_process(folder / LOCAL_SETTINGS_FILE)
    except SettingsError as error:
        _fail(errors, f"invalid settings: {'; '.join(error.problems)}")
        return EXIT_USAGE
    if settings.storage_problems:
        _fail(errors, f"invalid settings: {'; '.join(settings.storage_problems)}")
        return EXIT_USAGE
    run: Command = args.run
    try:
        return run(Context(settings), args, out, errors)
    except SettingsError as error:
        _fail(errors, f"invalid settings: {'; '.join(error.problems)}")
        return EXIT_USAGE
    except ApiError as error:
        if out.as_json and not out.partial:  # what the API would answer
            out.json({"error": {"code": error.code, "message": error.message}})
        hint = " (AzureWebJobsStorage)" if error.code == "storageUnavailable" else ""
        _fail(errors, f"{error.message}{hint}")
        return _exit_code(error)
    except KeepAliveError as error:
        _fail(errors, f"{type(error).__name__}: {error}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _fail(errors, "interrupted")
        return EXIT_INTERRUPTED
