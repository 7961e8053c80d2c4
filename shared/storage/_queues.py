"""The queues the app writes: the cleanup queue and the call-events queue (each `callEnded` event, as text).

An event is sent *before* the call's entry is deleted (shared/ending.py), so a crash between the two repeats the
event (with the same `eventId`) rather than losing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.errors import StorageMisconfigured
from shared.events import event_text
from shared.logsafe import get_logger, safe
from shared.settings import Settings
from shared.storage._clients import Storage, storage_errors

logger = get_logger(__name__)


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
            safe(event["eventId"]),
            safe(event["reason"]),
        )


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
