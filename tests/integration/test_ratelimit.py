"""A 429 slows the whole sweep of its tenant, against the Graph and identity stand-ins and Azurite.

Real time here (one second of Retry-After): the pause lasts as long as the throttled call's own wait.
"""

from __future__ import annotations

import logging
import time
import uuid

import pytest

from shared.keepalive import run_tick
from shared.models import CallRecord, utc_now
from tests.conftest import ContextFactory
from tests.standins.fixtures import Standins
from tests.standins.server import Reply

pytestmark = pytest.mark.integration


def test_a_429_holds_back_every_new_request_of_the_tenant_for_its_retry_after(
    standins: Standins, make_context: ContextFactory, caplog
):
    ctx = make_context(graph=True, sleep=time.sleep, KEEPALIVE_CONCURRENCY="4")  # real sleep
    for i in range(12):
        ctx.calls.insert(CallRecord(f"call-{i:02d}", standins.tenant, utc_now(), str(uuid.uuid4())))
    first, *rest = next(iter(ctx.calls.pages()))  # the sweep takes calls in table order: this one goes first
    standins.graph.script(first.call_id, Reply(429, {"Retry-After": "1"}), 200)
    for record in rest:  # Graph takes 100 ms for the others: the 429 comes back well before them
        standins.graph.script(record.call_id, Reply(200, delay=0.1))

    with caplog.at_level(logging.WARNING, logger="shared.ratelimit"):
        summary = run_tick(ctx)

    assert (summary.succeeded, summary.retries) == (12, 1)
    throttled = standins.graph.requests_for(first.call_id)[0]
    others = [r for r in standins.graph.requests if r.call_id != first.call_id]
    started_during_pause = [r for r in others if throttled.arrival + 0.2 < r.arrival < throttled.arrival + 0.9]
    started_after = [r for r in others if r.arrival >= throttled.arrival + 0.9]
    assert started_during_pause == []  # nothing new went out while the throttled call waited
    assert len(started_after) == 12 - 4  # all but those already in flight went after the pause
    assert any("graph throttled" in r.getMessage() and "factor=0.500" in r.getMessage() for r in caplog.records)
    assert ctx.limiter().factor(standins.tenant) == 0.5  # and the tenant goes at half the rate for a while
