"""The entry points of a tick without services: whether a tick can run (settings, preflight), and the timer's purge
of ended calls: its budget, and what it logs."""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime, timedelta

import pytest

from shared.context import Context
from shared.errors import SettingsError
from shared.keepalive import check_settings, preflight, purge_budget, purge_quietly
from shared.schedule import schedule_interval
from shared.settings import load_settings
from tests.fakes import MemoryStorage

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def test_bad_settings_refuse_the_tick_with_one_error_naming_them(caplog):
    settings = load_settings({"KEEPALIVE_CONCURRENCY": "0", "GRAPH_CLIENT_ID": "app", "GRAPH_CLIENT_SECRET": "x"})
    with caplog.at_level(logging.ERROR), pytest.raises(SettingsError) as raised:
        preflight(Context(settings), dry=False)  # before any client is built or storage is asked
    assert "KEEPALIVE_CONCURRENCY" in str(raised.value)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "KEEPALIVE_CONCURRENCY" in errors[0].getMessage()


def test_a_dry_run_needs_no_credential_but_a_real_tick_does():
    settings = load_settings({})
    check_settings(settings, dry_run=True)
    with pytest.raises(SettingsError) as raised:
        check_settings(settings, dry_run=False)
    assert "GRAPH_CLIENT_SECRET" in str(raised.value) and "GRAPH_CLIENT_ID" in str(raised.value)


@pytest.mark.parametrize(
    ("schedule", "budget"),
    [
        ("0 */10 * * * *", 120.0),  # the default: 2 minutes of every 10
        ("0 */5 * * * *", 60.0),  # a fifth of a shorter interval
        ("0 * * * * *", 12.0),
        ("0 0 * * * *", 120.0),  # never more than 2 minutes
        ("not a schedule", 120.0),
    ],
)
def test_the_purge_of_ended_calls_gets_a_fifth_of_the_interval_at_most_two_minutes(schedule, budget):
    assert purge_budget(schedule_interval(schedule)) == budget


# --- the timer's purge of ended calls: what it logs --------------------------------------------------------------
def test_a_purge_stopped_at_its_budget_warns_that_ends_are_left_and_the_next_one_goes_on(caplog):
    storage = MemoryStorage()
    for i in range(3000):  # 30 requests of 100 `terminated` items' worth
        storage.ends.remember(f"old-{i}", tenant_id=TENANT, reason="terminatedNotification", now=NOW)
    later = NOW + timedelta(hours=24, seconds=1)
    ticks = itertools.count()  # a second passes at each look at the clock: the budget is spent after each page

    with caplog.at_level(logging.INFO, logger="shared"):
        first = purge_quietly(storage.ends, lambda: later, budget=2, clock=lambda: float(next(ticks)))
    assert first is not None and (first.removed, first.left) == (2000, True)  # two pages of 1,000, then out of time
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "ended calls left to purge removed=2000" in warning and "budgetSeconds=2" in warning

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="shared"):
        second = purge_quietly(storage.ends, lambda: later, budget=2, clock=lambda: float(next(ticks)))
    assert second is not None and (second.removed, second.left) == (1000, False)  # the next invocation goes on
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("ended calls purged removed=1000" in r.getMessage() for r in caplog.records)
    assert storage.ends.ends() == []


def test_a_purge_that_meets_storage_down_is_a_warning_and_the_timer_goes_on(caplog):
    storage = MemoryStorage()
    storage.faults.fail("ends.purge")
    with caplog.at_level(logging.WARNING, logger="shared"):
        assert purge_quietly(storage.ends, lambda: NOW) is None
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning == "ended calls not purged error=StorageUnavailable; the next timer invocation tries again"
