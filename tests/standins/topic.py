"""An Azure Event Grid topic stand-in that takes CloudEvents 1.0, as the app's topic does.

- `POST /api/events?api-version=...` only (else 404). Authentication first: `aeg-sas-key` equal to `key`, or
  `Authorization: Bearer <token>` with a token in `tokens` (what a test's fake `TokenCredential` hands out);
  anything else answers `401` in Event Grid's error shape (`{"error": {"code", "message"}}`).
- The body must be `application/cloudevents-batch+json`, a JSON array (what `EventGridPublisherClient` posts);
  it is split and each element is read with the CNCF `cloudevents` SDK (`JSONFormat().read`), as a subscriber
  would. Every request is recorded; the events of the requests answered `200` are kept in `events`.
- Replies can be scripted (`script(Reply(...), ...)`: a status answered in Event Grid's error shape, headers
  such as Retry-After, a delay, or `RESET`); unscripted, a valid request answers `200` with an empty body.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat

from .server import RESET, Reply, Request, Service

__all__ = ["RESET", "Reply", "TopicRequest", "TopicStandin"]

PATH = "/api/events"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
ERROR_CODES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 408: "RequestTimeout",
               413: "RequestEntityTooLarge", 429: "TooManyRequests", 500: "InternalServerError",
               503: "ServiceUnavailable"}  # fmt: skip


@dataclass(frozen=True)
class TopicRequest:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    status: int | None  # None for a reset

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), None)


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    code = ERROR_CODES.get(status, "Error")
    return {"error": {"code": code, "message": message or f"stand-in topic answered {status}", "details": []}}


def read_batch(body: bytes) -> list[BaseCloudEvent]:
    """Each element of a CloudEvents batch, read with the CNCF SDK as a subscriber reads one event."""
    elements = json.loads(body.decode("utf-8"))
    if not isinstance(elements, list):
        raise ValueError("a CloudEvents batch is a JSON array")
    return [JSONFormat().read(None, json.dumps(element)) for element in elements]


class TopicStandin(Service):
    def __init__(self, key: str | None = "standin-topic-key", tokens: set[str] | None = None) -> None:
        self.key = key
        self.tokens: set[str] = tokens if tokens is not None else set()
        self._lock = threading.Lock()
        self.requests: list[TopicRequest] = []
        self.events: list[BaseCloudEvent] = []
        self.raw_events: list[dict[str, Any]] = []  # the elements as posted, beside their CNCF reading
        self._script: list[Reply] = []
        self.on_event: Any = None  # called with each accepted event (the local run logs them)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.events.clear()
            self.raw_events.clear()
            self._script.clear()
            self.tokens.clear()

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order (after authentication)."""
        with self._lock:
            self._script.extend(replies)

    def _authenticated(self, request: Request) -> bool:
        key = request.header("aeg-sas-key")
        if key is not None:
            return self.key is not None and key == self.key
        scheme, _, token = (request.header("Authorization") or "").partition(" ")
        return scheme.lower() == "bearer" and token in self.tokens

    def handle(self, request: Request) -> Reply:
        reply = self._reply(request)
        with self._lock:
            self.requests.append(
                TopicRequest(request.method, request.target, request.headers, request.body, reply.status or None)
            )
        return reply

    def _reply(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != PATH:
            return Reply(404, body=error_body(404))
        if not self._authenticated(request):
            return Reply(401, body=error_body(401, "the request is not authorized"))
        with self._lock:
            scripted = self._script.pop(0) if self._script else None
        if scripted is not None and (scripted.reset or scripted.status != 200):
            if scripted.reset:
                return scripted
            body = scripted.body if scripted.body is not None else error_body(scripted.status)
            return Reply(scripted.status, headers=scripted.headers, body=body, delay=scripted.delay)
        if not (request.header("Content-Type") or "").startswith(BATCH_CONTENT_TYPE):
            return Reply(400, body=error_body(400, "expected application/cloudevents-batch+json"))
        try:
            events = read_batch(request.body)
        except (ValueError, TypeError, BaseCloudEventException) as error:
            return Reply(400, body=error_body(400, str(error)))
        with self._lock:
            self.events.extend(events)
            self.raw_events.extend(json.loads(request.body))
        for event in events:
            if self.on_event is not None:
                self.on_event(event)
        return Reply(200)
