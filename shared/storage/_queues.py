"""The app's queues on Azure Queue Storage, each created when missing and written as base64 text (what a Functions
queue trigger expects):

- `CleanupQueue`, `CallEventsQueue`: the `EventQueue`s of each `callEnded` event (shared/ending.py sends an event
  *before* the call's entry is deleted, so a crash between the two repeats the event rather than losing it);
- `KeepaliveWorkQueue`: the `WorkQueue` of fan-out work messages;
- `PoisonQueue`: `<CALL_EVENTS_QUEUE_NAME>-poison`, what the call-events function could not publish.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueMessage

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


class KeepaliveWorkQueue:
    """The fan-out work messages on `KEEPALIVE_WORK_QUEUE_NAME` (created when missing)."""

    def __init__(self, storage: Storage, queue_name: str) -> None:
        self._storage = storage
        self._queue_name = queue_name

    def backlog(self) -> int:
        queue = self._storage.queue(self._queue_name)
        with storage_errors("read work queue"):
            return queue.get_queue_properties().approximate_message_count or 0

    def send(self, text: str) -> None:
        queue = self._storage.queue(self._queue_name)
        with storage_errors("send work"):
            queue.send_message(text)


class PoisonQueue:
    """`<CALL_EVENTS_QUEUE_NAME>-poison`: what the call-events function could not publish, kept as the message text
    itself (base64, as the host writes it), and `events resend`'s way back to `target` (CALL_EVENTS_QUEUE_NAME)."""

    def __init__(self, storage: Storage, queue_name: str, target: str) -> None:
        self._storage = storage
        self.name = queue_name
        self.target = target
        self._client: QueueClient | None = None

    def _poison(self) -> QueueClient:
        """The poison queue's client, which decodes nothing: the stored text, as the host or the app wrote it."""
        if self._client is None:
            self._client = self._storage.queue_client(self.name)
        return self._client

    def send(self, text: str) -> None:
        """Put a message's text on the poison queue; raises when storage fails, so the message is never lost."""
        with storage_errors("move event to poison", "queue"):
            self._storage.queue(self.name).send_message(text)

    def receive(self, count: int) -> list[QueueMessage]:
        """Up to `count` messages as stored (nothing decoded), hidden from other readers for a minute; none when
        the poison queue does not exist (nothing was ever poisoned)."""
        try:
            with storage_errors("read poison events", "queue"):
                return list(self._poison().receive_messages(max_messages=count, visibility_timeout=60))
        except ResourceNotFoundError:
            return []

    def move_back(self, message: QueueMessage, text: str) -> None:
        """`text` (the message's, decoded) onto `target`, then the message off the poison queue: a crash in between
        sends an event twice (the subscriber drops it by id), never loses one."""
        with storage_errors("resend event", "queue"):
            self._storage.queue(self.target).send_message(text)
            self._poison().delete_message(message)
