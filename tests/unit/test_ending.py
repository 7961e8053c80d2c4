"""The end sequence (shared/ending.py) as a rule: its order, and a failure at any step stopping the later ones."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from shared.ending import end_call
from shared.errors import StorageUnavailable
from shared.models import CallRecord

NOW = datetime(2026, 11, 27, 13, 10, tzinfo=UTC)
RECORD = CallRecord(call_id="gone", tenant_id="t", registered_at=NOW, registration_id="reg-1")
EVENT = {"type": "callEnded", "eventId": "reg-1", "callId": "gone", "tenantId": "t", "reason": "keepAliveNotFound"}
STEPS = ["cleanup", "events", "memory", "delete"]


class Steps:
    """The four seams of an end, recording the order they are used in; `failing` names the step that raises."""

    def __init__(self, failing: str | None = None) -> None:
        self.failing = failing
        self.done: list[str] = []

    def _step(self, name: str, result: Any = None) -> Any:
        if name == self.failing:
            raise StorageUnavailable(f"{name} failed")
        self.done.append(name)
        return result

    def send(self, event: Any) -> None:  # cleanup queue
        self._step("cleanup")

    def events(self) -> Any:
        steps = self

        class Events:
            def send(self, event: Any) -> None:
                steps._step("events")

        return Events()

    def remember(self, call_id: str, **kwargs: Any) -> None:
        self._step("memory")

    def delete(self, record: CallRecord) -> bool:
        return bool(self._step("delete", True))


def end(steps: Steps, *, topic: bool) -> bool:
    events = (steps, steps.events()) if topic else (steps,)
    return end_call(steps, events, steps, RECORD, EVENT, NOW)  # type: ignore[arg-type]


def test_with_a_topic_the_events_queue_is_written_after_the_cleanup_queue_and_before_anything_is_forgotten():
    steps = Steps()
    assert end(steps, topic=True) is True
    assert steps.done == STEPS


def test_without_a_topic_nothing_goes_to_the_events_queue():
    steps = Steps()
    assert end(steps, topic=False) is True
    assert steps.done == ["cleanup", "memory", "delete"]


@pytest.mark.parametrize("failing", STEPS)
def test_a_failing_step_stops_the_end_there_so_the_call_stays_and_the_end_is_repeated(failing):
    steps = Steps(failing)
    with pytest.raises(StorageUnavailable):
        end(steps, topic=True)
    assert steps.done == STEPS[: STEPS.index(failing)]
    assert "delete" not in steps.done  # the call is still registered: the next tick runs the whole sequence again
