"""The queue function of CALL_EVENTS_QUEUE_NAME, which publishes each `callEnded` event to the Event Grid topic,
and the operator's way back from its poison queue (`callkeeper events resend`).

| the message, the settings, the topic's answer      | the function                                                  |
|----------------------------------------------------|---------------------------------------------------------------|
| CALL_EVENTS_QUEUE_NAME invalid, or another queue's | ERROR naming it; fails the invocation: a message that may be  |
|                                                    | another queue's is never consumed nor moved by the app        |
| not a `callEnded` event                            | ERROR; puts the text on `<name>-poison`; completes            |
| CALL_EVENTS_TOPIC_ENDPOINT unset                   | ERROR naming it; to `<name>-poison`; completes                |
| endpoint not https, or no key and no identity      | ERROR naming the setting; to `<name>-poison`; completes       |
| 200                                                | INFO `call event published`; completes (the host deletes it)  |
| 401, 403, 408, 429, 5xx, timeout, no connection,   | WARNING (the last try, at maxDequeueCount: ERROR naming the   |
| no token                                           | eventId); fails the invocation: the host delivers it again    |
|                                                    | after visibilityTimeout, and after maxDequeueCount tries      |
|                                                    | moves it to `<name>-poison`                                   |
| any other answer                                   | ERROR naming the eventId, status and the topic's code; to     |
|                                                    | `<name>-poison`; completes                                    |

What goes to `<name>-poison` is the message text itself (base64, as the host writes it), so `events resend` (or the
host's own poison messages) can be put back unchanged. Poison messages expire after 7 days, the queue's default.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from typing import Any

from shared import jsonsafe
from shared.context import Context
from shared.errors import InvalidCallEvent, SettingsError, TopicRefused, TopicUnavailable
from shared.fanout import MAX_DEQUEUE_COUNT, WorkMessage
from shared.logsafe import get_logger, safe
from shared.settings import POISON_SUFFIX
from shared.topic import parse_time

logger = get_logger(__name__)

MAX_MESSAGE_CHARS = 65536  # a queue message is at most 64 KiB


def poison_queue_name(queue_name: str) -> str:
    return queue_name + POISON_SUFFIX


def parse_event(body: bytes) -> dict[str, Any]:
    """The `callEnded` event of a message, or `InvalidCallEvent` saying why it is not one (never quoting it)."""
    if len(body) > MAX_MESSAGE_CHARS:
        raise InvalidCallEvent(f"the message is longer than {MAX_MESSAGE_CHARS} bytes")
    try:
        event = jsonsafe.loads(body)
    except ValueError:  # not UTF-8, not JSON, or nested too deep
        raise InvalidCallEvent("the message is not JSON") from None
    if not isinstance(event, dict) or event.get("type") != "callEnded":
        raise InvalidCallEvent("the message is not a callEnded event")
    for name in ("eventId", "callId", "detectedAt"):
        if not isinstance(event.get(name), str) or not event[name]:
            raise InvalidCallEvent(f"the event has no {name}")
    try:
        parse_time(event["detectedAt"])
    except ValueError:
        raise InvalidCallEvent("the event's detectedAt is not a time") from None
    return event


def _poison(ctx: Context, body: bytes) -> None:
    """The message text onto `<name>-poison` (base64, as the host would put it). Raises when storage fails, so the
    invocation fails and the message comes back rather than being lost."""
    ctx.poison.send(body.decode("utf-8", errors="replace"))  # not UTF-8 can only be a message that is not an event


def publish_message(ctx: Context, message: WorkMessage) -> None:
    """The queue function's body: publish one event, or poison it, or raise so the host delivers it again."""
    settings = ctx.settings
    dequeue_count = message.dequeue_count or 1
    if settings.events_queue_problems:
        logger.error(
            "call event not published: invalid settings: %s; the message is left on its queue id=%s",
            "; ".join(settings.events_queue_problems),
            message.id,
        )
        raise SettingsError(settings.events_queue_problems)
    body = message.get_body()
    poison = poison_queue_name(settings.events_queue_name)
    try:
        event = parse_event(body)
    except InvalidCallEvent as error:
        logger.error("call event message invalid id=%s dequeueCount=%d error=%s; moved to %s",
                     message.id, dequeue_count, error, poison)  # fmt: skip
        _poison(ctx, body)
        return
    event_id, call_id = safe(event["eventId"]), safe(event["callId"])
    problems = settings.events_topic_problems
    if not settings.events_enabled:
        problems = ("CALL_EVENTS_TOPIC_ENDPOINT is not set",)
    if problems:
        logger.error("call event not published eventId=%s callId=%s: invalid settings: %s; moved to %s",
                     event_id, call_id, "; ".join(problems), poison)  # fmt: skip
        _poison(ctx, body)
        return
    try:
        ctx.topic().publish(event)
    except TopicUnavailable as error:
        last_try = dequeue_count >= MAX_DEQUEUE_COUNT
        logger.log(
            logging.ERROR if last_try else logging.WARNING,
            "call event not published eventId=%s callId=%s status=%s code=%s dequeueCount=%d; %s",
            event_id,
            call_id,
            error.status,
            safe(error.code),
            dequeue_count,
            f"last try: the host moves the message to {poison}" if last_try else "the queue delivers it again",
        )
        raise
    except TopicRefused as error:
        logger.error("call event refused by the topic eventId=%s callId=%s status=%s code=%s; moved to %s",
                     event_id, call_id, error.status, safe(error.code), poison)  # fmt: skip
        _poison(ctx, body)
        return
    logger.info("call event published eventId=%s callId=%s dequeueCount=%d", event_id, call_id, dequeue_count)


@dataclass(frozen=True)
class Resent:
    moved: int  # put back on CALL_EVENTS_QUEUE_NAME and removed from its poison queue
    left: int  # not base64 text: left on the poison queue for a person
    source: str
    target: str


def resend_poisoned(ctx: Context, *, limit: int | None = None) -> Resent:
    """Move the messages of `<CALL_EVENTS_QUEUE_NAME>-poison` back to `CALL_EVENTS_QUEUE_NAME`, at most `limit`.

    Each is sent to the events queue before it is deleted from the poison queue (a crash in between sends an event
    twice, which the subscriber drops by id, and never loses one). The text goes back unchanged.
    """
    settings = ctx.settings
    if settings.events_queue_problems:
        raise SettingsError(settings.events_queue_problems)
    poison = ctx.poison
    moved = left = 0
    while limit is None or moved < limit:
        batch = poison.receive(32 if limit is None else max(1, min(32, limit - moved)))
        if not batch:
            break
        for message in batch:
            try:
                text = base64.b64decode(message.content, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                left += 1  # hidden for a minute, so this run does not see it again
                continue
            poison.move_back(message, text)
            moved += 1
    logger.info("call events resent moved=%d left=%d from=%s to=%s", moved, left, poison.name, poison.target)
    return Resent(moved, left, poison.name, poison.target)
