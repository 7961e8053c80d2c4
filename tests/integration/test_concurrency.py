"""Concurrency against real Azurite and the Graph stand-in.

- Two sweeps overlapping on one table (two workers around a deployment, each with its own clients)
  never report one end under two eventIds and never bring back a call that one of them removed.
- Registration racing deletion of the same callId, through the functions, ends consistent: the table
  holds nothing or one valid record, and GET agrees.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared import context as context_module
from shared import registry
from shared.context import Context
from shared.keepalive import run_tick
from shared.models import CallRecord, call_keys
from shared.summary import TickSummary
from tests.azurite import drain_events
from tests.conftest import ContextFactory
from tests.fakes import FakeClock
from tests.host import FunctionHost, body_of
from tests.standins.fixtures import Standins
from tests.standins.server import Reply

pytestmark = pytest.mark.integration

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@pytest.fixture
def workers(make_context: ContextFactory) -> Callable[[], Context]:
    """Builds contexts on one table and queue: each is a worker process with its own clients and tokens."""
    clock = FakeClock()

    def build() -> Context:
        return make_context(graph=True, now=clock, KEEPALIVE_CONCURRENCY="8")

    return build


def register(ctx: Context, *call_ids: str) -> dict[str, CallRecord]:
    records = {}
    for call_id in call_ids:
        records[call_id], _ = registry.register(
            ctx.calls, call_id=call_id, tenant_id=TENANT, default_tenant_id=None, metadata={}, now=ctx.now()
        )
    return records


def overlapping_ticks(*contexts: Context) -> list[TickSummary]:
    """Start one tick per context at the same moment, each in its own thread; wait for all."""
    barrier = threading.Barrier(len(contexts))

    def tick(ctx: Context) -> TickSummary:
        barrier.wait(10)
        return run_tick(ctx)

    with ThreadPoolExecutor(len(contexts)) as pool:
        return list(pool.map(tick, contexts))


def stored(ctx: Context) -> dict[str, CallRecord]:
    return {record.call_id: record for page in ctx.calls.pages() for record in page}


def test_two_overlapping_sweeps_never_send_two_event_ids_for_one_end_nor_recreate_a_call(
    workers: Callable[[], Context], standins: Standins
) -> None:
    first, second = workers(), workers()
    live = [f"live-{i}" for i in range(10)]
    ended = [f"ended-{i}" for i in range(10)]  # both sweeps see the 404
    raced = [f"raced-{i}" for i in range(10)]  # one sweep's 404 deletes it while the other's 200 is still coming
    records = register(first, *live, *ended, *raced)
    for call_id in ended:
        standins.graph.script(call_id, 404, 404)
    for call_id in raced:  # replies go in order of arrival: the first request waits, the second ends the call
        standins.graph.script(call_id, Reply(200, delay=0.6), Reply(404))
    standins.graph.latency = 0.2  # both sweeps hold every record before any answer comes

    summaries = overlapping_ticks(first, second)

    assert all(summary.calls == 30 and summary.complete for summary in summaries)
    assert sum(summary.ended for summary in summaries) in range(20, 31)
    for call_id in raced:
        statuses = sorted(str(request.status) for request in standins.graph.requests_for(call_id))
        assert statuses == ["200", "404"], (call_id, statuses)  # the sweeps really did overlap on it
    now = stored(first)
    assert sorted(now) == sorted(live)  # no ended call re-created by the other sweep's late success
    for call_id in live:
        assert now[call_id].consecutive_failures == 0 and now[call_id].last_keepalive_at is not None
    events = drain_events(first)
    by_call: dict[str, set[str]] = {}
    for event in events:
        by_call.setdefault(event["callId"], set()).add(event["eventId"])
    assert sorted(by_call) == sorted(ended + raced)  # every end reported, nothing else
    for call_id, event_ids in by_call.items():
        assert event_ids == {records[call_id].registration_id}, call_id  # repeats only under the same eventId
    counts = Counter(event["callId"] for event in events)
    assert all(counts[call_id] == 1 for call_id in raced)  # one 404 seen, one event
    assert all(counts[call_id] in (1, 2) for call_id in ended)


@pytest.mark.parametrize("late_answer", [200, 404])
def test_a_stale_sweep_never_touches_a_call_registered_again_meanwhile(
    workers: Callable[[], Context], standins: Standins, host: FunctionHost, late_answer: int
) -> None:
    """Sweep A sees 404 and removes the call; the bot registers it again; sweep B's late answer (for the old
    registration) must neither update nor delete the new registration, and reports the old end only."""
    first, second = workers(), workers()
    old = register(first, "phoenix")["phoenix"]
    standins.graph.script("phoenix", Reply(404), Reply(late_answer, delay=1.0))
    standins.graph.latency = 0.2
    previous = context_module.install(first)
    try:
        with ThreadPoolExecutor(1) as pool:
            sweeps = pool.submit(overlapping_ticks, first, second)
            deadline = time.monotonic() + 10
            while first.calls.get("phoenix") is not None:  # sweep A has removed it
                assert time.monotonic() < deadline, "the first 404 never removed the call"
                time.sleep(0.01)
            again = host.request("POST", "/api/calls", body={"callId": "phoenix", "tenantId": TENANT})
            assert again.status_code == 201
            sweeps.result(timeout=30)
        got = host.request("GET", "/api/calls/phoenix")
    finally:
        context_module.install(previous)

    assert len(standins.graph.requests_for("phoenix")) == 2  # both sweeps sent one
    assert got.status_code == 200 and body_of(got) == body_of(again)  # the new registration, untouched
    new = first.calls.get("phoenix")
    assert new is not None and new.registration_id != old.registration_id
    events = drain_events(first)
    assert len(events) == (2 if late_answer == 404 else 1)
    assert {event["eventId"] for event in events} == {old.registration_id}  # the old end, never the new one


# --- registration racing deletion -------------------------------------------------------------------------
def race(host: FunctionHost, call_id: str, posters: int, deleters: int, rounds: int) -> Counter[tuple[str, int]]:
    """Threads POSTing and DELETEing one callId at once; returns how often each (method, status) came back."""
    barrier = threading.Barrier(posters + deleters)
    path = "/api/calls/" + call_id

    def post() -> list[tuple[str, int]]:
        barrier.wait(10)
        body = {"callId": call_id, "tenantId": TENANT, "metadata": {"by": "race"}}
        return [("POST", host.request("POST", "/api/calls", body=body).status_code) for _ in range(rounds)]

    def delete() -> list[tuple[str, int]]:
        barrier.wait(10)
        return [("DELETE", host.request("DELETE", path).status_code) for _ in range(rounds)]

    with ThreadPoolExecutor(posters + deleters) as pool:
        futures = [pool.submit(post) for _ in range(posters)] + [pool.submit(delete) for _ in range(deleters)]
        return Counter(outcome for future in futures for outcome in future.result(timeout=60))


@pytest.mark.parametrize("call_id", ["raced-call", "19:meeting_Zm9v@thread.v2"])
def test_registration_racing_deletion_ends_consistent(host: FunctionHost, ctx: Context, call_id: str) -> None:
    table = ctx.storage.table()
    for _ in range(4):
        outcomes = race(host, call_id, posters=4, deleters=4, rounds=8)
        assert set(outcomes) <= {("POST", 201), ("POST", 200), ("DELETE", 204), ("DELETE", 404)}, outcomes
        entities = [dict(entity) for entity in table.list_entities()]
        got = host.request("GET", "/api/calls/" + call_id.replace("@", "%40"))
        if entities:
            [entity] = entities  # one record at most, under the callId's own keys
            assert (entity["PartitionKey"], entity["RowKey"]) == call_keys(call_id)
            record = CallRecord.from_entity(entity)
            assert record.call_id == call_id and record.tenant_id == TENANT and record.metadata == {"by": "race"}
            assert got.status_code == 200 and body_of(got) == record.to_json()
        else:
            assert got.status_code == 404


def test_deletions_racing_each_other_answer_204_once_per_registration(host: FunctionHost, ctx: Context) -> None:
    """Each 204 removed a registration: with registrations and deletions racing, the 201s minus the 204s is
    exactly what is left (1 or 0). Two DELETEs of one registration answer 204 once and 404 otherwise."""
    ctx.storage.table()
    for attempt in range(6):
        call_id = f"doubly-deleted-{attempt}"
        assert host.request("POST", "/api/calls", body={"callId": call_id}).status_code == 201
        outcomes = race(host, call_id, posters=0, deleters=6, rounds=1)
        assert outcomes == Counter({("DELETE", 204): 1, ("DELETE", 404): 5}), outcomes
    for attempt in range(3):
        call_id = f"churned-{attempt}"
        outcomes = race(host, call_id, posters=4, deleters=4, rounds=8)
        present = host.request("GET", "/api/calls/" + call_id).status_code == 200
        assert outcomes[("POST", 201)] - outcomes[("DELETE", 204)] == int(present), outcomes


def test_concurrent_registrations_of_one_call_create_it_once(host: FunctionHost, ctx: Context) -> None:
    ctx.storage.table()
    outcomes = race(host, "once", posters=8, deleters=0, rounds=3)
    assert outcomes == Counter({("POST", 201): 1, ("POST", 200): 23}), outcomes
    assert len(list(ctx.storage.table().list_entities())) == 1
