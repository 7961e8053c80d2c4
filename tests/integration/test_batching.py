"""The tick's writes as entity group transactions, on Azurite with the Graph and identity stand-ins:
how many storage requests a tick makes, and that a call deleted (or registered anew) while its keepAlive
is in flight is never brought back, even when its result waits in a batch."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from shared.context import Context
from shared.keepalive import run_tick
from shared.summary import TickSummary
from tests.conftest import ContextFactory
from tests.fakes import RequestCounter
from tests.helpers import ids_in
from tests.host import FunctionHost, body_of
from tests.standins.fixtures import Standins
from tests.standins.server import Reply

pytestmark = pytest.mark.integration


@pytest.fixture
def ctx(make_context: ContextFactory) -> Context:
    """A context for real ticks against the stand-ins, installed for the functions, counting storage requests."""
    return make_context(graph=True, install=True, on_storage_request=RequestCounter())


def register(host: FunctionHost, *call_ids: str) -> None:
    for call_id in call_ids:
        response = host.request("POST", "/api/calls", body={"callId": call_id})
        assert response.status_code == 201, response.get_body()


def get(host: FunctionHost, call_id: str) -> dict[str, Any] | None:
    response = host.request("GET", f"/api/calls/{call_id}")
    return body_of(response) if response.status_code == 200 else None


def counted_tick(ctx: Context) -> tuple[TickSummary, dict[str, int]]:
    ctx.storage.table()
    ctx.storage.queue(ctx.settings.cleanup_queue_name)
    before = ctx.on_storage_request.snapshot()
    summary = run_tick(ctx)
    return summary, RequestCounter.since(before, ctx.on_storage_request.snapshot())


def test_a_tick_writes_its_results_in_transactions_of_a_hundred(ctx, host, standins):
    ids = ids_in("00", 200) + ids_in("01", 150)
    register(host, *ids)

    summary, requests = counted_tick(ctx)

    assert (summary.calls, summary.succeeded, summary.unsaved) == (350, 350, 0)
    assert requests == {"table read": 1, "table batch": 4}  # 100 + 100 and 100 + 50; one page read
    assert RequestCounter.writes(requests) <= 350 / 50 + requests["table read"]
    for call_id in (ids[0], ids[199], ids[-1]):
        record = get(host, call_id)
        assert record is not None and record["lastStatus"] == 200 and record["lastKeepAliveAt"] is not None


def test_results_written_in_a_batch_are_read_back_with_their_new_etags(ctx, host, standins):
    ids = ids_in("05", 3)
    register(host, *ids)
    run_tick(ctx)
    standins.graph.script(ids[0], 503, 503, 503, 503)
    summary = run_tick(ctx)  # the second tick's conditional writes need the first tick's ETags: no conflict
    assert (summary.succeeded, summary.failed, summary.unsaved) == (2, 1, 0)
    record = get(host, ids[0])
    assert record is not None and record["consecutiveFailures"] == 1 and record["lastStatus"] == 503


def run_in_background(ctx: Context) -> tuple[threading.Thread, list[TickSummary]]:
    results: list[TickSummary] = []
    thread = threading.Thread(target=lambda: results.append(run_tick(ctx)))
    thread.start()
    return thread, results


def wait_for_request(standins: Standins, call_id: str, deadline: float = 10.0) -> None:
    ends = time.monotonic() + deadline
    while not standins.graph.requests_for(call_id):
        assert time.monotonic() < ends, f"no keepAlive for {call_id}"
        time.sleep(0.01)


def test_a_call_deleted_while_its_keepalive_is_in_flight_stays_deleted(ctx, host, standins, caplog):
    victim, *others = ids_in("00", 20)
    register(host, victim, *others)
    standins.graph.script(victim, Reply(200, delay=0.5))
    ctx.storage.table()
    before = ctx.on_storage_request.snapshot()

    with caplog.at_level(logging.INFO, logger="shared.storage"):
        thread, results = run_in_background(ctx)
        wait_for_request(standins, victim)
        assert host.request("DELETE", f"/api/calls/{victim}").status_code == 204
        thread.join(15)

    [summary] = results
    assert summary.succeeded == 20 and summary.unsaved == 0
    assert get(host, victim) is None  # not re-created by the batch, nor by the fallback
    assert host.request("GET", "/api/calls?top=100").status_code == 200
    for call_id in others:
        record = get(host, call_id)
        assert record is not None and record["lastKeepAliveAt"] is not None
    refused = [r.getMessage() for r in caplog.records if "update batch refused" in r.getMessage()]
    assert len(refused) == 1 and "partition=00 calls=20" in refused[0]
    requests = RequestCounter.since(before, ctx.on_storage_request.snapshot())
    assert requests["table batch"] == 1 and requests["table write"] >= 20  # the DELETE, then one update each


def test_a_call_registered_anew_while_its_keepalive_is_in_flight_keeps_the_new_registration(ctx, host, standins):
    victim, *others = ids_in("00", 5)
    register(host, victim, *others)
    old = get(host, victim)
    standins.graph.script(victim, Reply(200, delay=0.5))

    thread, results = run_in_background(ctx)
    wait_for_request(standins, victim)
    assert host.request("DELETE", f"/api/calls/{victim}").status_code == 204
    register(host, victim)
    thread.join(15)

    assert results and results[0].succeeded == 5
    new = get(host, victim)
    assert new is not None and old is not None
    assert new["registeredAt"] >= old["registeredAt"]
    assert (new["lastKeepAliveAt"], new["lastStatus"], new["consecutiveFailures"]) == (None, None, 0)
    assert all(get(host, c)["lastKeepAliveAt"] is not None for c in others)  # type: ignore[index]
