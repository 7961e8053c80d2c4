"""The KQL lives in infra/queries only, and reads only what the app writes.

What the app writes is derived from the source of shared/ (its log format strings and the custom
dimensions its telemetry helpers build), not from a list kept here, so a renamed log key breaks this test
rather than an alert. The queries accept the camelCase keys (`callId=`, `tenantId=`) that the coming
redesign gives every record, beside the keys written today.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

from shared.summary import TickSummary
from shared.telemetry import call_fields, summary_fields
from tests.infra.kql import DOCS_KQL, QUERIES, SECTIONS, build_docs, query_files
from tests.infra.test_templates import MAIN, OPERATIONS, param

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"

LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical"}
# Keys the redesign (issue 13) writes on every record; the queries may read them beside today's keys.
UNIFIED_KEYS = {"callId", "tenantId"}
# Written by the Functions host, not the app: the category of the host's copy of a record.
HOST_DIMENSIONS = {"Category"}
# Columns of the tables the queries read (Application Insights traces, Log Analytics StorageQueueLogs).
TABLE_COLUMNS = {"message", "timestamp", "severityLevel", "operation_Name", "OperationName", "Uri"}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def literal_text(node: ast.expr) -> str | None:
    """A format string: a str constant, or an f-string with its fields as '{}'."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


@cache
def written_records() -> dict[str, set[str]]:
    """Every log format of shared/ (its text up to the first `key=`) and the keys it writes."""
    formats: list[str] = []
    for path in sorted(SHARED.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                args = node.args[1:] if node.func.attr == "log" else node.args
                if (node.func.attr in LOG_METHODS or node.func.attr == "log") and args:
                    text = literal_text(args[0])
                    if text is not None:
                        formats.append(text)
            if isinstance(node, ast.FunctionDef) and node.name == "log_text":  # the tick summary's text
                for ret in ast.walk(node):
                    if isinstance(ret, ast.Return) and ret.value is not None:
                        text = literal_text(ret.value)
                        if text is not None:
                            formats.append(text)
    records: dict[str, set[str]] = {}
    tick = next(f for f in formats if f.startswith("keepalive tick calls="))
    for text in formats:
        if text.startswith("%s "):  # a work message's tick: log_text() followed by its own keys
            text = tick + text[2:]
        text = re.sub(r"%[-.\d]*[sdrf]|\{\}", "X", text)
        records.setdefault(text, set()).update(re.findall(r"(\w+)=", text))
    return records


@cache
def written_keys() -> set[str]:
    return {key for keys in written_records().values() for key in keys}


@cache
def written_dimensions() -> set[str]:
    every = call_fields(
        "x",
        call_id="c",
        tenant_id="t",
        outcome="o",
        status=1,
        error="e",
        attempts=1,
        retries=1,
        consecutive_failures=1,
        seconds=1.0,
        last_success="s",
        minutes=1,
    )
    return set(summary_fields(TickSummary())) | set(every)


@cache
def written_events() -> set[str]:
    events = {summary_fields(TickSummary())["event"]}
    for path in sorted(SHARED.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "call_fields" and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    events.add(first.value)
    return events


def message_prefixes(kql: str) -> list[str]:
    return re.findall(r'message startswith "([^"]+)"', kql)


def key_groups(kql: str) -> list[set[str]]:
    """The keys each extract() pattern or quoted `key=` literal reads: one set of alternatives per read."""
    groups = []
    for pattern in re.findall(r'extract\(@"([^"]+)"', kql):
        for alternatives, single in re.findall(r"\\b(?:\(\?:([\w|]+)\)|(\w+))=", pattern):
            groups.append(set(alternatives.split("|")) if alternatives else {single})
    for key in re.findall(r'"(\w+)="', kql):
        groups.append({key})
    for key in re.findall(r'contains "(\w+)=', kql):
        groups.append({key})
    return groups


# --- one home -------------------------------------------------------------------------------------------


def test_docs_queries_kql_is_built_from_the_query_files():
    assert DOCS_KQL.read_text(encoding="utf-8") == build_docs(), (
        "docs/queries.kql is out of date: run `.venv/bin/python -m tests.infra.kql`"
    )


def test_every_query_file_is_in_the_docs_once():
    assert sorted(name for _, name in SECTIONS) == [p.name for p in query_files()]


def test_the_bicep_loads_its_kql_from_the_query_files_and_holds_none_itself():
    loaded = set()
    for path in sorted((ROOT / "infra").rglob("*.bicep")):
        text = path.read_text(encoding="utf-8")
        for ref in re.findall(r"loadTextContent\('([^']+)'\)", text):
            target = (path.parent / ref).resolve()
            assert target.parent == QUERIES and target.is_file(), f"{path.name}: {ref}"
            loaded.add(target.name)
        assert not re.search(r"\|\s*(where|summarize|extend|project)\b", text), f"{path.name} holds KQL"
    expected = {
        "at-risk.kql",
        "tick-silence.kql",
        "failure-rate.kql",
        "poison-messages.kql",
        "tick-summary.kql",
        "throttling-by-tenant.kql",
        "ended-calls.kql",
    }
    assert expected <= loaded, sorted(expected - loaded)


def test_the_poison_query_names_the_default_queues_that_the_bicep_replaces():
    kql = (QUERIES / "poison-messages.kql").read_text(encoding="utf-8")
    operations = OPERATIONS.read_text(encoding="utf-8")
    for queue_param in ("cleanupQueueName", "keepAliveWorkQueueName", "callEventsQueueName"):
        default = param(MAIN, queue_param)["default"]
        assert f"/{default}-poison/" in kql, default
        assert f"'/{default}-poison/'" in operations, default


# --- every field read is one the app writes ------------------------------------------------------------


def test_the_source_scan_finds_the_records_the_queries_rely_on():
    # guards the scan itself: if it found nothing, every check below would pass vacuously
    prefixes = {text.split("=")[0] for text in written_records()}
    for expected in ("keepalive tick calls", "keepalive at risk callId", "graph throttled tenantId"):
        assert expected in prefixes, expected
    assert {"calls", "failed", "seconds", "callId", "eventId", "ranges"} <= written_keys()
    assert {"keepaliveTick", "keepaliveFailed", "keepaliveAtRisk"} <= written_events()


def test_every_message_a_query_filters_on_is_written():
    for path in query_files():
        for prefix in message_prefixes(path.read_text(encoding="utf-8")):
            matches = [text for text in written_records() if text.startswith(prefix)]
            assert matches, f"{path.name}: no record of shared/ starts with {prefix!r}"


def test_every_key_a_query_parses_is_written_by_the_records_it_reads():
    allowed = written_keys() | UNIFIED_KEYS | {camel(k) for k in written_keys()}
    for path in query_files():
        kql = path.read_text(encoding="utf-8")
        prefixes = message_prefixes(kql)
        records = [text for text in written_records() if any(text.startswith(p) for p in prefixes)]
        keys = set().union(*(written_records()[r] for r in records)) if records else written_keys()
        for group in key_groups(kql):
            assert group & keys, f"{path.name}: none of {sorted(group)} is written by {prefixes or 'any record'}"
            assert group <= allowed, f"{path.name}: {sorted(group - allowed)} is written by no record"


def test_every_custom_dimension_and_event_a_query_reads_is_written():
    dimensions = written_dimensions() | HOST_DIMENSIONS
    for path in query_files():
        kql = path.read_text(encoding="utf-8")
        for name in re.findall(r"customDimensions\.(\w+)", kql):
            assert name in dimensions, f"{path.name}: customDimensions.{name} is not written"
        for event in re.findall(r'customDimensions\.event == "(\w+)"', kql):
            assert event in written_events(), f"{path.name}: event {event} is not written"


def test_every_column_a_query_reads_exists():
    for path in query_files():
        kql = path.read_text(encoding="utf-8")
        body = "\n".join(line for line in kql.splitlines() if not line.lstrip().startswith("//"))
        table = body.lstrip().split("\n", 1)[0]
        assert table in ("traces", "StorageQueueLogs") or table.startswith("let "), path.name
        for column in re.findall(r"\b(message|timestamp|severityLevel|operation_Name|OperationName|Uri)\b", body):
            assert column in TABLE_COLUMNS


def test_the_check_fails_on_a_key_no_record_writes():
    kql = (
        'traces\n| where message startswith "keepalive at risk "\n| extend x = extract(@"\\bcallid=(\\S+)", 1, message)'
    )
    (group,) = key_groups(kql)
    assert group == {"callid"}
    assert not group & written_keys() and group - (written_keys() | UNIFIED_KEYS)
