"""The command line's parser. Bad usage raises `UsageError` (so `--json` can answer it) instead of exiting."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from shared import __version__
from shared.cli import commands
from shared.cli.local_settings import LOCAL_SETTINGS_FILE
from shared.errors import UsageError

PROG = "python -m shared"
_NOTE = "Not found, conflict and storage errors exit 1; bad usage, ids and settings exit 2."


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message, usage=self.format_usage().rstrip(), prog=self.prog)


def _common(subcommand: bool) -> Parser:
    """--json and --verbose, accepted before or after the subcommand."""
    default: Any = argparse.SUPPRESS if subcommand else False
    parser = Parser(add_help=False)
    parser.add_argument("--json", action="store_true", default=default, help="print JSON (what the API answers)")
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help="log at DEBUG")
    return parser


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    common = [_common(subcommand=True)]
    parser = Parser(
        prog=prog,
        description="Operator command line of callkeeper: the registered calls, and a keep-alive sweep on demand.",
        epilog="Exit codes: 0 done; 1 the sweep recorded failures, or the call was not found or conflicts, or "
        "storage is unavailable; 2 bad usage, an invalid id or a bad setting; 130 interrupted (Ctrl-C); 141 stdout "
        "closed by its reader (| head). Settings: "
        f"a non-empty environment variable, else {LOCAL_SETTINGS_FILE} in the current folder. --json prints "
        '{"error": {"code", "message"}} on stdout for every error.',
        parents=[_common(subcommand=False)],
    )
    parser.add_argument("--version", action="version", version=f"callkeeper {__version__}")
    verbs = parser.add_subparsers(dest="command", metavar="{calls,tick,events}", required=True)

    calls = verbs.add_parser(
        "calls", help="list, show, add or remove registered calls", description="The registered calls.", epilog=_NOTE
    )
    actions = calls.add_subparsers(dest="action", metavar="{list,show,add,remove}", required=True)
    listing = actions.add_parser(
        "list",
        parents=common,
        help="every registered call",
        description="Every registered call, read page by page: a table that fits the terminal (80 columns when "
        'piped), with ids, tenants and UTC times shortened; --wide shows every field whole. --json prints {"value": '
        "[records]}.",
    )
    listing.add_argument("--wide", action="store_true", help="every field whole, however wide the table gets")
    listing.set_defaults(run=commands.calls_list)
    show = actions.add_parser(
        "show", parents=common, help="one call", description="One call; exit 1 when it is not registered.", epilog=_NOTE
    )
    show.add_argument("call_id", metavar="CALL_ID")
    show.set_defaults(run=commands.calls_show)
    add = actions.add_parser(
        "add",
        parents=common,
        help="register a call",
        description="Register a call as POST /api/calls does: a call registered already is left as it is "
        "(exit 0); under another tenant it is a conflict (exit 1). It also clears the memory of the call's end. "
        '--json prints the record with "created": true (new, the API\'s 201) or false (registered already, 200).',
        epilog=_NOTE,
    )
    add.add_argument("call_id", metavar="CALL_ID")
    add.add_argument("--tenant", metavar="TENANT_ID", help="the call's tenant (a GUID); default GRAPH_TENANT_ID")
    add.add_argument(
        "--metadata", metavar="KEY=VALUE", action="append", default=[], help="metadata for the bot (repeatable)"
    )
    add.set_defaults(run=commands.calls_add)
    remove = actions.add_parser(
        "remove",
        parents=common,
        help="unregister a call",
        description="Unregister a call as DELETE /api/calls/{callId} does (no callEnded event); exit 1 when it "
        "is not registered.",
        epilog=_NOTE,
    )
    remove.add_argument("call_id", metavar="CALL_ID")
    remove.set_defaults(run=commands.calls_remove)

    tick = verbs.add_parser(
        "tick",
        parents=common,
        help="send a keepAlive for every call now",
        description="Sweep every registered call now with the timer's engine, in this process (no fan-out): "
        "a progress bar on stderr when it is a terminal, then a summary table. Exit 1 when calls failed or "
        "not every call could be read (ended calls are not failures).",
        epilog="GRAPH_DRY_RUN=true makes every tick a dry run.",
    )
    tick.add_argument("--dry-run", action="store_true", help="send nothing and change nothing; say what would be sent")
    tick.set_defaults(run=commands.tick)

    events = verbs.add_parser(
        "events",
        help="call events for Event Grid: resend the poisoned ones",
        description="The call events on their way to the Event Grid topic (CALL_EVENTS_QUEUE_NAME).",
        epilog=_NOTE,
    )
    event_actions = events.add_subparsers(dest="action", metavar="{resend}", required=True)
    resend = event_actions.add_parser(
        "resend",
        parents=common,
        help="move poisoned events back to CALL_EVENTS_QUEUE_NAME",
        description="Move the messages of <CALL_EVENTS_QUEUE_NAME>-poison back to CALL_EVENTS_QUEUE_NAME, unchanged, "
        "so the queue function publishes them again (each is sent before it is deleted from the poison queue). Fix "
        "what poisoned them first (the ERROR logs say). Poison messages expire after 7 days. Exit 1 when some were "
        'not base64 text and were left for a person. --json prints {"moved", "left", "from", "to"}.',
        epilog=_NOTE,
    )
    resend.add_argument("--limit", type=int, default=None, metavar="N", help="move at most N events")
    resend.set_defaults(run=commands.events_resend)
    return parser
