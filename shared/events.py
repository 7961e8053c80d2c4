"""The `callEnded` event and the queues it goes onto: the cleanup queue, and with a topic set the events queue.

The event is sent with the queue SDK *before* the call's entry is deleted, so a crash between the
two repeats the event (with the same `eventId`) rather than losing it. Both queues get the same text
(compact JSON, base64-encoded by the queue client), so the CloudEvent's `data` is the cleanup event exactly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.errors import StorageMisconfigured
from shared.logsafe import safe
from shared.models import CallRecord, format_time
from shared.settings import Settings
from shared.storage import Storage, storage_errors

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAX_GRAPH_STRING = 1024  # every string of `graph` (code, subcode, message, ids): the event stays far below 64 KiB


def call_ended_event(
    record: CallRecord,
    *,
    tenant_id: str | None,
    detected_at: datetime,
    reason: str,
    graph: Mapping[str, Any],
) -> dict[str, Any]:
    """The contract's `callEnded` event. `eventId` is the registration's id: stable across repeats."""
    graph_fields = {
        name: value[:MAX_GRAPH_STRING] if isinstance(value, str) else value for name, value in graph.items()
    }
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


class CleanupQueue:
    """Sends `callEnded` events to `CLEANUP_QUEUE_NAME` (created when missing), as base64 text."""

    def __init__(self, storage: Storage, queue_name: str) -> None:
        self._storage = storage
        self._queue_name = queue_name

    def send(self, event: Mapping[str, Any]) -> None:
        text = event_text(event)
        with storage_errors("send event", "queue"):
            self._storage.queue(self._queue_name).send_message(text)
        logger.info(
            "callEnded event sent callId=%s eventId=%s reason=%s",
            safe(event["callId"]),
            event["eventId"],
            event["reason"],
        )


def event_text(event: Mapping[str, Any]) -> str:
    """The message text of an event: compact JSON (the queue client base64-encodes it)."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


class CallEventsQueue:
    """Sends `callEnded` events to `CALL_EVENTS_QUEUE_NAME` (created when missing), as base64 text, for the queue
    function that publishes them to the Event Grid topic. Built only when `CALL_EVENTS_TOPIC_ENDPOINT` is set."""

    def __init__(self, storage: Storage, settings: Settings) -> None:
        self._storage = storage
        self._queue_name = settings.events_queue_name
        self._problems = settings.events_queue_problems

    def send(self, event: Mapping[str, Any]) -> None:
        if self._problems:  # the end stops here, before anything changed: 503 naming the setting, never a lost event
            raise StorageMisconfigured(f"The call events queue is not configured: {'; '.join(self._problems)}.")
        with storage_errors("send event", "queue"):
            self._storage.queue(self._queue_name).send_message(event_text(event))
        logger.debug(
            "callEnded event queued for the topic callId=%s eventId=%s", safe(event["callId"]), event["eventId"]
        )
