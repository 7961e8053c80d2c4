"""The Event Grid topic of CALL_EVENTS_TOPIC_ENDPOINT: a `callEnded` event published as one CloudEvent 1.0.

Published with `azure-eventgrid`'s `EventGridPublisherClient` and `azure.core.messaging.CloudEvent`, as the
contract's "Call events on Event Grid" says: `type` callkeeper.callEnded, `source` /callkeeper, `id` the eventId,
`time` the detectedAt (both set here: the SDK would make up its own), `subject` calls/{callId percent-encoded as one
segment}, `datacontenttype` application/json, `data` the event exactly as on the cleanup queue. The SDK posts
a JSON array (`application/cloudevents-batch+json`) of one element.

Authentication: `CALL_EVENTS_TOPIC_KEY` as `AzureKeyCredential` (sent as `aeg-sas-key`); without it, Microsoft Entra
ID as the user-assigned identity of `AzureWebJobsStorage__clientId`. For a token credential the SDK asks for the
scope `https://eventgrid.azure.net/.default` (DEFAULT_EVENTGRID_SCOPE in azure/eventgrid/_legacy/_constants.py,
azure-eventgrid 4.22), with no option to change it: verified for the global cloud only (docs/events.md).

One invocation stays well under host.json's functionTimeout (10 minutes). `EventGridPublisherClient` does not pass
its constructor's options on to the client it builds for a basic topic (azure-eventgrid 4.22: `_patch.py` builds
the legacy client with the endpoint, credential and api_version alone, so it would retry 10 times with 300 s
timeouts), so the bounds go with each `send` as azure-core's per-operation options (`SEND_OPTIONS`): at most 3
attempts (the SDK retries a POST only on 500, 503 and 504), 5 s to connect, 10 s to read, 60 s in all. A topic's
`Retry-After` is dropped before the retry policy sees it (azure-core would sleep for as long as it says, without a
cap); the host's redelivery after visibilityTimeout is the wait between invocations instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from azure.core.credentials import AzureKeyCredential, TokenCredential
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.core.messaging import CloudEvent
from azure.core.pipeline import PipelineResponse
from azure.eventgrid import EventGridPublisherClient

from shared import jsonsafe
from shared.errors import TopicRefused, TopicUnavailable
from shared.settings import Settings

EVENT_TYPE = "callkeeper.callEnded"
EVENT_SOURCE = "/callkeeper"
RETRYABLE_STATUSES = frozenset({401, 403, 408, 429})  # and every 5xx
MAX_CODE = 128  # the topic's error code, as logged


def _without_retry_after(response: PipelineResponse[Any, Any]) -> None:
    """Drop the topic's Retry-After (and its millisecond forms): azure-core would otherwise sleep for it, uncapped."""
    headers = response.http_response.headers
    for name in ("Retry-After", "retry-after-ms", "x-ms-retry-after-ms"):
        if name in headers:
            del headers[name]


SEND_OPTIONS: dict[str, Any] = {
    "retry_total": 2,
    "retry_backoff_factor": 0.5,
    "retry_backoff_max": 4,
    "connection_timeout": 5,
    "read_timeout": 10,
    "timeout": 60,  # azure-core's bound on the whole operation, retries included
    "raw_response_hook": _without_retry_after,
}
WORST_CASE_SECONDS = 3 * (5 + 10) + 1.0  # three attempts at their timeouts and one backoff of 1 s: under 60


class _SendOptionsNotAttributes(logging.Filter):
    """The SDK also hands `send`'s options to its CloudEvent model, which logs a WARNING for each ("... is not a
    known attribute of class ... and will be ignored"): drop exactly those, nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (
            "is not a known attribute" in str(record.msg)
            and isinstance(args, tuple)
            and args
            and args[0] in SEND_OPTIONS
        )


_MODEL_LOGGER = "azure.eventgrid._legacy._generated._serialization"
_FILTER = _SendOptionsNotAttributes()


def parse_time(text: str) -> datetime:
    """An ISO 8601 UTC time as the app writes it (`...Z`)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def subject(call_id: str) -> str:
    return "calls/" + quote(call_id, safe="")


def cloud_event(event: Mapping[str, Any]) -> CloudEvent[Any]:
    """The contract's CloudEvent for a `callEnded` event (`data` is the event itself)."""
    return CloudEvent(
        source=EVENT_SOURCE,
        type=EVENT_TYPE,
        id=event["eventId"],
        time=parse_time(event["detectedAt"]),
        subject=subject(event["callId"]),
        datacontenttype="application/json",
        data=dict(event),
    )


def credential(settings: Settings) -> AzureKeyCredential | TokenCredential:
    """The topic key when set, else the storage identity (`AzureWebJobsStorage__clientId`). No I/O here."""
    if settings.events_topic_key:
        return AzureKeyCredential(settings.events_topic_key)
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=settings.events_identity_client_id)


def _code(error: HttpResponseError) -> str:
    """The topic's error code (`{"error": {"code": ...}}`), else the status's reason."""
    code = getattr(error.error, "code", None) if error.error is not None else None
    if not code and error.response is not None:
        try:
            body = jsonsafe.loads(error.response.text())
            found = body.get("error") if isinstance(body, dict) else None
            code = found.get("code") if isinstance(found, dict) else None
        except ValueError:
            code = None
        code = code or error.response.reason
    return str(code or "unknown")[:MAX_CODE]


def _answered(error: HttpResponseError) -> HttpResponseError:
    """The error that carries the topic's answer: the SDK re-raises a 404 as a new `ResourceNotFoundError` without
    it ("Resource not found. For Event Grid Namespaces, ..."), from the original."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, HttpResponseError) and cause.status_code is not None:
            return cause
        cause = cause.__cause__
    return error


class Topic:
    """Publishes call events to one Event Grid topic; built once per process (`Context.topic`)."""

    def __init__(self, endpoint: str, credential: AzureKeyCredential | TokenCredential) -> None:
        model_logger = logging.getLogger(_MODEL_LOGGER)
        if _FILTER not in model_logger.filters:
            model_logger.addFilter(_FILTER)
        self.endpoint = endpoint
        self._client = EventGridPublisherClient(endpoint, credential)

    def publish(self, event: Mapping[str, Any]) -> None:
        """Send the event; `TopicUnavailable` for what a later try may fix, `TopicRefused` for any other answer."""
        try:
            self._client.send(cloud_event(event), **SEND_OPTIONS)
        except (ServiceRequestError, ServiceResponseError) as error:  # no answer: timeouts, connections, TLS
            kind = "timeout" if "timeout" in type(error).__name__.lower() else "connection error"
            raise TopicUnavailable(f"the topic did not answer: {kind}", status=None, code=kind) from error
        except HttpResponseError as raised:
            answered = _answered(raised)
            status = answered.status_code
            if status is None:  # no response: the credential could not get a token (ClientAuthenticationError)
                raise TopicUnavailable("no token for the topic", status=None, code="token") from raised
            code = _code(answered)
            if status >= 500 or status in RETRYABLE_STATUSES:
                raise TopicUnavailable(f"the topic answered {status} {code}", status=status, code=code) from raised
            raise TopicRefused(f"the topic refused the event: {status} {code}", status=status, code=code) from raised

    def close(self) -> None:
        self._client.close()
