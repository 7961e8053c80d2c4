"""The contract of `EventQueue` and `WorkQueue`: what was sent is what a queue trigger reads, in order."""

from __future__ import annotations

from datetime import UTC, datetime

from shared.events import call_ended_event, event_text
from shared.models import CallRecord
from tests.contract.conftest import Backend

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
RECORD = CallRecord(
    call_id="19:meeting_é@thread.v2",
    tenant_id="72f988bf-86f1-41af-91ab-2d7cd011db47",
    registered_at=NOW,
    registration_id="00000000-0000-4000-8000-000000000001",
    metadata={"bot": "ü"},
)


def test_each_event_queue_takes_the_events_text(backend: Backend):
    event = call_ended_event(RECORD, tenant_id=RECORD.tenant_id, detected_at=NOW, reason="keepAliveNotFound", graph={})
    other = {**event, "eventId": "00000000-0000-4000-8000-000000000002"}
    for queue in backend.stores.event_queues:
        queue.send(event)
        queue.send(other)
    assert backend.sent("cleanup") == [event_text(event), event_text(other)]
    assert backend.sent("call_events") == [event_text(event), event_text(other)]


def test_the_work_queue_counts_what_waits_and_takes_each_text(backend: Backend):
    work = backend.stores.work
    assert work.backlog() == 0
    work.send('{"type":"keepaliveRange","partitions":["00"]}')
    work.send('{"type":"keepaliveRange","partitions":["01"]}')
    assert work.backlog() == 2
    assert backend.sent("work") == [
        '{"type":"keepaliveRange","partitions":["00"]}',
        '{"type":"keepaliveRange","partitions":["01"]}',
    ]


def test_prepare_before_a_sweep_succeeds_on_storage_that_serves(backend: Backend):
    backend.stores.prepare(True)
    backend.stores.prepare(False)
