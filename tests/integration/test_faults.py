"""The tick under faults, against real Azurite and the Graph and identity stand-ins.

Storage faults are real outages (a private Azurite stopped and started again; a failure at one step of a tick,
over storage in memory: tests/unit/test_sweep.py); Graph and identity faults are scripted on the stand-ins.
Waits between retries go to a recording sleep, so only request timeouts take real time.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import registry
from shared.context import Context
from shared.errors import StorageUnavailable
from shared.keepalive import run_tick
from shared.models import CallRecord, format_time
from shared.retry import MAX_RETRIES, RETRY_AFTER_CAP
from tests import azurite as azurite_module
from tests.azurite import PrivateAzurite, drain_events
from tests.conftest import ContextFactory
from tests.fakes import FakeClock, RecordingSleep
from tests.standins.fixtures import Standins
from tests.standins.identity import entra_error
from tests.standins.server import RESET, Reply

pytestmark = pytest.mark.integration

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
QUEUE_DOWN_BOUND = 10.0  # seconds: a small retry budget, not the queue SDK's default 15 s + 18 s


# --- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def private_azurite_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateAzurite]:
    instance = PrivateAzurite(Path(tmp_path_factory.mktemp("private-azurite")))
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def private_azurite(private_azurite_instance: PrivateAzurite) -> PrivateAzurite:
    """A private Azurite this test may stop and start (running when the test begins)."""
    private_azurite_instance.start()
    return private_azurite_instance


@pytest.fixture
def keepalive(make_context: ContextFactory) -> Callable[..., Context]:
    """Builds contexts for real ticks against the stand-ins and this test's table and queues."""

    def build(clock: FakeClock | None = None, sleep: RecordingSleep | None = None, **overrides: str) -> Context:
        context = make_context(graph=True, now=clock or FakeClock(), sleep=sleep, **overrides)
        assert not context.settings.tick_problems and not context.settings.storage_problems
        return context

    return build


def register(ctx: Context, *call_ids: str, tenant: str | None = TENANT) -> dict[str, CallRecord]:
    records = {}
    for call_id in call_ids:
        record, created = registry.register(
            ctx.calls, call_id=call_id, tenant_id=tenant, default_tenant_id=None, metadata={"n": call_id}, now=ctx.now()
        )
        assert created
        records[call_id] = record
    return records


def records_by_id(ctx: Context) -> dict[str, dict[str, Any]]:
    """Every stored call as the API shows it, by callId."""
    return {record.call_id: record.to_json() for page in ctx.calls.pages() for record in page}


def errors_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


def split_connection_string(tables: azurite_module.Azurite, queues: azurite_module.Azurite) -> str:
    """Tables on one Azurite, queues on another: the queue service can then fail on its own."""
    base = "http://127.0.0.1:{}/" + azurite_module.ACCOUNT
    return (
        f"DefaultEndpointsProtocol=http;AccountName={azurite_module.ACCOUNT};AccountKey={azurite_module.KEY};"
        f"TableEndpoint={base.format(tables.table_port)};QueueEndpoint={base.format(queues.queue_port)};"
    )


# --- storage down when the tick starts -----------------------------------------------------------
def test_storage_down_when_the_tick_starts_logs_an_error_changes_nothing_and_the_next_tick_recovers(
    keepalive, private_azurite: PrivateAzurite, standins: Standins, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    ctx = keepalive(clock, AzureWebJobsStorage=private_azurite.connection_string)
    register(ctx, "live-1", "live-2", "live-3", "gone")
    first = run_tick(ctx)  # a warm worker: its table and queue clients exist already
    assert (first.calls, first.succeeded) == (4, 4)
    before = records_by_id(ctx)
    standins.graph.reset()
    standins.graph.script("gone", 404)

    private_azurite.stop()
    clock.advance(minutes=10)
    cold = keepalive(clock, AzureWebJobsStorage=private_azurite.connection_string)  # a worker started meanwhile
    with caplog.at_level(logging.ERROR), pytest.raises(StorageUnavailable):
        run_tick(cold)
    assert any("storage unavailable" in m and "AzureWebJobsStorage" in m for m in errors_in(caplog))
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        warm = run_tick(ctx)
    assert (warm.calls, warm.succeeded, warm.ended, warm.failed, warm.complete) == (0, 0, 0, 0, False)
    assert any("could not read calls" in m for m in errors_in(caplog))
    assert standins.graph.requests == []  # nothing sent, so nothing can have changed

    private_azurite.start()
    assert records_by_id(ctx) == before  # the outage changed nothing
    assert drain_events(ctx) == []
    clock.advance(minutes=10)
    recovered = run_tick(ctx)
    assert (recovered.calls, recovered.succeeded, recovered.ended, recovered.complete) == (4, 3, 1, True)
    after = records_by_id(ctx)
    assert sorted(after) == ["live-1", "live-2", "live-3"]
    assert {r["lastKeepAliveAt"] for r in after.values()} == {format_time(clock())}
    [event] = drain_events(ctx)
    assert event["callId"] == "gone" and event["reason"] == "keepAliveNotFound"


# --- the queue failing when a 404 arrives ----------------------------------------------------------
def test_queue_down_when_a_404_arrives_keeps_the_call_and_sends_the_event_next_tick(
    keepalive, azurite, private_azurite: PrivateAzurite, standins: Standins, caplog: pytest.LogCaptureFixture
) -> None:
    """A real outage of the queue service alone: tables on the session's Azurite, queues on a private one."""
    clock = FakeClock()
    ctx = keepalive(clock, AzureWebJobsStorage=split_connection_string(azurite, private_azurite.instance))
    records = register(ctx, "gone", "live")
    assert run_tick(ctx).succeeded == 2  # warm: the cleanup queue exists and its client is built
    standins.graph.script("gone", 404, 404)

    private_azurite.stop()
    clock.advance(minutes=10)
    started = time.monotonic()
    with caplog.at_level(logging.ERROR):
        first = run_tick(ctx)
    elapsed = time.monotonic() - started
    assert (first.calls, first.succeeded, first.ended, first.failed) == (2, 1, 0, 1)
    assert any("gone" in m and "StorageUnavailable" in m for m in errors_in(caplog))
    assert sorted(records_by_id(ctx)) == ["gone", "live"]  # the call is kept: no event, no delete

    private_azurite.start()
    assert drain_events(ctx) == []
    clock.advance(minutes=10)
    second = run_tick(ctx)
    assert (second.ended, second.succeeded) == (1, 1)
    assert sorted(records_by_id(ctx)) == ["live"]
    [event] = drain_events(ctx)
    assert event["callId"] == "gone" and event["eventId"] == records["gone"].registration_id
    assert event["detectedAt"] == format_time(clock())
    # Bounded: an unreachable queue fails within the store's small retry budget (shared/store.py), not after the
    # queue SDK's default backoff (15 s + 18 s), which would hold a sweep worker for each ended call.
    assert elapsed < QUEUE_DOWN_BOUND, f"the tick took {elapsed:.1f} s with the queue unreachable"


# --- Graph faults: resets, 5xx storms, slow answers --------------------------------------------------
def test_graph_resets_5xx_storms_and_slow_answers_end_the_tick_in_bounded_time(keepalive, standins: Standins) -> None:
    timeout, concurrency, per_kind = 0.3, 6, 6
    sleep = RecordingSleep()
    clock = FakeClock()
    ctx = keepalive(clock, sleep, KEEPALIVE_REQUEST_TIMEOUT=str(timeout), KEEPALIVE_CONCURRENCY=str(concurrency))
    attempts = 1 + MAX_RETRIES
    storms = {
        "reset": [RESET] * attempts,
        "storm": [Reply(429, {"Retry-After": "3600"}), Reply(503), Reply(500), Reply(502)],
        "slow": [Reply(200, delay=timeout + 0.7)] * attempts,
    }
    expected_error = {"reset": ("connection error", None), "storm": ("502 BadGateway", 502), "slow": ("timeout", None)}
    ids = [f"{kind}-{i}" for kind in storms for i in range(per_kind)]
    register(ctx, *ids)
    for call_id in ids:
        standins.graph.script(call_id, *storms[call_id.split("-")[0]])
    ctx.tokens().token(TENANT)  # the token first, so the measured tick is all Graph

    started = time.monotonic()
    summary = run_tick(ctx)
    elapsed = time.monotonic() - started

    # The bound, from the settings: every call makes at most 1 + MAX_RETRIES attempts, each ending by
    # KEEPALIVE_REQUEST_TIMEOUT (connect and read), and waits at most MAX_RETRIES times RETRY_AFTER_CAP;
    # KEEPALIVE_CONCURRENCY calls run at once. Waits are recorded here, not slept, so they are checked apart.
    rounds = math.ceil(len(ids) / concurrency)
    request_bound = rounds * attempts * (timeout + 0.25) + 2.0  # 0.25 s a request and 2 s for the tick itself
    assert elapsed < request_bound, (elapsed, request_bound)
    assert len(sleep.waits) == MAX_RETRIES * len(ids)
    assert max(sleep.waits) <= RETRY_AFTER_CAP and RETRY_AFTER_CAP in sleep.waits  # Retry-After: 3600 is capped
    # So with real waits the tick would end within rounds * (attempts * timeout + MAX_RETRIES * RETRY_AFTER_CAP).

    assert (summary.calls, summary.failed, summary.succeeded, summary.ended) == (len(ids), len(ids), 0, 0)
    assert summary.retries == MAX_RETRIES * len(ids)
    for call_id in ids:
        assert len(standins.graph.requests_for(call_id)) == attempts
    records = records_by_id(ctx)
    assert sorted(records) == sorted(ids)  # nothing deleted
    for call_id, record in records.items():
        error, status = expected_error[call_id.split("-")[0]]
        assert (record["lastError"], record["lastStatus"]) == (error, status), call_id
        assert record["consecutiveFailures"] == 1
    assert drain_events(ctx) == []

    standins.graph.reset()
    clock.advance(minutes=10)
    recovered = run_tick(ctx)
    assert recovered.succeeded == len(ids)
    assert {r["consecutiveFailures"] for r in records_by_id(ctx).values()} == {0}


# --- the identity provider failing ---------------------------------------------------------------------
IDENTITY_FAILURES: dict[str, dict[str, Any]] = {
    "server-error": ({"fail": [entra_error(500, "server_error", 50000, "There was an error issuing a token.")] * 3}),
    "connection-reset": {"fail": [RESET] * 3},
    "slow": {"latency": 1.0},
    "wrong-secret": {"GRAPH_CLIENT_SECRET": "not-the-registered-secret"},
}


@pytest.mark.parametrize("failure", sorted(IDENTITY_FAILURES))
def test_identity_provider_failing_records_failures_deletes_nothing_and_logs_a_clear_error(
    keepalive, standins: Standins, caplog: pytest.LogCaptureFixture, failure: str
) -> None:
    how = IDENTITY_FAILURES[failure]
    overrides = {"KEEPALIVE_REQUEST_TIMEOUT": "0.3"}
    if "GRAPH_CLIENT_SECRET" in how:
        overrides["GRAPH_CLIENT_SECRET"] = how["GRAPH_CLIENT_SECRET"]
    ctx = keepalive(**overrides)
    ids = [f"call-{i}" for i in range(12)]
    register(ctx, *ids, "gone")
    standins.graph.script("gone", 404)
    standins.identity.fail_next(*how.get("fail", []))
    standins.identity.latency = how.get("latency", 0.0)

    started = time.monotonic()
    with caplog.at_level(logging.ERROR):
        summary = run_tick(ctx)
    elapsed = time.monotonic() - started

    assert (summary.calls, summary.failed, summary.succeeded, summary.ended) == (13, 13, 0, 0)
    assert standins.graph.requests == []  # no token, no keepAlive: nothing can end
    assert standins.identity.requests_of(TENANT) <= 3  # the failure is remembered, not retried per call
    assert elapsed < 5
    errors = errors_in(caplog)
    assert any(m.startswith("graph token failed") and f"tenantId={TENANT}" in m for m in errors), errors
    records = records_by_id(ctx)
    assert sorted(records) == sorted([*ids, "gone"])  # nothing deleted
    for record in records.values():
        assert record["lastError"].startswith("token: ") and record["lastStatus"] is None
        assert record["consecutiveFailures"] == 1 and record["lastKeepAliveAt"] is None
    assert drain_events(ctx) == []
