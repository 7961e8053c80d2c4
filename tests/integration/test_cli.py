"""The operator command line as a person runs it: `python -m shared ...` in a folder with a local.settings.json.

Each run is a real subprocess against the session's Azurite, this test's own table and queues, and the
Graph and identity stand-ins; what is checked is its stdout, its stderr and its exit code.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from azure.storage.queue import QueueClient

from shared import registry
from shared.models import utc_now
from tests.azurite import decode_event
from tests.integration.cli_harness import OTHER_TENANT, RECORD_FIELDS, App
from tests.standins.server import Reply

pytestmark = pytest.mark.integration


@pytest.fixture
def app(make_cli: Callable[..., App]) -> App:
    return make_cli()


def test_calls_add_show_list_remove_as_text_and_json(app, standins):
    tenant = standins.tenant

    added = app.run("calls", "add", "call-1", "--tenant", tenant.upper(), "--metadata", "meeting=standup")
    assert added.code == 0, added.stderr
    assert "created call call-1" in added.stdout
    assert tenant in added.stdout and "meeting=standup" in added.stdout
    assert "call registered callId=call-1" in added.stderr  # logs go to stderr

    again = app.run("calls", "add", "call-1", "--tenant", tenant, "--metadata", "meeting=other")
    assert again.code == 0, again.stderr
    assert "already registered" in again.stdout and "meeting=standup" in again.stdout  # first registration wins

    second = app.run("calls", "add", "call 2é", "--json")
    assert second.code == 2  # whitespace: an invalid callId
    assert "callId must not contain whitespace" in second.stderr
    assert second.json() == {"error": {"code": "invalidCallId", "message": "callId must not contain whitespace"}}

    second = app.run("calls", "add", "call-2é", "--json", "--metadata", "k=v", "--metadata", "n=")
    assert second.code == 0, second.stderr
    record = second.json()
    assert set(record) == RECORD_FIELDS | {"created"} and record.pop("created") is True
    assert record["callId"] == "call-2é"
    assert record["tenantId"] == tenant  # GRAPH_TENANT_ID
    assert record["metadata"] == {"k": "v", "n": ""}
    assert record["lastKeepAliveAt"] is None and record["consecutiveFailures"] == 0

    conflict = app.run("calls", "add", "call-1", "--tenant", OTHER_TENANT)
    assert conflict.code == 1
    assert "registered under another tenant" in conflict.stderr and conflict.stdout == ""

    listed = app.run("calls", "list")
    assert listed.code == 0, listed.stderr
    assert "call-1" in listed.stdout and "call-2é" in listed.stdout and "2 calls registered" in listed.stdout

    listed = app.run("--json", "calls", "list")
    assert listed.code == 0, listed.stderr
    body = listed.json()
    assert set(body) == {"value"}
    assert sorted(item["callId"] for item in body["value"]) == ["call-1", "call-2é"]

    shown = app.run("calls", "show", "call-1", "--json")
    assert shown.code == 0, shown.stderr
    assert shown.json() == next(item for item in body["value"] if item["callId"] == "call-1")
    shown = app.run("calls", "show", "call-1")
    assert shown.code == 0 and "registeredAt" in shown.stdout and "meeting=standup" in shown.stdout

    unknown = app.run("calls", "show", "no-such-call")
    assert unknown.code == 1
    assert "no call is registered" in unknown.stderr and unknown.stdout == ""
    invalid = app.run("calls", "show", "a/b")
    assert invalid.code == 2 and "must not contain '/'" in invalid.stderr

    removed = app.run("calls", "remove", "call-2é")
    assert removed.code == 0, removed.stderr
    assert "removed call call-2é" in removed.stdout
    removed = app.run("calls", "remove", "call-2é", "--json")
    assert removed.code == 1
    assert removed.json()["error"]["code"] == "callNotFound"
    assert [record.call_id for page in app.context().calls.pages() for record in page] == ["call-1"]


def test_bad_usage_and_bad_settings_exit_2_naming_the_problem(app):
    usage = app.run("calls", "add", "call-1", "--metadata", "no-equals-sign")
    assert usage.code == 2 and "--metadata takes KEY=VALUE" in usage.stderr
    usage = app.run("calls", "add", "call-1", "--tenant", "not-a-guid")
    assert usage.code == 2 and "tenantId must be a GUID" in usage.stderr
    usage = app.run("calls")
    assert usage.code == 2 and "usage: python -m shared calls" in usage.stderr

    app.write_settings(CALLS_TABLE_NAME="not_a_table!")
    bad = app.run("calls", "list")
    assert bad.code == 2
    assert "CALLS_TABLE_NAME" in bad.stderr and bad.stdout == ""
    bad = app.run("calls", "list", env={"CALLS_TABLE_NAME": ""})  # empty counts as unset: the file's value stays
    assert bad.code == 2 and "CALLS_TABLE_NAME" in bad.stderr

    good = app.run("calls", "list", "--json", env={"CALLS_TABLE_NAME": app.values["CALLS_TABLE_NAME"]})
    assert good.code == 0, good.stderr  # a non-empty environment variable wins over local.settings.json
    assert good.json() == {"value": []}

    app.write_settings(GRAPH_CLIENT_SECRET=None)
    missing = app.run("tick")
    assert missing.code == 2
    assert "GRAPH_CLIENT_SECRET" in missing.stderr and missing.stdout == ""

    (app.folder / "local.settings.json").write_text("{not json", encoding="utf-8")
    broken = app.run("calls", "list")
    assert broken.code == 2 and "local.settings.json is not valid JSON" in broken.stderr


def test_tick_sweeps_every_call_and_exits_1_when_one_failed(app, standins):
    ctx = app.context()
    for call_id in ("ok-1", "ok-2", "ended-1", "flaky-1"):
        registry.register(
            ctx.calls, call_id=call_id, tenant_id=None, default_tenant_id=standins.tenant, metadata={}, now=utc_now()
        )
    standins.graph.script("ended-1", 404)
    standins.graph.script("flaky-1", *[Reply(503, headers={"Retry-After": "0"})] * 4)

    # rich draws the progress bar only on a terminal: TTY_COMPATIBLE makes it take the pipe for one
    terminal = {"TTY_COMPATIBLE": "1", "NO_COLOR": "1", "COLUMNS": "200"}
    dry = app.run("tick", "--dry-run", "--json", env=terminal)
    assert dry.code == 0, dry.stderr
    summary = dry.json()
    assert summary["dryRun"] is True and summary["calls"] == 4 and summary["notSent"] == 4
    assert summary["outcome"] == "ok"
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", dry.stderr)  # without the terminal's control codes
    assert "dry run: would send POST" in screen
    assert "keepalive" in screen and "4/4 calls" in screen  # the bar, its total from the count
    assert standins.graph.requests == []  # nothing sent
    assert ctx.calls.get("ended-1") is not None  # nothing changed

    tick = app.run("tick")
    assert tick.code == 1, tick.stderr
    assert "keepalive tick calls=4 succeeded=2 ended=1 failed=1 retries=3" in tick.stderr  # the timer's log line
    assert "keepalive tick" in tick.stdout  # the summary table
    rows = dict(line.split(maxsplit=1) for line in tick.stdout.splitlines() if line.strip()[:1].isalpha())
    assert rows["calls"].strip() == "4" and rows["succeeded"].strip() == "2"
    assert rows["ended"].strip() == "1" and rows["failed"].strip() == "1" and rows["outcome"].strip() == "failures"

    assert {request.call_id for request in standins.graph.requests} == {"ok-1", "ok-2", "ended-1", "flaky-1"}
    assert ctx.calls.get("ended-1") is None
    flaky = ctx.calls.get("flaky-1")
    assert flaky is not None and flaky.last_status == 503 and flaky.consecutive_failures == 1
    queue = QueueClient.from_connection_string(app.values["AzureWebJobsStorage"], app.values["CLEANUP_QUEUE_NAME"])
    [message] = queue.receive_messages()
    event = decode_event(message.content)
    assert event["type"] == "callEnded" and event["callId"] == "ended-1" and event["reason"] == "keepAliveNotFound"

    again = app.run("tick", "--json")  # flaky-1's script is used up: Graph answers 200 now
    assert again.code == 0, again.stderr
    summary = again.json()
    assert (summary["calls"], summary["succeeded"], summary["failed"]) == (3, 3, 0)
    assert summary["dryRun"] is False and summary["complete"] is True and summary["outcome"] == "ok"
