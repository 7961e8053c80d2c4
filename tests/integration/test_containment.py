"""Containment at every boundary (issue 18, part A), where storage behaviour matters: real Azurite, real MSAL and
the Graph and identity stand-ins. One bad value costs only its own call when writing, logging and sending."""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable
from typing import Any

import pytest
from azure.data.tables import EdmType, EntityProperty, UpdateMode

from shared.context import Context
from shared.fanout import WorkRange
from shared.keepalive import run_tick, run_work
from shared.models import INT32_MAX, MAX_LAST_ERROR, call_keys
from tests.conftest import ContextFactory
from tests.fakes import WorkMessage
from tests.helpers import ids_in, raw_row
from tests.host import FunctionHost, body_of
from tests.integration.cli_harness import App
from tests.standins.server import Reply

pytestmark = pytest.mark.integration

HOSTILE = "x\nERROR forged line\r\x1b[2J\u202e\u2028\ufeff"


def unsafe_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The app's log records whose message holds a character that could end, split or hide a line."""
    return [
        record.getMessage()[:200]
        for record in caplog.records
        if record.name.startswith("shared")
        and any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Zl", "Zp"} for ch in record.getMessage())
    ]


@pytest.fixture
def ctx(make_context: ContextFactory) -> Context:
    return make_context(graph=True, install=True, KEEPALIVE_CONCURRENCY="4")


def register(host: FunctionHost, call_id: str, tenant_id: str | None = None) -> None:
    body: dict[str, Any] = {"callId": call_id, **({"tenantId": tenant_id} if tenant_id else {})}
    response = host.request("POST", "/api/calls", body=body)
    assert response.status_code == 201, response.get_body()


def record_of(host: FunctionHost, call_id: str) -> dict[str, Any]:
    response = host.request("GET", f"/api/calls/{call_id}")
    assert response.status_code == 200, response.get_body()
    return body_of(response)


# --- item 1: one overflowing counter ----------------------------------------------------------------------
def test_a_counter_at_int32_max_costs_nothing_to_the_rest_of_its_partition(ctx, host, standins):
    other_tenant = standins.new_tenant()
    worn, *others = ids_in("17", 6, "worn")
    register(host, worn)
    for index, call_id in enumerate(others):
        register(host, call_id, other_tenant if index % 2 else None)
    partition_key, row_key = call_keys(worn)
    ctx.storage.table().update_entity(
        {"PartitionKey": partition_key, "RowKey": row_key, "ConsecutiveFailures": INT32_MAX}, mode=UpdateMode.MERGE
    )
    standins.graph.script(worn, 403, 403)

    summary = run_tick(ctx)

    assert (summary.calls, summary.succeeded, summary.failed, summary.unsaved) == (6, 5, 1, 0)
    assert all(record_of(host, call_id)["lastKeepAliveAt"] is not None for call_id in others)
    stored = record_of(host, worn)
    assert (stored["consecutiveFailures"], stored["lastStatus"]) == (INT32_MAX, 403)

    standins.graph.script(worn, 403)
    work = run_work(ctx, WorkMessage(WorkRange(("17",), "tick-2").text()))  # a work range completes: no retry
    assert work is not None and (work.succeeded, work.failed, work.unsaved) == (5, 1, 0)


# --- item 2: a refused transaction's one-by-one fallback: tests/unit/test_calls.py --------------------------


# --- item 3: the identity provider's error -----------------------------------------------------------------
def test_a_hostile_identity_provider_error_is_recorded_bounded_and_logged_on_one_line(ctx, host, standins, caplog):
    tenant = standins.new_tenant()
    register(host, "refused-token", tenant)
    register(host, "fine")
    standins.identity.fail_next(
        Reply(
            400,
            body={
                "error": "invalid_client" + "E" * 70_000 + HOSTILE,
                "error_description": "AADSTS7000215: " + HOSTILE,
                "error_codes": [7000215],
                "correlation_id": "c" + HOSTILE * 100,
            },
        ),
        tenant=tenant,
    )

    with caplog.at_level(logging.DEBUG, logger="shared"):
        summary = run_tick(ctx)

    assert (summary.succeeded, summary.failed, summary.unsaved) == (1, 1, 0)
    last_error = record_of(host, "refused-token")["lastError"]
    assert last_error.startswith("token: invalid_clientEEE") and len(last_error) <= MAX_LAST_ERROR
    assert unsafe_records(caplog) == []
    assert max(len(record.getMessage()) for record in caplog.records if record.name.startswith("shared")) < 4096


# --- items 4 and 5: rows beyond what registration accepts -------------------------------------------------
def test_rows_beyond_what_registration_accepts_are_unreadable_everywhere(
    ctx, host, standins, make_cli: Callable[..., App]
):
    register(host, "healthy")
    surrogate, oversized = "meta-surrogate", "meta-oversized"
    for call_id, metadata in ((surrogate, '{"k":"\\ud800"}'), (oversized, '{"k":"' + "m" * 5000 + '"}')):
        ctx.storage.table().create_entity(raw_row(call_id, Metadata=metadata))
        standins.graph.script(call_id, 404)  # were it read, Graph would end it: an event over 64 KiB for one

    summary = run_tick(ctx)

    assert (summary.calls, summary.succeeded, summary.skipped, summary.ended) == (1, 1, 2, 0)
    assert ctx.storage.queue(ctx.settings.cleanup_queue_name).peek_messages() == []
    listed = host.request("GET", "/api/calls?top=1")
    assert listed.status_code == 200 and [r["callId"] for r in body_of(listed)["value"]] == ["healthy"]
    assert "nextLink" not in body_of(listed) or host.request("GET", body_of(listed)["nextLink"]).status_code == 200
    for call_id in (surrogate, oversized):
        assert host.request("GET", f"/api/calls/{call_id}").status_code == 404
        assert call_keys(call_id)[1] in {e["RowKey"] for e in ctx.storage.table().list_entities()}  # left in place
    assert ctx.calls.count(more_than=10) == 1

    cli = make_cli(KEEPALIVE_CONCURRENCY="4")
    listed_by_cli = cli.run("--json", "calls", "list")
    assert listed_by_cli.code == 0, listed_by_cli.stderr
    assert [r["callId"] for r in listed_by_cli.json()["value"]] == ["healthy"]
    assert cli.run("calls", "show", surrogate).code == 1


# --- item 9 (part): a year below 1000 ----------------------------------------------------------------------
def test_a_date_below_1000_is_never_read_nor_written_back_unpadded(ctx, host):
    register(host, "edge")
    ancient = "ancient"
    ancient_row = raw_row(ancient, RegisteredAt=EntityProperty("0999-06-01T00:00:00.000Z", EdmType.DATETIME))
    ctx.storage.table().create_entity(ancient_row)
    edge_partition, edge_row = call_keys("edge")
    ctx.storage.table().update_entity(
        {
            "PartitionKey": edge_partition,
            "RowKey": edge_row,
            "RegisteredAt": EntityProperty("1601-01-01T00:00:00.000Z", EdmType.DATETIME),
        },
        mode=UpdateMode.MERGE,
    )

    summary = run_tick(ctx)

    assert (summary.calls, summary.succeeded, summary.skipped, summary.unsaved) == (1, 1, 1, 0)
    assert host.request("GET", f"/api/calls/{ancient}").status_code == 404  # never a 500
    edge = record_of(host, "edge")  # written back, still read back
    assert edge["registeredAt"] == "1601-01-01T00:00:00.000Z" and edge["lastKeepAliveAt"] is not None
    stored = ctx.storage.table().get_entity(ancient_row["PartitionKey"], ancient_row["RowKey"])
    assert stored["RegisteredAt"].tables_service_value.startswith("0999-06-01")  # left as it was


# --- item 8: values from outside in the tick's and a work range's log lines -------------------------------
def test_graphs_code_a_request_id_and_a_tick_id_never_forge_a_log_line(ctx, host, standins, caplog):
    register(host, "coded")
    standins.graph.script(
        "coded",
        Reply(
            403,
            headers={"request-id": "r\x1b[31m\x85x"},
            body={"error": {"code": HOSTILE, "message": "m", "innerError": {"request-id": HOSTILE}}},
        ),
    )
    partition = call_keys("coded")[0]

    with caplog.at_level(logging.DEBUG, logger="shared"):
        summary = run_work(ctx, WorkMessage(WorkRange((partition,), "t\nERROR forged\u202e").text()))

    assert summary is not None and summary.failed == 1 and summary.unsaved == 0
    assert unsafe_records(caplog) == []
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("keepalive failed callId=coded ") and "error=403 x\\u000aERROR" in m for m in messages)
    assert any('tickId="t\\nERROR\\u0020forged\\u202e"' in m for m in messages)
    last_error = record_of(host, "coded")["lastError"]
    assert last_error.startswith("403 x\\u000aERROR") and len(last_error) <= MAX_LAST_ERROR
