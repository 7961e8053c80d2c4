"""KEEPALIVE_TENANT_RATE end to end: the timer's work messages carry their shares, each sweep paces each
tenant at its share, and the timer warns when the largest tenant cannot be swept within the schedule.

On Azurite and the Graph and identity stand-ins; the rate limiter runs on a fake clock whose sleep advances
it (one keepAlive at a time), so the pace is read off that clock, not timed.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable

import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from shared.context import Context
from shared.fanout import ALL_PARTITIONS, WorkRange
from shared.keepalive import run_tick, run_timer, run_work
from shared.models import CallRecord, call_keys, utc_now
from tests.conftest import ContextFactory
from tests.fakes import FakeTime, WorkMessage

pytestmark = pytest.mark.integration


@pytest.fixture
def budget(make_context: ContextFactory) -> Callable[..., tuple[Context, FakeTime]]:
    """Builds a context for real ticks, one keepAlive at a time, its rate limiter on a `FakeTime`."""

    def build(**overrides: str) -> tuple[Context, FakeTime]:
        time = FakeTime()
        ctx = make_context(
            graph=True, pace_clock=time.clock, pace_sleep=time.sleep, **{"KEEPALIVE_CONCURRENCY": "1", **overrides}
        )
        return ctx, time

    return build


def register(ctx: Context, tenant: str, count: int, *, in_sample: int = 0) -> None:
    """`count` calls of `tenant`, `in_sample` of them in partition 00 (the timer's sample)."""
    sample = [f"s-{i}" for i in range(10_000) if call_keys(f"s-{i}")[0] == "00"][:in_sample]
    others = [f"c-{i}" for i in range(10_000) if call_keys(f"c-{i}")[0] != "00"][: count - in_sample]
    for call_id in sample + others:
        ctx.calls.insert(CallRecord(call_id, tenant, utc_now(), str(uuid.uuid4())))


def work_messages(ctx: Context) -> list[dict[str, object]]:
    connection = ctx.settings.storage.connection_string  # type: ignore[union-attr]
    queue = QueueClient.from_connection_string(
        connection, ctx.settings.work_queue_name, message_decode_policy=TextBase64DecodePolicy()
    )
    return [json.loads(m.content) for m in queue.receive_messages(max_messages=32, visibility_timeout=60)]


def budget_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("keepalive budget too small")]


@pytest.mark.parametrize(("rate", "warned"), [("1", True), ("2", False)])
def test_the_timer_writes_each_range_its_share_and_warns_when_the_largest_tenant_cannot_fit(
    budget, standins, caplog, rate, warned
):
    ctx, _ = budget(KEEPALIVE_FANOUT_THRESHOLD="10", KEEPALIVE_TENANT_RATE=rate, KEEPALIVE_SCHEDULE="0 */2 * * * *")
    register(ctx, standins.tenant, 30, in_sample=3)  # estimated from partition 00: 3 x 64 = 192 calls

    with caplog.at_level(logging.INFO):
        run_timer(ctx, past_due=False)

    bodies = work_messages(ctx)
    assert len(bodies) >= 3 and standins.graph.requests == []
    shares = [float(b["tenantRate"]) for b in bodies]  # type: ignore[arg-type]
    assert sum(shares) <= int(rate)
    for body, share in zip(bodies, shares, strict=True):
        assert share == pytest.approx(int(rate) * len(body["partitions"]) / 64, abs=0.001)  # type: ignore[arg-type]
    warnings = budget_warnings(caplog)
    if warned:  # 192 calls at 1 per second: 192 s, more than the 120 s between ticks
        assert warnings == [
            f"keepalive budget too small tenantId={standins.tenant} calls=192 estimated=true tenantRate=1 "
            "sweepSeconds=192 intervalSeconds=120: the sweep of this tenant cannot finish before the next tick; "
            "raise KEEPALIVE_TENANT_RATE (at most 3000) or lengthen KEEPALIVE_SCHEDULE (docs/scaling.md)"
        ]
    else:  # 96 s fits
        assert warnings == []


@pytest.mark.parametrize(("calls", "warned"), [(12, True), (8, False)])
def test_a_sweep_of_the_whole_table_paces_at_the_whole_rate_and_warns_from_what_it_counted(
    budget, standins, caplog, calls, warned
):
    ctx, time = budget(KEEPALIVE_TENANT_RATE="1", KEEPALIVE_SCHEDULE="*/10 * * * * *")
    register(ctx, standins.tenant, calls)

    with caplog.at_level(logging.WARNING):
        summary = run_tick(ctx)

    assert summary.succeeded == calls
    assert time.now == pytest.approx(calls - 1)  # one at once, then one a second
    assert len(budget_warnings(caplog)) == warned
    if warned:
        assert f"calls={calls} estimated=false tenantRate=1 sweepSeconds=12 intervalSeconds=10" in caplog.text


def test_a_work_item_paces_each_tenant_at_the_share_its_message_names(budget, standins):
    ctx, time = budget(KEEPALIVE_TENANT_RATE="1000")
    register(ctx, standins.tenant, 9)

    summary = run_work(ctx, WorkMessage(WorkRange(ALL_PARTITIONS, "tick", tenant_rate=2.0).text()))

    assert summary is not None and summary.succeeded == 9
    assert time.now == pytest.approx(8 / 2)  # at the message's 2 per second, not the instance's 1000
    assert ctx.limiter().rate == 1000  # the share ended with the sweep


def test_a_message_without_a_share_takes_its_part_of_the_instances_budget(budget, standins):
    ctx, time = budget(KEEPALIVE_TENANT_RATE="8")
    register(ctx, standins.tenant, 9)
    old = {"schemaVersion": 1, "type": "keepaliveRange", "partitions": list(ALL_PARTITIONS), "tickId": "t"}

    summary = run_work(ctx, WorkMessage(json.dumps(old)))

    assert summary is not None and summary.succeeded == 9
    assert time.now == pytest.approx(8 / 8)  # all 64 partitions: the whole 8 per second
