"""Ending a call: the one sequence the tick (Graph answered 404) and notifications (`terminated`) share.

    1. the `callEnded` event goes onto the cleanup queue        a failure here: nothing changed, the call stays
    2. with a topic set (CALL_EVENTS_TOPIC_ENDPOINT), the same  a failure here: the call stays; the bot has
       event goes onto CALL_EVENTS_QUEUE_NAME                   its cleanup event (it drops the repeat by eventId)
    3. the end is remembered for 24 hours (tenant and callId)   a failure here: the call stays
    4. the call's row is deleted (this registration only)      a failure here: the call stays

Every step raises on failure and the later steps are not taken, so the call is still registered and the next
tick (or the bot's resent notification) runs the whole sequence again: the event is repeated under the same
`eventId` (the registration's id), never lost, and the call is never deleted before its end is remembered, so a
late `established` notification cannot bring it back.

Why this order: both queue writes come before anything that forgets the call, so a failure of either repeats the
end rather than losing an event. The cleanup queue comes first because it is the record of every end and what
the bot reads today: a problem with the optional events queue never holds back the bot's own event, it only
repeats it. Writing the events queue second means a repeat can send one consumer a duplicate but never skip one,
and both consumers drop duplicates by `eventId` (the CloudEvent's `id`). The memory stays after the events, as
before: it only matters once the row is gone. Without a topic, step 2 is skipped: no request, nothing else changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.models import CallRecord
from shared.storage import Calls, EndMemory, EventQueue


def end_call(
    calls: Calls,
    events: Sequence[EventQueue],
    memory: EndMemory,
    record: CallRecord,
    event: Mapping[str, Any],
    now: datetime,
) -> bool:
    """Events (each queue of `events` in order: the cleanup queue, then the call-events queue with a topic), then
    memory, then delete. True when this removed the call; False when it was gone already."""
    for queue in events:
        queue.send(event)
    memory.remember(record.call_id, tenant_id=event["tenantId"], reason=event["reason"], now=now)
    return calls.delete(record)
