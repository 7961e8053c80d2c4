"""The end sequence (shared/ending.py) over storage in memory: events, then memory, then delete; a failure at any
step stops the later ones, so the call stays registered and the next try repeats the whole end under the same
`eventId`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.ending import end_call
from shared.errors import StorageUnavailable
from shared.events import call_ended_event
from shared.models import CallRecord
from tests.fakes import MemoryStorage

NOW = datetime(2026, 11, 27, 13, 10, tzinfo=UTC)
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
REGISTRATION = "3f1c1a52-7a39-4a8e-9a7e-3c1b0f2f3f3f"
STEPS = ["cleanup.send", "call_events.send", "ends.remember", "calls.delete"]


def stored(storage: MemoryStorage) -> CallRecord:
    assert storage.calls.insert(CallRecord("gone", TENANT, NOW - timedelta(hours=1), REGISTRATION))
    record = storage.calls.get("gone")
    assert record is not None
    return record


def end(storage: MemoryStorage, record: CallRecord, now: datetime = NOW) -> bool:
    event = call_ended_event(record, tenant_id=TENANT, detected_at=now, reason="keepAliveNotFound", graph={})
    return end_call(storage.calls, storage.event_queues, storage.ends, record, event, now)


def state(storage: MemoryStorage) -> tuple[int, int, bool, bool]:
    """(events on the cleanup queue, on the call-events queue, end remembered, call still registered)."""
    events = len(storage.call_events.texts) if storage.call_events is not None else 0
    return (
        len(storage.cleanup.texts),
        events,
        storage.ends.recently_ended("gone", TENANT, NOW),
        bool(storage.rows.all()),
    )


def test_with_a_topic_both_queues_get_the_event_then_the_end_is_remembered_then_the_call_deleted():
    storage = MemoryStorage(topic=True)
    assert end(storage, stored(storage)) is True
    assert state(storage) == (1, 1, True, False)
    [event] = storage.cleanup.events()
    assert storage.call_events is not None and storage.call_events.events() == [event]
    assert event["eventId"] == REGISTRATION and event["callId"] == "gone" and event["tenantId"] == TENANT
    assert storage.ends.ends() == [("gone", TENANT, NOW, "keepAliveNotFound")]  # the event's tenant and reason


def test_without_a_topic_nothing_goes_to_the_events_queue():
    storage = MemoryStorage(topic=False)
    assert end(storage, stored(storage)) is True
    assert state(storage) == (1, 0, True, False)


@pytest.mark.parametrize(
    ("failing", "after"),
    [
        ("cleanup.send", (0, 0, False, True)),  # nothing changed
        ("call_events.send", (1, 0, False, True)),  # the bot has its event; the call stays
        ("ends.remember", (1, 1, False, True)),  # never deleted before its end is remembered
        ("calls.delete", (1, 1, True, True)),
    ],
)
def test_a_failing_step_stops_the_end_there_and_the_next_try_repeats_it_under_the_same_event_id(failing, after):
    storage = MemoryStorage(topic=True)
    record = stored(storage)
    storage.faults.fail(failing)
    with pytest.raises(StorageUnavailable):
        end(storage, record)
    assert state(storage) == after

    later = NOW + timedelta(minutes=10)
    assert end(storage, record, later) is True  # the next tick (or the resent notification) ends it again
    assert state(storage)[2:] == (True, False)
    events = storage.cleanup.events()
    assert len(events) == after[0] + 1 and {e["eventId"] for e in events} == {REGISTRATION}
    assert events[-1]["detectedAt"] == "2026-11-27T13:20:00.000Z"


def test_an_end_of_a_call_gone_meanwhile_still_sends_and_remembers_and_answers_false():
    storage = MemoryStorage()
    record = stored(storage)
    assert storage.calls.delete(record)  # removed meanwhile (DELETE /api/calls, or another sweep)
    assert end(storage, record) is False
    assert state(storage) == (1, 0, True, False)


def test_an_end_never_deletes_a_registration_newer_than_the_one_that_ended():
    storage = MemoryStorage()
    record = stored(storage)
    assert storage.calls.delete(record)
    assert storage.calls.insert(CallRecord("gone", TENANT, NOW, "00000000-0000-4000-8000-000000000002"))
    assert end(storage, record) is False
    newer = storage.calls.get("gone")
    assert newer is not None and newer.registration_id.endswith("2")
