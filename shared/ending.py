"""Ending a call: the one sequence the tick (Graph answered 404) and notifications (`terminated`) share.

    1. the `callEnded` event goes onto the cleanup queue        a failure here: nothing changed, the call stays
    2. the end is remembered for 24 hours (tenant and callId)   a failure here: the call stays
    3. the call's row is deleted (this registration only)      a failure here: the call stays

Every step raises on failure and the later steps are not taken, so the call is still registered and the next
tick (or the bot's resent notification) runs the whole sequence again: the event is repeated under the same
`eventId` (the registration's id), never lost, and the call is never deleted before its end is remembered, so a
late `established` notification cannot bring it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.events import CleanupQueue
from shared.models import CallRecord
from shared.recent_ends import RecentEnds
from shared.store import CallStore


def end_call(
    calls: CallStore, cleanup: CleanupQueue, recent_ends: RecentEnds, record: CallRecord, event: Mapping[str, Any],
    now: datetime,
) -> bool:  # fmt: skip
    """Event, then memory, then delete. True when this removed the call; False when it was gone already."""
    cleanup.send(event)
    recent_ends.remember(record.call_id, tenant_id=event["tenantId"], reason=event["reason"], now=now)
    return calls.delete(record)
