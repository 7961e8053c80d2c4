"""The `callEnded` event, and its text on the queues (shared/storage: the cleanup queue, and with a topic set the
events queue). Both queues get the same text (compact JSON, base64-encoded by the queue client), so the
CloudEvent's `data` is the cleanup event exactly.

A queue message holds at most 64 KiB, and the event travels as base64 text, so its JSON must stay within
48 KiB. It does by construction (a readable call's callId and metadata are what registration accepts, every
string of `graph` is cut to 1,024 characters, so even fully escaped it is under 40 KiB); `call_ended_event`
still measures it as a last guard, cuts `graph`'s strings further if it had to, and refuses to build an event
that cannot fit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.models import CallRecord, format_time

SCHEMA_VERSION = 1
MAX_GRAPH_STRING = 1024  # every string of `graph` (code, subcode, message, ids): the event stays far below 64 KiB
MAX_EVENT_BYTES = 48 * 1024  # the event as compact UTF-8 JSON; base64 makes it 64 KiB, a queue message's most
_GUARD_GRAPH_STRING = 128  # what `graph`'s strings are cut to when an event would not fit otherwise


def event_text(event: Mapping[str, Any]) -> str:
    """The event as the queue message's text (compact JSON, before the queue client's base64)."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def call_ended_event(
    record: CallRecord,
    *,
    tenant_id: str | None,
    detected_at: datetime,
    reason: str,
    graph: Mapping[str, Any],
) -> dict[str, Any]:
    """The contract's `callEnded` event. `eventId` is the registration's id: stable across repeats.

    Its text is at most `MAX_EVENT_BYTES` (see the module's docstring): `ValueError` for a record whose own
    values could not fit (never a call read from the table, whose values registration bounds).
    """
    event = _event(record, tenant_id, detected_at, reason, graph, MAX_GRAPH_STRING)
    if _size(event) > MAX_EVENT_BYTES:
        event = _event(record, tenant_id, detected_at, reason, graph, _GUARD_GRAPH_STRING)
        if _size(event) > MAX_EVENT_BYTES:
            raise ValueError(f"a callEnded event would be over {MAX_EVENT_BYTES} bytes")
    return event


def _size(event: Mapping[str, Any]) -> int:
    return len(event_text(event).encode("utf-8"))


def _text(value: str, cut: int) -> str:
    """A string of Graph's (or a notification's), cut, with any lone surrogate (JSON lets `\\ud800` through)
    replaced by U+FFFD: the queue's text must be valid UTF-8."""
    value = value[:cut]
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return value


def _event(
    record: CallRecord, tenant_id: str | None, detected_at: datetime, reason: str, graph: Mapping[str, Any], cut: int
) -> dict[str, Any]:
    graph_fields = {name: _text(value, cut) if isinstance(value, str) else value for name, value in graph.items()}
    return {
        "schemaVersion": SCHEMA_VERSION,
        "type": "callEnded",
        "eventId": record.registration_id,
        "callId": record.call_id,
        "tenantId": tenant_id,
        "registeredAt": format_time(record.registered_at),
        "lastKeepAliveAt": format_time(record.last_keepalive_at),
        "detectedAt": format_time(detected_at),
        "reason": reason,
        "graph": graph_fields,
        "metadata": dict(record.metadata),
    }
