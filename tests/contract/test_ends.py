"""The contract of `EndMemory`, the 24-hour memory of ended calls, per tenant and callId."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from shared.storage import ENDED_MEMORY, PAGE_SIZE
from tests.contract.conftest import Backend

NOW = datetime(2026, 11, 27, 23, 30, tzinfo=UTC)  # late in the day: 24 hours back is yesterday
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER = "0b5e8a7c-3f0e-4a2b-9c1d-8e7f6a5b4c3d"


def test_an_end_is_remembered_under_its_tenant_only_for_24_hours(backend: Backend):
    memory = backend.stores.recent_ends
    memory.remember("c1", tenant_id=TENANT, reason="keepAliveNotFound", now=NOW)
    assert memory.recently_ended("c1", TENANT, NOW)
    assert memory.recently_ended("c1", TENANT, NOW + ENDED_MEMORY)
    assert not memory.recently_ended("c1", TENANT, NOW + ENDED_MEMORY + timedelta(seconds=1))
    assert not memory.recently_ended("c1", OTHER, NOW)  # an end under one tenant never blocks another
    assert not memory.recently_ended("c1", None, NOW)
    assert not memory.recently_ended("c2", TENANT, NOW)


def test_an_end_without_a_tenant_is_remembered_as_such(backend: Backend):
    memory = backend.stores.recent_ends
    memory.remember("c1", tenant_id=None, reason="terminatedNotification", now=NOW)
    assert memory.recently_ended("c1", None, NOW + timedelta(hours=1))
    assert not memory.recently_ended("c1", TENANT, NOW)


def test_forget_clears_the_end_under_every_tenant_and_no_other_call(backend: Backend):
    memory = backend.stores.recent_ends
    memory.remember("c1", tenant_id=TENANT, reason="keepAliveNotFound", now=NOW - timedelta(hours=20))
    memory.remember("c1", tenant_id=OTHER, reason="keepAliveNotFound", now=NOW)
    memory.remember("c10", tenant_id=TENANT, reason="keepAliveNotFound", now=NOW)
    memory.forget("c1", NOW)
    assert not memory.recently_ended("c1", TENANT, NOW) and not memory.recently_ended("c1", OTHER, NOW)
    assert memory.recently_ended("c10", TENANT, NOW)


def test_remembering_again_moves_the_end_forward(backend: Backend):
    memory = backend.stores.recent_ends
    memory.remember("c1", tenant_id=TENANT, reason="keepAliveNotFound", now=NOW - timedelta(hours=23))
    memory.remember("c1", tenant_id=TENANT, reason="terminatedNotification", now=NOW)
    assert memory.recently_ended("c1", TENANT, NOW + timedelta(hours=20))


def test_the_purge_removes_ends_older_than_24_hours_and_keeps_the_others(backend: Backend):
    memory = backend.stores.recent_ends
    backend.seed_ends([f"old-{i}" for i in range(120)], tenant_id=TENANT, at=NOW - timedelta(days=3))
    backend.seed_ends([f"day-{i}" for i in range(30)], tenant_id=TENANT, at=NOW - ENDED_MEMORY - timedelta(minutes=1))
    backend.seed_ends([f"new-{i}" for i in range(20)], tenant_id=TENANT, at=NOW - timedelta(hours=23))
    ticks = itertools.count()
    purged = memory.purge(NOW, budget=60, clock=lambda: float(next(ticks)))
    assert (purged.removed, purged.left) == (150, False) and purged.seconds > 0
    assert all(memory.recently_ended(f"new-{i}", TENANT, NOW) for i in range(20))
    again = memory.purge(NOW, budget=60, clock=lambda: 0.0)
    assert (again.removed, again.left) == (0, False)
    assert all(memory.recently_ended(f"new-{i}", TENANT, NOW) for i in range(20))


def test_the_purge_stops_at_its_budget_after_a_page_and_the_next_one_goes_on(backend: Backend):
    memory = backend.stores.recent_ends
    backend.seed_ends([f"old-{i}" for i in range(PAGE_SIZE + 50)], tenant_id=TENANT, at=NOW - timedelta(days=2))
    backend.seed_ends(["new"], tenant_id=TENANT, at=NOW)
    ticks = itertools.count()  # one second passes at each look at the clock: the budget of 1 s is spent at once
    first = memory.purge(NOW, budget=1, clock=lambda: float(next(ticks)))
    assert (first.removed, first.left) == (PAGE_SIZE, True)  # a page is removed whatever the budget
    second = memory.purge(NOW, budget=1, clock=lambda: float(next(ticks)))
    assert (second.removed, second.left) == (50, False)
    assert memory.recently_ended("new", TENANT, NOW)
